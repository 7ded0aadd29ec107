//! `firegate dev`: the embedded default. Emulator upstream, a development
//! OIDC issuer, the example policies, and ready-to-paste `curl` commands.

pub mod issuer;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `firegate dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub listen: SocketAddr,
    pub policies: PathBuf,
}

/// Run the whole development stack until interrupted.
pub async fn run(_options: DevOptions) -> anyhow::Result<()> {
    anyhow::bail!("dev mode not built yet")
}
