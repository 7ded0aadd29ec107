//! The `firegate` command line: the commands, and the tools that sit above
//! both the classifier and the policy table (`policy check`, `policy test`,
//! the access analyses).

pub mod access;
pub mod cases;
pub mod catalog;
pub mod check;
mod documents;
pub mod principal;
pub mod requests;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use access::Format;

use crate::app::Config;

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
        /// Policy directory [default: ./policies if present, else the
        /// example policies built into the binary].
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Run the in-memory Firestore emulator alone.
    Emulator {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// How often an idle Listen stream hears a global NO_CHANGE with a
        /// fresh read time, as Firestore's heartbeat (`0s`: never).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        listen_heartbeat: std::time::Duration,
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
    /// Backstage catalog tools.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Access requests: ask for, review and end just-in-time grants.
    Access(requests::AccessArgs),
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Write a snapshot of a running Backstage's catalog (JSON, the
    /// entities firegate reads) for `--catalog FILE`.
    Dump {
        /// Backstage base URL.
        #[arg(long)]
        url: String,
        /// An external-access static token (better: FIREGATE_CATALOG_TOKEN).
        #[arg(long, env = "FIREGATE_CATALOG_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Read the token from this file.
        #[arg(long, conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
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
        /// The stored documents rules that read `resource` see (YAML or
        /// JSON: path → fields, `null` for an absent one).
        #[arg(long)]
        stored: Option<PathBuf>,
        /// A catalog snapshot (`firegate catalog dump`) for rules bound to
        /// the catalog; the principal's subject is its user ref.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// An active grant of the principal, `PATH=ACTIONS` (e.g.
        /// `/teams/a/deployments/**=update,create`), checked as the server
        /// checks a request; repeatable.
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    /// Run the `*.test.yaml` cases kept beside the policies.
    Test {
        dir: PathBuf,
        /// Also list the rules and condition branches no case exercises.
        #[arg(long)]
        coverage: bool,
    },
    /// Which principal classes may take ACTION on PATH, by which rule, and
    /// which deny rules refuse whom.
    WhoCan {
        dir: PathBuf,
        /// get, list, create, update, delete, read or write.
        action: String,
        /// A document path, or a pattern for a subtree (`/secrets/{x=**}`).
        path: String,
        /// Only rules that apply to this database (id or full name).
        #[arg(long)]
        database: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Expand catalog-bound rules against this snapshot: one rule per
        /// entity, its users by subject.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Also the active grants of this state export
        /// (`firegate access export`).
        #[arg(long)]
        grants: Option<PathBuf>,
    },
    /// Every path pattern and action one principal gets, with the rules.
    WhatCan {
        dir: PathBuf,
        /// JSON file describing the principal (the test-case keys).
        principal: PathBuf,
        #[arg(long)]
        database: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Expand catalog-bound rules against this snapshot: the paths of
        /// the entities the principal (its subject a user ref) owns or
        /// whose groups it is in.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Also the principal's active grants in this state export
        /// (`firegate access export`).
        #[arg(long)]
        grants: Option<PathBuf>,
    },
    /// Every access that changes between two policy directories.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        database: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Exit 1 when a change of this kind exists: gained, lost or any.
        #[arg(long)]
        fail_on: Option<String>,
        /// Expand catalog-bound rules of both against this snapshot.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files, given in any order: rotated by
    /// firegate or logrotate (decompressed), truncated copies, spills.
    Verify {
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Requests per principal and collection, denials by rule and reason,
    /// from audit files whose chain verifies.
    Report {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Which audit files, and how their chain was written.
#[derive(clap::Args)]
pub struct ChainArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// HMAC key file, when the chain was written with one.
    #[arg(long)]
    hmac_key: Option<PathBuf>,
    /// Accept a first record that continues an earlier chain (older
    /// rotated files were removed on purpose).
    #[arg(long)]
    allow_partial: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print every error.
    Check { file: PathBuf },
}

/// `firegate serve` with its config already read (the binary reads it
/// before it starts the runtime, which the config sizes).
pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    crate::logging::init(&config.log);
    crate::app::serve(config).await?;
    Ok(ExitCode::SUCCESS)
}

/// Run one command; the exit code is the command's verdict.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => serve(Config::load(&config, std::env::vars())?).await,
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
        Command::Access(args) => requests::run(args).await,
        Command::Emulator {
            listen,
            listen_heartbeat,
        } => {
            crate::emulator::serve(listen, listen_heartbeat).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command } => match command {
            PolicyCommand::Check {
                policies,
                principal,
                method,
                url,
                body,
                stored,
                catalog,
                grants,
            } => {
                // Scripts can branch on the verdict: 0 allowed, 1 refused, 2 error.
                let checked = check::check(
                    &policies,
                    &principal,
                    &method,
                    &url,
                    body.as_deref(),
                    check::Given {
                        stored_file: stored.as_deref(),
                        catalog_file: catalog.as_deref(),
                        grants: &grants,
                    },
                );
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
            PolicyCommand::Test { dir, coverage } => {
                let summary = cases::run_tests_with(&dir, coverage)?;
                print!("{}", summary.report);
                if let Some(coverage) = &summary.coverage {
                    print!("{}", coverage.text());
                }
                Ok(if summary.failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            PolicyCommand::WhoCan {
                dir,
                action,
                path,
                database,
                format,
                catalog,
                grants,
            } => tool(access::who_can_command(
                &dir,
                &action,
                &path,
                database.as_deref(),
                format,
                catalog.as_deref(),
                grants.as_deref(),
            )),
            PolicyCommand::WhatCan {
                dir,
                principal,
                database,
                format,
                catalog,
                grants,
            } => tool(access::what_can_command(
                &dir,
                &principal,
                database.as_deref(),
                format,
                catalog.as_deref(),
                grants.as_deref(),
            )),
            PolicyCommand::Diff {
                old,
                new,
                database,
                format,
                fail_on,
                catalog,
            } => {
                // A CI gate: 0 pass, 1 a change of the `--fail-on` kind, 2 error.
                match access::diff_command(
                    &old,
                    &new,
                    database.as_deref(),
                    format,
                    fail_on.as_deref(),
                    catalog.as_deref(),
                ) {
                    Ok((out, failed)) => {
                        print!("{out}");
                        Ok(ExitCode::from(u8::from(failed)))
                    }
                    Err(e) => {
                        eprintln!("firegate: {e:#}");
                        Ok(ExitCode::from(2))
                    }
                }
            }
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify { chain } => {
                audit_verify(&chain.files, chain.hmac_key.as_deref(), chain.allow_partial)
            }
            AuditCommand::Report { chain, format } => audit_report(
                &chain.files,
                chain.hmac_key.as_deref(),
                chain.allow_partial,
                format,
            ),
        },
        Command::Catalog { command } => match command {
            CatalogCommand::Dump {
                url,
                token,
                token_file,
                out,
            } => {
                let token = match token_file {
                    Some(f) => Some(
                        std::fs::read_to_string(&f)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
                            .trim()
                            .to_owned(),
                    ),
                    None => token,
                };
                let json =
                    match catalog::dump(&url, token.as_deref(), std::time::Duration::from_secs(30))
                        .await
                    {
                        Ok(json) => json,
                        Err(e) => {
                            eprintln!("firegate: catalog dump: {e:#}");
                            return Ok(ExitCode::from(2));
                        }
                    };
                match out {
                    Some(path) => std::fs::write(&path, json)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                    None => print!("{json}"),
                }
                Ok(ExitCode::SUCCESS)
            }
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

/// Print a tool's answer (exit 0), or its error (exit 2).
fn tool(answer: anyhow::Result<String>) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(out) => {
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("firegate: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Report on `files` once their chain verifies; exit 1 when it does not.
fn audit_report(
    files: &[PathBuf],
    hmac_key: Option<&std::path::Path>,
    allow_partial: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    use crate::audit::{Hasher, load_hmac_key, report};
    let hasher = match hmac_key {
        Some(path) => Hasher::Hmac(load_hmac_key(path)?),
        None => Hasher::Sha256,
    };
    match report::report(files, &hasher, allow_partial) {
        Ok((_, report)) => {
            match format {
                Format::Text => print!("{}", report.text()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("firegate: audit report: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
