//! The hash chain: a canonical form for records, and the `seq`/`prev`/`hash`
//! fields that link each line to the one before it.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AuditPrincipal, AuditRecord, Outcome};

/// `prev` of the first record of a chain: the explicit "new chain" marker.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a record's `hash` is computed from its canonical form.
#[derive(Clone)]
pub enum Hasher {
    /// Plain SHA-256: detects edits by anyone who cannot recompute the rest
    /// of the chain.
    Sha256,
    /// HMAC-SHA256 with a secret key: unforgeable without the key.
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Hasher {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hasher::Sha256 => f.write_str("Sha256"),
            Hasher::Hmac(_) => f.write_str("Hmac(<redacted>)"),
        }
    }
}

impl Hasher {
    /// Lower-case hex digest of `canonical`.
    pub fn digest(&self, canonical: &[u8]) -> String {
        let bytes: [u8; 32] = match self {
            Hasher::Sha256 => Sha256::digest(canonical).into(),
            Hasher::Hmac(key) => match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(canonical);
                    mac.finalize().into_bytes().into()
                }
                // HMAC accepts keys of any length; this arm cannot be taken.
                Err(_) => [0; 32],
            },
        };
        crate::crypto::hex_lower(&bytes)
    }

    /// The hash a line's fields (everything but `hash`) should carry.
    pub fn hash_fields(&self, fields: &Map<String, Value>) -> Result<String, serde_json::Error> {
        let mut canonical_bytes = Vec::with_capacity(1024);
        canonical_object(fields, &mut canonical_bytes)?;
        Ok(self.digest(&canonical_bytes))
    }
}

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings and numbers as serde_json writes them. Reformatting a line (key
/// order, spacing) keeps its hash; changing any value does not.
pub fn canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out)?;
            }
            out.push(b']');
            Ok(())
        }
        scalar => serde_json::to_writer(&mut *out, scalar),
    }
}

fn canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        canonical(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// One record ready to write: the line (with its newline) and its hash.
pub struct Sealed {
    pub line: Vec<u8>,
    pub hash: String,
}

/// Where the chain stands: the next record's `seq` and `prev`.
#[derive(Debug, Clone)]
pub struct Chain {
    hasher: Hasher,
    seq: u64,
    prev: String,
}

/// Why a chain could not continue from what is already in the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewChain {
    /// The sink was empty.
    Empty,
    /// The last line is not a record whose hash checks out with this key.
    UnverifiableTail,
}

impl Chain {
    /// Continue after `last_line` (the last complete line already in the
    /// sink) when it is a record this hasher can verify; otherwise start a
    /// new chain and say why.
    pub fn resume(hasher: Hasher, last_line: Option<&[u8]>) -> (Chain, Option<NewChain>) {
        let fresh = |hasher: Hasher| Chain {
            hasher,
            seq: 0,
            prev: GENESIS.to_owned(),
        };
        let Some(line) = last_line else {
            return (fresh(hasher), Some(NewChain::Empty));
        };
        match ChainFields::check(line, &hasher) {
            Some(last) if last.hash_ok => {
                let chain = Chain {
                    hasher,
                    seq: last.seq.saturating_add(1),
                    prev: last.hash,
                };
                (chain, None)
            }
            _ => (fresh(hasher), Some(NewChain::UnverifiableTail)),
        }
    }

    /// The `seq` the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Serialize `record` with the next `seq` and `prev`, and hash it. The
    /// chain moves on only when [`Chain::advance`] is called, after the line
    /// is safely written.
    pub fn seal(&self, record: &AuditRecord) -> Result<Sealed, serde_json::Error> {
        // The line is the canonical form itself, with `hash` appended: one
        // serialization, no intermediate `Value` (the writer's hot path).
        let mut line = Vec::with_capacity(2048);
        write_canonical(record, self.seq, &self.prev, &mut line)?;
        let hash = self.hasher.digest(&line);
        if line.last() == Some(&b'}') {
            line.pop();
        }
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"\"}\n");
        Ok(Sealed { line, hash })
    }

    /// The sealed record was written: the next one links to it.
    pub fn advance(&mut self, sealed: Sealed) {
        self.seq = self.seq.saturating_add(1);
        self.prev = sealed.hash;
    }
}

/// The record with its chain fields as the canonical form: serde_json's
/// compact output with every key sorted, written directly (the audit
/// writer's hot path, where serde's field-by-field machinery cost more than
/// the hash). Strings are escaped exactly as serde_json escapes them; the one
/// float and the rare summary go through serde_json. The record is
/// destructured, so a new field is a compile error here; the test
/// `seal_matches_the_generic_canonical_form` fails if one is out of order.
fn write_canonical(
    record: &AuditRecord,
    seq: u64,
    prev: &str,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let &AuditRecord {
        ref time,
        ref request_id,
        ref client_ip,
        ref tls,
        ref http_version,
        ref principal,
        ref http_method,
        ref rpc,
        ref database,
        ref targets,
        ref targets_summary,
        decision,
        ref reason,
        ref upstream_account,
        shadow_decision,
        ref shadow_rule,
        upstream_status,
        upstream_grpc_status,
        status,
        bytes_in,
        bytes_out,
        duration_ms,
        client_disconnected,
        ref traceparent,
        ref request_tags,
        stored_reads,
        masked_fields,
        ref access,
    } = record;
    let mut w = Json { out, first: true };
    if let Some(access) = access {
        w.key("access");
        serde_json::to_writer(&mut *w.out, access)?;
    }
    w.key("bytes_in").u64(bytes_in);
    w.key("bytes_out").u64(bytes_out);
    w.key("client_disconnected").bool(client_disconnected);
    w.key("client_ip").str(client_ip);
    w.key("database").opt_str(database.as_deref());
    w.key("decision").str(decision.as_str());
    w.key("duration_ms");
    serde_json::to_writer(&mut *w.out, &duration_ms)?;
    w.key("http_method").str(http_method);
    w.key("http_version").str(http_version);
    if masked_fields != 0 {
        w.key("masked_fields").u64(masked_fields);
    }
    w.key("prev").str(prev);
    w.key("principal");
    match principal {
        Some(AuditPrincipal(p)) => {
            let mut o = w.object();
            o.key("email").opt_str(p.email.as_deref());
            o.key("groups").strs(&p.groups);
            o.key("issuer").str(&p.issuer);
            o.key("subject").str(&p.subject);
            o.end();
        }
        None => w.null(),
    }
    w.key("reason").opt_str(reason.as_deref());
    w.key("request_id").str(request_id);
    w.key("request_tags").strs(request_tags);
    w.key("rpc").opt_str(rpc.as_deref());
    w.key("seq").u64(seq);
    w.key("shadow_decision")
        .opt_str(shadow_decision.map(Outcome::as_str));
    w.key("shadow_rule").opt_str(shadow_rule.as_deref());
    w.key("status").u64(status.into());
    if stored_reads != 0 {
        w.key("stored_reads").u64(stored_reads);
    }
    w.key("targets");
    w.out.push(b'[');
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            w.out.push(b',');
        }
        let mut o = w.object();
        o.key("access").str(&t.access);
        o.key("allowed").bool(t.allowed);
        if let Some(grant) = &t.grant {
            o.key("grant").str(grant);
        }
        o.key("resource").str(&t.resource);
        o.key("rule").opt_str(t.rule.as_deref());
        o.key("why").opt_str(t.why.as_deref());
        o.end();
    }
    w.out.push(b']');
    w.key("targets_summary");
    serde_json::to_writer(&mut *w.out, targets_summary)?;
    w.key("time").str(time);
    w.key("tls").opt_str(tls.as_deref());
    w.key("traceparent").opt_str(traceparent.as_deref());
    w.key("upstream_account")
        .opt_str(upstream_account.as_deref());
    if let Some(status) = upstream_grpc_status {
        w.key("upstream_grpc_status").u64(status.into());
    }
    w.key("upstream_status");
    match upstream_status {
        Some(status) => w.u64(status.into()),
        None => w.null(),
    }
    w.end();
    Ok(())
}

/// One JSON object being written compactly.
struct Json<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Json<'o> {
    /// `"name":`, after `{` or `,`.
    fn key(&mut self, name: &'static str) -> &mut Self {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self
    }

    /// A nested object, written into the same buffer.
    fn object(&mut self) -> Json<'_> {
        Json {
            out: self.out,
            first: true,
        }
    }

    fn end(self) {
        if self.first {
            self.out.push(b'{');
        }
        self.out.push(b'}');
    }

    fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    fn bool(&mut self, b: bool) {
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }

    fn u64(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[i..]);
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }

    fn strs(&mut self, items: &[String]) {
        self.out.push(b'[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.str(s);
        }
        self.out.push(b']');
    }

    /// A string escaped as serde_json escapes it: `"`, `\\` and the control
    /// characters below U+0020 (the short forms where JSON has them, else
    /// `\u00xx`), everything else as is. Eight bytes are checked at a time
    /// (almost every string in a record needs no escape at all).
    fn str(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = s.as_bytes();
        self.out.push(b'"');
        let mut start = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if let Some(word) = bytes
                .get(i..i + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                && !needs_escape(u64::from_le_bytes(word))
            {
                i += 8;
                continue;
            }
            i += 1;
            let short = match b {
                b'"' => b'"',
                b'\\' => b'\\',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x08 => b'b',
                0x0c => b'f',
                0x00..=0x1f => 0,
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[start..i - 1]);
            start = i;
            if short == 0 {
                self.out.extend_from_slice(b"\\u00");
                self.out.push(HEX[usize::from(b >> 4)]);
                self.out.push(HEX[usize::from(b & 0xf)]);
            } else {
                self.out.push(b'\\');
                self.out.push(short);
            }
        }
        self.out.extend_from_slice(&bytes[start..]);
        self.out.push(b'"');
    }
}

/// Whether any of the eight bytes of `word` is below 0x20, `"` or `\\`.
/// "Bit Twiddling Hacks"' `hasless`: subtracting `n` from every byte sets
/// the top bit of each byte below `n` (a borrow from a lower byte can set
/// more, but only when a lower byte is below `n` already); bytes from 0x80
/// up are masked off by `!w`.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const TOPS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & TOPS;
    let zero = |w: u64| below(w, 1);
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    below(word, 0x20) | quote | backslash != 0
}

/// The chain fields of one line, and whether its hash checks out.
#[derive(Debug, Clone)]
pub struct ChainFields {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    pub hash_ok: bool,
}

impl ChainFields {
    /// Parse a line; `None` when it is not a JSON object with `seq`, `prev`
    /// and `hash`.
    pub fn check(line: &[u8], hasher: &Hasher) -> Option<ChainFields> {
        let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(line) else {
            return None;
        };
        let hash = match fields.remove("hash") {
            Some(Value::String(h)) => h,
            _ => return None,
        };
        let seq = fields.get("seq").and_then(Value::as_u64)?;
        let prev = fields.get("prev").and_then(Value::as_str)?.to_owned();
        let hash_ok = hasher.hash_fields(&fields).is_ok_and(|h| h == hash);
        Some(ChainFields {
            seq,
            prev,
            hash,
            hash_ok,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::TargetsSummary;
    use crate::audit::record::sample;

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        let value: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#)
            .expect("valid json");
        let mut out = Vec::new();
        canonical(&value, &mut out).expect("canonical");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    /// The fast path (`write_canonical`) and the generic form `verify` uses agree
    /// byte for byte, with every optional field set and unset.
    /// The word-at-a-time check agrees with the byte-at-a-time definition
    /// for every byte at every position, among bytes that need no escape.
    #[test]
    fn needs_escape_finds_exactly_the_escaped_bytes() {
        for filler in [b'a', 0xff, 0x20, 0x80] {
            for b in 0..=255u8 {
                for at in 0..8 {
                    let mut word = [filler; 8];
                    word[at] = b;
                    let expected = b < 0x20 || b == b'"' || b == b'\\';
                    assert_eq!(
                        needs_escape(u64::from_le_bytes(word)),
                        expected,
                        "byte {b:#04x} at {at} among {filler:#04x}"
                    );
                }
            }
        }
    }

    #[test]
    fn seal_matches_the_generic_canonical_form() {
        let full = sample(3);
        let mut empty = sample(4);
        empty.principal = None;
        empty.tls = None;
        empty.rpc = None;
        empty.database = None;
        empty.targets.clear();
        empty.reason = Some("token_expired".into());
        empty.upstream_account = None;
        empty.upstream_status = None;
        let mut odd = sample(5);
        odd.principal = Some(AuditPrincipal::new(
            "https://issuer.example",
            "quote\" and \u{e9}\u{1f600} and \u{1}",
            None,
            &[],
        ));
        odd.duration_ms = 1e-7;
        // Every escape serde_json writes: the short forms and `\u00xx`.
        odd.reason = Some("tab\t nl\n cr\r bs\\ bell\u{7} b\u{8} f\u{c} us\u{1f} del\u{7f}".into());
        odd.request_tags = vec!["a\"b".into(), String::new()];
        odd.targets_summary = Some(TargetsSummary {
            by_access: [("get".to_owned(), Default::default())].into(),
            count: 9,
            digest: "d".repeat(64),
            listed: 1,
        });
        // The optional fields serde skips when unset, set.
        let mut grpc = sample(6);
        grpc.stored_reads = 3;
        grpc.masked_fields = 2;
        grpc.upstream_grpc_status = Some(7);
        // A chain well under way: `seq` and `prev` are not the genesis ones.
        let (mut later, _) = Chain::resume(Hasher::Sha256, None);
        later.seq = 1_234_567;
        later.prev = "ab".repeat(32);
        let fresh = || Chain::resume(Hasher::Sha256, None).0;
        for (chain, record) in [
            (fresh(), full),
            (fresh(), empty),
            (fresh(), odd),
            (fresh(), grpc.clone()),
            (later, grpc),
        ] {
            let sealed = chain.seal(&record).expect("seal");
            let mut value = serde_json::to_value(&record).expect("value");
            let fields = value.as_object_mut().expect("object");
            fields.insert("seq".into(), Value::from(chain.seq));
            fields.insert("prev".into(), Value::from(chain.prev.as_str()));
            let mut generic = Vec::new();
            canonical(&value, &mut generic).expect("canonical");
            let line = String::from_utf8_lossy(&sealed.line);
            let expected = format!(
                "{},\"hash\":\"{}\"}}\n",
                String::from_utf8_lossy(&generic[..generic.len() - 1]),
                sealed.hash
            );
            assert_eq!(line, expected);
            assert_eq!(sealed.hash, Hasher::Sha256.digest(&generic));
        }
    }

    #[test]
    fn sealed_line_verifies_and_links() {
        let (mut chain, why) = Chain::resume(Hasher::Sha256, None);
        assert_eq!(why, Some(NewChain::Empty));
        let first = chain.seal(&sample(1)).expect("seal");
        let first_hash = first.hash.clone();
        let checked = ChainFields::check(&first.line, &Hasher::Sha256).expect("parse");
        assert!(checked.hash_ok);
        assert_eq!((checked.seq, checked.prev.as_str()), (0, GENESIS));
        chain.advance(first);
        let second = chain.seal(&sample(2)).expect("seal");
        let checked = ChainFields::check(&second.line, &Hasher::Sha256).expect("parse");
        assert!(checked.hash_ok);
        assert_eq!((checked.seq, checked.prev), (1, first_hash));
    }

    #[test]
    fn reformatting_keeps_the_hash_and_editing_breaks_it() {
        let (chain, _) = Chain::resume(Hasher::Sha256, None);
        let sealed = chain.seal(&sample(7)).expect("seal");
        let value: Value = serde_json::from_slice(&sealed.line).expect("json");
        let pretty = serde_json::to_vec_pretty(&value).expect("pretty");
        assert!(
            ChainFields::check(&pretty, &Hasher::Sha256)
                .expect("parse")
                .hash_ok
        );
        let edited =
            String::from_utf8_lossy(&sealed.line).replace("\"status\":200", "\"status\":201");
        assert_ne!(edited.as_bytes(), sealed.line.as_slice());
        assert!(
            !ChainFields::check(edited.as_bytes(), &Hasher::Sha256)
                .expect("parse")
                .hash_ok
        );
    }

    #[test]
    fn hmac_and_sha256_disagree_and_keys_matter() {
        let (chain, _) = Chain::resume(Hasher::Hmac(b"0123456789abcdef".to_vec()), None);
        let sealed = chain.seal(&sample(1)).expect("seal");
        let with = |h: Hasher| ChainFields::check(&sealed.line, &h).expect("parse").hash_ok;
        assert!(with(Hasher::Hmac(b"0123456789abcdef".to_vec())));
        assert!(!with(Hasher::Hmac(b"0123456789abcdeX".to_vec())));
        assert!(!with(Hasher::Sha256));
    }

    #[test]
    fn resume_continues_after_a_valid_tail_and_restarts_otherwise() {
        let (mut chain, _) = Chain::resume(Hasher::Sha256, None);
        let sealed = chain.seal(&sample(1)).expect("seal");
        let line = sealed.line.clone();
        let hash = sealed.hash.clone();
        chain.advance(sealed);
        let (resumed, why) = Chain::resume(Hasher::Sha256, Some(&line));
        assert_eq!(why, None);
        assert_eq!((resumed.seq, resumed.prev.as_str()), (1, hash.as_str()));
        let (restarted, why) = Chain::resume(Hasher::Sha256, Some(b"{\"half\":"));
        assert_eq!(why, Some(NewChain::UnverifiableTail));
        assert_eq!((restarted.seq, restarted.prev.as_str()), (0, GENESIS));
    }
}
