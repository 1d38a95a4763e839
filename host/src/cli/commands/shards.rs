//! `sse-ingest shards FILE --count N`: which shard runs each pipeline, as `run --config FILE
//! --shard I/N` will decide it (the same function, from the same names).

use crate::cli::ShardsArgs;
use crate::cli::config_file;
use crate::cli::exit::{self, Failure};
use crate::config::shard::{Shard, shard_of};

/// Prints one line per shard: `shard I/N: K pipelines: a, b, c`.
pub fn execute(args: &ShardsArgs) -> Result<u8, Failure> {
    Shard::new(0, args.count).map_err(|e| Failure::usage(format!("invalid --count: {e}")))?;
    let config = config_file::load(&args.file).map_err(Failure::usage)?;
    let mut shards: Vec<Vec<&str>> = vec![Vec::new(); args.count as usize];
    for pipeline in &config.pipelines {
        if let Some(names) = shards.get_mut(shard_of(&pipeline.name, args.count) as usize) {
            names.push(&pipeline.name);
        }
    }
    for (index, names) in shards.iter().enumerate() {
        println!(
            "shard {index}/{}: {} pipeline{}{}{}",
            args.count,
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if names.is_empty() { "" } else { ": " },
            names.join(", ")
        );
    }
    Ok(exit::OK)
}
