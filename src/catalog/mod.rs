//! The Backstage catalog as the source of ownership: a sync task reads
//! `GET /api/catalog/entities/by-query` page by page (every `interval`, and
//! at start), builds an [`Index`] and swaps it in atomically. While
//! Backstage is unreachable the last good index keeps deciding (its age is
//! on `/readyz` and in `catalog_index_age_seconds`); before the first load
//! there is none, and every catalog-bound rule fails closed.

pub mod index;
pub mod refs;
mod source;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::authn::Principal;
use crate::config::errors::ConfigErrors;
use crate::config::value::{default_duration, duration};
use crate::metrics::{counters_by_result, registered};

pub use index::{Caller, Index, Stats};
pub use source::{fetch_all, snapshot_items};

/// Default `catalog.interval`.
const INTERVAL: Duration = Duration::from_secs(60);
/// Default `catalog.page_size`.
pub const PAGE_SIZE: usize = 500;
/// Default `catalog.timeout` (one page).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Raw `catalog:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Backstage base URL; without it there is no catalog.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding a Backstage external-access static token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Entities asked for per page.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// `/readyz` is not ready until the first sync succeeds.
    #[serde(default)]
    pub required: bool,
    /// How callers of other issuers map to a catalog user.
    #[serde(default)]
    pub users: Vec<RawUserMapping>,
}

fn default_interval() -> String {
    default_duration(INTERVAL)
}

fn default_page_size() -> usize {
    PAGE_SIZE
}

fn default_timeout() -> String {
    default_duration(TIMEOUT)
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            url: None,
            token_file: None,
            interval: default_interval(),
            timeout: default_timeout(),
            page_size: PAGE_SIZE,
            required: false,
            users: Vec::new(),
        }
    }
}

/// `catalog.users[]`: `{issuer, user_ref}`, e.g.
/// `{issuer: "https://okta.example", user_ref: "user:default/{email|local}"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserMapping {
    pub issuer: String,
    pub user_ref: String,
}

/// The validated `catalog:` section.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// `None`: no catalog configured.
    pub url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    pub page_size: usize,
    pub required: bool,
    pub users: Vec<UserMapping>,
}

impl CatalogConfig {
    pub fn validate(self, errors: &mut ConfigErrors) -> CatalogSettings {
        let interval = duration("catalog.interval", &self.interval, errors).unwrap_or(INTERVAL);
        let timeout = duration("catalog.timeout", &self.timeout, errors).unwrap_or(TIMEOUT);
        if interval < Duration::from_millis(100) {
            errors.push("catalog.interval", "must be at least 100ms");
        }
        let url = self.url.map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &url {
            match url.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("https" | "http"))
                        && uri.host().is_some() => {}
                _ => errors.push("catalog.url", format!("`{url}` is not an http(s) URL")),
            }
        }
        if !(1..=10_000).contains(&self.page_size) {
            errors.push("catalog.page_size", "must be between 1 and 10000");
        }
        if self.required && url.is_none() {
            errors.push("catalog.required", "needs `catalog.url`");
        }
        let users = self
            .users
            .into_iter()
            .enumerate()
            .filter_map(|(i, raw)| {
                UserMapping::parse(&raw.issuer, &raw.user_ref)
                    .map_err(|e| errors.push(format!("catalog.users[{i}].user_ref"), e))
                    .ok()
            })
            .collect();
        CatalogSettings {
            url,
            token_file: self.token_file,
            interval,
            timeout,
            page_size: self.page_size,
            required: self.required,
            users,
        }
    }
}

/// One piece of a `user_ref` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A top-level string claim; `local`: only what precedes its `@`.
    Claim {
        name: String,
        local: bool,
    },
}

/// How one issuer's callers are named in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMapping {
    pub issuer: String,
    template: Vec<Piece>,
}

impl UserMapping {
    /// `{sub}`: the subject is the user ref (Backstage's own tokens).
    pub fn subject(issuer: &str) -> UserMapping {
        UserMapping {
            issuer: issuer.to_owned(),
            template: vec![Piece::Claim {
                name: "sub".into(),
                local: false,
            }],
        }
    }

    /// `user:default/{email|local}`: text with `{claim}` or `{claim|local}`.
    pub fn parse(issuer: &str, template: &str) -> Result<UserMapping, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("`{template}`: unclosed `{{`"));
            };
            let inner = &rest[open + 1..open + close];
            let (name, local) = match inner.split_once('|') {
                Some((name, "local")) => (name, true),
                Some((_, filter)) => {
                    return Err(format!(
                        "`{template}`: unknown filter `{filter}` (known: local)"
                    ));
                }
                None => (inner, false),
            };
            if name.is_empty() {
                return Err(format!("`{template}`: empty `{{}}`"));
            }
            pieces.push(Piece::Claim {
                name: name.to_owned(),
                local,
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{template}`: stray `}}`"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Claim { .. })) {
            return Err(format!(
                "`{template}` names no claim; write e.g. `user:default/{{email|local}}`"
            ));
        }
        Ok(UserMapping {
            issuer: issuer.to_owned(),
            template: pieces,
        })
    }

    /// Whether the template is `{sub}` alone: the subject is the user ref.
    fn is_subject(&self) -> bool {
        matches!(self.template.as_slice(), [Piece::Claim { name, local: false }] if name == "sub")
    }

    /// The caller's user ref (canonical), or `None` when a claim is missing.
    fn user_ref(&self, p: &Principal) -> Option<String> {
        let mut out = String::with_capacity(48);
        for piece in &self.template {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Claim { name, local } => {
                    let value = match name.as_str() {
                        "sub" => Some(p.subject.as_str()),
                        "email" => p.email.as_deref(),
                        other => p.claims.get(other).and_then(|v| v.as_str()),
                    }?;
                    let value = if *local {
                        value.split_once('@').map_or(value, |(l, _)| l)
                    } else {
                        value
                    };
                    out.push_str(value);
                }
            }
        }
        refs::normalize_owned(out, Some("user"), "default").filter(|r| refs::kind_of(r) == "user")
    }
}

/// Which callers are which catalog users: the issuers named, each with its
/// template. A caller of another issuer is no catalog user.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    mappings: Vec<UserMapping>,
    /// For the offline tools only: any issuer's subject, when it is a user
    /// ref, names the user.
    any_subject: bool,
}

impl Identities {
    pub fn new(mappings: Vec<UserMapping>) -> Identities {
        Identities {
            mappings,
            any_subject: false,
        }
    }

    /// For `policy check`/`test`: a principal whose subject is a user ref
    /// (`user:default/alice`) is that user, whatever its issuer.
    pub fn from_subjects() -> Identities {
        Identities {
            mappings: Vec::new(),
            any_subject: true,
        }
    }

    /// The caller as `index` knows it. A subject that already is a
    /// canonical user ref (Backstage's own tokens) is looked up as it is.
    pub fn caller(&self, p: &Principal, index: &Index) -> Caller {
        let by_subject = match self.mappings.iter().find(|m| m.issuer == p.issuer) {
            Some(m) => m.is_subject(),
            None => self.any_subject,
        };
        // Canonical: its kind is all that precedes the first `:`.
        if by_subject && refs::is_canonical(&p.subject) && p.subject.starts_with("user:") {
            return index.caller(&p.subject);
        }
        match self.user_ref(p) {
            Some(user) => index.caller(&user),
            None => Caller::NOBODY,
        }
    }

    /// The caller's canonical user ref.
    pub fn user_ref(&self, p: &Principal) -> Option<String> {
        if let Some(m) = self.mappings.iter().find(|m| m.issuer == p.issuer) {
            return m.user_ref(p);
        }
        if self.any_subject {
            return refs::normalize(&p.subject, None, "default")
                .filter(|r| refs::kind_of(r) == "user");
        }
        None
    }
}

/// What a catalog-bound rule decides against: the index of one sync, the
/// caller mapping, and when it was built.
pub struct View {
    pub index: Arc<Index>,
    pub identities: Arc<Identities>,
    /// Bumped when a sync changes the content; part of decision cache keys.
    pub generation: u64,
    /// This view and no other (generations repeat: every fixed view is 1),
    /// the key of the caller kept on a principal; 0 keeps none.
    key: u32,
}

impl View {
    pub fn new(index: Arc<Index>, identities: Arc<Identities>, generation: u64) -> View {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        // Never reused: once the keys run out, callers are resolved afresh.
        let key = NEXT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| k.checked_add(1))
            .unwrap_or(0);
        View {
            index,
            identities,
            generation,
            key,
        }
    }

    /// The caller `p` as this view's catalog knows it: resolved at its
    /// first request against this view, then kept on the principal (which
    /// every request of its token shares) until the next sync's view.
    pub fn caller(&self, p: &Principal) -> Caller {
        if let Some(kept) = p.memo().get(self.key) {
            return Caller::from_memo(kept);
        }
        let caller = self.identities.caller(p, &self.index);
        if let Some(word) = caller.to_memo() {
            p.memo().set(self.key, word);
        }
        caller
    }

    /// A view of a fixed index (tools, tests).
    pub fn fixed(index: Index, identities: Identities) -> View {
        View::new(Arc::new(index), Arc::new(identities), 1)
    }
}

struct Metrics {
    age: Gauge,
    entities: Gauge,
    generation: Gauge,
    ok: Counter,
    failed: Counter,
}

/// The running catalog: the current view, the sync task's state.
pub struct Catalog {
    settings: CatalogSettings,
    token: Option<String>,
    client: reqwest::Client,
    identities: Arc<Identities>,
    view: ArcSwapOption<View>,
    /// Unix milliseconds of the last successful sync (0: none yet).
    synced_at: AtomicU64,
    last_error: ArcSwap<Option<String>>,
    metrics: Metrics,
    /// Called after a sync that changed the content.
    on_change: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl Catalog {
    /// A catalog for `settings` (`None` without `url`), its callers mapped
    /// by `identities` (the Backstage issuers' `{sub}` plus `catalog.users`).
    /// Reads the token file; never contacts Backstage.
    pub fn new(
        settings: &CatalogSettings,
        backstage_issuers: &[String],
        registry: &mut Registry,
    ) -> anyhow::Result<Option<Arc<Catalog>>> {
        let Some(_) = &settings.url else {
            return Ok(None);
        };
        let token = match &settings.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read catalog.token_file `{}`: {e}", path.display())
                })?;
                let token = text.trim().to_owned();
                anyhow::ensure!(
                    !token.is_empty(),
                    "catalog.token_file `{}` is empty",
                    path.display()
                );
                Some(token)
            }
            None => None,
        };
        let mut mappings: Vec<UserMapping> = backstage_issuers
            .iter()
            .map(|i| UserMapping::subject(i))
            .collect();
        mappings.extend(settings.users.iter().cloned());
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("firegate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let r = registry.sub_registry_with_prefix("catalog");
        let [ok, failed] =
            counters_by_result(r, "syncs", "Catalog syncs by result", ["ok", "failed"]);
        let metrics = Metrics {
            age: registered(
                r,
                "index_age_seconds",
                "Seconds since the serving catalog index was read from Backstage (-1: none yet)",
            ),
            entities: registered(r, "entities", "Entities in the serving catalog index"),
            generation: registered(r, "generation", "Generation of the serving catalog index"),
            ok,
            failed,
        };
        metrics.age.set(-1);
        Ok(Some(Arc::new(Catalog {
            settings: settings.clone(),
            token,
            client,
            identities: Arc::new(Identities::new(mappings)),
            view: ArcSwapOption::empty(),
            synced_at: AtomicU64::new(0),
            last_error: ArcSwap::from_pointee(None),
            metrics,
            on_change: std::sync::Mutex::new(Vec::new()),
        })))
    }

    /// Run `f` after every sync that changed the index.
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut list) = self.on_change.lock() {
            list.push(Box::new(f));
        }
    }

    /// How callers are named as catalog users (known before any sync).
    pub fn identities(&self) -> Arc<Identities> {
        Arc::clone(&self.identities)
    }

    /// The serving view; `None` before the first successful sync.
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.load_full()
    }

    /// The generation decisions are keyed by (0: no index yet).
    pub fn generation(&self) -> u64 {
        self.view.load().as_ref().map_or(0, |v| v.generation)
    }

    /// Seconds since the last successful sync.
    pub fn age(&self) -> Option<Duration> {
        let at = self.synced_at.load(Ordering::Acquire);
        (at > 0).then(|| {
            let now = now_millis();
            Duration::from_millis(now.saturating_sub(at))
        })
    }

    /// The sync loop: at once, then every `interval`. Ends when the
    /// catalog is dropped by everyone else.
    pub fn spawn(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval = self.settings.interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(catalog) = weak.upgrade() else {
                    return;
                };
                catalog.sync().await;
            }
        });
        // The age gauge moves on its own.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(catalog) = weak.upgrade() else {
                    return;
                };
                if let Some(age) = catalog.age() {
                    catalog.metrics.age.set(age.as_secs() as i64);
                }
            }
        });
    }

    /// One sync: read every page, build, swap in when the content changed.
    pub async fn sync(&self) {
        let Some(url) = &self.settings.url else {
            return;
        };
        let started = std::time::Instant::now();
        let fetched = fetch_all(
            &self.client,
            url,
            self.token.as_deref(),
            self.settings.page_size,
        )
        .await;
        let items = match fetched {
            Ok(items) => items,
            Err(e) => {
                self.metrics.failed.inc();
                tracing::warn!(error = %e, "catalog sync failed; the last index keeps deciding");
                self.last_error.store(Arc::new(Some(e.to_string())));
                return;
            }
        };
        let count = items.len();
        let built = tokio::task::spawn_blocking(move || Index::from_items(items)).await;
        let Ok(index) = built else {
            self.metrics.failed.inc();
            self.last_error
                .store(Arc::new(Some("index build failed".into())));
            return;
        };
        let stats = index.stats();
        let previous = self.view.load_full();
        let changed = previous
            .as_ref()
            .is_none_or(|v| v.index.digest() != index.digest());
        if changed {
            let generation = previous.as_ref().map_or(1, |v| v.generation + 1);
            self.view.store(Some(Arc::new(View::new(
                Arc::new(index),
                Arc::clone(&self.identities),
                generation,
            ))));
            self.metrics.generation.set(generation as i64);
            self.metrics.entities.set(stats.entities as i64);
            tracing::info!(
                generation,
                entities = stats.entities,
                groups = stats.groups,
                users = stats.users,
                dangling = stats.dangling,
                skipped = stats.skipped,
                read = count,
                ms = started.elapsed().as_millis() as u64,
                "catalog index updated"
            );
        }
        self.synced_at.store(now_millis(), Ordering::Release);
        self.metrics.age.set(0);
        self.metrics.ok.inc();
        self.last_error.store(Arc::new(None));
        if changed && let Ok(list) = self.on_change.lock() {
            for f in list.iter() {
                f();
            }
        }
    }

    /// For `/readyz`: `(ready, detail)`. Not ready only while no index was
    /// ever loaded; the detail says how old the serving index is and why
    /// the latest sync failed.
    pub fn readiness(&self) -> (bool, String) {
        let error = (**self.last_error.load()).clone();
        match (self.age(), error) {
            (None, Some(e)) => (false, format!("no catalog index yet: {e}")),
            (None, None) => (false, "no catalog index yet: first sync pending".into()),
            (Some(age), None) => (true, format!("index age {}s", age.as_secs())),
            (Some(age), Some(e)) => (
                true,
                format!(
                    "serving the last index (age {}s); latest sync failed: {e}",
                    age.as_secs()
                ),
            ),
        }
    }

    pub fn required(&self) -> bool {
        self.settings.required
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(issuer: &str, subject: &str, email: Option<&str>) -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("preferred_username".into(), "Jane.Doe".into());
        Principal::new(
            issuer.into(),
            subject.into(),
            email.map(str::to_owned),
            vec![],
            claims,
        )
    }

    #[test]
    fn callers_are_named_by_their_issuers_template_only() {
        let ids = Identities::new(vec![
            UserMapping::subject("https://bs/api/auth"),
            UserMapping::parse("https://okta", "user:default/{email|local}").unwrap(),
            UserMapping::parse("https://kc", "{preferred_username}").unwrap(),
        ]);
        let user = |i, s, e| ids.user_ref(&principal(i, s, e));
        assert_eq!(
            user("https://bs/api/auth", "user:default/jane", None).as_deref(),
            Some("user:default/jane")
        );
        assert_eq!(user("https://bs/api/auth", "plugin:catalog", None), None);
        assert_eq!(
            user("https://okta", "00u1", Some("Jane@Example.com")).as_deref(),
            Some("user:default/jane")
        );
        assert_eq!(
            user("https://okta", "00u1", None),
            None,
            "no email, no user"
        );
        assert_eq!(
            user("https://kc", "x", None).as_deref(),
            Some("user:default/jane.doe")
        );
        // Another issuer's subject is never read as a user ref.
        assert_eq!(user("https://other", "user:default/jane", None), None);
        let tools = Identities::from_subjects();
        assert_eq!(
            tools
                .user_ref(&principal("https://any", "User:jane", None))
                .as_deref(),
            Some("user:default/jane")
        );
    }

    /// The caller a decision resolves (the subject looked up as it is when
    /// it is canonical) is the one its user ref names, whatever the issuer
    /// and spelling.
    #[test]
    fn callers_resolve_as_their_user_refs() {
        let index = Index::from_items(vec![
            serde_json::json!({"kind": "User", "metadata": {"name": "jane"}}),
            serde_json::json!({"kind": "User", "metadata": {"name": "bob"}}),
            serde_json::json!({"kind": "Group", "metadata": {"name": "jane"}}),
        ]);
        let mapped = Identities::new(vec![
            UserMapping::subject("https://bs/api/auth"),
            UserMapping::parse("https://okta", "user:default/{email|local}").unwrap(),
            UserMapping::parse("https://kc", "{sub}").unwrap(),
        ]);
        let tools = Identities::from_subjects();
        for ids in [&mapped, &tools] {
            for (issuer, subject, email) in [
                ("https://bs/api/auth", "user:default/jane", None),
                ("https://bs/api/auth", "User:Default/Jane", None),
                ("https://bs/api/auth", "user:jane", None),
                ("https://bs/api/auth", "group:default/jane", None),
                ("https://bs/api/auth", "user:default/nobody", None),
                ("https://okta", "user:default/bob", Some("Jane@x.com")),
                ("https://kc", "user:default/bob", None),
                ("https://kc", "jane", None),
                ("https://other", "user:default/jane", None),
            ] {
                let p = principal(issuer, subject, email);
                let want = ids
                    .user_ref(&p)
                    .map_or(Caller::NOBODY, |u| index.caller(&u));
                assert_eq!(ids.caller(&p, &index), want, "{issuer} {subject}");
            }
        }
        let jane = index.caller("user:default/jane");
        assert_ne!(jane, Caller::NOBODY);
        let p = principal("https://bs/api/auth", "user:default/jane", None);
        assert_eq!(mapped.caller(&p, &index), jane);
        let p = principal("https://bs/api/auth", "group:default/jane", None);
        assert_eq!(
            mapped.caller(&p, &index),
            Caller::NOBODY,
            "a group is no caller"
        );
    }

    /// The caller kept on a principal is keyed by the view, not by its
    /// generation (every fixed view is generation 1): a principal judged
    /// against one index is judged afresh against the next.
    #[test]
    fn a_kept_caller_is_the_views_own() {
        let with_jane = View::fixed(
            Index::from_items(vec![
                serde_json::json!({"kind": "User", "metadata": {"name": "jane"}}),
            ]),
            Identities::from_subjects(),
        );
        let without = View::fixed(
            Index::from_items(vec![
                serde_json::json!({"kind": "User", "metadata": {"name": "bob"}}),
            ]),
            Identities::from_subjects(),
        );
        assert_eq!(with_jane.generation, without.generation);
        let p = principal("https://bs", "user:default/jane", None);
        let jane = with_jane.index.caller("user:default/jane");
        assert_ne!(jane, Caller::NOBODY);
        for _ in 0..2 {
            assert_eq!(with_jane.caller(&p), jane);
            assert_eq!(without.caller(&p), Caller::NOBODY);
            assert_eq!(with_jane.caller(&p), jane, "kept again");
        }
        // Nobody is kept as such, and a copy of the principal starts afresh.
        let nobody = principal("https://bs", "user:default/ghost", None);
        assert_eq!(with_jane.caller(&nobody), Caller::NOBODY);
        assert_eq!(with_jane.caller(&nobody), Caller::NOBODY);
        assert_eq!(with_jane.caller(&p.clone()), jane);
    }

    #[test]
    fn bad_settings_are_reported_by_key() {
        let raw: CatalogConfig = serde_yaml_ng::from_str(
            "{interval: 10ms, page_size: 0, required: true, users: [{issuer: a, user_ref: 'user:default/name'}, {issuer: b, user_ref: '{email|upper}'}]}",
        )
        .unwrap();
        let mut errors = ConfigErrors::default();
        raw.validate(&mut errors);
        let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "catalog.interval",
                "catalog.page_size",
                "catalog.required",
                "catalog.users[0].user_ref",
                "catalog.users[1].user_ref"
            ]
        );
    }
}
