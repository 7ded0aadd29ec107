//! Field masks on the REST wire's answers, as they stream: the answer is
//! cut into its documents (a `get`'s one document, a `list`'s `documents[]`,
//! each element of a `batchGet` or `runQuery` array), each held only while
//! it arrives (bounded), its masked fields removed, and sent on. Everything
//! between documents passes through untouched; so does every member of a
//! document the mask does not reach (copied as raw text, never re-encoded).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::body::{BoxError, Rewrite};
use crate::model::Method;
use crate::model::mask::{DocumentMasks, FieldMask, Hidden};

/// Why an answer could not be masked; the stream fails (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("a document in the response is over {0} bytes")]
    Oversized(usize),
    #[error("a document in the response is not the JSON expected")]
    Malformed,
    #[error("the response ended inside a document")]
    Truncated,
}

impl MaskError {
    /// A short, stable reason for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            MaskError::Oversized(_) => "response_document_too_large",
            MaskError::Malformed => "response_not_maskable",
            MaskError::Truncated => "response_truncated",
        }
    }
}

/// Where the documents sit in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The whole answer is one `Document` (`get`, and the document a
    /// `patch` or `createDocument` answers with).
    Whole,
    /// A `{"documents": [Document, …], …}` object (`list`).
    Listed,
    /// An array of results, each holding a document under `found`
    /// (`batchGet`) or `document` (`runQuery`).
    Results,
}

impl Layout {
    /// The layout of `method`'s answer, for the methods that return
    /// documents.
    pub fn of(method: Method) -> Option<Layout> {
        match method {
            // A write answers with the document written, whole.
            Method::Get | Method::Patch | Method::CreateDocument => Some(Layout::Whole),
            Method::List => Some(Layout::Listed),
            Method::BatchGet | Method::RunQuery => Some(Layout::Results),
            _ => None,
        }
    }
}

/// The streaming [`Rewrite`] that masks an answer's documents.
pub struct MaskStream {
    cutter: Cutter,
    masks: Arc<DocumentMasks>,
    /// Fields removed so far (for the audit line).
    masked: Arc<AtomicU64>,
    /// The ranges cut out of the unit being masked (kept to reuse its
    /// allocation).
    cut: Vec<(usize, usize)>,
}

impl MaskStream {
    /// `limit`: the most bytes one document may take.
    pub fn new(
        layout: Layout,
        masks: Arc<DocumentMasks>,
        masked: Arc<AtomicU64>,
        limit: usize,
    ) -> MaskStream {
        MaskStream {
            cutter: Cutter::new(layout, limit),
            masks,
            masked,
            cut: Vec::new(),
        }
    }
}

impl Rewrite for MaskStream {
    fn data(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        let mut out = Vec::with_capacity(data.len());
        let layout = self.cutter.layout;
        let masks = &self.masks;
        let cut = &mut self.cut;
        let mut count = 0;
        self.cutter.feed(&data, &mut out, |unit, whole, out| {
            let masked = mask_unit(layout, unit, whole, masks, cut, out)?;
            if let Some((_, n)) = masked {
                count += n;
            }
            Ok(masked.map(|(end, _)| end))
        })?;
        if count > 0 {
            self.masked.fetch_add(count, Ordering::Relaxed);
        }
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }

    fn end(&mut self) -> Result<(), BoxError> {
        if self.cutter.holding || self.cutter.in_string {
            return Err(MaskError::Truncated.into());
        }
        Ok(())
    }
}

/// Mask one unit of `layout` (a document, or a result holding one) in
/// one pass over its bytes: the members on a masked path are descended
/// into, every other value is only skipped (string-aware bracket
/// counting), and the output is the unit minus the masked members, copied
/// raw (never re-encoded).
///
/// `unit` opens with the unit. `whole`: it is exactly the unit (held until
/// complete), and anything wrong with it is an error. Otherwise it is the
/// rest of a chunk, which may hold the whole unit or only its start: a
/// unit that cannot be masked from it is left to be held (`None`),
/// nothing written. Returns where the unit ends and the fields removed.
fn mask_unit(
    layout: Layout,
    unit: &[u8],
    whole: bool,
    masks: &DocumentMasks,
    cut: &mut Vec<(usize, usize)>,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, u64)>, MaskError> {
    cut.clear();
    let mut scan = Scan {
        b: unit,
        cut,
        count: 0,
        single: masks.single(),
    };
    let start = ws(unit, 0);
    let scanned = match layout {
        Layout::Whole | Layout::Listed => scan.document(start, masks),
        Layout::Results => scan.members(start, |scan, key, at| {
            if key_is(key, "found")? || key_is(key, "document")? {
                scan.document(at, masks)
            } else {
                value_end(scan.b, at)
            }
            .map(|end| (end, false))
        }),
    };
    let end = match scanned {
        Ok(end) if !whole || ws(unit, end) == unit.len() => end,
        _ if !whole => return Ok(None),
        _ => return Err(MaskError::Malformed),
    };
    scan.write(end, out);
    Ok(Some((end, scan.count)))
}

/// One unit being masked: the byte ranges cut out of it, in order.
struct Scan<'a, 'c> {
    b: &'a [u8],
    cut: &'c mut Vec<(usize, usize)>,
    count: u64,
    /// The one mask of every document, when no document has its own (a
    /// document's name need not be read then).
    single: Option<Option<&'a FieldMask>>,
}

impl<'a> Scan<'a, '_> {
    /// The unit (up to `end`) without its cut ranges.
    fn write(&mut self, end: usize, out: &mut Vec<u8>) {
        self.cut.sort_unstable();
        let mut from = 0;
        for &(start, stop) in self.cut.iter() {
            out.extend_from_slice(&self.b[from..start]);
            from = stop;
        }
        out.extend_from_slice(&self.b[from..end]);
    }

    /// The object at `at`: `member(scan, key, value_at)` scans each value
    /// (returns where it ends, and whether the member is cut out). A cut
    /// member takes the comma before it; a first kept member after cut
    /// ones loses its own. Returns where the object ends.
    fn members(
        &mut self,
        at: usize,
        mut member: impl FnMut(&mut Self, &'a [u8], usize) -> Result<(usize, bool), MaskError>,
    ) -> Result<usize, MaskError> {
        let b = self.b;
        if b.get(at) != Some(&b'{') {
            return Err(MaskError::Malformed);
        }
        let mut i = ws(b, at + 1);
        if b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        let mut comma: Option<usize> = None;
        let mut kept = false;
        loop {
            let key_at = i;
            let key_end = string_end(b, key_at)?;
            let key = &b[key_at..key_end];
            i = ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return Err(MaskError::Malformed);
            }
            let value_at = ws(b, i + 1);
            let (value_end, cut) = member(self, key, value_at)?;
            if cut {
                self.cut.push((comma.unwrap_or(key_at), value_end));
            } else {
                if let (Some(c), false) = (comma, kept) {
                    self.cut.push((c, c + 1));
                }
                kept = true;
            }
            i = ws(b, value_end);
            match b.get(i) {
                Some(b',') => {
                    comma = Some(i);
                    i = ws(b, i + 1);
                }
                Some(b'}') => return Ok(i + 1),
                _ => return Err(MaskError::Malformed),
            }
        }
    }

    /// One `Document` at `at`, masked by the mask of its `name` (a
    /// document without one cannot be matched to its target: the widest
    /// mask of the answer applies). `fields` is masked as it is met when
    /// `name` came first (Firestore's order), else once the end is known.
    fn document(&mut self, at: usize, masks: &'a DocumentMasks) -> Result<usize, MaskError> {
        let mut name: Option<Option<&FieldMask>> = self.single;
        let mut named = false;
        let mut fields: Option<usize> = None;
        let mut masked = false;
        let end = self.members(at, |scan, key, value| {
            let end = match () {
                _ if key_is(key, "name")? => {
                    if named {
                        return Err(MaskError::Malformed);
                    }
                    named = true;
                    let end = string_end(scan.b, value)?;
                    if scan.single.is_none() {
                        let text: Cow<str> = serde_json::from_slice(&scan.b[value..end])
                            .map_err(|_| MaskError::Malformed)?;
                        name = Some(masks.for_name(&text));
                    }
                    end
                }
                _ if key_is(key, "fields")? => {
                    if fields.is_some() {
                        return Err(MaskError::Malformed);
                    }
                    fields = Some(value);
                    match name {
                        Some(mask) => {
                            masked = true;
                            scan.fields_masked(value, mask)?
                        }
                        None => value_end(scan.b, value)?,
                    }
                }
                _ => value_end(scan.b, value)?,
            };
            Ok((end, false))
        })?;
        if let (Some(value), false) = (fields, masked) {
            let mask = name.unwrap_or_else(|| masks.for_name(""));
            self.fields_masked(value, mask)?;
        }
        Ok(end)
    }

    fn fields_masked(&mut self, at: usize, mask: Option<&FieldMask>) -> Result<usize, MaskError> {
        match mask {
            Some(mask) => self.fields(at, mask),
            None => value_end(self.b, at),
        }
    }

    /// A `fields` map: what `mask` hides cut out, recursively through
    /// `mapValue`s; every other member only skipped.
    fn fields(&mut self, at: usize, mask: &FieldMask) -> Result<usize, MaskError> {
        let everything = mask.hides_everything();
        self.members(at, |scan, key, value| {
            let hidden = if everything {
                Some(Hidden::All)
            } else {
                mask.field(&key_text(key)?)
            };
            match hidden {
                Some(Hidden::All) => {
                    scan.count += 1;
                    Ok((value_end(scan.b, value)?, true))
                }
                Some(Hidden::Below(below)) => Ok((scan.value(value, below)?, false)),
                None => Ok((value_end(scan.b, value)?, false)),
            }
        })
    }

    /// A `Value`: a `mapValue`'s fields masked by `mask`; any other kind
    /// has no fields below it to hide.
    fn value(&mut self, at: usize, mask: &FieldMask) -> Result<usize, MaskError> {
        if self.b.get(at) != Some(&b'{') {
            return Err(MaskError::Malformed);
        }
        self.members(at, |scan, key, value| {
            let end = if key_is(key, "mapValue")? || key_is(key, "map_value")? {
                scan.members(value, |scan, key, value| {
                    let end = if key_is(key, "fields")? {
                        scan.fields(value, mask)?
                    } else {
                        value_end(scan.b, value)?
                    };
                    Ok((end, false))
                })?
            } else {
                value_end(scan.b, value)?
            };
            Ok((end, false))
        })
    }
}

/// Past the whitespace at `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Where the string opening at `at` ends (past its closing quote).
fn string_end(b: &[u8], at: usize) -> Result<usize, MaskError> {
    if b.get(at) != Some(&b'"') {
        return Err(MaskError::Malformed);
    }
    let mut i = at + 1;
    loop {
        // Straight to the next quote or backslash.
        i += b
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
            .ok_or(MaskError::Malformed)?;
        if b[i] == b'"' {
            return Ok(i + 1);
        }
        i += 2;
    }
}

/// Where the value at `at` ends: a string, an object or array (brackets
/// counted outside strings), or a literal (a number, `true`, `false`,
/// `null`: nothing else may stand outside strings, so this reads strings
/// where the [`Cutter`] does).
fn value_end(b: &[u8], at: usize) -> Result<usize, MaskError> {
    match b.get(at) {
        Some(b'"') => string_end(b, at),
        Some(b'{' | b'[') => {
            let mut depth = 0u32;
            let mut i = at;
            loop {
                match b.get(i) {
                    Some(b'"') => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    Some(b'{' | b'[') => depth += 1,
                    Some(b'}' | b']') => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    Some(c) if literal(*c) || matches!(c, b',' | b':') || is_ws(*c) => {}
                    _ => return Err(MaskError::Malformed),
                }
                i += 1;
            }
        }
        Some(_) => {
            let n = b[at..].iter().take_while(|&&c| literal(c)).count();
            if n == 0 {
                return Err(MaskError::Malformed);
            }
            Ok(at + n)
        }
        None => Err(MaskError::Malformed),
    }
}

/// A byte of a literal.
fn literal(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether a member's key (its quoted text) is `name`; compared raw
/// unless it has escapes.
fn key_is(quoted: &[u8], name: &str) -> Result<bool, MaskError> {
    let inner = &quoted[1..quoted.len() - 1];
    if inner == name.as_bytes() {
        return Ok(true);
    }
    if !inner.contains(&b'\\') {
        return Ok(false);
    }
    Ok(key_text(quoted)? == name)
}

/// A member's key (its quoted text): borrowed unless it has escapes.
fn key_text(quoted: &[u8]) -> Result<Cow<'_, str>, MaskError> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner)
            .map(Cow::Borrowed)
            .map_err(|_| MaskError::Malformed);
    }
    serde_json::from_slice::<String>(quoted)
        .map(Cow::Owned)
        .map_err(|_| MaskError::Malformed)
}

/// Cuts a streaming answer into its documents (units): bytes outside a
/// unit pass through as they come; a unit is held until it is complete.
struct Cutter {
    layout: Layout,
    limit: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The depth at which units open (their `{` brings depth to it).
    unit_depth: Option<u32>,
    /// Holding a unit.
    held: Vec<u8>,
    holding: bool,
    /// `Listed`: in the top-level object, the next string is a key.
    expect_key: bool,
    /// `Listed`: reading a key at depth 1 (its bytes, quotes excluded).
    key: Option<Vec<u8>>,
    /// `Listed`: the last key at depth 1.
    last_key: Vec<u8>,
}

impl Cutter {
    fn new(layout: Layout, limit: usize) -> Cutter {
        Cutter {
            layout,
            limit,
            depth: 0,
            in_string: false,
            escaped: false,
            unit_depth: None,
            held: Vec::new(),
            holding: false,
            expect_key: false,
            key: None,
            last_key: Vec::new(),
        }
    }

    /// Cut `chunk`: what lies outside units goes to `out`; each unit
    /// goes to `unit(bytes, whole, out)`. A unit that opens in this chunk
    /// is first offered straight from it (`whole` false, the bytes running
    /// to the chunk's end): `unit` masks it and says where it ended, or
    /// `None` (it runs past the chunk), and then it is held and offered
    /// again once complete (`whole` true).
    fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        mut unit: impl FnMut(&[u8], bool, &mut Vec<u8>) -> Result<Option<usize>, MaskError>,
    ) -> Result<(), MaskError> {
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    self.key_byte(b);
                    i += 1;
                    continue;
                }
                // Straight to the next quote or backslash.
                let rest = &chunk[i..];
                let n = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                if let Some(key) = &mut self.key {
                    let room = 64usize.saturating_sub(key.len()).min(n);
                    key.extend_from_slice(&rest[..room]);
                }
                i += n;
                match chunk.get(i) {
                    Some(b'\\') => {
                        self.escaped = true;
                        self.key_byte(b'\\');
                    }
                    Some(_) => {
                        self.in_string = false;
                        if let Some(key) = self.key.take() {
                            self.last_key = key;
                        }
                    }
                    None => break,
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.layout == Layout::Listed && self.depth == 1 && self.expect_key {
                        self.key = Some(Vec::new());
                    }
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth == 1 && self.layout == Layout::Listed {
                        self.expect_key = b == b'{';
                    }
                    if self.unit_depth.is_none() {
                        let opens = match self.layout {
                            Layout::Results => self.depth == 2,
                            Layout::Listed => {
                                self.depth == 3 && self.last_key == b"documents" && b == b'{'
                            }
                            Layout::Whole => self.depth == 1 && b == b'{',
                        };
                        if opens {
                            out.extend_from_slice(&chunk[start..i]);
                            start = i;
                            if let Some(end) = unit(&chunk[i..], false, out)? {
                                // Masked straight from the chunk: on past it.
                                if end > self.limit {
                                    return Err(MaskError::Oversized(self.limit));
                                }
                                self.depth -= 1;
                                i += end;
                                start = i;
                                continue;
                            }
                            self.unit_depth = Some(self.depth);
                            self.holding = true;
                        }
                    }
                }
                b'}' | b']' => {
                    if Some(self.depth) == self.unit_depth {
                        self.hold(&chunk[start..=i])?;
                        start = i + 1;
                        self.unit_depth = None;
                        self.holding = false;
                        let held = std::mem::take(&mut self.held);
                        unit(&held, true, out)?;
                        self.held = held;
                        self.held.clear();
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                b':' if self.depth == 1 => self.expect_key = false,
                b',' if self.depth == 1 => self.expect_key = true,
                _ => {}
            }
            i += 1;
        }
        if self.holding {
            self.hold(&chunk[start..])?;
        } else {
            out.extend_from_slice(&chunk[start..]);
        }
        Ok(())
    }

    /// One byte of a key being read, if one is (its first 64 kept).
    fn key_byte(&mut self, b: u8) {
        if let Some(key) = &mut self.key
            && key.len() < 64
        {
            key.push(b);
        }
    }

    fn hold(&mut self, bytes: &[u8]) -> Result<(), MaskError> {
        if self.held.len() + bytes.len() > self.limit {
            return Err(MaskError::Oversized(self.limit));
        }
        self.held.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::model::data::FieldPath;

    const DOCS: &str = "projects/p/databases/(default)/documents";

    fn masks(paths: &[&str]) -> DocumentMasks {
        let mask = FieldMask::parse(paths.iter().copied()).unwrap();
        let mut masks = DocumentMasks::default();
        masks.query(&Arc::new(mask));
        masks
    }

    /// Feed `chunks` through a [`MaskStream`]; the output and the count.
    fn run(layout: Layout, masks: DocumentMasks, chunks: &[&[u8]]) -> (Vec<u8>, u64) {
        let counter = Arc::new(AtomicU64::new(0));
        let mut stream = MaskStream::new(layout, Arc::new(masks), Arc::clone(&counter), 1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            if let Some(b) = stream.data(Bytes::copy_from_slice(chunk)).unwrap() {
                out.extend_from_slice(&b);
            }
        }
        stream.end().unwrap();
        (out, counter.load(Ordering::Relaxed))
    }

    fn person(name: &str) -> Value {
        json!({
            "name": format!("{DOCS}/people/{name}"),
            "fields": {
                "name": {"stringValue": name},
                "salary": {"integerValue": "100"},
                "address": {"mapValue": {"fields": {
                    "street": {"stringValue": "Main"},
                    "city": {"stringValue": "Oslo"}}}},
                "tax.id": {"stringValue": "T"}
            },
            "createTime": "2024-01-01T00:00:00Z",
            "updateTime": "2024-01-01T00:00:00Z"
        })
    }

    fn masked_person(name: &str) -> Value {
        let mut p = person(name);
        let f = p["fields"].as_object_mut().unwrap();
        f.remove("salary");
        f.remove("tax.id");
        f["address"]["mapValue"]["fields"]
            .as_object_mut()
            .unwrap()
            .remove("street");
        p
    }

    const MASK: &[&str] = &["salary", "address.street", "`tax.id`", "absent"];

    #[test]
    fn every_layout_is_masked_and_counted() {
        let results = json!([
            {"document": person("a"), "readTime": "t", "transaction": "dHg="},
            {"readTime": "t", "skippedResults": 1},
            {"document": person("b"), "readTime": "t"}
        ]);
        let (out, count) = run(
            Layout::Results,
            masks(MASK),
            &[results.to_string().as_bytes()],
        );
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got[0]["document"], masked_person("a"));
        assert_eq!(got[0]["transaction"], "dHg=");
        assert_eq!(got[1], results[1]);
        assert_eq!(got[2]["document"], masked_person("b"));
        assert_eq!(count, 6);
        let found =
            json!([{"found": person("a"), "readTime": "t"}, {"missing": "x", "readTime": "t"}]);
        let (out, _) = run(
            Layout::Results,
            masks(MASK),
            &[found.to_string().as_bytes()],
        );
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got[0]["found"], masked_person("a"));
        assert_eq!(got[1], found[1]);
        let listed = json!({"documents": [person("a"), person("b")], "nextPageToken": "n"});
        let (out, _) = run(
            Layout::Listed,
            masks(MASK),
            &[listed.to_string().as_bytes()],
        );
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["documents"][1], masked_person("b"));
        assert_eq!(got["nextPageToken"], "n");
        let (out, _) = run(
            Layout::Whole,
            masks(MASK),
            &[person("a").to_string().as_bytes()],
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            masked_person("a")
        );
    }

    #[test]
    fn a_named_document_gets_its_own_mask() {
        let mut m = DocumentMasks::default();
        m.document(vec!["people".into(), "a".into()], None);
        m.document(
            vec!["people".into(), "b".into()],
            Some(Arc::new(FieldMask::parse(["salary"]).unwrap())),
        );
        let found = json!([{"found": person("a")}, {"found": person("b")}]);
        let (out, count) = run(Layout::Results, m, &[found.to_string().as_bytes()]);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got[0]["found"], person("a"));
        assert!(got[1]["found"]["fields"].get("salary").is_none());
        assert_eq!(count, 1);
    }

    #[test]
    fn the_name_may_follow_the_fields_and_everything_may_be_hidden() {
        let text = format!(
            r#"{{ "fields" : {{"salary": {{"integerValue":"1"}} , "a":{{"nullValue":null}}}}, "name":"{DOCS}/people/x"}}"#
        );
        let (out, count) = run(Layout::Whole, masks(&["salary"]), &[text.as_bytes()]);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["fields"], json!({"a": {"nullValue": null}}));
        assert_eq!(count, 1);
        let mut all = DocumentMasks::default();
        all.query(&Arc::new(FieldMask::everything()));
        let (out, count) = run(Layout::Whole, all, &[person("a").to_string().as_bytes()]);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["fields"], json!({}));
        assert_eq!(got["name"], person("a")["name"]);
        assert_eq!(count, 4);
    }

    #[test]
    fn a_cut_answer_or_an_oversized_document_fails() {
        let text = json!([{"document": person("a")}]).to_string();
        let counter = Arc::new(AtomicU64::new(0));
        let mut cut = MaskStream::new(
            Layout::Results,
            Arc::new(masks(MASK)),
            Arc::clone(&counter),
            1 << 20,
        );
        cut.data(Bytes::from(text[..40].to_string())).unwrap();
        assert!(cut.end().is_err());
        let mut small = MaskStream::new(Layout::Results, Arc::new(masks(MASK)), counter, 50);
        assert!(small.data(Bytes::from(text)).is_err());
    }

    /// A document's fields: leaves and maps, names from a small alphabet
    /// with the characters that need escaping or backquotes.
    #[derive(Debug, Clone)]
    enum Tree {
        Leaf(i64),
        Map(BTreeMap<String, Tree>),
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c.d", "e\"f", "g\\h", "ü"]).prop_map(String::from)
    }

    fn tree() -> impl Strategy<Value = BTreeMap<String, Tree>> {
        let leaf = any::<i64>().prop_map(Tree::Leaf);
        let t = leaf.prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map(name(), inner, 0..4).prop_map(Tree::Map)
        });
        prop::collection::btree_map(name(), t, 0..5)
    }

    fn paths() -> impl Strategy<Value = Vec<FieldPath>> {
        prop::collection::vec(prop::collection::vec(name(), 1..4), 1..4)
    }

    fn to_json(fields: &BTreeMap<String, Tree>) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Tree::Leaf(n) => json!({"integerValue": n.to_string()}),
                        Tree::Map(m) => json!({"mapValue": {"fields": to_json(m)}}),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    /// The reference: remove exactly each masked path that exists.
    fn remove_path(fields: &mut Value, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let Some(map) = fields.as_object_mut() else {
            return;
        };
        if rest.is_empty() {
            map.remove(first);
        } else if let Some(inner) = map
            .get_mut(first)
            .and_then(|v| v.get_mut("mapValue"))
            .and_then(|v| v.get_mut("fields"))
        {
            remove_path(inner, rest);
        }
    }

    pub(crate) fn quoted(path: &[String]) -> String {
        crate::model::mask::format_field_path(path)
    }

    proptest! {
        #[test]
        fn masked_is_the_original_minus_exactly_the_masked_paths(
            fields in tree(),
            paths in paths(),
            split in any::<prop::sample::Index>(),
        ) {
            let doc = json!({"name": format!("{DOCS}/c/d"), "fields": to_json(&fields)});
            let answer = json!([{"document": doc, "readTime": "t"}, {"document": doc}]).to_string();
            let texts: Vec<String> = paths.iter().map(|p| quoted(p)).collect();
            let m = masks(&texts.iter().map(String::as_str).collect::<Vec<_>>());
            let mut want = to_json(&fields);
            for p in &paths {
                remove_path(&mut want, p);
            }
            let bytes = answer.as_bytes();
            let at = split.index(bytes.len() + 1);
            let (out, _) = run(Layout::Results, m.clone(), &[&bytes[..at], &bytes[at..]]);
            let got: Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&got[0]["document"]["fields"], &want);
            prop_assert_eq!(&got[1]["document"]["fields"], &want);
            prop_assert_eq!(&got[0]["readTime"], "t");
        }
    }

    /// Feed `bytes` cut at `cuts`; `Err` when the stream fails.
    fn try_run(
        layout: Layout,
        m: &DocumentMasks,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<u8>, BoxError> {
        let mut stream = MaskStream::new(
            layout,
            Arc::new(m.clone()),
            Arc::new(AtomicU64::new(0)),
            1 << 20,
        );
        let mut out = Vec::new();
        let mut from = 0;
        for &at in cuts.iter().chain([&bytes.len()]) {
            let at = at.clamp(from, bytes.len());
            if let Some(b) = stream.data(Bytes::copy_from_slice(&bytes[from..at]))? {
                out.extend_from_slice(&b);
            }
            from = at;
        }
        stream.end()?;
        Ok(out)
    }

    proptest! {
        /// A document whole in one chunk is masked straight from it; one
        /// cut across chunks is held first. Both give the same bytes, and
        /// so does every mix of the two.
        #[test]
        fn straight_from_the_chunk_or_held_the_answer_is_the_same(
            fields in tree(),
            paths in paths(),
            mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            listed in any::<bool>(),
        ) {
            let doc = json!({"name": format!("{DOCS}/c/d"), "fields": to_json(&fields)});
            let (layout, answer) = if listed {
                (Layout::Listed, json!({"documents": [doc, doc, doc], "nextPageToken": "n"}))
            } else {
                (Layout::Results, json!([{"document": doc, "readTime": "t"}, {"readTime": "t"}, {"document": doc}]))
            };
            let bytes = answer.to_string().into_bytes();
            let texts: Vec<String> = paths.iter().map(|p| quoted(p)).collect();
            let m = masks(&texts.iter().map(String::as_str).collect::<Vec<_>>());
            let whole = try_run(layout, &m, &bytes, &[]).unwrap();
            let held = try_run(layout, &m, &bytes, &(1..bytes.len()).collect::<Vec<_>>()).unwrap();
            prop_assert_eq!(&held, &whole);
            let mut cuts: Vec<usize> = cuts.drain(..).map(|c| c.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(&try_run(layout, &m, &bytes, &cuts).unwrap(), &whole);
            let mut want = to_json(&fields);
            for p in &paths {
                remove_path(&mut want, p);
            }
            let got: Value = serde_json::from_slice(&whole).unwrap();
            for i in [0, 2] {
                let fields = if listed {
                    &got["documents"][i]["fields"]
                } else {
                    &got[i]["document"]["fields"]
                };
                prop_assert_eq!(fields, &want);
            }
        }
    }

    #[test]
    fn what_is_not_json_fails_straight_from_the_chunk_as_when_held() {
        // A quote in a literal: a scanner reading it as a literal would
        // see the unit end where the cutter sees a string.
        for text in [
            r#"[{"document":{"fields":{}},"x":a"},{"document":{"fields":{"salary":{"integerValue":"1"}}}},"b":"c"}]"#,
            r#"[{"document":{"fields":{}},"x":x"}"},{"document":{"fields":{"salary":{"integerValue":"1"}}}}]"#,
            r#"[{"document":{"fields":{"a":{"x":[1,2]}}}},{"document":{"name":1}}]"#,
        ] {
            let b = text.as_bytes();
            let m = masks(&["salary"]);
            assert!(try_run(Layout::Results, &m, b, &[]).is_err(), "{text}");
            assert!(
                try_run(Layout::Results, &m, b, &(1..b.len()).collect::<Vec<_>>()).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn the_cut_does_not_matter_at_any_byte() {
        let answer = json!([
            {"document": person("a\"b"), "readTime": "t"},
            {"document": person("c"), "readTime": "t"}
        ])
        .to_string();
        let (whole, _) = run(Layout::Results, masks(MASK), &[answer.as_bytes()]);
        let bytes = answer.as_bytes();
        for at in 0..=bytes.len() {
            let (out, count) = run(Layout::Results, masks(MASK), &[&bytes[..at], &bytes[at..]]);
            assert_eq!(out, whole, "split at {at}");
            assert_eq!(count, 6);
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(Layout::Results, masks(MASK), &singles).0, whole);
        let listed = json!({"nextPageToken": "x", "documents": [person("a")]}).to_string();
        let (whole, _) = run(Layout::Listed, masks(MASK), &[listed.as_bytes()]);
        for at in 0..=listed.len() {
            let b = listed.as_bytes();
            assert_eq!(
                run(Layout::Listed, masks(MASK), &[&b[..at], &b[at..]]).0,
                whole
            );
        }
    }
}
