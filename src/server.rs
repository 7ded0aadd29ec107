//! Listeners: rustls TLS (HTTP/1.1 + HTTP/2 by ALPN) or plain HTTP,
//! connection limits, graceful drain, and the admin listener.

use crate::config::Config;

/// Run `firegate serve` until SIGTERM or SIGINT, then drain and return.
pub async fn serve(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("server not built yet")
}
