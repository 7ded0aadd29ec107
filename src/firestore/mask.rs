//! Field masks on the REST wire's answers, as they stream: the answer is
//! cut into its documents (a `get`'s one document, a `list`'s `documents[]`,
//! each element of a `batchGet` or `runQuery` array), each held only while
//! it arrives (bounded), its masked fields removed, and sent on. Everything
//! between documents passes through untouched; so does every member of a
//! document the mask does not reach (copied as raw text, never re-encoded).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

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

/// Mask one unit of `layout`: a document, or a result holding one.
fn mask_unit(
    layout: Layout,
    unit: &[u8],
    masks: &DocumentMasks,
    out: &mut Vec<u8>,
) -> Result<u64, MaskError> {
    let text = std::str::from_utf8(unit).map_err(|_| MaskError::Malformed)?;
    match layout {
        Layout::Whole | Layout::Listed => mask_document(text, masks, out),
        Layout::Results => {
            let members = members(text)?;
            let holds = members
                .iter()
                .any(|(k, _)| matches!(k.as_ref(), "found" | "document"));
            if !holds {
                out.extend_from_slice(unit);
                return Ok(0);
            }
            let mut count = 0;
            write_object(out, &members, |key, raw, out| {
                if matches!(key, "found" | "document") {
                    count += mask_document(raw.get(), masks, out)?;
                    Ok(true)
                } else {
                    Ok(false)
                }
            })?;
            Ok(count)
        }
    }
}

/// Mask one `Document` by the mask of its `name`; the fields removed are
/// counted.
pub fn mask_document(
    text: &str,
    masks: &DocumentMasks,
    out: &mut Vec<u8>,
) -> Result<u64, MaskError> {
    let members = members(text)?;
    let name = members
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, raw)| serde_json::from_str::<Cow<str>>(raw.get()))
        .transpose()
        .map_err(|_| MaskError::Malformed)?;
    // A document without a name cannot be matched to its target: the
    // widest mask of the answer applies.
    let mask = match &name {
        Some(name) => masks.for_name(name),
        None => masks.for_name(""),
    };
    let Some(mask) = mask else {
        out.extend_from_slice(text.as_bytes());
        return Ok(0);
    };
    let mut count = 0;
    write_object(out, &members, |key, raw, out| {
        if key == "fields" {
            count += mask_fields(raw.get(), mask, out)?;
            Ok(true)
        } else {
            Ok(false)
        }
    })?;
    Ok(count)
}

/// A `fields` map with what `mask` hides removed, recursively through
/// `mapValue`s.
fn mask_fields(text: &str, mask: &FieldMask, out: &mut Vec<u8>) -> Result<u64, MaskError> {
    let members = members(text)?;
    if mask.hides_everything() {
        out.extend_from_slice(b"{}");
        return Ok(members.len() as u64);
    }
    let mut count = 0;
    out.push(b'{');
    let mut first = true;
    for (key, raw) in &members {
        let hidden = mask.field(key);
        if let Some(Hidden::All) = hidden {
            count += 1;
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(out, key)?;
        match hidden {
            Some(Hidden::Below(below)) => count += mask_value(raw.get(), below, out)?,
            _ => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    out.push(b'}');
    Ok(count)
}

/// A `Value`: a `mapValue`'s fields masked by `mask`; any other kind has
/// no fields below it to hide.
fn mask_value(text: &str, mask: &FieldMask, out: &mut Vec<u8>) -> Result<u64, MaskError> {
    let members = members(text)?;
    let mut count = 0;
    write_object(out, &members, |key, raw, out| {
        if !matches!(key, "mapValue" | "map_value") {
            return Ok(false);
        }
        let inner = members_of(raw)?;
        write_object(out, &inner, |key, raw, out| {
            if key == "fields" {
                count += mask_fields(raw.get(), mask, out)?;
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        Ok(true)
    })?;
    Ok(count)
}

type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

fn members_of(raw: &RawValue) -> Result<Members<'_>, MaskError> {
    members(raw.get())
}

/// An object's members in order, their values as raw text.
fn members(text: &str) -> Result<Members<'_>, MaskError> {
    struct Of;
    impl<'de> Visitor<'de> for Of {
        type Value = Members<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let value: &'de RawValue = map.next_value()?;
                if out.iter().any(|(k, _): &(Cow<str>, _)| *k == key) {
                    return Err(de::Error::custom("repeated key"));
                }
                out.push((key, value));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let members = (&mut de)
        .deserialize_map(Of)
        .map_err(|_| MaskError::Malformed)?;
    de.end().map_err(|_| MaskError::Malformed)?;
    Ok(members)
}

/// Write an object again: a member `rewrite` handles (returns `true`) is
/// written by it after its key; the others are copied.
fn write_object(
    out: &mut Vec<u8>,
    members: &Members<'_>,
    mut rewrite: impl FnMut(&str, &RawValue, &mut Vec<u8>) -> Result<bool, MaskError>,
) -> Result<(), MaskError> {
    out.push(b'{');
    for (i, (key, raw)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(out, key)?;
        let mark = out.len();
        if !rewrite(key, raw, out)? {
            out.truncate(mark);
            out.extend_from_slice(raw.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_key(out: &mut Vec<u8>, key: &str) -> Result<(), MaskError> {
    serde_json::to_writer(&mut *out, key).map_err(|_| MaskError::Malformed)?;
    out.push(b':');
    Ok(())
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
