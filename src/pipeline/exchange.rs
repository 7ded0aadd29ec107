//! `Exchange`: what the pipeline learns about one request as it goes, turned
//! into its audit record when the response is ready.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Request, Response};
use ipnet::IpNet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audited::{Audited, Counts};
use super::fairness::Slot;
use super::{ConnInfo, PipelineError};
use crate::audit::{self, AuditPrincipal, AuditRecord, AuditTarget, Auditor, Outcome};
use crate::authn::Principal;
use crate::body::{self, Body};
use crate::model::{Method, Operation, Scope};
use crate::policy::{Decision, Why};
use crate::upstream::headers;

/// The audit-relevant facts of one request, filled in step by step.
pub struct Exchange {
    pub request_id: String,
    started: Instant,
    time: OffsetDateTime,
    remote: IpAddr,
    client_ip: IpAddr,
    tls: Option<&'static str>,
    http_version: &'static str,
    http_method: audit::Text,
    pub principal: Option<Arc<Principal>>,
    pub route: Option<(Method, String)>,
    pub operation: Option<Arc<Operation>>,
    pub decision: Option<Decision>,
    pub upstream_account: Option<String>,
    pub upstream_status: Option<u16>,
    /// A trailers-only gRPC answer's `grpc-status` (a streamed one's comes
    /// with the trailers, seen by the audited body).
    pub upstream_grpc_status: Option<u16>,
    /// Already bounded and escaped for the record (`audit::request_tags`).
    pub request_tags: Vec<String>,
    /// Stored documents read for rules that read `resource`.
    pub stored_reads: u64,
    reason: Option<String>,
    refused: bool,
    /// False when `Auditor::admit` refused the request: its record is then
    /// best-effort, so that a flood of refusals cannot queue without bound.
    admitted: bool,
    bytes_in: Arc<AtomicU64>,
    /// Fields masks removed from the response, counted as it streams.
    masked_fields: Arc<AtomicU64>,
    /// The client's `traceparent`, when well-formed.
    pub traceparent: Option<String>,
    /// The principal's in-flight slot, released when the response ends.
    slot: Option<Slot>,
    /// An access-request lifecycle event this request made.
    pub access: Option<serde_json::Value>,
    /// The outcome of a request no policy decision judges (an access-API
    /// call): allowed once done, denied when the caller may not act.
    pub(super) verdict: Option<Outcome>,
}

impl Exchange {
    pub fn begin<B>(req: &Request<B>, conn: &ConnInfo, trusted: &[IpNet]) -> Self {
        let request_id = req
            .headers()
            .get(&headers::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_safe_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(new_request_id);
        let remote = conn.remote.ip();
        Exchange {
            request_id,
            started: Instant::now(),
            time: OffsetDateTime::now_utc(),
            remote,
            client_ip: headers::client_ip(remote, req.headers(), trusted),
            tls: conn.tls,
            http_version: version_name(req.version()),
            http_method: method_name(req.method()),
            principal: None,
            route: None,
            operation: None,
            decision: None,
            upstream_account: None,
            upstream_status: None,
            upstream_grpc_status: None,
            request_tags: Vec::new(),
            stored_reads: 0,
            reason: None,
            refused: false,
            admitted: true,
            bytes_in: Arc::new(AtomicU64::new(0)),
            masked_fields: Arc::new(AtomicU64::new(0)),
            traceparent: headers::traceparent(req.headers()).map(str::to_owned),
            slot: None,
            access: None,
            verdict: None,
        }
    }

    /// The peer address of the connection (the hop `X-Forwarded-For` extends).
    pub fn remote_ip(&self) -> IpAddr {
        self.remote
    }

    pub fn proto(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Keep the principal's in-flight slot until the response body ends.
    pub(super) fn hold(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// The decision as the audit line and the metrics name it.
    pub fn outcome(&self) -> Outcome {
        if let Some(verdict) = self.verdict {
            return verdict;
        }
        match (&self.decision, self.refused) {
            (Some(d), _) if !d.allowed => Outcome::Deny,
            (_, true) => Outcome::Error,
            (Some(_), false) => Outcome::Allow,
            (None, false) => Outcome::Error,
        }
    }

    /// The RPC, once routed.
    pub fn rpc(&self) -> Option<Method> {
        self.route.as_ref().map(|(m, _)| *m)
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub(super) fn refuse(&mut self, reason: String, err: &PipelineError) {
        self.reason = Some(reason);
        self.refused = true;
        if matches!(err, PipelineError::Audit(_)) {
            self.admitted = false;
        }
    }

    /// Attach the audit record to the response body; it is written when the
    /// body ends or is dropped.
    pub fn finish(mut self, response: Response<Body>, auditor: Arc<Auditor>) -> Response<Body> {
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let started = self.started;
        let admitted = self.admitted;
        let counts = Counts {
            bytes_in: Arc::clone(&self.bytes_in),
            masked_fields: Arc::clone(&self.masked_fields),
        };
        let slot = self.slot.take();
        let record = self.into_record(status, auditor.max_listed_targets());
        let audited = Audited::new(started, counts, admitted, record, auditor, slot);
        Response::from_parts(parts, body::observed(body, audited))
    }

    /// What a long-lived stream (Listen) needs to write the records of its
    /// events after this exchange has become the stream's response.
    pub(super) fn events(&self) -> StreamEvents {
        StreamEvents(self.snapshot())
    }

    /// The counter of fields masked out of the response.
    pub(super) fn masked_fields(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.masked_fields)
    }

    /// The bytes-in counter of the record [`Exchange::finish`] writes.
    pub(super) fn bytes_in(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_in)
    }

    fn snapshot(&self) -> Exchange {
        Exchange {
            request_id: self.request_id.clone(),
            started: self.started,
            time: OffsetDateTime::now_utc(),
            remote: self.remote,
            client_ip: self.client_ip,
            tls: self.tls,
            http_version: self.http_version,
            http_method: self.http_method.clone(),
            principal: self.principal.clone(),
            route: self.route.clone(),
            operation: self.operation.clone(),
            decision: self.decision.clone(),
            upstream_account: self.upstream_account.clone(),
            upstream_status: self.upstream_status,
            upstream_grpc_status: self.upstream_grpc_status,
            request_tags: self.request_tags.clone(),
            reason: self.reason.clone(),
            refused: self.refused,
            admitted: self.admitted,
            bytes_in: Arc::new(AtomicU64::new(0)),
            masked_fields: Arc::new(AtomicU64::new(0)),
            traceparent: self.traceparent.clone(),
            stored_reads: self.stored_reads,
            slot: None,
            access: None,
            verdict: self.verdict,
        }
    }

    fn into_record(self, status: u16, max_listed_targets: usize) -> AuditRecord {
        let mut spellings = Spellings::default();
        let targets = match (&self.decision, &self.operation) {
            (Some(decision), _) => decision
                .targets
                .iter()
                .map(|t| AuditTarget {
                    resource: spellings.of(&t.target.scope),
                    access: t.target.access.as_str().into(),
                    allowed: t.allowed,
                    rule: t.rule.clone(),
                    why: Some(why_name(&t.why).into()),
                    grant: t.grant.clone(),
                })
                .collect(),
            (None, Some(op)) => op
                .targets
                .iter()
                .map(|t| AuditTarget {
                    resource: spellings.of(&t.scope),
                    access: t.access.as_str().into(),
                    allowed: false,
                    rule: None,
                    why: None,
                    grant: None,
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        let (targets, targets_summary) = audit::bound_targets(targets, max_listed_targets);
        let decision = self.outcome();
        let shadow = self.decision.as_ref().and_then(|d| d.shadow.clone());
        AuditRecord {
            access: self.access,
            time: rfc3339(self.time),
            request_id: self.request_id,
            client_ip: self.client_ip.to_string(),
            tls: self.tls.map(Into::into),
            http_version: self.http_version.into(),
            principal: self.principal.map(AuditPrincipal),
            http_method: self.http_method,
            rpc: self.route.as_ref().map(|(m, _)| m.as_str().into()),
            database: self.route.map(|(_, db)| db),
            targets,
            targets_summary,
            decision,
            reason: self.reason,
            upstream_account: self.upstream_account,
            shadow_decision: shadow.as_ref().map(|s| {
                if s.allowed {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                }
            }),
            shadow_rule: shadow.map(|s| s.rule),
            upstream_status: self.upstream_status,
            upstream_grpc_status: self.upstream_grpc_status,
            status,
            // Both byte counts and the duration are filled in when the
            // response body ends: a streamed request body may still be read.
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            client_disconnected: false,
            traceparent: self.traceparent,
            request_tags: self.request_tags,
            stored_reads: self.stored_reads,
            masked_fields: 0,
        }
    }
}

/// The audit record's spelling of each target's path: a document's is its
/// path's own (shared, nothing made); another scope's is made once for
/// consecutive targets of it and shared between them, through one reused
/// buffer.
#[derive(Default)]
struct Spellings<'a> {
    last: Option<(&'a Scope, Arc<str>)>,
    buffer: String,
}

impl<'a> Spellings<'a> {
    fn of(&mut self, scope: &'a Scope) -> Arc<str> {
        // A document is spelled as its path is: nothing to make.
        if let Scope::Document { path } = scope
            && let Some(spelled) = path.shared_spelling()
        {
            return spelled;
        }
        if let Some((last, spelled)) = &self.last
            && *last == scope
        {
            return spelled.clone();
        }
        scope.spell_into(&mut self.buffer);
        let spelled = Arc::<str>::from(self.buffer.as_str());
        self.last = Some((scope, spelled.clone()));
        spelled
    }
}

/// The records of one stream's events (Listen: its opening, each target
/// decision), each one line like a request's, sharing its request id.
pub struct StreamEvents(Exchange);

impl StreamEvents {
    /// A fresh exchange for one event (a Listen target's judgement): the
    /// stream's facts, nothing judged yet.
    pub fn event(&self) -> Exchange {
        let mut event = self.0.snapshot();
        event.operation = None;
        event.decision = None;
        event.stored_reads = 0;
        event
    }

    /// The record of one event: what `event` judged, `reason` when refused.
    pub fn record(
        &self,
        mut event: Exchange,
        reason: Option<String>,
        max_listed_targets: usize,
    ) -> AuditRecord {
        event.time = OffsetDateTime::now_utc();
        event.refused = reason.is_some();
        event.reason = reason;
        let mut record = event.into_record(200, max_listed_targets);
        record.duration_ms = self.0.started.elapsed().as_secs_f64() * 1000.0;
        record
    }
}

fn why_name(why: &Why) -> &'static str {
    match why {
        Why::Allowed => "allowed",
        Why::DenyMatched => "deny_matched",
        Why::NoRuleMatched => "no_rule_matched",
        Why::ConditionFalse => "condition_false",
        Why::Granted => "granted",
    }
}

/// The method as sent; the standard ones without an allocation.
fn method_name(method: &http::Method) -> audit::Text {
    let name = match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        other => return other.to_owned().into(),
    };
    name.into()
}

fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

/// `time` as RFC 3339 (`2026-12-02T19:55:01.123456789Z`), written into one
/// buffer of the longest such form's size (`format` grows its own).
fn rfc3339(time: OffsetDateTime) -> String {
    let mut out = Vec::with_capacity(40);
    if time.format_into(&mut out, &Rfc3339).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A client-supplied request id is echoed only when it is short and plain.
fn is_safe_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    crate::crypto::hex_lower(&bytes)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures_util::StreamExt;
    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};
    use prometheus_client::registry::Registry;
    use serde_json::Value;

    use bytes::Bytes;
    use http_body::Frame;

    use super::*;
    use crate::audit::{AuditConfig, MemorySink};
    use crate::body::BoxError;

    fn auditor() -> (Arc<Auditor>, MemorySink) {
        let sink = MemorySink::new();
        let settings = crate::config::errors::ConfigErrors::collect(|errors| {
            AuditConfig::default().validate(errors)
        })
        .expect("default audit settings");
        let auditor =
            Auditor::with_sink(&settings, Box::new(sink.clone()), &mut Registry::default())
                .expect("auditor");
        (Arc::new(auditor), sink)
    }

    fn exchange() -> Exchange {
        let req = Request::builder()
            .method("GET")
            .uri("/v1/projects/p/databases/(default)/documents/a/b")
            .header("x-request-id", "req-1")
            .body(())
            .expect("request");
        let conn = ConnInfo::new(SocketAddr::from(([127, 0, 0, 1], 4000)), Some("TLSv1.3"));
        Exchange::begin(&req, &conn, &[])
    }

    fn frames(chunks: &[&'static str]) -> Vec<Result<Frame<Bytes>, BoxError>> {
        chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect()
    }

    /// Flush the writer and return the one record written.
    async fn only_record(auditor: &Auditor, sink: &MemorySink) -> Value {
        let mut records = written(auditor, sink).await;
        assert_eq!(records.len(), 1, "{records:?}");
        records.remove(0)
    }

    /// Flush the writer and return every record written.
    async fn written(auditor: &Auditor, sink: &MemorySink) -> Vec<Value> {
        auditor.flush().await;
        sink.records()
    }

    #[test]
    fn rfc3339_is_the_time_crates_form() {
        for nanos in [0, 1, 120_000_000, 999_999_999] {
            let time = OffsetDateTime::now_utc()
                .replace_nanosecond(nanos)
                .expect("nanos");
            assert_eq!(super::rfc3339(time), time.format(&Rfc3339).expect("format"));
        }
    }

    #[tokio::test]
    async fn a_complete_stream_writes_one_record_with_its_size() {
        let (auditor, sink) = auditor();
        let body = BodyExt::boxed(StreamBody::new(stream::iter(frames(&["hello ", "world"]))));
        let response = Response::builder()
            .status(200)
            .body(body)
            .expect("response");
        let response = exchange().finish(response, Arc::clone(&auditor));
        assert!(
            written(&auditor, &sink).await.is_empty(),
            "written before the body ended"
        );

        let collected = response.into_body().collect().await.expect("body");
        assert_eq!(collected.to_bytes(), "hello world");
        let r = &only_record(&auditor, &sink).await;
        assert_eq!(r["status"], 200);
        assert_eq!(r["bytes_out"], 11);
        assert_eq!(r["client_disconnected"], false);
        assert_eq!(r["request_id"], "req-1");
        assert_eq!(r["tls"], "TLSv1.3");
    }

    #[tokio::test]
    async fn dropping_mid_stream_writes_one_disconnected_record() {
        let (auditor, sink) = auditor();
        let endless = stream::iter(frames(&["first chunk"])).chain(stream::pending());
        let response = Response::new(BodyExt::boxed(StreamBody::new(endless)));
        let response = exchange().finish(response, Arc::clone(&auditor));
        let mut body = response.into_body();
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.data_ref().map(Bytes::len), Some(11));
        assert!(written(&auditor, &sink).await.is_empty());

        drop(body);
        let record = only_record(&auditor, &sink).await;
        assert_eq!(record["client_disconnected"], true);
        assert_eq!(record["bytes_out"], 11);
    }

    #[tokio::test]
    async fn an_empty_body_hyper_never_polls_is_recorded_once_on_drop() {
        let (auditor, sink) = auditor();
        let response = Response::builder()
            .status(204)
            .body(crate::body::empty())
            .expect("response");
        drop(exchange().finish(response, Arc::clone(&auditor)));
        let record = only_record(&auditor, &sink).await;
        assert_eq!(record["client_disconnected"], false);
        assert_eq!(record["status"], 204);
    }

    #[tokio::test]
    async fn a_failing_upstream_stream_is_recorded_with_its_reason() {
        let (auditor, sink) = auditor();
        let mut items = frames(&["part"]);
        items.push(Err("upstream reset".into()));
        let response = Response::new(BodyExt::boxed(StreamBody::new(stream::iter(items))));
        let response = exchange().finish(response, Arc::clone(&auditor));
        assert!(response.into_body().collect().await.is_err());
        let record = only_record(&auditor, &sink).await;
        assert_eq!(record["reason"], "upstream_stream_error");
        assert_eq!(record["bytes_out"], 4);
        assert_eq!(record["client_disconnected"], false);
    }

    #[tokio::test]
    async fn a_seal_failing_mid_stream_is_recorded_as_an_error_with_its_reason() {
        let (auditor, sink) = auditor();
        let mut items = frames(&["{\"transaction\":"]);
        items.push(Err(crate::transaction::SealError::Truncated.into()));
        let response = Response::new(BodyExt::boxed(StreamBody::new(stream::iter(items))));
        let mut ex = exchange();
        ex.decision = Some(Decision {
            allowed: true,
            targets: Vec::new(),
            upstream_account: None,
            reason: None,
            shadow: Some(crate::policy::Shadow {
                allowed: false,
                rule: "watch-drafts".into(),
            }),
            answer: Vec::new(),
        });
        let response = ex.finish(response, Arc::clone(&auditor));
        assert!(response.into_body().collect().await.is_err());
        let record = only_record(&auditor, &sink).await;
        assert_eq!(record["decision"], "error");
        assert_eq!(record["reason"], "response_truncated");
        // What a shadow rule would have decided is audited either way.
        assert_eq!(record["shadow_decision"], "deny");
        assert_eq!(record["shadow_rule"], "watch-drafts");
    }

    #[tokio::test]
    async fn a_refusal_by_the_auditor_is_recorded_as_an_error() {
        let (auditor, sink) = auditor();
        let mut ex = exchange();
        let err = PipelineError::Audit(crate::audit::AuditError::SinkBackedUp);
        ex.refuse(err.reason(None), &err);
        let response = ex.finish(
            crate::pipeline::respond::error_response(&err, "req-1"),
            Arc::clone(&auditor),
        );
        response.into_body().collect().await.expect("body");
        let record = only_record(&auditor, &sink).await;
        assert_eq!(record["decision"], "error");
        assert_eq!(record["reason"], "audit_backlog");
        assert_eq!(record["status"], 503);
    }

    #[tokio::test]
    async fn a_policy_deny_names_every_target_its_rule_and_the_reason() {
        use crate::model::{Access, Database, Scope, Target};
        use crate::policy::{Decided, TargetDecision};
        let (auditor, sink) = auditor();
        let mut ex = exchange();
        let target = |path: &[&str], access| Target {
            scope: Scope::Document {
                path: path.iter().map(|s| s.to_string()).collect(),
            },
            access,
        };
        let allowed = target(&["teams", "a", "deployments", "d1"], Access::Update);
        let refused = target(&["secrets", "s1"], Access::Get);
        ex.route = Some((Method::Commit, "projects/p/databases/(default)".into()));
        ex.operation = Some(Arc::new(Operation {
            writes: Vec::new(),
            filter: None,
            queried: Vec::new(),
            database: Database::new("p", "(default)"),
            method: Method::Commit,
            targets: vec![allowed.clone(), refused.clone()],
        }));
        ex.decision = Some(Decision {
            allowed: false,
            targets: vec![
                Decided::of(
                    allowed,
                    TargetDecision {
                        allowed: true,
                        rule: Some("team-deployments".into()),
                        why: Why::Allowed,
                        grant: None,
                        shadow: None,
                    },
                ),
                Decided::of(
                    refused,
                    TargetDecision {
                        allowed: false,
                        rule: Some("no-secrets".into()),
                        why: Why::DenyMatched,
                        grant: None,
                        shadow: None,
                    },
                ),
            ],
            upstream_account: None,
            reason: Some("rule:no-secrets".into()),
            shadow: None,
            answer: Vec::new(),
        });
        let err = PipelineError::Denied;
        ex.refuse(err.reason(ex.decision.as_ref()), &err);
        let response = ex.finish(
            crate::pipeline::respond::error_response(&err, "req-1"),
            Arc::clone(&auditor),
        );
        response.into_body().collect().await.expect("body");

        let r = &only_record(&auditor, &sink).await;
        assert_eq!(r["decision"], "deny");
        assert_eq!(r["reason"], "rule:no-secrets");
        assert_eq!(r["status"], 403);
        assert_eq!(r["rpc"], "commit");
        assert_eq!(r["database"], "projects/p/databases/(default)");
        assert_eq!(
            r["targets"],
            serde_json::json!([
                {"resource": "/teams/a/deployments/d1", "access": "update", "allowed": true,
                 "rule": "team-deployments", "why": "allowed"},
                {"resource": "/secrets/s1", "access": "get", "allowed": false,
                 "rule": "no-secrets", "why": "deny_matched"},
            ])
        );
        assert_eq!(r["upstream_account"], Value::Null);
        assert_eq!(r["principal"], Value::Null);
        assert_eq!(r["shadow_decision"], Value::Null);
        assert_eq!(r["shadow_rule"], Value::Null);
    }

    /// An upsert's create and update name one scope: the record spells it
    /// once and both targets share the spelling; every other target is
    /// spelled as itself, whatever came before it.
    #[test]
    fn consecutive_targets_of_one_scope_share_one_spelling() {
        use crate::model::{Scope, Segments};
        let ids = |path: &[&str]| Segments::from(path);
        let doc = |path: &[&str]| Scope::Document { path: ids(path) };
        let d1 = doc(&["teams", "a", "deployments", "d1"]);
        let d2 = doc(&["teams", "a", "deployments", "d2"]);
        let group = Scope::CollectionGroup {
            parent: ids(&["teams", "a"]),
            collection: "deployments".into(),
        };
        let group_again = group.clone();
        let list = Scope::Collection {
            parent: ids(&["teams", "a"]),
            collection: "deployments".into(),
        };
        let scopes = [&d1, &d2, &group, &group_again, &list, &group, &d1];
        let mut spellings = Spellings::default();
        let spelled: Vec<Arc<str>> = scopes.iter().map(|s| spellings.of(s)).collect();
        let expected: Vec<String> = scopes.iter().map(|s| s.spelled()).collect();
        assert_eq!(
            spelled.iter().map(|s| &**s).collect::<Vec<_>>(),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(&*spelled[2], "/teams/a/**/deployments");
        // A document's spelling is its path's own.
        let Scope::Document { path } = &d1 else {
            unreachable!()
        };
        let own = path.shared_spelling().unwrap();
        assert!(Arc::ptr_eq(&spelled[0], &own) && Arc::ptr_eq(&spelled[6], &own));
        // Other scopes: one spelling per run of one scope.
        assert!(Arc::ptr_eq(&spelled[2], &spelled[3]));
        assert!(!Arc::ptr_eq(&spelled[3], &spelled[4]));
        assert!(!Arc::ptr_eq(&spelled[2], &spelled[5]));
    }
}
