//! Hot reload triggers: a notify watcher on the policy directory and
//! SIGHUP, both funnelled into one debounced reload task.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::engine::Shared;

/// Editors and `kubectl` replace files in several steps; wait for the
/// burst to settle before compiling.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Owns the watcher and the reload tasks; dropping it stops them.
pub struct Reloader {
    _watcher: Option<notify::RecommendedWatcher>,
    tasks: Vec<JoinHandle<()>>,
}

impl Reloader {
    pub(super) fn start(shared: Arc<Shared>, dir: &Path, watch: bool) -> anyhow::Result<Reloader> {
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let watcher = if watch {
            let tx = tx.clone();
            let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    Ok(event) if event.kind.is_access() => {}
                    Ok(_) => {
                        let _ = tx.send(());
                    }
                    Err(e) => tracing::warn!(error = %e, "policy directory watch error"),
                }
            })?;
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            Some(watcher)
        } else {
            None
        };
        let mut tasks = vec![tokio::spawn(reload_loop(shared, rx))];
        tasks.extend(sighup(tx));
        Ok(Reloader {
            _watcher: watcher,
            tasks,
        })
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn reload_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        // The outcome is logged and recorded by `reload` itself.
        let _ = shared.reload().await;
    }
}

#[cfg(unix)]
fn sighup(tx: mpsc::UnboundedSender<()>) -> Option<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the policy table");
                if tx.send(()).is_err() {
                    break;
                }
            }
        })),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; policy reloads only on file changes");
            None
        }
    }
}

#[cfg(not(unix))]
fn sighup(_tx: mpsc::UnboundedSender<()>) -> Option<JoinHandle<()>> {
    None
}
