//! `sse-ingest filters new --lang rust|python|js DIR`: a filter project of one's own,
//! outside this repository, that builds and passes its check out of the box.
//!
//! The project carries everything it needs from this repository: the contract's WIT
//! (`wit/filter`) and, for Rust, a copy of the SDK (`vendor/filter-sdk`), since the SDK is
//! not published. The generated filter keeps every event unchanged, with a comment where to
//! decide; `build.sh` prints the component's path as its last line, and `test.sh` runs
//! `sse-ingest test-filter` against the project's recorded events and expectations.
//! The files are embedded in the binary at build time, so they match its contract.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::cli::exit::{self, Failure};

/// The languages a project can be made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, with the SDK (cargo, `wasm32-wasip2`).
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with ComponentizeJS.
    Js,
}

/// One file of a project: where it goes, what it holds, whether it is a script.
struct ProjectFile {
    path: &'static str,
    text: &'static str,
    script: bool,
}

const fn file(path: &'static str, text: &'static str) -> ProjectFile {
    ProjectFile {
        path,
        text,
        script: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> ProjectFile {
    ProjectFile {
        path,
        text,
        script: true,
    }
}

/// What every project has: the contract, the check and its recorded events.
const COMMON: &[ProjectFile] = &[
    file(
        "wit/filter/filter.wit",
        include_str!("../../../../wit/filter/filter.wit"),
    ),
    script(
        "test.sh",
        include_str!("../../../templates/new-filter/common/test.sh"),
    ),
    file(
        "events.ndjson",
        include_str!("../../../templates/new-filter/common/events.ndjson"),
    ),
    file(
        "expected.ndjson",
        include_str!("../../../templates/new-filter/common/expected.ndjson"),
    ),
];

const RUST: &[ProjectFile] = &[
    file(
        "Cargo.toml",
        include_str!("../../../templates/new-filter/rust/Cargo.toml"),
    ),
    // This repository's lock file: the project builds with the versions the SDK is tested
    // with (cargo drops the entries it does not need on the first build).
    file("Cargo.lock", include_str!("../../../../Cargo.lock")),
    file(
        "src/lib.rs",
        include_str!("../../../templates/new-filter/rust/src/lib.rs"),
    ),
    script(
        "build.sh",
        include_str!("../../../templates/new-filter/rust/build.sh"),
    ),
    file(
        "vendor/filter-sdk/Cargo.toml",
        include_str!("../../../templates/new-filter/rust/sdk.Cargo.toml"),
    ),
    file(
        "vendor/filter-sdk/src/lib.rs",
        include_str!("../../../../guest/filter-sdk/src/lib.rs"),
    ),
    file(
        "vendor/filter-sdk/src/config.rs",
        include_str!("../../../../guest/filter-sdk/src/config.rs"),
    ),
    file(
        "vendor/filter-sdk/src/drops.rs",
        include_str!("../../../../guest/filter-sdk/src/drops.rs"),
    ),
    file(
        "vendor/filter-sdk/src/runtime.rs",
        include_str!("../../../../guest/filter-sdk/src/runtime.rs"),
    ),
];

const PYTHON: &[ProjectFile] = &[
    file(
        "app.py",
        include_str!("../../../templates/new-filter/python/app.py"),
    ),
    file(
        "requirements.txt",
        include_str!("../../../templates/new-filter/python/requirements.txt"),
    ),
    script(
        "build.sh",
        include_str!("../../../templates/new-filter/python/build.sh"),
    ),
];

/// The JavaScript example's lock file, with its project name.
const JS_LOCK: &str = include_str!("../../../../examples/filters/js/package-lock.json");
const JS_LOCK_NAME: &str = "\"name\": \"sse-ingest-js-filter-example\"";

const JS: &[ProjectFile] = &[
    file(
        "filter.js",
        include_str!("../../../templates/new-filter/js/filter.js"),
    ),
    file(
        "package.json",
        include_str!("../../../templates/new-filter/js/package.json"),
    ),
    file(
        "build.mjs",
        include_str!("../../../../examples/filters/js/build.mjs"),
    ),
    script(
        "build.sh",
        include_str!("../../../templates/new-filter/js/build.sh"),
    ),
];

/// Writes a project in `lang` to `dir`, which must not exist or be empty.
pub fn execute(lang: Lang, dir: &Path) -> Result<u8, Failure> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(Failure::usage(format!(
            "{} is not empty: `filters new` writes a new project and overwrites nothing",
            dir.display()
        )));
    }
    let own: &[ProjectFile] = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    for project_file in COMMON.iter().chain(own) {
        write(
            dir,
            project_file.path,
            project_file.text,
            project_file.script,
        )?;
    }
    if lang == Lang::Js {
        let lock = JS_LOCK.replace(JS_LOCK_NAME, "\"name\": \"my-filter\"");
        write(dir, "package-lock.json", &lock, false)?;
    }
    println!(
        "a {} filter project in {}: ./build.sh builds it, ./test.sh checks it",
        match lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        dir.display()
    );
    Ok(exit::OK)
}

fn write(dir: &Path, relative: &str, text: &str, script: bool) -> Result<(), Failure> {
    let path: PathBuf = dir.join(relative);
    let fail = |e: std::io::Error| Failure::failed(format!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(&path, text).map_err(fail)?;
    #[cfg(unix)]
    if script {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    }
    #[cfg(not(unix))]
    let _ = script;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_javascript_lock_file_is_renamed_with_its_project() {
        assert_eq!(JS_LOCK.matches(JS_LOCK_NAME).count(), 2);
    }

    #[test]
    fn every_project_has_its_scripts_and_the_contract() {
        for own in [RUST, PYTHON, JS] {
            let paths: Vec<&str> = COMMON.iter().chain(own).map(|f| f.path).collect();
            for needed in [
                "build.sh",
                "test.sh",
                "wit/filter/filter.wit",
                "expected.ndjson",
            ] {
                assert!(paths.contains(&needed), "{needed} in {paths:?}");
            }
        }
    }

    #[test]
    fn a_project_is_never_written_over_another() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("written");
        let refused = execute(Lang::Python, dir.path());
        assert!(refused.is_err());
        assert!(!dir.path().join("app.py").exists());
    }
}
