//! The `firegate` binary: parse the command line, start the runtime, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

use firegate::cli::{Cli, Command, run, serve};
use firegate::config::Config;

// Measured with benches/compare.sh against glibc's malloc (README,
// Performance): the request path allocates many small, short-lived values.
// Built to commit memory as it is used (.cargo/config.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads its config before the runtime starts, because the config
    // sizes the runtime (`server.worker_threads`); it logs as the config says.
    let config = match &cli.command {
        Command::Serve { config } => match Config::load(config, std::env::vars()) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("firegate: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            firegate::logging::init(&Default::default());
            None
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(workers) = config.as_ref().and_then(|c| c.server.worker_threads) {
        builder.worker_threads(workers);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("firegate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match config {
        Some(config) => runtime.block_on(serve(config)),
        None => runtime.block_on(run(cli.command)),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// mimalloc's arena memory is committed as it is used only when the
    /// build passes the define (`.cargo/config.toml`); without it a warm
    /// firegate holds ≈ 15 MiB more.
    #[test]
    fn the_allocator_is_built_to_commit_memory_lazily() {
        let cflags = option_env!("CFLAGS").unwrap_or_default();
        assert!(
            cflags.contains("-DMI_DEFAULT_ARENA_EAGER_COMMIT=0"),
            "CFLAGS of this build: {cflags:?}"
        );
    }
}
