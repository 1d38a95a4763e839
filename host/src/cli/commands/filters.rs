//! `sse-ingest filters`: the built-in filter components.

use crate::cli::FiltersCommand;
use crate::cli::exit::{self, Failure};
use crate::wasm::components;

/// Lists the built-ins or writes them out as `NAME.wasm` files.
pub fn execute(command: FiltersCommand) -> Result<u8, Failure> {
    match command {
        FiltersCommand::List => {
            for (name, bytes) in components::FILTERS {
                println!("{name}\t{} bytes", bytes.len());
            }
        }
        FiltersCommand::Export { dir } => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
            for (name, bytes) in components::FILTERS {
                let path = dir.join(format!("{name}.wasm"));
                std::fs::write(&path, bytes).map_err(|e| {
                    Failure::failed(format!("cannot write {}: {e}", path.display()))
                })?;
                println!("{}", path.display());
            }
        }
        FiltersCommand::New { lang, dir } => {
            return crate::cli::commands::new_filter::execute(lang, &dir);
        }
    }
    Ok(exit::OK)
}
