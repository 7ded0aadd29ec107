//! `PolicyEngine`: the current table behind an `ArcSwap`, the decision
//! cache, reloads and their metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::cache::DecisionCache;
use super::decide::{Request, combine};
use super::format::PolicyErrors;
use super::grants::{Grant, Grants};
use super::table::Table;
use super::{CacheSettings, Decision, PolicyConfig, PolicySettings};
use crate::authn::Principal;
use crate::metrics::{CacheLookups, counters_by_result, registered};
use crate::model::data::{FieldCapture, Stored};
use crate::model::{Operation, Segments};

struct Metrics {
    rules: Gauge,
    grants: Gauge,
    epoch: Gauge,
    reload_refused: Gauge,
    /// The series counted on every request or reload, resolved once (a
    /// family lookup hashes its labels under a lock).
    allowed: Counter,
    denied: Counter,
    cache: CacheLookups,
    reloads_ok: Counter,
    reloads_refused: Counter,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Metrics {
        let r = registry.sub_registry_with_prefix("policy");
        let [allowed, denied] = counters_by_result(
            r,
            "decisions",
            "Policy decisions by result",
            ["allow", "deny"],
        );
        let cache = CacheLookups::register(
            r,
            "cache_lookups",
            "Per-target decision cache lookups by result",
        );
        // Shown at 0 from the start, so an alert on `refused` has a series.
        let [reloads_ok, reloads_refused] = counters_by_result(
            r,
            "reloads",
            "Policy reloads by result (ok, refused)",
            ["ok", "refused"],
        );
        Metrics {
            rules: registered(r, "rules", "Rules in the serving table"),
            grants: registered(
                r,
                "grants",
                "Active grants (access requests approved and not ended) known to this replica",
            ),
            epoch: registered(r, "epoch", "Epoch of the serving table"),
            reload_refused: registered(
                r,
                "reload_refused",
                "1 while the latest reload attempt was refused (the previous table keeps serving)",
            ),
            allowed,
            denied,
            cache,
            reloads_ok,
            reloads_refused,
        }
    }
}

/// State shared with the reload tasks.
pub(super) struct Shared {
    table: ArcSwap<Table>,
    /// The active grants, by principal; swapped whole on every change.
    grants: ArcSwap<Grants>,
    cache: DecisionCache,
    dir: Option<PathBuf>,
    refused: ArcSwapOption<String>,
    metrics: Metrics,
    /// Serializes reloads so epochs stay in order.
    reloading: tokio::sync::Mutex<()>,
    /// Serializes grant updates so generations are computed from the last.
    granting: std::sync::Mutex<()>,
}

impl Shared {
    /// Compile the directory off the request path and swap it in, or keep
    /// the serving table and record why not.
    pub(super) async fn reload(&self) -> Result<u64, PolicyErrors> {
        let Some(dir) = self.dir.clone() else {
            return Ok(self.table.load().epoch);
        };
        let _guard = self.reloading.lock().await;
        let epoch = self.table.load().epoch + 1;
        let compiled = tokio::task::spawn_blocking(move || Table::from_dir(&dir, epoch))
            .await
            .unwrap_or_else(|e| Err(internal(format!("policy compilation failed: {e}"))));
        match compiled {
            Ok(table) => {
                let rules = table.len();
                self.install(table);
                self.refused.store(None);
                self.metrics.reload_refused.set(0);
                self.metrics.reloads_ok.inc();
                tracing::info!(epoch, rules, "policy table reloaded");
                Ok(epoch)
            }
            Err(errors) => {
                let detail = format!("policy reload refused, previous table kept: {errors}");
                tracing::error!(errors = %errors, "policy reload refused; the previous table keeps serving");
                self.refused.store(Some(Arc::new(detail)));
                self.metrics.reload_refused.set(1);
                self.metrics.reloads_refused.inc();
                Err(errors)
            }
        }
    }

    fn install(&self, table: Table) {
        self.metrics.rules.set(table.len() as i64);
        self.metrics.epoch.set(table.epoch as i64);
        self.table.store(Arc::new(table));
        self.cache.clear();
    }
}

fn internal(message: String) -> PolicyErrors {
    PolicyErrors(vec![super::format::PolicyError {
        file: "(reload)".into(),
        line: None,
        message,
    }])
}

/// The compiled, hot-reloadable policy table and its decision cache.
pub struct PolicyEngine {
    shared: Arc<Shared>,
    /// The Backstage catalog catalog-bound rules judge against.
    catalog: Option<Arc<crate::catalog::Catalog>>,
}

impl PolicyEngine {
    /// Load `settings.dir`; refuse to start on an invalid table. The app's
    /// reload hub calls [`PolicyEngine::reload`] on SIGHUP and file changes.
    pub async fn new(settings: &PolicySettings, registry: &mut Registry) -> anyhow::Result<Self> {
        let dir = settings.dir.clone();
        let table = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || Table::from_dir(&dir, 1)).await?
        }
        .map_err(|errors| anyhow::anyhow!("invalid policy in {}:\n{errors}", dir.display()))?;
        let shared = Arc::new(Shared::new(
            table,
            Some(dir.clone()),
            settings.cache,
            registry,
        ));
        tracing::info!(dir = %dir.display(), rules = shared.table.load().len(), "policy table loaded");
        Ok(PolicyEngine {
            shared,
            catalog: None,
        })
    }

    /// [`PolicyEngine::new`] for a directory with default settings.
    pub async fn from_dir(dir: impl AsRef<Path>, registry: &mut Registry) -> anyhow::Result<Self> {
        let config = PolicyConfig {
            dir: dir.as_ref().to_owned(),
            ..PolicyConfig::default()
        };
        let settings =
            crate::config::errors::ConfigErrors::collect(|errors| config.validate(errors))
                .map_err(|errors| anyhow::anyhow!("invalid policy settings:\n{errors}"))?;
        PolicyEngine::new(&settings, registry).await
    }

    /// A fixed table from one YAML document; never reloads.
    pub fn from_yaml(text: &str, registry: &mut Registry) -> Result<Self, PolicyErrors> {
        let table = Table::from_yaml(text, 1)?;
        Ok(PolicyEngine {
            shared: Arc::new(Shared::new(table, None, CacheSettings::default(), registry)),
            catalog: None,
        })
    }

    /// Step 3 of the pipeline. A deny is a value, not an error.
    pub async fn decide(&self, principal: &Principal, op: &Operation) -> Decision {
        self.decide_with(principal, op, None).await
    }

    /// What classification must build of the writes for the serving
    /// table ([`Table::field_capture`]); a reload before the decision that
    /// needs more makes the conditions that read it fail closed.
    pub fn field_capture(&self) -> FieldCapture {
        self.shared.table.load().field_capture()
    }

    /// The stored documents `op`'s rules need read first (see
    /// [`Table::stored_needed`]). Should a reload add such a rule before
    /// the decision, it fails closed for want of them.
    pub fn stored_needed(&self, principal: &Principal, op: &Operation) -> Vec<Segments> {
        self.shared.table.load().stored_needed(principal, op)
    }

    /// [`PolicyEngine::decide`], with the stored documents that were read.
    pub async fn decide_with(
        &self,
        principal: &Principal,
        op: &Operation,
        stored: Option<&Stored>,
    ) -> Decision {
        let table = self.shared.table.load_full();
        let view = self.catalog.as_ref().and_then(|c| c.view());
        let grants = self.shared.grants.load();
        let req = match stored {
            Some(stored) => Request::with_stored(principal, op, stored),
            None => Request::new(principal, op),
        }
        .with_catalog(view.as_deref())
        .granted(grants.of(principal).map(AsRef::as_ref));
        let metrics = &self.shared.metrics;
        let mut admission = self.shared.cache.admission();
        let verdicts: Vec<_> = op
            .targets
            .iter()
            .map(|target| {
                let (verdict, lookup) =
                    self.shared
                        .cache
                        .decide(&table, &req, target, &mut admission);
                metrics.cache.count(lookup.is_hit());
                verdict
            })
            .collect();
        let mut decision = combine(&op.targets, verdicts);
        super::mask::guard(&table, &req, op, &mut decision);
        super::mask::answer(op, &mut decision, |read, target| {
            let req = req.reading(read);
            self.shared
                .cache
                .decide(&table, &req, target, &mut admission)
                .0
        });
        if decision.allowed {
            metrics.allowed.inc();
        } else {
            metrics.denied.inc();
        }
        decision
    }

    /// Replace the active grants (the access store's local copy changed).
    /// Only the principals whose grants changed get a new generation, so
    /// only their cached verdicts are hidden.
    pub fn set_grants(&self, grants: Vec<Grant>) {
        let _guard = self
            .shared
            .granting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let previous = self.shared.grants.load();
        let next = Grants::rebuild(&previous, grants);
        self.shared.metrics.grants.set(next.len() as i64);
        self.shared.grants.store(Arc::new(next));
    }

    /// The active grants (who-can, reports, tests).
    pub fn grants(&self) -> Arc<Grants> {
        self.shared.grants.load_full()
    }

    /// What an open Listen stream's verdicts depend on beyond its targets:
    /// the table's epoch and the catalog's generation, the caller's grants'
    /// generation and how many of them are unexpired now. A change
    /// re-judges every target.
    pub fn version(&self, principal: &Principal) -> super::JudgedVersion {
        let grants = self.shared.grants.load();
        let now = std::time::SystemTime::now();
        let (generation, live) = grants.of(principal).map_or((0, 0), |g| {
            (
                g.generation,
                g.grants.iter().filter(|g| now < g.expires_at).count(),
            )
        });
        (self.judged_epoch(), generation, live)
    }

    /// When the first of `principal`'s unexpired grants ends, if it has one:
    /// an open Listen stream looks again then.
    pub fn next_grant_end(&self, principal: &Principal) -> Option<std::time::SystemTime> {
        let grants = self.shared.grants.load();
        let now = std::time::SystemTime::now();
        grants
            .of(principal)?
            .grants
            .iter()
            .map(|g| g.expires_at)
            .filter(|at| now < *at)
            .min()
    }

    /// What changes for every caller at once: the table's epoch, the
    /// catalog's generation and the newest grants generation given to
    /// anyone (one watcher per pipeline tells open streams to look).
    pub fn changes(&self) -> super::Changes {
        let (epoch, catalog) = self.judged_epoch();
        (epoch, catalog, super::grants::latest_generation())
    }

    /// The serving table (the access requests check against its entries).
    pub fn table(&self) -> Arc<Table> {
        self.shared.table.load_full()
    }

    /// Reload the directory now (what a file change or SIGHUP does).
    pub async fn reload(&self) -> Result<u64, PolicyErrors> {
        self.shared.reload().await
    }

    /// The serving table's epoch.
    pub fn epoch(&self) -> u64 {
        self.shared.table.load().epoch
    }

    /// Judge catalog-bound rules against `catalog` (its sync runs apart).
    /// A sync that changes the index drops the cached decisions (their
    /// keys hold the old generation already; this frees them sooner).
    pub fn with_catalog(mut self, catalog: Option<Arc<crate::catalog::Catalog>>) -> Self {
        if let Some(catalog) = &catalog {
            let shared = Arc::downgrade(&self.shared);
            catalog.on_change(move || {
                if let Some(shared) = shared.upgrade()
                    && shared.table.load().uses_catalog()
                {
                    shared.cache.clear();
                }
            });
        }
        self.catalog = catalog;
        self
    }

    /// The catalog, if one is configured.
    pub fn catalog(&self) -> Option<&Arc<crate::catalog::Catalog>> {
        self.catalog.as_ref()
    }

    /// What decisions depend on besides the caller: the table's epoch and
    /// the catalog index's generation. Open Listen streams re-judge their
    /// targets when it changes.
    pub fn judged_epoch(&self) -> (u64, u64) {
        let table = self.shared.table.load();
        let catalog = match &self.catalog {
            Some(c) if table.uses_catalog() => c.generation(),
            _ => 0,
        };
        (table.epoch, catalog)
    }

    /// `None` when ready; otherwise what is wrong (for `/readyz`). A table
    /// always serves once the engine exists, so a refused reload does not
    /// make the proxy unready (it would take every replica out of service
    /// for a bad push); it is reported by [`PolicyEngine::reload_error`].
    pub fn not_ready(&self) -> Option<String> {
        None
    }

    /// Why the latest reload was refused, while the previous table serves;
    /// `None` once a reload succeeds. For `/readyz` detail.
    pub fn reload_error(&self) -> Option<String> {
        self.shared.refused.load_full().map(|s| s.as_ref().clone())
    }
}

impl Shared {
    fn new(
        table: Table,
        dir: Option<PathBuf>,
        cache: CacheSettings,
        registry: &mut Registry,
    ) -> Shared {
        let metrics = Metrics::new(registry);
        metrics.rules.set(table.len() as i64);
        metrics.epoch.set(table.epoch as i64);
        Shared {
            table: ArcSwap::from_pointee(table),
            grants: ArcSwap::from_pointee(Grants::default()),
            cache: DecisionCache::new(cache),
            dir,
            refused: ArcSwapOption::empty(),
            metrics,
            reloading: tokio::sync::Mutex::new(()),
            granting: std::sync::Mutex::new(()),
        }
    }
}
