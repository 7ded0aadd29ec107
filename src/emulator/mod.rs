//! An in-memory Firestore REST v1 server for `firegate dev` and for tests.

use std::net::SocketAddr;

/// Run the emulator alone on `listen` until interrupted.
pub async fn serve(_listen: SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!("emulator not built yet")
}
