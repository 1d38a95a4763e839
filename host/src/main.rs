//! `sse-ingest`: keeps live Server-Sent-Events streams flowing into Kinesis
//! (or files, or stdout), shaped by WebAssembly filter components.

use std::process::ExitCode;

use sse_ingest::cli::exit::Failure;

/// No transparent huge pages for this process. Where the kernel backs every aligned
/// anonymous region with 2 MiB pages (`transparent_hugepage=always`, common on servers),
/// mimalloc's eagerly committed arenas become resident in 2 MiB steps, nearly empty: the
/// peak resident set of a stream at full speed more than doubled, at the same CPU (the
/// figures, from `bench/e2e.py`: BENCHMARKS.md, "Memory"). mimalloc's own switch (`MIMALLOC_ALLOW_THP=0`) is read
/// from the environment before `main`, so the process sets the same flag itself; it
/// applies to every page faulted in from here on.
fn keep_arenas_small() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        // Only a memory figure depends on it: go on.
        eprintln!(
            "sse-ingest: cannot turn transparent huge pages off ({error}); memory use will be higher"
        );
    }
}

/// mimalloc keeps freed memory for reuse across threads. The Kinesis path allocates a
/// request body of up to 5 MiB per PutRecords on one thread and frees it on another, and
/// glibc's malloc maps and faults those in again and again, which costs CPU per record
/// (the figure: BENCHMARKS.md, "Other figures").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns memory to the system a second after it fell free (its default
/// `purge_delay`). A stream at a steady rate frees its event buffers as fast as it
/// allocates them, so a second's worth of them stayed resident. Purged at once, the
/// resident set is what is in use, for a little system CPU (the trade, measured with
/// `bench/e2e.py --soak`: BENCHMARKS.md, "Resident memory over time"). Like
/// `MIMALLOC_PURGE_DELAY=0`, which is read before `main`, so the process sets the option
/// itself.
fn purge_freed_memory_at_once() {
    /// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the sys crate names no
    /// constant for it).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // An operator's own setting wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an option's value; mimalloc reads options on each use
    // and documents them as settable at any time, from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    keep_arenas_small();
    purge_freed_memory_at_once();
    // Before anything can open a TLS connection: one crypto provider, chosen here.
    sse_ingest::install_crypto_provider();
    match sse_ingest::cli::main() {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, message }) => {
            eprintln!("sse-ingest: {message}");
            ExitCode::from(code)
        }
    }
}
