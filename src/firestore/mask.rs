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
    /// The whole answer is one `Document` (`get`).
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
            Method::Get => Some(Layout::Whole),
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
                    && !(b == b'"' && !self.escaped)
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
