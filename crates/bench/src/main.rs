//! `callpush-bench`: the load benchmark (`docs/benchmarks.md`). Parses the command line and
//! runs [`callpush_bench::main`].

use std::process::ExitCode;

use callpush_bench::BenchCli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match callpush_bench::main(BenchCli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("callpush-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
