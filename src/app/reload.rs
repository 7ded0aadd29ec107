//! The reload hub: one SIGHUP listener and one file watcher for everything
//! firegate reloads in place (the TLS certificate, the policy table), each
//! target with its own debounced reload task.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::pipeline::Pipeline;
use crate::server::CertStore;

/// Editors, `kubectl` and cert-manager replace files in several steps (a
/// certificate and its key are rarely written at once): wait for the burst
/// to settle before reloading.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Reload one target; on error the target keeps what it had.
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// One thing the hub reloads, and the directories whose changes trigger it.
pub struct Reloadable {
    /// For logs: `"TLS certificate"`, `"policy table"`.
    pub name: &'static str,
    /// Directories watched (not recursively). Kubernetes swaps Secret and
    /// ConfigMap files by renaming a symlink in the mounted directory, so the
    /// directory is watched, not the files.
    pub watch: Vec<PathBuf>,
    pub reload: ReloadFn,
}

impl Reloadable {
    /// The TLS certificate and key, watched in their directories.
    pub fn certificate(certs: Arc<CertStore>) -> Reloadable {
        Reloadable {
            name: "TLS certificate",
            watch: certs.watched_dirs(),
            reload: Arc::new(move || {
                let certs = Arc::clone(&certs);
                Box::pin(async move { certs.reload() })
            }),
        }
    }

    /// The policy table, its directory watched when given.
    pub fn policy(pipeline: Arc<Pipeline>, watch: Option<PathBuf>) -> Reloadable {
        Reloadable {
            name: "policy table",
            watch: watch.into_iter().collect(),
            reload: Arc::new(move || {
                let pipeline = Arc::clone(&pipeline);
                Box::pin(async move { pipeline.reload_policy().await })
            }),
        }
    }
}

/// Owns the watcher and the reload tasks; dropping it stops them.
pub struct ReloadHub {
    _watcher: Option<notify::RecommendedWatcher>,
    triggers: Arc<Vec<mpsc::UnboundedSender<()>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ReloadHub {
    /// Start watching every target's directories and listening for SIGHUP.
    pub fn start(targets: Vec<Reloadable>) -> anyhow::Result<ReloadHub> {
        let mut triggers = Vec::with_capacity(targets.len());
        let mut routes: Vec<(PathBuf, usize)> = Vec::new();
        let mut tasks = Vec::with_capacity(targets.len() + 1);
        for (index, target) in targets.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            triggers.push(tx);
            for dir in &target.watch {
                routes.push((canonical(dir), index));
            }
            tasks.push(tokio::spawn(reload_loop(target.name, target.reload, rx)));
        }
        let triggers = Arc::new(triggers);
        let watcher = watch(&routes, Arc::clone(&triggers))?;
        tasks.extend(sighup(Arc::clone(&triggers)));
        Ok(ReloadHub {
            _watcher: watcher,
            triggers,
            tasks,
        })
    }

    /// Reload every target now, as SIGHUP does.
    pub fn reload_all(&self) {
        trigger_all(&self.triggers);
    }
}

impl Drop for ReloadHub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Watched paths are compared with event paths, which notify reports under
/// the path as watched: watch the canonical one so both agree.
fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
}

fn watch(
    routes: &[(PathBuf, usize)],
    triggers: Arc<Vec<mpsc::UnboundedSender<()>>>,
) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
    if routes.is_empty() {
        return Ok(None);
    }
    let table = routes.to_vec();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_access() => {}
            Ok(event) => {
                for (dir, index) in &table {
                    if event
                        .paths
                        .iter()
                        .any(|p| p.parent() == Some(dir) || p == dir)
                    {
                        let _ = triggers[*index].send(());
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "file watch error"),
        })?;
    let mut dirs: Vec<&PathBuf> = routes.iter().map(|(dir, _)| dir).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|err| anyhow::anyhow!("cannot watch {}: {err}", dir.display()))?;
    }
    Ok(Some(watcher))
}

fn trigger_all(triggers: &[mpsc::UnboundedSender<()>]) {
    for trigger in triggers {
        let _ = trigger.send(());
    }
}

async fn reload_loop(name: &'static str, reload: ReloadFn, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        match reload().await {
            Ok(()) => tracing::info!(what = name, "reloaded"),
            Err(err) => tracing::error!(
                what = name,
                error = %format!("{err:#}"),
                "reload refused; keeping the previous one"
            ),
        }
    }
}

#[cfg(unix)]
fn sighup(triggers: Arc<Vec<mpsc::UnboundedSender<()>>>) -> Option<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                trigger_all(&triggers);
            }
        })),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reloads only on file changes");
            None
        }
    }
}

#[cfg(not(unix))]
fn sighup(_triggers: Arc<Vec<mpsc::UnboundedSender<()>>>) -> Option<JoinHandle<()>> {
    None
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// SIGHUP reaches every hub in the process: the tests that count
    /// reloads take turns.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A target that counts its reloads.
    fn counting(name: &'static str, watch: Vec<PathBuf>) -> (Reloadable, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let reload: ReloadFn = {
            let count = Arc::clone(&count);
            Arc::new(move || {
                count.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Ok(()) })
            })
        };
        (
            Reloadable {
                name,
                watch,
                reload,
            },
            count,
        )
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_file_change_reloads_only_the_target_that_watches_it() {
        let _serial = SERIAL.lock().await;
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, a_count) = counting("a", vec![a_dir.path().to_owned()]);
        let (b, b_count) = counting("b", vec![b_dir.path().to_owned()]);
        let _hub = ReloadHub::start(vec![a, b]).unwrap();
        std::fs::write(a_dir.path().join("file"), "x").unwrap();
        until("a's reload", || a_count.load(Ordering::SeqCst) > 0).await;
        // Debounced: one burst of writes is one reload.
        tokio::time::sleep(DEBOUNCE * 2).await;
        assert_eq!(a_count.load(Ordering::SeqCst), 1);
        assert_eq!(b_count.load(Ordering::SeqCst), 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sighup_reloads_every_target() {
        let _serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let (a, a_count) = counting("a", vec![dir.path().to_owned()]);
        let (b, b_count) = counting("b", Vec::new());
        let _hub = ReloadHub::start(vec![a, b]).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        until("both reloads", || {
            a_count.load(Ordering::SeqCst) > 0 && b_count.load(Ordering::SeqCst) > 0
        })
        .await;
    }
}
