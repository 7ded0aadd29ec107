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
        }
    }
}

impl Rewrite for MaskStream {
    fn data(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        let mut out = Vec::with_capacity(data.len());
        let layout = self.cutter.layout;
        let masks = &self.masks;
        let mut count = 0;
        self.cutter.feed(&data, &mut out, |unit, out| {
            count += mask_unit(layout, unit, masks, out)?;
            Ok(())
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
fn mask_unit(
    layout: Layout,
    unit: &[u8],
    masks: &DocumentMasks,
    out: &mut Vec<u8>,
) -> Result<u64, MaskError> {
    let mut scan = Scan {
        b: unit,
        cut: Vec::new(),
        count: 0,
    };
    let start = ws(unit, 0);
    let end = match layout {
        Layout::Whole | Layout::Listed => scan.document(start, masks)?,
        Layout::Results => scan.members(start, |scan, key, at| {
            if matches!(key.as_ref(), "found" | "document") {
                scan.document(at, masks)
            } else {
                value_end(scan.b, at)
            }
            .map(|end| (end, false))
        })?,
    };
    if ws(unit, end) != unit.len() {
        return Err(MaskError::Malformed);
    }
    scan.write(out);
    Ok(scan.count)
}

/// One unit being masked: the byte ranges cut out of it, in order.
struct Scan<'a> {
    b: &'a [u8],
    cut: Vec<(usize, usize)>,
    count: u64,
}

impl<'a> Scan<'a> {
    /// The unit without its cut ranges.
    fn write(&mut self, out: &mut Vec<u8>) {
        self.cut.sort_unstable();
        let mut from = 0;
        for &(start, end) in &self.cut {
            out.extend_from_slice(&self.b[from..start]);
            from = end;
        }
        out.extend_from_slice(&self.b[from..]);
    }

    /// The object at `at`: `member(scan, key, value_at)` scans each value
    /// (returns where it ends, and whether the member is cut out). A cut
    /// member takes the comma before it; a first kept member after cut
    /// ones loses its own. Returns where the object ends.
    fn members(
        &mut self,
        at: usize,
        mut member: impl FnMut(&mut Self, Cow<'a, str>, usize) -> Result<(usize, bool), MaskError>,
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
            let key = key_text(&b[key_at..key_end])?;
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
    fn document(&mut self, at: usize, masks: &DocumentMasks) -> Result<usize, MaskError> {
        let mut name: Option<Option<&FieldMask>> = None;
        let mut fields: Option<usize> = None;
        let mut masked = false;
        let end = self.members(at, |scan, key, value| {
            let end = match key.as_ref() {
                "name" => {
                    if name.is_some() {
                        return Err(MaskError::Malformed);
                    }
                    let end = value_end(scan.b, value)?;
                    let text: Cow<str> = serde_json::from_slice(&scan.b[value..end])
                        .map_err(|_| MaskError::Malformed)?;
                    name = Some(masks.for_name(&text));
                    end
                }
                "fields" => {
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
                mask.field(&key)
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
            let end = if matches!(key.as_ref(), "mapValue" | "map_value") {
                scan.members(value, |scan, key, value| {
                    let end = if key == "fields" {
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
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => i += 2,
            Some(_) => i += 1,
            None => return Err(MaskError::Malformed),
        }
    }
}

/// Where the value at `at` ends: a string, an object or array (brackets
/// counted outside strings), or a literal.
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
                    Some(_) => {}
                    None => return Err(MaskError::Malformed),
                }
                i += 1;
            }
        }
        Some(_) => {
            let mut i = at;
            while let Some(c) = b.get(i) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            if i == at {
                return Err(MaskError::Malformed);
            }
            Ok(i)
        }
        None => Err(MaskError::Malformed),
    }
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

    fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        mut unit: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(), MaskError>,
    ) -> Result<(), MaskError> {
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.in_string {
                if let Some(key) = &mut self.key
                    && (b != b'"' || self.escaped)
                    && key.len() < 64
                {
                    key.push(b);
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if let Some(key) = self.key.take() {
                        self.last_key = key;
                    }
                }
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
                        unit(&held, out)?;
                        self.held = held;
                        self.held.clear();
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                b':' if self.depth == 1 => self.expect_key = false,
                b',' if self.depth == 1 => self.expect_key = true,
                _ => {}
            }
        }
        if self.holding {
            self.hold(&chunk[start..])?;
        } else {
            out.extend_from_slice(&chunk[start..]);
        }
        Ok(())
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
