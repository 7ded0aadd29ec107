//! Backstage notifications (`@backstage/plugin-notifications-backend`):
//! the possible approvers of a request hear of it when it is made (and of
//! a break-glass approval), the requester hears of its outcome (approved,
//! denied, revoked, expired). Each is one `POST {url}/api/notifications/
//! notifications` with a Backstage service token (an external-access
//! static token), carrying `{recipients: {type: "entity", entityRef,
//! excludeEntityRef}, payload: {title, description, link, severity,
//! topic, scope}}` — what the request is, never a token or a document.
//! Backstage resolves group and entity refs to their member users.
//! Delivered like the webhook: a bounded queue, retries with backoff,
//! never holding up a request.

use std::path::PathBuf;

use serde::Deserialize;

use super::notify::{self, Sink, SinkSettings};
use super::{AccessRequest, Actor};
use crate::catalog::{Identities, View, refs};
use crate::config::ConfigErrors;
use crate::policy::requestable::Requestable;

/// The notifications' topic in Backstage (users may mute it there).
pub const TOPIC: &str = "firegate-access";

/// Raw `access.notify.backstage:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackstage {
    /// The Backstage backend's base URL.
    pub url: String,
    /// A file holding a Backstage external-access static token.
    pub token_file: PathBuf,
    /// The link of each notification; `{id}` is the request id.
    #[serde(default = "default_link")]
    pub link: String,
    #[serde(default = "notify::default_queue")]
    pub queue_capacity: usize,
    #[serde(default = "notify::default_attempts")]
    pub max_attempts: u32,
}

fn default_link() -> String {
    "/notifications".into()
}

/// The validated Backstage settings.
#[derive(Clone, PartialEq, Eq)]
pub struct BackstageSettings {
    /// `{base}/api/notifications/notifications`.
    pub endpoint: String,
    pub token: String,
    pub link: String,
    pub queue_capacity: usize,
    pub max_attempts: u32,
}

impl std::fmt::Debug for BackstageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackstageSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &"(redacted)")
            .field("link", &self.link)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl RawBackstage {
    pub fn validate(self, errors: &mut ConfigErrors) -> BackstageSettings {
        let base = self.url.trim_end_matches('/').to_owned();
        match base.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some() => {}
            _ => errors.push(
                "access.notify.backstage.url",
                format!("`{base}` is not an http(s) URL"),
            ),
        }
        let token = match std::fs::read_to_string(&self.token_file) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            Ok(_) => {
                errors.push(
                    "access.notify.backstage.token_file",
                    format!("`{}` is empty", self.token_file.display()),
                );
                String::new()
            }
            Err(e) => {
                errors.push(
                    "access.notify.backstage.token_file",
                    format!("cannot read {}: {e}", self.token_file.display()),
                );
                String::new()
            }
        };
        let link_ok = self.link.starts_with('/')
            || self.link.starts_with("https://")
            || self.link.starts_with("http://");
        if !link_ok {
            errors.push(
                "access.notify.backstage.link",
                "must be a path of the Backstage app (`/…`) or an http(s) URL",
            );
        }
        if self.queue_capacity == 0 || self.max_attempts == 0 {
            errors.push(
                "access.notify.backstage",
                "queue_capacity and max_attempts must be at least 1",
            );
        }
        BackstageSettings {
            endpoint: format!("{base}/api/notifications/notifications"),
            token,
            link: self.link,
            queue_capacity: self.queue_capacity.max(1),
            max_attempts: self.max_attempts.max(1),
        }
    }
}

/// The running sink.
pub struct Backstage {
    sink: Sink,
    link: String,
}

impl Backstage {
    pub fn start(settings: BackstageSettings, counters: notify::Counters) -> Backstage {
        let link = settings.link.clone();
        let token = settings.token.clone();
        let sink = Sink::start(
            "backstage notifications",
            SinkSettings {
                url: settings.endpoint,
                queue_capacity: settings.queue_capacity,
                max_attempts: settings.max_attempts,
            },
            counters,
            move |request, _body| request.bearer_auth(&token),
        );
        Backstage { sink, link }
    }

    /// Queue the notification `event` makes, if it makes one for somebody
    /// firegate can name; never waits.
    pub fn send(&self, event: &str, request: &AccessRequest, by: &Actor, to: &Audience) {
        let Some(body) = notification(event, request, by, to, &self.link) else {
            return;
        };
        self.sink.send(body.to_string().into_bytes());
    }

    /// Counted as `unaddressed`: an event for nobody firegate can name.
    pub fn unaddressed(&self) {
        self.sink.counters().unaddressed.inc();
    }
}

/// Who an event may be addressed to, as Backstage entity refs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// The request's possible approvers (users and groups).
    pub approvers: Vec<String>,
    /// The requester's user ref.
    pub requester: Option<String>,
}

/// Who an event goes to: approvers hear of a new request (and of a
/// break-glass approval), the requester of the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Approvers,
    Requester,
}

/// The recipients of `event`, or `None` when it notifies nobody.
pub fn addressed(event: &str, request: &AccessRequest) -> Option<To> {
    match event {
        "requested" | "break_glass" => Some(To::Approvers),
        // One approval of several is no outcome yet.
        "approved" if request.state != super::State::Approved => None,
        "approved" | "denied" | "revoked" | "expired" => Some(To::Requester),
        _ => None,
    }
}

/// The request body for Backstage, or `None` when `event` notifies nobody
/// firegate can name.
pub fn notification(
    event: &str,
    r: &AccessRequest,
    by: &Actor,
    to: &Audience,
    link: &str,
) -> Option<serde_json::Value> {
    let (entity_refs, exclude) = match addressed(event, r)? {
        To::Approvers if !to.approvers.is_empty() => (to.approvers.clone(), to.requester.clone()),
        To::Requester => (vec![to.requester.clone()?], None),
        To::Approvers => return None,
    };
    let who = |a: &Actor| a.email.clone().unwrap_or_else(|| a.subject.clone());
    let what = format!("{} on {}", r.actions.join(", "), r.path);
    let duration = humantime::format_duration(std::time::Duration::from_secs(r.duration_secs));
    let reason = |text: &str| {
        if text.is_empty() {
            String::new()
        } else {
            format!(" Reason: {text}")
        }
    };
    let last_reason = r.history.last().map(|t| t.reason.as_str()).unwrap_or("");
    let until = r.ends_at.map(rfc3339).unwrap_or_default();
    let (title, description, severity) = match event {
        "requested" => (
            format!("Access request to review: {what}"),
            format!(
                "{} asks for {what} in {} for {duration} (entry `{}`, request {}).{}",
                who(&r.requester),
                r.database,
                r.requestable,
                r.id,
                reason(&r.reason),
            ),
            "normal",
        ),
        "break_glass" => (
            format!("Break-glass access taken: {what}"),
            format!(
                "{} approved their own request for {what} in {} until {until} (entry `{}`, request {}).{}",
                who(&r.requester),
                r.database,
                r.requestable,
                r.id,
                reason(&r.reason),
            ),
            "high",
        ),
        "approved" => (
            format!("Access granted: {what}"),
            format!(
                "Your request {} was approved by {}; the access is active until {until}.",
                r.id,
                who(by),
            ),
            "normal",
        ),
        "denied" => (
            format!("Access request denied: {what}"),
            format!(
                "Your request {} was denied by {}.{}",
                r.id,
                who(by),
                reason(last_reason)
            ),
            "normal",
        ),
        "revoked" => (
            format!("Access revoked: {what}"),
            format!(
                "Your grant {} was revoked by {}.{}",
                r.id,
                who(by),
                reason(last_reason)
            ),
            "high",
        ),
        "expired" if r.approved_at.is_none() => (
            format!("Access request expired: {what}"),
            format!("Your request {} expired before anyone reviewed it.", r.id),
            "low",
        ),
        "expired" => (
            format!("Access ended: {what}"),
            format!("Your grant {} ended at {until}.", r.id),
            "low",
        ),
        _ => return None,
    };
    let mut recipients = serde_json::json!({"type": "entity", "entityRef": entity_refs});
    if let Some(exclude) = exclude {
        recipients["excludeEntityRef"] = serde_json::Value::String(exclude);
    }
    Some(serde_json::json!({
        "recipients": recipients,
        "payload": {
            "title": title,
            "description": description,
            "link": link.replace("{id}", &r.id),
            "severity": severity,
            "topic": TOPIC,
        },
    }))
}

fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The possible approvers of `r` under `entry` as Backstage entity refs.
/// `who` is a conjunction, so the narrowest key that names anybody names
/// them: `subjects` that are user refs; else, for a catalog-bound `who`,
/// the owners of the entity (`owner_of`) or the group itself (`member_of`)
/// from the live catalog; else `groups` written as group refs. Emails,
/// claims and issuers name nobody; neither does a catalog-bound `who`
/// before the catalog is read or with its wildcard left open.
pub fn approver_refs(entry: &Requestable, r: &AccessRequest, view: Option<&View>) -> Vec<String> {
    use crate::policy::CatalogWho;
    let who = &entry.approvers.who;
    let explicit = |list: &[String], kind: &str| -> Vec<String> {
        let mut out: Vec<String> = list
            .iter()
            .filter(|s| s.contains(':'))
            .filter_map(|s| refs::normalize(s, None, "default"))
            .filter(|s| refs::kind_of(s) == kind)
            .collect();
        out.sort();
        out.dedup();
        out
    };
    if let Some(subjects) = &who.subjects {
        return explicit(subjects, "user");
    }
    if let Some(catalog) = &who.catalog {
        let Some(view) = view else {
            return Vec::new();
        };
        let asked = crate::policy::requestable::requested_pattern(&r.path).ok();
        let binding = |name: &str| {
            asked
                .as_ref()
                .and_then(|a| crate::policy::requestable::asked_binding(&entry.pattern, a, name))
        };
        let Some(entity) = catalog.template().expand(binding) else {
            return Vec::new();
        };
        return match catalog {
            CatalogWho::OwnerOf(_) => view
                .index
                .owners(&entity)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            CatalogWho::MemberOf(_) => vec![entity],
        };
    }
    match &who.groups {
        Some(groups) => explicit(groups, "group"),
        None => Vec::new(),
    }
}

/// The requester's user ref: as the catalog maps callers to users when a
/// catalog is configured, else the subject when it is a user ref
/// (Backstage's own tokens). Only the subject and email are kept with a
/// request, so a `catalog.users` template reading another claim names
/// nobody here.
pub fn requester_ref(requester: &Actor, identities: Option<&Identities>) -> Option<String> {
    let principal = crate::authn::Principal::new(
        requester.issuer.clone(),
        requester.subject.clone(),
        requester.email.clone(),
        Vec::new(),
        serde_json::Map::new(),
    );
    match identities {
        Some(identities) => identities.user_ref(&principal),
        None => Identities::from_subjects().user_ref(&principal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{State, Transition};
    use crate::policy::Table;

    const POLICY: &str = r#"
requestable:
  - id: groups
    match: /teams/{team}/{rest=**}
    actions: [write]
    who: {authenticated: true}
    approvers: {who: {groups: [group:default/admins, "group:ops", plain-name]}}
    max_duration: 4h
  - id: subjects
    match: /s/{rest=**}
    actions: [write]
    who: {authenticated: true}
    approvers: {who: {groups: [group:default/admins], subjects: [user:default/bob, "okta|carol"]}}
    max_duration: 4h
  - id: owners
    match: /services/{service}/{rest=**}
    actions: [write]
    who: {authenticated: true}
    approvers: {who: {catalog: {owner_of: "component:default/{service}"}}}
    max_duration: 4h
  - id: emails
    match: /e/{rest=**}
    actions: [write]
    who: {authenticated: true}
    approvers: {who: {emails: [x@example.com]}}
    max_duration: 4h
"#;

    fn request(entry: &str, path: &str) -> AccessRequest {
        let requester = Actor {
            issuer: "https://issuer".into(),
            subject: "okta|eve".into(),
            email: Some("eve@example.com".into()),
        };
        AccessRequest {
            id: "r1".into(),
            requestable: entry.into(),
            requester: requester.clone(),
            database: "projects/p/databases/(default)".into(),
            path: path.into(),
            actions: vec!["write".into()],
            duration_secs: 7200,
            reason: "INC-1".into(),
            state: State::Pending,
            created_at: 1_000,
            pending_until: 3_601_000,
            min_approvals: 1,
            approved_at: None,
            ends_at: None,
            break_glass: false,
            history: vec![Transition {
                event: "requested".into(),
                by: requester,
                at: 1_000,
                reason: "INC-1".into(),
            }],
        }
    }

    fn refs_of(entry: &str, path: &str, view: Option<&View>) -> Vec<String> {
        let table = Table::from_yaml(POLICY, 1).unwrap_or_else(|e| panic!("{e}"));
        let e = table.requestable(entry).expect("entry");
        approver_refs(e, &request(entry, path), view)
    }

    #[test]
    fn approvers_are_named_by_the_narrowest_key_that_names_anybody() {
        assert_eq!(
            refs_of("groups", "/teams/a/**", None),
            ["group:default/admins", "group:default/ops"],
            "group refs only; a plain group name names no entity"
        );
        assert_eq!(
            refs_of("subjects", "/s/**", None),
            ["user:default/bob"],
            "subjects narrow the groups; a non-ref subject names nobody"
        );
        assert!(refs_of("emails", "/e/**", None).is_empty());
        assert!(
            refs_of("owners", "/services/checkout/**", None).is_empty(),
            "no catalog read yet"
        );
        let index = crate::catalog::Index::from_items(
            crate::catalog::snapshot_items(
                &serde_json::json!({"items": [
                    {"kind": "Component", "metadata": {"name": "checkout", "namespace": "default"},
                     "relations": [{"type": "ownedBy", "targetRef": "group:default/payments"}]},
                    {"kind": "Group", "metadata": {"name": "payments", "namespace": "default"}},
                ]})
                .to_string(),
            )
            .expect("items"),
        );
        let view = View::fixed(index, Identities::from_subjects());
        assert_eq!(
            refs_of("owners", "/services/checkout/**", Some(&view)),
            ["group:default/payments"]
        );
        assert!(
            refs_of("owners", "/services/*/**", Some(&view)).is_empty(),
            "a wildcard left open names no entity"
        );
    }

    #[test]
    fn approvers_hear_of_a_request_and_the_requester_of_its_outcome() {
        let mut r = request("groups", "/teams/a/**");
        let by = r.requester.clone();
        let to = Audience {
            approvers: vec!["group:default/admins".into()],
            requester: Some("user:default/eve".into()),
        };
        let n = notification("requested", &r, &by, &to, "/x/{id}").expect("one");
        assert_eq!(n["recipients"]["type"], "entity");
        assert_eq!(
            n["recipients"]["entityRef"],
            serde_json::json!(["group:default/admins"])
        );
        assert_eq!(n["recipients"]["excludeEntityRef"], "user:default/eve");
        assert_eq!(n["payload"]["link"], "/x/r1");
        assert_eq!(n["payload"]["topic"], TOPIC);
        assert_eq!(n["payload"]["severity"], "normal");
        let title = n["payload"]["title"].as_str().unwrap_or_default();
        assert!(title.contains("write on /teams/a/**"), "{title}");
        // One approval of two: no outcome yet.
        r.min_approvals = 2;
        assert!(notification("approved", &r, &by, &to, "/").is_none());
        r.state = State::Approved;
        r.approved_at = Some(2_000);
        r.ends_at = Some(7_202_000);
        let n = notification("approved", &r, &by, &to, "/").expect("outcome");
        assert_eq!(
            n["recipients"],
            serde_json::json!({"type": "entity", "entityRef": ["user:default/eve"]})
        );
        // Nobody to name: nothing sent.
        let nobody = Audience::default();
        assert!(notification("approved", &r, &by, &nobody, "/").is_none());
        assert!(notification("requested", &r, &by, &nobody, "/").is_none());
        assert!(notification("released", &r, &by, &to, "/").is_none());
    }

    #[test]
    fn the_requester_is_named_as_the_catalog_maps_callers() {
        let eve = request("groups", "/teams/a/**").requester;
        let mapped = Identities::new(vec![
            crate::catalog::UserMapping::parse("https://issuer", "user:default/{email|local}")
                .expect("template"),
        ]);
        assert_eq!(
            requester_ref(&eve, Some(&mapped)).as_deref(),
            Some("user:default/eve")
        );
        assert_eq!(requester_ref(&eve, None), None, "okta|eve is no user ref");
        let bs = Actor {
            issuer: "https://backstage/api/auth".into(),
            subject: "user:default/guest".into(),
            email: None,
        };
        assert_eq!(
            requester_ref(&bs, None).as_deref(),
            Some("user:default/guest")
        );
    }
}
