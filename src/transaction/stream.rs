//! The response-side seal as a streaming transform: the JSON passes through
//! chunk by chunk, and only the `transaction` member of each top-level
//! element (or of the top-level object, for `beginTransaction`) is held back
//! and rewritten.

use bytes::Bytes;

use super::Sealing;
use crate::body::{BoxError, Rewrite};

/// Longest key or transaction string held back while scanning; upstream ids
/// are a few dozen bytes.
const MAX_HELD: usize = 4096;

/// Why a response could not be sealed: before its head is sent (the client
/// gets an error instead), or mid-stream (the stream then fails: fail
/// closed). Either way no unsealed id reaches the client.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the response is compressed and cannot be rewritten")]
    EncodedResponse,
    #[error("transaction id in the response is not base64")]
    BadUpstreamId,
    #[error("string member too long to hold")]
    Oversized,
    #[error("response ended inside a string")]
    Truncated,
}

impl SealError {
    /// A short, stable reason for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            SealError::EncodedResponse => "response_not_sealable",
            SealError::BadUpstreamId => "response_transaction_not_base64",
            SealError::Oversized => "response_member_too_long",
            SealError::Truncated => "response_truncated",
        }
    }
}

/// Seals every element-level `transaction` of a JSON answer as it
/// streams: the [`Rewrite`] of the REST wire.
pub struct SealStream {
    scanner: Scanner,
    sealing: Sealing,
}

impl SealStream {
    pub fn new(sealing: Sealing) -> Self {
        SealStream {
            scanner: Scanner::default(),
            sealing,
        }
    }
}

impl Rewrite for SealStream {
    fn data(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        let sealing = &self.sealing;
        let out = self.scanner.feed(&data, |id| sealing.seal_text(id))?;
        // Empty: everything was held back; wait for more.
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }

    fn end(&mut self) -> Result<(), BoxError> {
        if self.scanner.holding() {
            return Err(SealError::Truncated.into());
        }
        Ok(())
    }
}

/// An incremental JSON scanner that knows only nesting and strings.
#[derive(Default)]
pub struct Scanner {
    depth: u32,
    /// 1 when the top level is an object, 2 when it is an array of objects.
    element_depth: Option<u32>,
    in_string: bool,
    escaped: bool,
    /// At element depth: the next string is a key.
    expect_key: bool,
    /// The last key at element depth was `transaction`.
    after_transaction_key: bool,
    /// Holding back the current string; `Some(true)` for a key.
    holding_key: Option<bool>,
    held: Vec<u8>,
}

impl Scanner {
    pub fn holding(&self) -> bool {
        self.holding_key.is_some()
    }

    /// Scan one chunk; returns what can be sent on now.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut seal: impl FnMut(&str) -> Option<String>,
    ) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        for &b in chunk {
            if self.in_string {
                self.string_byte(b, &mut out, &mut seal)?;
                continue;
            }
            let at_element = Some(self.depth) == self.element_depth;
            match b {
                b'"' => {
                    self.in_string = true;
                    let hold_key = at_element && self.expect_key;
                    let hold_value = at_element && !self.expect_key && self.after_transaction_key;
                    if hold_key || hold_value {
                        self.holding_key = Some(hold_key);
                        self.held.clear();
                        self.held.push(b);
                    } else {
                        out.push(b);
                    }
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.element_depth.is_none() {
                        self.element_depth = Some(if b == b'[' { 2 } else { 1 });
                    }
                    if Some(self.depth) == self.element_depth {
                        self.expect_key = b == b'{';
                        self.after_transaction_key = false;
                    }
                    out.push(b);
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    out.push(b);
                }
                b':' if at_element => {
                    self.expect_key = false;
                    out.push(b);
                }
                b',' if at_element => {
                    self.expect_key = true;
                    self.after_transaction_key = false;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
        Ok(out)
    }

    fn string_byte(
        &mut self,
        b: u8,
        out: &mut Vec<u8>,
        seal: &mut impl FnMut(&str) -> Option<String>,
    ) -> Result<(), SealError> {
        if self.holding_key.is_some() {
            if self.held.len() >= MAX_HELD {
                return Err(SealError::Oversized);
            }
            self.held.push(b);
        } else {
            out.push(b);
        }
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            if let Some(is_key) = self.holding_key.take() {
                self.release(is_key, out, seal)?;
            }
        }
        Ok(())
    }

    fn release(
        &mut self,
        is_key: bool,
        out: &mut Vec<u8>,
        seal: &mut impl FnMut(&str) -> Option<String>,
    ) -> Result<(), SealError> {
        if is_key {
            let key: Option<String> = serde_json::from_slice(&self.held).ok();
            self.after_transaction_key = key.as_deref() == Some("transaction");
            out.extend_from_slice(&self.held);
            return Ok(());
        }
        self.after_transaction_key = false;
        let upstream: String =
            serde_json::from_slice(&self.held).map_err(|_| SealError::BadUpstreamId)?;
        let sealed = seal(&upstream).ok_or(SealError::BadUpstreamId)?;
        out.push(b'"');
        out.extend_from_slice(sealed.as_bytes());
        out.push(b'"');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> String {
        let mut scanner = Scanner::default();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(
                scanner
                    .feed(chunk.as_bytes(), |id| Some(format!("SEALED({id})")))
                    .unwrap(),
            );
        }
        assert!(!scanner.holding());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn seals_the_transaction_of_begin_transaction() {
        assert_eq!(
            run(&[r#"{"transaction": "abc="}"#]),
            r#"{"transaction": "SEALED(abc=)"}"#
        );
    }

    #[test]
    fn seals_only_element_level_transactions_in_a_stream() {
        let input = r#"[{"transaction":"dHg=","document":{"name":"n","fields":{"transaction":{"stringValue":"x"}}},"readTime":"t"}
,{"document":{"fields":{"transaction":{"stringValue":"y"}}},"readTime":"t"}]"#;
        let expected = input.replacen(r#""dHg=""#, r#""SEALED(dHg=)""#, 1);
        assert_eq!(run(&[input]), expected);
    }

    #[test]
    fn works_whatever_the_chunk_boundaries() {
        let input = r#"[{"found":{"name":"a\"b"},"transaction":"dHg\/=","readTime":"t"}]"#;
        let expected =
            r#"[{"found":{"name":"a\"b"},"transaction":"SEALED(dHg/=)","readTime":"t"}]"#;
        for split in 0..input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(run(&[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<String> = input.chars().map(String::from).collect();
        let refs: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(run(&refs), expected);
    }

    #[test]
    fn a_value_equal_to_transaction_is_not_a_key() {
        let input = r#"{"missing":"transaction","readTime":"x"}"#;
        assert_eq!(run(&[input]), input);
    }

    #[test]
    fn errors_pass_through() {
        let input = r#"[{"error":{"code":400,"message":"m","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(run(&[input]), input);
    }

    #[test]
    fn unsealable_id_fails_the_stream() {
        let mut scanner = Scanner::default();
        let err = scanner
            .feed(br#"{"transaction":"x"}"#, |_| None)
            .unwrap_err();
        assert!(matches!(err, SealError::BadUpstreamId));
    }
}
