//! Rewrites of a buffered JSON body by byte range, applied in one pass: the
//! places come from classify (a transaction id, each write's precondition),
//! so nothing is parsed again to rewrite them.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Replacements of ranges of one body.
#[derive(Debug, Default)]
pub struct Splices(Vec<(Range<usize>, String)>);

impl Splices {
    /// `text` in place of the bytes at `range`.
    pub fn replace(&mut self, range: Range<usize>, text: String) {
        self.0.push((range, text));
    }

    /// `text` inserted at `at`.
    pub fn insert(&mut self, at: usize, text: String) {
        self.0.push((at..at, text));
    }

    /// A member inserted first into the object that opens at `open` (the
    /// offset of its `{`), comma-separated from what follows when anything
    /// does.
    pub fn insert_member(&mut self, body: &[u8], open: usize, member: &str) {
        let at = open + 1;
        let empty = body
            .get(at..)
            .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()))
            .is_none_or(|b| *b == b'}');
        let separator = if empty { "" } else { "," };
        self.insert(at, format!("{member}{separator}"));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The body with every splice applied; `None` when two overlap or one
    /// lies outside the body (the request is then refused, never forwarded
    /// half-rewritten).
    pub fn apply(mut self, body: &Bytes) -> Option<Bytes> {
        if self.0.is_empty() {
            return Some(body.clone());
        }
        self.0.sort_by_key(|(range, _)| (range.start, range.end));
        let added: usize = self.0.iter().map(|(_, text)| text.len()).sum();
        let mut out = BytesMut::with_capacity(body.len() + added);
        let mut at = 0;
        for (range, text) in &self.0 {
            if range.start < at || range.end < range.start {
                return None;
            }
            out.extend_from_slice(body.get(at..range.start)?);
            out.extend_from_slice(text.as_bytes());
            at = range.end;
        }
        out.extend_from_slice(body.get(at..)?);
        Some(out.freeze())
    }
}

/// The offset of the `{` that opens the top-level object.
pub fn top_object(body: &[u8]) -> Option<usize> {
    let at = body.iter().position(|b| !b.is_ascii_whitespace())?;
    (body[at] == b'{').then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_apply_in_order_of_place_whatever_order_they_came_in() {
        let body = Bytes::from_static(br#"{"a":1,"t":"x","w":[{"u":2}]}"#);
        let mut s = Splices::default();
        s.replace(11..14, r#""y""#.into());
        s.insert_member(&body, 0, r#""r":"t""#);
        s.insert_member(&body, 20, r#""c":{}"#);
        assert_eq!(
            s.apply(&body).unwrap(),
            r#"{"r":"t","a":1,"t":"y","w":[{"c":{},"u":2}]}"#
        );
    }

    #[test]
    fn an_empty_object_gets_no_comma_and_overlaps_are_refused() {
        let body = Bytes::from_static(b" { } ");
        let mut s = Splices::default();
        s.insert_member(&body, top_object(&body).unwrap(), r#""r":1"#);
        assert_eq!(s.apply(&body).unwrap(), r#" {"r":1 } "#);
        let mut s = Splices::default();
        s.replace(0..3, "x".into());
        s.replace(2..4, "y".into());
        assert_eq!(s.apply(&body), None);
        let mut s = Splices::default();
        s.replace(3..9, "x".into());
        assert_eq!(s.apply(&body), None);
    }
}
