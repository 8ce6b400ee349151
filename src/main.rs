//! The `callpush` binary: parse the command line, set up logging, run the library.

use std::ffi::{c_int, c_long};
use std::io::IsTerminal;
use std::process::ExitCode;

use callpush::cli::{self, Cli, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc for the daemon only; embedders of the library keep their own allocator. glibc
/// malloc/free was ~40 % of the CPU under load (docs/benchmarks.md, "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before it returns it to the system, unless the
/// `MIMALLOC_PURGE_DELAY` environment variable says otherwise. mimalloc 3's default (1 s) let a
/// 60,000-event burst's peak RSS reach 107–131 MiB; 100 ms kept it at 87–99 MiB for the same
/// CPU per push (docs/benchmarks.md, "Peak memory").
const PURGE_DELAY_MS: c_long = 100;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the mimalloc libmimalloc-sys 0.1.49
/// builds; its Rust bindings do not name it). The test below catches a renumbering.
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's own setter, called with an option of its enum; options may be set
        // at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        disable_transparent_huge_pages();
    }
}

/// No transparent huge pages for this process, unless `MIMALLOC_ALLOW_THP` says otherwise
/// (mimalloc reads it itself). mimalloc asks for huge pages on its regions, so the first touch
/// of fresh memory in a burst (or of memory it purged after the last one) zeroed 2 MiB in one
/// page fault on a runtime worker, stalling every event on that worker: 200-event bursts had a
/// p99 of 9–34 ms with them and 8.5–12 ms without, and bursts peaked a third higher in RSS
/// (docs/benchmarks.md, "Huge pages off").
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    // SAFETY: prctl(2) with an option that takes plain integers and touches no memory of ours.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if done != 0 {
        // Kernels before 3.15 lack the option: huge pages stay as the system sets them.
        eprintln!(
            "callpush: could not turn transparent huge pages off ({}); bursts may see latency spikes",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

fn init_logging(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("callpush: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: tune_allocator changes process-wide settings, which tests running in parallel
    // threads would see half-changed.
    #[test]
    fn tune_allocator_sets_the_purge_delay_and_turns_huge_pages_off() {
        let purge_set_by_us = std::env::var_os("MIMALLOC_PURGE_DELAY").is_none();
        if purge_set_by_us {
            // SAFETY: mimalloc's own getter, with an option of its enum.
            let default = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(
                default, 1000,
                "option {MI_OPTION_PURGE_DELAY} is not mimalloc 3's purge delay (default 1000 ms): \
                 its enum moved; find `mi_option_purge_delay` in the vendored mimalloc.h"
            );
        }
        tune_allocator();
        if purge_set_by_us {
            // SAFETY: as above.
            assert_eq!(
                unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) },
                PURGE_DELAY_MS
            );
        }
        #[cfg(target_os = "linux")]
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: prctl(2) reading a flag of this process.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(disabled, 1, "PR_GET_THP_DISABLE after tune_allocator");
        }
    }
}
