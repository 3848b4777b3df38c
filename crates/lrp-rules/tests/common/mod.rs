//! Helpers of the rule tests: the workspace's shared test kit.
#![allow(dead_code, unused_imports)]

pub use lrp_testkit::{oracle_fixture as fixture, worst_relative_error};
