//! The drain trigger shared by listeners and connections, and the process
//! signals (SIGTERM, SIGINT, SIGHUP) that pull it.

use std::sync::Arc;

use tokio::sync::watch;

/// Owner side: `trigger` starts a graceful drain everywhere the signal went.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Stop accepting and drain. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }
}

/// Listener side: resolves once a drain was triggered.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Resolves when triggered. If every [`Shutdown`] is dropped without
    /// triggering, it never resolves: losing the handle must not stop a server.
    pub async fn wait(&mut self) {
        if self.rx.wait_for(|triggered| *triggered).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Wait for SIGTERM or SIGINT.
pub async fn terminate() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    Ok(())
}

/// A stream of SIGHUPs (certificate reload).
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}
