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
}

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

    #[test]
    fn the_purge_delay_option_is_the_one_we_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: mimalloc's own getter and setter, with an option of its enum.
        let default = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            default, 1000,
            "option {MI_OPTION_PURGE_DELAY} is not mimalloc 3's purge delay (default 1000 ms): \
             its enum moved; find `mi_option_purge_delay` in the vendored mimalloc.h"
        );
        tune_allocator();
        // SAFETY: as above.
        assert_eq!(
            unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) },
            PURGE_DELAY_MS
        );
    }
}
