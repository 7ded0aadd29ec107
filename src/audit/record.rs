//! `AuditRecord`: the stable shape of one audit line.

use std::borrow::Cow;
use std::sync::Arc;

use serde::ser::SerializeStruct as _;
use serde::{Serialize, Serializer};

use crate::authn::Principal;

/// A field that is nearly always one of a few fixed names (`GET`,
/// `HTTP/1.1`, `get`, `allowed`): borrowed then, so a record costs no
/// allocation for it.
pub type Text = Cow<'static, str>;

/// The overall outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Policy allowed it and it was forwarded.
    Allow,
    /// Refused by policy.
    Deny,
    /// Refused before a decision (authn, classify, limits) or failed after one.
    Error,
}

impl Outcome {
    /// The name as written (`allow`, `deny`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }
}

// Every field is always written (`null` when unknown), so that consumers can
// rely on the keys. The nested types declare their fields in sorted order:
// their serialization is then already the chain's canonical form (see
// `chain::write_canonical`, and the test that holds the two together).

/// Who made the request: the verified principal itself, shared, of which
/// the record writes `email`, `groups`, `issuer` and `subject` (never the
/// claims, never a token).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPrincipal(pub Arc<Principal>);

impl AuditPrincipal {
    /// A principal with no claims, for records made by hand (tests, benches).
    pub fn new(issuer: &str, subject: &str, email: Option<&str>, groups: &[&str]) -> Self {
        AuditPrincipal(Arc::new(Principal::new(
            issuer.into(),
            subject.into(),
            email.map(str::to_owned),
            groups.iter().map(|g| (*g).to_owned()).collect(),
            serde_json::Map::new(),
        )))
    }
}

impl Serialize for AuditPrincipal {
    /// Keys in sorted order: the chain's canonical form as written.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = &self.0;
        let mut s = serializer.serialize_struct("AuditPrincipal", 4)?;
        s.serialize_field("email", &p.email)?;
        s.serialize_field("groups", &p.groups)?;
        s.serialize_field("issuer", &p.issuer)?;
        s.serialize_field("subject", &p.subject)?;
        s.end()
    }
}

/// One target and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditTarget {
    pub access: Text,
    pub allowed: bool,
    /// Resource path or scope, e.g. `/teams/a/deployments/d1`, `/**/logs`;
    /// shared by the targets of one scope.
    pub resource: Arc<str>,
    /// The rule that decided it, if any.
    pub rule: Option<Arc<str>>,
    /// `allowed`, `deny_matched`, `no_rule_matched`, `condition_false`,
    /// `granted`; `null` when the request ended before the policy was asked.
    pub why: Option<Text>,
    /// The grant (access request id) that allowed it, when one did; `rule`
    /// then names its `requestable` entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// What a record with more than `audit.max_listed_targets` targets says of
/// all of them: how many, per access how many were allowed and refused, and
/// the SHA-256 of the full list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetsSummary {
    /// Per access (`get`, `update`, …); sorted, so canonical as written.
    pub by_access: std::collections::BTreeMap<String, AccessCounts>,
    pub count: u64,
    /// Hex SHA-256 of the full target list as it would have been written:
    /// a compact JSON array of the target objects, keys sorted.
    pub digest: String,
    /// How many targets the record still lists (the refused ones, capped).
    pub listed: u64,
}

/// Allowed and refused targets of one access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccessCounts {
    pub allowed: u64,
    pub refused: u64,
}

/// One line of the audit log. Field names are a stable contract (README).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// An access-request lifecycle event (`requested`, `approved`, …):
    /// the request, its requester, scope, actions, reason and times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<serde_json::Value>,
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    pub client_ip: String,
    /// `TLSv1.3`, `TLSv1.2`, or `null` for plain HTTP.
    pub tls: Option<Text>,
    pub http_version: Text,
    pub principal: Option<AuditPrincipal>,
    /// The HTTP method as sent.
    pub http_method: Text,
    /// The Firestore RPC (`commit`, `runQuery`, …) once classified.
    pub rpc: Option<Text>,
    pub database: Option<String>,
    pub targets: Vec<AuditTarget>,
    /// Set only when `targets` was cut to the refused ones.
    pub targets_summary: Option<TargetsSummary>,
    pub decision: Outcome,
    /// Precise refusal or failure reason (`token_expired`, `rule:no-secrets`, …).
    pub reason: Option<String>,
    pub upstream_account: Option<String>,
    /// With shadow rules enforced, what the decision would have been
    /// (`null` unless a `mode: shadow` rule would decide a target).
    pub shadow_decision: Option<Outcome>,
    /// The shadow rule that would have decided.
    pub shadow_rule: Option<String>,
    pub upstream_status: Option<u16>,
    /// A gRPC call's `grpc-status` from upstream (trailers, or a
    /// trailers-only answer); left out when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_grpc_status: Option<u16>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub client_disconnected: bool,
    /// The client's W3C `traceparent`, when well-formed (it was forwarded).
    pub traceparent: Option<String>,
    /// The request's `requestOptions.requestTags`, through [`request_tags`].
    pub request_tags: Vec<String>,
    /// Stored documents firegate read for rules that read `resource`
    /// (left out when none, so older records hash as they did).
    #[serde(skip_serializing_if = "is_zero")]
    pub stored_reads: u64,
    /// Fields a policy mask removed from the response (a count, never
    /// which; left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub masked_fields: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Request tags kept in one record (Firestore itself keeps 50).
pub const MAX_AUDIT_TAGS: usize = 16;
/// Characters kept of one tag, escapes counted as written.
pub const MAX_AUDIT_TAG_CHARS: usize = 128;
/// Ends a cut tag, and opens the count of tags left out. Clients cannot
/// write it themselves: every non-ASCII character of theirs is escaped.
const CUT: char = '…';

/// The request tags as a record holds them: empty ones dropped and repeats
/// merged (as Firestore does); `\` and every character outside printable
/// ASCII written as `\u{…}`, so that no tag can fake a line, a field or a
/// terminal control; each cut to [`MAX_AUDIT_TAG_CHARS`] (then ending in
/// `…`); at most [`MAX_AUDIT_TAGS`], then one `…N more`.
pub fn request_tags(tags: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    let mut more = 0usize;
    for tag in tags.iter().filter(|t| !t.is_empty()) {
        if !seen.insert(tag.as_str()) {
            continue;
        }
        if kept.len() < MAX_AUDIT_TAGS {
            kept.push(escaped(tag));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        kept.push(format!("{CUT}{more} more"));
    }
    kept
}

fn escaped(tag: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    for c in tag.chars() {
        let piece = match c {
            '\\' => "\\\\".to_owned(),
            ' '..='~' => c.to_string(),
            _ => format!("\\u{{{:x}}}", u32::from(c)),
        };
        if len + piece.len() > MAX_AUDIT_TAG_CHARS {
            out.push(CUT);
            break;
        }
        len += piece.len();
        out.push_str(&piece);
    }
    out
}

/// A plausible record for unit tests; `n` varies the request id.
#[cfg(test)]
pub(crate) fn sample(n: u64) -> AuditRecord {
    AuditRecord {
        access: None,
        time: "2026-11-28T13:00:00Z".into(),
        request_id: format!("req-{n}"),
        client_ip: "127.0.0.1".into(),
        tls: Some("TLSv1.3".into()),
        http_version: "HTTP/2".into(),
        principal: Some(AuditPrincipal::new(
            "https://issuer.example",
            "user:default/ada",
            Some("ada@example.com"),
            &["group:default/team-a"],
        )),
        http_method: "GET".into(),
        rpc: Some("get".into()),
        database: Some("projects/p/databases/(default)".into()),
        targets: vec![AuditTarget {
            resource: "/teams/a/deployments/d1".into(),
            access: "get".into(),
            allowed: true,
            rule: Some("team-deployments".into()),
            why: Some("allowed".into()),
            grant: None,
        }],
        targets_summary: None,
        decision: Outcome::Allow,
        reason: None,
        upstream_account: Some("reader@p.iam.gserviceaccount.com".into()),
        shadow_decision: None,
        shadow_rule: None,
        upstream_status: Some(200),
        upstream_grpc_status: None,
        status: 200,
        bytes_in: 0,
        bytes_out: 512,
        duration_ms: 3.25,
        client_disconnected: false,
        traceparent: None,
        request_tags: vec!["checkout".into()],
        stored_reads: 0,
        masked_fields: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tags_are_escaped_and_bounded() {
        let tags: Vec<String> = [
            "checkout",
            "",
            "checkout",
            "quote\"and\\back",
            "line\nbreak\u{1b}[31m",
            "caf\u{e9} \u{202e}rtl",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        assert_eq!(
            request_tags(&tags),
            [
                "checkout",
                "quote\"and\\\\back",
                "line\\u{a}break\\u{1b}[31m",
                "caf\\u{e9} \\u{202e}rtl",
            ]
        );
        let long = request_tags(&["x".repeat(1000)]);
        assert_eq!(long[0].chars().count(), MAX_AUDIT_TAG_CHARS + 1);
        assert!(long[0].ends_with(CUT));
        // An escape is never cut in half.
        let escapes = request_tags(&["\u{e9}".repeat(100)]);
        assert!(escapes[0].ends_with("}…"), "{}", escapes[0]);
        // A client's own `…` is escaped, so only firegate writes one.
        assert_eq!(request_tags(&["…3 more".into()]), ["\\u{2026}3 more"]);
        let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let kept = request_tags(&many);
        assert_eq!(kept.len(), MAX_AUDIT_TAGS + 1);
        assert_eq!(kept[MAX_AUDIT_TAGS], "…84 more");
    }
}
