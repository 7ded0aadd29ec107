//! `Principal`: the only thing the rest of the pipeline knows of a caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 over everything a policy may read of a principal.
pub type Fingerprint = [u8; 32];

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The token's claims, for policy conditions (time-varying claims such
    /// as `exp`, `iat`, `nbf`, `jti` are removed so that the fingerprint is
    /// stable across a caller's token refreshes).
    pub claims: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    fingerprint: Fingerprint,
    /// Issuer and subject, NUL-separated: who the caller is, whatever its
    /// groups or claims (per-principal fairness counts on it).
    #[serde(skip)]
    identity: Arc<str>,
    /// What a later layer derived from this principal, kept with it (a
    /// verified principal is shared by every request of its token).
    #[serde(skip)]
    memo: Memo,
}

/// One `u32` derived from a principal, under the `u32` key of what it was
/// derived against: the catalog keeps the caller's id in the index of one
/// catalog view here, keyed by that view. Key and value share one atomic
/// word, so a reader never sees one without the other.
#[derive(Debug, Default)]
pub struct Memo(AtomicU64);

impl Memo {
    /// The value kept under `key`; key 0 is never kept.
    pub fn get(&self, key: u32) -> Option<u32> {
        let word = self.0.load(Ordering::Relaxed);
        (key != 0 && (word >> 32) as u32 == key).then_some(word as u32)
    }

    /// Keep `value` under `key`, replacing what was kept (key 0: nothing).
    pub fn set(&self, key: u32, value: u32) {
        if key != 0 {
            self.0
                .store(u64::from(key) << 32 | u64::from(value), Ordering::Relaxed);
        }
    }
}

/// A copy derives afresh.
impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

/// A memo is no part of who the caller is.
impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Principal {
    pub fn new(
        issuer: String,
        subject: String,
        email: Option<String>,
        groups: Vec<String>,
        mut claims: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        for volatile in ["exp", "iat", "nbf", "jti", "auth_time"] {
            claims.remove(volatile);
        }
        let identity = format!("{issuer}\u{0}{subject}").into();
        let mut principal = Principal {
            issuer,
            subject,
            email,
            groups,
            claims,
            fingerprint: [0; 32],
            identity,
            memo: Memo::default(),
        };
        principal.fingerprint = principal.compute_fingerprint();
        principal
    }

    /// Identifies everything a policy decision may depend on; decision and
    /// transaction bindings key on it.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Issuer and subject, NUL-separated (neither may hold a NUL: both
    /// come from a verified token's JSON strings or an introspection answer).
    pub fn identity(&self) -> &Arc<str> {
        &self.identity
    }

    /// What a later layer derived from this principal (see [`Memo`]).
    pub fn memo(&self) -> &Memo {
        &self.memo
    }

    /// A canonical, length-prefixed encoding of every field, hashed. No
    /// step can fail, so no fallback can ever make two principals equal;
    /// object keys are sorted here rather than trusting the map's order
    /// (a dependency enabling serde_json's `preserve_order` would change it).
    fn compute_fingerprint(&self) -> Fingerprint {
        let mut hash = Sha256::new();
        hash.update(b"firegate/principal/v1\0");
        put_str(&mut hash, &self.issuer);
        put_str(&mut hash, &self.subject);
        match &self.email {
            Some(email) => {
                hash.update([1]);
                put_str(&mut hash, email);
            }
            None => hash.update([0]),
        }
        put_len(&mut hash, self.groups.len());
        for group in &self.groups {
            put_str(&mut hash, group);
        }
        put_object(&mut hash, &self.claims);
        hash.finalize().into()
    }
}

fn put_len(hash: &mut Sha256, n: usize) {
    hash.update((n as u64).to_be_bytes());
}

fn put_str(hash: &mut Sha256, s: &str) {
    put_len(hash, s.len());
    hash.update(s.as_bytes());
}

fn put_object(hash: &mut Sha256, map: &serde_json::Map<String, Value>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    hash.update([b'o']);
    put_len(hash, keys.len());
    for key in keys {
        put_str(hash, key);
        put_value(hash, &map[key]);
    }
}

fn put_value(hash: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hash.update([b'n']),
        Value::Bool(b) => hash.update([b'b', u8::from(*b)]),
        Value::Number(n) => {
            hash.update([b'#']);
            put_str(hash, &n.to_string());
        }
        Value::String(s) => {
            hash.update([b's']);
            put_str(hash, s);
        }
        Value::Array(items) => {
            hash.update([b'a']);
            put_len(hash, items.len());
            for item in items {
                put_value(hash, item);
            }
        }
        Value::Object(map) => put_object(hash, map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(groups: &[&str], exp: u64) -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("exp".into(), exp.into());
        claims.insert("team".into(), "a".into());
        Principal::new(
            "https://issuer".into(),
            "alice".into(),
            Some("alice@example.com".into()),
            groups.iter().map(|g| g.to_string()).collect(),
            claims,
        )
    }

    #[test]
    fn a_memo_answers_its_own_key_only() {
        let p = principal(&["a"], 1);
        assert_eq!(p.memo().get(7), None);
        p.memo().set(7, 42);
        assert_eq!(p.memo().get(7), Some(42));
        assert_eq!(p.memo().get(8), None, "another key");
        p.memo().set(0, 5);
        assert_eq!(p.memo().get(0), None, "key 0 is never kept");
        assert_eq!(p.memo().get(7), Some(42));
        p.memo().set(u32::MAX, u32::MAX);
        assert_eq!(p.memo().get(u32::MAX), Some(u32::MAX));
        assert_eq!(p.memo().get(7), None, "one value at a time");
        let copy = p.clone();
        assert_eq!(copy.memo().get(u32::MAX), None, "a copy derives afresh");
        assert_eq!(copy, p, "the memo is no part of who the caller is");
    }

    #[test]
    fn fingerprint_ignores_token_lifetime() {
        assert_eq!(
            principal(&["a"], 1).fingerprint(),
            principal(&["a"], 2).fingerprint()
        );
    }

    #[test]
    fn claim_order_does_not_change_the_fingerprint() {
        let ordered: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"a": 1, "b": {"x": [1, 2], "y": null}}"#).unwrap();
        let mut reversed = serde_json::Map::new();
        let mut inner = serde_json::Map::new();
        inner.insert("y".into(), Value::Null);
        inner.insert("x".into(), serde_json::json!([1, 2]));
        reversed.insert("b".into(), Value::Object(inner));
        reversed.insert("a".into(), 1.into());
        let with = |claims| Principal::new("i".into(), "s".into(), None, vec![], claims);
        assert_eq!(with(ordered).fingerprint(), with(reversed).fingerprint());
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let p = |issuer: &str, subject: &str, email: Option<&str>, groups: &[&str]| {
            Principal::new(
                issuer.into(),
                subject.into(),
                email.map(str::to_owned),
                groups.iter().map(|g| g.to_string()).collect(),
                serde_json::Map::new(),
            )
        };
        let all = [
            p("ab", "c", None, &[]),
            p("a", "bc", None, &[]),
            p("a", "bc", Some(""), &[]),
            p("a", "bc", None, &[""]),
            p("a", "bc", None, &["", ""]),
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x.fingerprint(), y.fingerprint(), "{x:?} ~ {y:?}");
            }
        }
    }

    #[test]
    fn fingerprint_changes_with_groups() {
        assert_ne!(
            principal(&["a"], 1).fingerprint(),
            principal(&["b"], 1).fingerprint()
        );
    }
}
