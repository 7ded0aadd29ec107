//! The one composition root: a running firegate — pipeline, proxy and admin
//! listeners, readiness and the reload hub — built from validated settings,
//! for `firegate serve`, `firegate dev` and the integration tests alike.

mod config;
mod env;
mod reload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;

pub use config::{Config, RawConfig, merge};
pub use reload::{ReloadFn, ReloadHub, Reloadable};

use crate::metrics;
use crate::pipeline::Pipeline;
use crate::server::admin::{self, Check, Ready};
use crate::server::{self, CertStore, Handler, Server, ServerMetrics, Shutdown};

/// A running firegate.
pub struct App {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    pipeline: Arc<Pipeline>,
    draining: Arc<AtomicBool>,
    stop_main: Shutdown,
    stop_admin: Shutdown,
    main_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    /// Keeps the local copy of the access-request store (when configured).
    access_task: JoinHandle<()>,
    reloads: ReloadHub,
}

impl App {
    /// Build every part from `config`, bind both listeners and start serving.
    pub async fn start(config: &Config) -> anyhow::Result<App> {
        let mut registry = metrics::registry();
        let pipeline = Arc::new(config.pipeline(&mut registry).await?);
        let certs = config
            .server
            .tls
            .as_ref()
            .map(CertStore::load)
            .transpose()?;
        let tls = certs.as_ref().map(CertStore::acceptor).transpose()?;
        let main = Server::bind_with(
            config.server.listen,
            tls,
            config.server.limits.clone(),
            ServerMetrics::register(&mut registry),
        )
        .await?;
        let admin = Server::bind_admin(&config.server).await?;
        if certs.is_none() {
            tracing::warn!(
                "plain_http is set: serving without TLS; only behind a TLS-terminating load balancer"
            );
        }
        let reloads = ReloadHub::start(reloadables(config, certs, &pipeline))?;

        let draining = Arc::new(AtomicBool::new(false));
        let readiness: admin::Readiness = {
            let pipeline = Arc::clone(&pipeline);
            let draining = Arc::clone(&draining);
            Arc::new(move || readiness(&pipeline, &draining))
        };
        let (stop_main, stop_admin) = (Shutdown::new(), Shutdown::new());
        let (proxy_addr, admin_addr) = (main.local_addr(), admin.local_addr());
        let admin_task = admin.serve(
            admin::handler(Arc::new(registry), readiness),
            stop_admin.signal(),
        );
        let main_task = main.serve(pipeline_handler(Arc::clone(&pipeline)), stop_main.signal());
        let access_task = tokio::spawn(Arc::clone(&pipeline).sync_access());
        let runtime = tokio::runtime::Handle::current();
        let scheduler = match runtime.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => "single-threaded",
            _ => "multi-threaded",
        };
        tracing::info!(
            listen = %proxy_addr,
            admin = %admin_addr,
            workers = runtime.metrics().num_workers(),
            scheduler,
            "listening"
        );
        Ok(App {
            proxy_addr,
            admin_addr,
            pipeline,
            draining,
            stop_main,
            stop_admin,
            main_task,
            admin_task,
            access_task,
            reloads,
        })
    }

    /// The proxy listener's address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// The admin listener's address (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// What `/readyz` reports now.
    pub fn readiness(&self) -> Ready {
        readiness(&self.pipeline, &self.draining)
    }

    /// Wait until every dependency is ready (issuers' keys, upstream token).
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.readiness().blocking() {
                None => return Ok(()),
                Some(reason) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("not ready after {within:?}: {reason}")
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Reload everything that reloads, as SIGHUP does.
    pub fn reload(&self) {
        self.reloads.reload_all();
    }

    /// Write every queued audit record (tests read the file after this).
    pub async fn flush_audit(&self) -> crate::audit::Flushed {
        self.pipeline.flush_audit().await
    }

    /// Drain and stop. `/readyz` turns 503 first so a load balancer stops
    /// sending; the admin listener stays up until the proxy has drained.
    /// What the last audit flush could not write comes back.
    pub async fn shutdown(self) -> anyhow::Result<crate::audit::Flushed> {
        self.draining.store(true, Ordering::Relaxed);
        self.stop_main.trigger();
        self.access_task.abort();
        self.main_task.await.context("proxy listener task")?;
        // Records of the drained requests may still be queued.
        let flushed = self.pipeline.flush_audit().await;
        self.stop_admin.trigger();
        self.admin_task.await.context("admin listener task")?;
        drop(self.reloads);
        Ok(flushed)
    }
}

/// `firegate serve`: run until SIGTERM or SIGINT, then drain and return.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::start(&config).await?;
    server::shutdown::terminate().await?;
    let flushed = app.shutdown().await?;
    // The last line says what the audit trail is missing, if anything.
    if flushed.unwritten > 0 || flushed.spilled > 0 {
        tracing::error!(
            unwritten = flushed.unwritten,
            spilled = flushed.spilled,
            spill_file = ?flushed.spill_file,
            "drained; exiting with audit records not in the audit file"
        );
    } else {
        tracing::info!("drained; exiting");
    }
    Ok(())
}

/// The pipeline as the proxy listener's [`Handler`].
fn pipeline_handler(pipeline: Arc<Pipeline>) -> Handler {
    server::handler(move |req, conn| {
        let pipeline = Arc::clone(&pipeline);
        async move { pipeline.serve(req, &conn).await }
    })
}

fn readiness(pipeline: &Pipeline, draining: &AtomicBool) -> Ready {
    let mut checks = pipeline.readiness();
    let draining = draining.load(Ordering::Relaxed);
    checks.push(Check::required(
        "draining",
        draining.then(|| "shutting down".to_owned()),
    ));
    Ready { checks }
}

/// What the hub reloads: the certificate (when serving TLS) and the policy
/// table (its directory watched only when `policy.watch`; SIGHUP always).
fn reloadables(
    config: &Config,
    certs: Option<Arc<CertStore>>,
    pipeline: &Arc<Pipeline>,
) -> Vec<Reloadable> {
    let policy_dir = config.policy.watch.then(|| config.policy.dir.clone());
    certs
        .map(Reloadable::certificate)
        .into_iter()
        .chain([Reloadable::policy(Arc::clone(pipeline), policy_dir)])
        .collect()
}
