//! What several groups share, at the bottom of the dependency order: it uses
//! nothing else of the crate.

pub mod blocking;
pub mod format;
pub mod metrics;
pub mod partition;
pub mod private_files;
pub mod record;
pub mod room;
