//! One module per subcommand.

pub mod info;
pub mod predict;
pub mod train;
