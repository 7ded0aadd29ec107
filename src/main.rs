//! The `firegate` binary: parse the command line, start the runtime, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

use firegate::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("firegate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr as JSON lines (stdout belongs to the audit stream).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .json()
        .init();
}
