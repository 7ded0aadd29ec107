//! The `firegate` command line: the commands, and the tools that sit above
//! both the classifier and the policy table (`policy check`, `policy test`).

pub mod cases;
pub mod check;
pub mod principal;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "firegate",
    version,
    about = "Identity-aware proxy for the Firestore REST API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy (production entry point).
    Serve {
        #[arg(long, short, default_value = "firegate.yaml")]
        config: PathBuf,
    },
    /// Run everything locally: emulator, development issuer, example policies.
    Dev {
        /// The proxy's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The development OIDC issuer's address.
        #[arg(long, default_value = "127.0.0.1:8082")]
        issuer_listen: SocketAddr,
        /// The embedded emulator's address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        emulator_listen: SocketAddr,
        /// The admin listener's address (/healthz, /readyz, /metrics).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Policy directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Run the in-memory Firestore emulator alone.
    Emulator {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Policy authoring tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Explain one decision and name the rule that made it.
    Check {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// JSON file describing the principal.
        #[arg(long)]
        principal: PathBuf,
        /// HTTP method.
        method: String,
        /// Request URL or path (`/v1/projects/...`).
        url: String,
        /// Request body file.
        #[arg(long)]
        body: Option<PathBuf>,
    },
    /// Run the `*.test.yaml` cases kept beside the policies.
    Test { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// HMAC key file, when the chain was written with one.
        #[arg(long)]
        hmac_key: Option<PathBuf>,
        /// Accept a first record that continues an earlier chain (older
        /// rotated files were removed on purpose).
        #[arg(long)]
        allow_partial: bool,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print every error.
    Check { file: PathBuf },
}

/// Run one command; the exit code is the command's verdict.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(&config, std::env::vars())?;
            crate::app::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev {
            listen,
            issuer_listen,
            emulator_listen,
            admin_listen,
            policies,
        } => {
            crate::dev::run(crate::dev::DevOptions {
                listen,
                issuer_listen,
                emulator_listen,
                admin_listen,
                policies,
                ..Default::default()
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator { listen } => {
            crate::emulator::serve(listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command } => match command {
            PolicyCommand::Check {
                policies,
                principal,
                method,
                url,
                body,
            } => {
                // Scripts can branch on the verdict: 0 allowed, 1 refused, 2 error.
                let checked = check::check(&policies, &principal, &method, &url, body.as_deref());
                match checked {
                    Ok((json, allowed)) => {
                        println!("{json}");
                        Ok(ExitCode::from(if allowed { 0 } else { 1 }))
                    }
                    Err(e) => {
                        eprintln!("firegate: {e:#}");
                        Ok(ExitCode::from(2))
                    }
                }
            }
            PolicyCommand::Test { dir } => {
                let summary = cases::run_tests(&dir)?;
                print!("{}", summary.report);
                Ok(if summary.failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify {
                files,
                hmac_key,
                allow_partial,
            } => audit_verify(&files, hmac_key.as_deref(), allow_partial),
        },
        Command::Config { command } => match command {
            ConfigCommand::Check { file } => match Config::load(&file, std::env::vars()) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprint!("{errors}");
                    Ok(ExitCode::FAILURE)
                }
            },
        },
    }
}

/// Check the chain across `files`; exit 1 at the first broken record.
fn audit_verify(
    files: &[PathBuf],
    hmac_key: Option<&std::path::Path>,
    allow_partial: bool,
) -> anyhow::Result<ExitCode> {
    use crate::audit::{Hasher, load_hmac_key, verify};
    let hasher = match hmac_key {
        Some(path) => Hasher::Hmac(load_hmac_key(path)?),
        None => Hasher::Sha256,
    };
    match verify::verify(files, &hasher, allow_partial) {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            eprintln!("firegate: audit verify: {broken}");
            Ok(ExitCode::FAILURE)
        }
    }
}
