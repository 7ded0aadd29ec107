//! The `firegate` binary: parse the command line, start the runtime, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

use firegate::cli::{Cli, Command, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` logs as its config says, once the config is read.
    if !matches!(cli.command, Command::Serve { .. }) {
        firegate::logging::init(&Default::default());
    }
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
