//! One module per subcommand.

pub mod filters;
pub mod run;
pub mod swap;
pub mod test_filter;
