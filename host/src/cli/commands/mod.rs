//! One module per subcommand.

pub mod check;
pub mod filters;
pub mod import;
pub mod run;
pub mod status;
pub mod swap;
pub mod test_filter;
