//! One module per subcommand.

pub mod check;
pub mod filters;
pub mod health;
pub mod import;
pub mod new_filter;
pub mod precompile;
pub mod run;
pub mod shards;
pub mod status;
pub mod swap;
pub mod test_filter;
