//! The `firegate` binary: parse the command line, start the runtime, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

use firegate::app::Config;
use firegate::cli::{Cli, Command, run, serve};

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
    let runtime = match runtime(config.as_ref().and_then(|c| c.server.worker_threads)) {
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

/// The runtime for `workers` threads (`server.worker_threads`; unset: one
/// per CPU the process may run on). One worker gets tokio's single-threaded
/// scheduler: every task is polled on the thread that drives the I/O, with
/// none of the multi-threaded scheduler's cross-thread bookkeeping and no
/// second thread running `block_on` beside the worker. Pinned to one core
/// that is 17 % less CPU per proxied request (README, Performance).
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers.or_else(|| std::thread::available_parallelism().ok().map(usize::from));
    let mut builder = if workers == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(workers) = workers {
            builder.worker_threads(workers);
        }
        builder
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_worker_runs_the_single_threaded_scheduler() {
        let flavor = |workers| {
            super::runtime(Some(workers))
                .expect("runtime")
                .handle()
                .runtime_flavor()
        };
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(2), RuntimeFlavor::MultiThread);
        let one = super::runtime(Some(1)).expect("runtime");
        assert_eq!(one.metrics().num_workers(), 1);
        let four = super::runtime(Some(4)).expect("runtime");
        assert_eq!(four.metrics().num_workers(), 4);
    }

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
