//! One module per subcommand.

pub mod batch;
pub mod concepts;
pub mod convert;
pub mod eval;
pub mod explain;
pub mod info;
pub mod predict;
pub mod prepare;
pub mod train;
pub mod view;
