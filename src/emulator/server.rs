//! The emulator on a socket of its own, served by firegate's own listener
//! code (plain HTTP/1.1 and h2c).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Emulator;
use crate::server::Limits;
use crate::server::{self, Server, Shutdown};

/// How long open connections get to finish once the emulator stops.
const DRAIN: Duration = Duration::from_secs(2);

/// A running emulator; it stops when dropped or on [`Running::shutdown`].
pub struct Running {
    addr: SocketAddr,
    emulator: Emulator,
    stop: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

impl Running {
    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The emulator behind the socket, to seed or inspect it.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stop accepting, let open connections finish briefly, and wait.
    pub async fn shutdown(mut self) {
        self.stop.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// Run a fresh emulator on `addr` (`127.0.0.1:0` for any free port).
pub async fn spawn(addr: SocketAddr) -> anyhow::Result<Running> {
    Emulator::new().spawn(addr).await
}

impl Emulator {
    /// Serve this emulator (and its data) on `addr`.
    pub async fn spawn(&self, addr: SocketAddr) -> anyhow::Result<Running> {
        let limits = Limits {
            drain_timeout: DRAIN,
            // Firestore has no connection cap a client could meet, and a
            // proxy such as nginx `grpc_pass` opens one upstream connection
            // per stream: 10,000 Listen streams through it are 10,000
            // connections here.
            max_connections: 1 << 17,
            ..Limits::default()
        };
        let listener = Server::bind_with(addr, None, limits, Default::default()).await?;
        let addr = listener.local_addr();
        let emulator = self.clone();
        let handler = server::handler(move |request, _conn| {
            let emulator = emulator.clone();
            async move { emulator.handle(request).await }
        });
        let stop = Shutdown::new();
        let task = listener.serve(handler, stop.signal());
        Ok(Running {
            addr,
            emulator: self.clone(),
            stop,
            task: Some(task),
        })
    }
}

/// Run the emulator on `listen` until SIGINT or SIGTERM; idle Listen
/// streams hear a heartbeat every `heartbeat` (zero: never).
pub async fn serve(listen: SocketAddr, heartbeat: std::time::Duration) -> anyhow::Result<()> {
    let running = Emulator::with_listen_heartbeat(heartbeat)
        .spawn(listen)
        .await?;
    tracing::info!(addr = %running.local_addr(), "firestore emulator listening");
    eprintln!(
        "firegate emulator: Firestore REST and gRPC (h2c) on http://{} (in memory; any token accepted)",
        running.local_addr()
    );
    server::shutdown::terminate().await?;
    running.shutdown().await;
    Ok(())
}
