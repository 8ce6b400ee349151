//! `callpush-bench`: the load benchmark (`docs/benchmarks.md`). Parses the command line and
//! runs [`callpush::bench`].

use std::process::ExitCode;

use callpush::bench::{self, BenchCli};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match bench::main(BenchCli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("callpush-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
