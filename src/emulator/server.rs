//! The emulator on a socket of its own: plain HTTP/1.1 and h2c.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Emulator;
use crate::body;

/// How long open connections get to finish once the emulator stops.
const DRAIN: Duration = Duration::from_secs(2);

/// A running emulator; it stops when dropped or on [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    emulator: Emulator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Run a fresh emulator on `addr` (`127.0.0.1:0` for any free port).
pub async fn spawn(addr: SocketAddr) -> anyhow::Result<Running> {
    Emulator::new().spawn(addr).await
}

impl Emulator {
    /// Serve this emulator (and its data) on `addr`.
    pub async fn spawn(&self, addr: SocketAddr) -> anyhow::Result<Running> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, self.clone(), stopped));
        Ok(Running {
            addr,
            emulator: self.clone(),
            stop: Some(stop),
            task: Some(task),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    emulator: Emulator,
    mut stopped: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "emulator accept failed");
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let emulator = emulator.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let emulator = emulator.clone();
            async move { Ok::<_, Infallible>(emulator.handle(request.map(body::boxed)).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "emulator connection ended");
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// Run the emulator on `listen` until SIGINT or SIGTERM.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let running = spawn(listen).await?;
    tracing::info!(addr = %running.local_addr(), "firestore emulator listening");
    eprintln!(
        "firegate emulator: Firestore REST on http://{} (in memory; any token accepted)",
        running.local_addr()
    );
    wait_for_signal().await?;
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
