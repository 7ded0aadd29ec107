//! `firegate access …`: the access-request API from the command line.
//! The token comes from `FIREGATE_TOKEN`; the answer is printed for people
//! (default) or as the API's JSON. Exit codes: 0 done, 1 refused by
//! firegate (400, 403, 404, 409), 2 could not ask (no token, no answer,
//! 401, 5xx and 503 — try again later).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::access::Format;

/// `firegate access`.
#[derive(Args)]
pub struct AccessArgs {
    /// firegate's proxy URL.
    #[arg(
        long,
        global = true,
        env = "FIREGATE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Output: `text` for people, `json` as the API answers.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(subcommand)]
    pub command: AccessCommand,
}

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Ask for access to PATH (a document, `/a/b/**` or a pattern).
    Request {
        path: String,
        /// Actions, comma-separated: read, write, get, list, create, update, delete.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
        /// How long the grant lasts once approved, e.g. `2h`.
        #[arg(long = "for")]
        duration: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// The database (`projects/P/databases/D`); default: the first served.
        #[arg(long)]
        database: Option<String>,
    },
    /// List requests: mine, to_review, active or all.
    List {
        #[arg(long, default_value = "mine")]
        view: String,
    },
    /// Show one request.
    Show { id: String },
    /// The active grants you may see, as a state export (JSON) for
    /// `policy who-can --grants` and `policy what-can --grants`.
    Export,
    /// Approve a request (an approver; the requester only with break-glass).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deny a pending request.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End your own request or grant now.
    Release {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End someone's active grant now (an approver).
    Revoke {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

const API: &str = "/firegate/v1/access/requests";

/// Run one `access` command.
pub async fn run(args: AccessArgs) -> anyhow::Result<ExitCode> {
    let Ok(token) = std::env::var("FIREGATE_TOKEN") else {
        eprintln!("firegate access: set FIREGATE_TOKEN to your bearer token");
        return Ok(ExitCode::from(2));
    };
    let base = args.url.trim_end_matches('/').to_string();
    let (method, path, body) = match &args.command {
        AccessCommand::Request {
            path,
            actions,
            duration,
            reason,
            database,
        } => {
            let mut body =
                json!({"path": path, "actions": actions, "duration": duration, "reason": reason});
            if let Some(db) = database {
                body["database"] = json!(db);
            }
            (reqwest::Method::POST, API.to_string(), Some(body))
        }
        AccessCommand::List { view } => (reqwest::Method::GET, format!("{API}?view={view}"), None),
        AccessCommand::Show { id } => (reqwest::Method::GET, format!("{API}/{id}"), None),
        AccessCommand::Export => (reqwest::Method::GET, format!("{API}?view=active"), None),
        AccessCommand::Approve { id, reason }
        | AccessCommand::Deny { id, reason }
        | AccessCommand::Release { id, reason }
        | AccessCommand::Revoke { id, reason } => {
            let verb = match &args.command {
                AccessCommand::Approve { .. } => "approve",
                AccessCommand::Deny { .. } => "deny",
                AccessCommand::Release { .. } => "release",
                _ => "revoke",
            };
            (
                reqwest::Method::POST,
                format!("{API}/{id}:{verb}"),
                Some(json!({"reason": reason})),
            )
        }
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token.trim());
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("firegate access: cannot reach {base}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        match args.format {
            Format::Json => println!("{value}"),
            Format::Text => eprintln!("firegate access: {} {message}", status.as_u16()),
        }
        let refused = status.is_client_error() && status != reqwest::StatusCode::UNAUTHORIZED;
        return Ok(ExitCode::from(if refused { 1 } else { 2 }));
    }
    if let AccessCommand::Export = args.command {
        let export = super::state::export(&value, std::time::SystemTime::now())?;
        println!("{}", serde_json::to_string_pretty(&export)?);
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        Format::Text => print!("{}", text(&args.command, &value)),
    }
    Ok(ExitCode::SUCCESS)
}

fn text(command: &AccessCommand, v: &Value) -> String {
    match command {
        AccessCommand::List { .. } => {
            let mut out = String::new();
            let list = v["requests"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                out.push_str("no requests\n");
            }
            for r in list {
                out.push_str(&line(&r));
            }
            out
        }
        AccessCommand::Show { .. } => detail(v),
        _ => line(v),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn line(r: &Value) -> String {
    let actions: Vec<String> = r["actions"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    format!(
        "{}  {}  {} {}  by {}  until {}  ({})\n",
        s(&r["id"]),
        s(&r["state"]),
        actions.join(","),
        s(&r["path"]),
        s(&r["requester"]["subject"]),
        s(&r["expires_at"]),
        s(&r["requestable"]),
    )
}

fn detail(r: &Value) -> String {
    let mut out = line(r);
    out.push_str(&format!("  reason: {}\n", s(&r["reason"])));
    out.push_str(&format!(
        "  approvals: {} of {}\n",
        s(&r["approvals"]),
        s(&r["min_approvals"])
    ));
    for t in r["history"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  {} {} by {}: {}\n",
            s(&t["at"]),
            s(&t["event"]),
            s(&t["by"]["subject"]),
            s(&t["reason"])
        ));
    }
    out
}
