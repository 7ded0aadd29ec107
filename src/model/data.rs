//! What a request says about document contents — the fields a write
//! writes, its mask, transforms and precondition, a query's filter — in a
//! wire-neutral model that the REST (JSON) and gRPC (protobuf) classifiers
//! both fill, for the rules that see the data.

use std::collections::{BTreeMap, HashMap};

use super::enums::FieldOp;
use super::{Access, Database, Operation, Scope, Segments};

/// A document's fields: top-level name → value.
pub type Fields = BTreeMap<String, FieldValue>;

/// A field path, split into its segments (`a.b` → `["a", "b"]`).
pub type FieldPath = Vec<String>;

/// One Firestore value, as rules see it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Null,
    Boolean(bool),
    Integer(i64),
    Double(f64),
    /// RFC 3339, as the client wrote it.
    Timestamp(String),
    String(String),
    /// Base64, as the client wrote it.
    Bytes(String),
    Reference(String),
    GeoPoint {
        latitude: f64,
        longitude: f64,
    },
    Array(Vec<FieldValue>),
    Map(Fields),
    /// A field transform (`serverTimestamp`, `increment`, …): the value is
    /// only known once Firestore applies it, so rules see this sentinel.
    Transform(&'static str),
}

// Eq for the `Operation` that holds values: NaN never equals itself, which
// only makes two operations differ, never a rule pass.
impl Eq for FieldValue {}

/// A stored document firegate read for a rule: its fields and version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    pub fields: Fields,
    /// RFC 3339, as Firestore gave it (the pin of the write).
    pub update_time: String,
}

/// The stored documents read before deciding, by path (relative to
/// `{database}/documents`); `None` for a document that does not exist.
pub type Stored = HashMap<Segments, Option<StoredDocument>>;

/// The precondition a write carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    Exists(bool),
    /// RFC 3339 `updateTime` the document must have (implies it exists).
    UpdateTime(String),
}

impl Precondition {
    /// `Some(false)` when the write can only create, `Some(true)` when it
    /// can only update.
    pub fn must_exist(&self) -> Option<bool> {
        match self {
            Precondition::None => None,
            Precondition::Exists(e) => Some(*e),
            Precondition::UpdateTime(_) => Some(true),
        }
    }
}

/// Whether classification builds the fields a write writes. Only a
/// condition that reads `request.resource` or `request.changed_fields`
/// needs them (masks read the update mask and transforms, which are always
/// kept); without one, the fields are validated as they would be read and
/// left out, since building them is most of a large commit's classification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldCapture {
    #[default]
    Capture,
    ValidateOnly,
}

/// A write's fields were not captured ([`FieldCapture::ValidateOnly`]):
/// what depends on them is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotCaptured;

/// What one write does to its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `update` (with an optional `updateMask`) and its transforms; a
    /// transform-only write is an update with an empty mask.
    Update {
        /// `None`: not captured, and a condition that reads them fails
        /// closed (a table reloaded between classify and decide can have
        /// such a condition when the one that classified had none).
        fields: Option<Fields>,
        /// `None`: the document is replaced by `fields`.
        mask: Option<Vec<FieldPath>>,
        transforms: Vec<(FieldPath, &'static str)>,
    },
    Delete,
}

/// One written document: what it is, what is written, under which
/// precondition, and where in the request it sits (for the pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The document, or the collection of a `createDocument` without id.
    pub scope: Scope,
    /// The write's position in the request's `writes` (0 for the
    /// single-document RPCs).
    pub index: usize,
    pub change: Change,
    pub precondition: Precondition,
}

impl Written {
    /// The document is certainly absent before this write (a create).
    pub fn creates(&self) -> bool {
        self.precondition.must_exist() == Some(false)
            || !matches!(self.scope, Scope::Document { .. })
    }

    /// Whether the write's fields are known (a delete writes none).
    pub fn captured(&self) -> bool {
        !matches!(self.change, Change::Update { fields: None, .. })
    }

    /// The document after the write, given the stored one (`None`: absent);
    /// `None` for a delete.
    pub fn after(&self, stored: Option<&Fields>) -> Result<Option<Fields>, NotCaptured> {
        let Change::Update {
            fields,
            mask,
            transforms,
        } = &self.change
        else {
            return Ok(None);
        };
        let fields = fields.as_ref().ok_or(NotCaptured)?;
        let mut doc = match mask {
            None => fields.clone(),
            Some(mask) => {
                let mut doc = stored.cloned().unwrap_or_default();
                for path in mask {
                    match lookup(fields, path) {
                        Some(value) => set(&mut doc, path, value.clone()),
                        None => remove(&mut doc, path),
                    }
                }
                doc
            }
        };
        for (path, kind) in transforms {
            set(&mut doc, path, FieldValue::Transform(kind));
        }
        Ok(Some(doc))
    }

    /// The top-level names the write sets, removes or transforms: from the
    /// mask and the transforms, or every key of old ∪ new without a mask.
    pub fn changed_fields(&self, stored: Option<&Fields>) -> Result<Vec<String>, NotCaptured> {
        let mut names: Vec<String> = match &self.change {
            Change::Delete => stored
                .map(|s| s.keys().cloned().collect())
                .unwrap_or_default(),
            Change::Update {
                fields,
                mask,
                transforms,
            } => {
                let mut names: Vec<String> = match mask {
                    Some(mask) => mask.iter().filter_map(|p| p.first().cloned()).collect(),
                    None => fields
                        .as_ref()
                        .ok_or(NotCaptured)?
                        .keys()
                        .chain(stored.into_iter().flat_map(|s| s.keys()))
                        .cloned()
                        .collect(),
                };
                names.extend(transforms.iter().filter_map(|(p, _)| p.first().cloned()));
                names
            }
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether [`Written::after`] or [`Written::changed_fields`] depend on
    /// the stored document (a masked update, a replace's removed keys, a
    /// delete), unless the write is known to create.
    pub fn depends_on_stored(&self) -> bool {
        !self.creates()
    }
}

impl Operation {
    /// Every write's fields are known (see [`FieldCapture`]).
    pub fn fields_captured(&self) -> bool {
        self.writes.iter().all(Written::captured)
    }

    /// An upsert of a document that was read is the create (it is absent)
    /// or the update (it exists) it will be: the forwarded write is pinned
    /// to match (`pipeline/pin.rs`), so the other access cannot happen and
    /// is not judged.
    pub fn settle(&mut self, stored: &Stored) {
        let mut moot = Vec::new();
        for w in &self.writes {
            let Scope::Document { path } = &w.scope else {
                continue;
            };
            let Some(doc) = stored.get(path) else {
                continue;
            };
            let once = self.writes.iter().filter(|o| o.scope == w.scope).count() == 1;
            if w.precondition == Precondition::None && once {
                let impossible = if doc.is_some() {
                    Access::Create
                } else {
                    Access::Update
                };
                moot.push((w.scope.clone(), impossible));
            }
        }
        self.targets
            .retain(|t| !moot.iter().any(|(s, a)| *s == t.scope && *a == t.access));
    }
}

fn lookup<'f>(fields: &'f Fields, path: &[String]) -> Option<&'f FieldValue> {
    let (first, rest) = path.split_first()?;
    let value = fields.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        FieldValue::Map(inner) => lookup(inner, rest),
        _ => None,
    }
}

fn set(fields: &mut Fields, path: &[String], value: FieldValue) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        fields.insert(first.clone(), value);
        return;
    }
    let entry = fields
        .entry(first.clone())
        .or_insert_with(|| FieldValue::Map(Fields::new()));
    if !matches!(entry, FieldValue::Map(_)) {
        *entry = FieldValue::Map(Fields::new());
    }
    if let FieldValue::Map(inner) = entry {
        set(inner, rest, value);
    }
}

fn remove(fields: &mut Fields, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        fields.remove(first);
    } else if let Some(FieldValue::Map(inner)) = fields.get_mut(first) {
        remove(inner, rest);
    }
}

/// A query's `where`, as far as rules can use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    And(Vec<Filter>),
    /// `field == value`.
    Equal(FieldPath, FieldValue),
    /// A range or equality on the document name (`__name__`), with the
    /// document path (relative to `{database}/documents`) it compares to.
    Name(NameBound, Vec<String>),
    /// Anything else: narrows the results, proves nothing.
    Other,
}

/// How a `__name__` filter bounds the documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameBound {
    Equal,
    Above { inclusive: bool },
    Below { inclusive: bool },
}

impl Filter {
    /// One field filter of a query on `database`, as both wires read it: an
    /// equality is a fact, a comparison of `__name__` with a reference
    /// bounds the names; anything else proves nothing.
    pub fn field(database: &Database, path: FieldPath, op: FieldOp, value: FieldValue) -> Filter {
        if path != ["__name__"] {
            return match op {
                FieldOp::Equal => Filter::Equal(path, value),
                _ => Filter::Other,
            };
        }
        let bound = match op {
            FieldOp::Equal => NameBound::Equal,
            FieldOp::GreaterThan => NameBound::Above { inclusive: false },
            FieldOp::GreaterThanOrEqual => NameBound::Above { inclusive: true },
            FieldOp::LessThan => NameBound::Below { inclusive: false },
            FieldOp::LessThanOrEqual => NameBound::Below { inclusive: true },
            _ => return Filter::Other,
        };
        // A bound need not name a document (the Node client bounds a
        // collection with `coll\0/…`): its segments are only compared.
        let prefix = format!("{database}/documents/");
        match value {
            FieldValue::Reference(name) => match name.strip_prefix(&prefix) {
                Some(rest) => Filter::Name(bound, rest.split('/').map(String::from).collect()),
                None => Filter::Other,
            },
            _ => Filter::Other,
        }
    }

    /// The `field == value` facts every matching document satisfies (the
    /// top-level conjunction of equalities).
    pub fn equalities(&self) -> Vec<(&FieldPath, &FieldValue)> {
        let mut out = Vec::new();
        self.collect_equalities(&mut out);
        out
    }

    fn collect_equalities<'f>(&'f self, out: &mut Vec<(&'f FieldPath, &'f FieldValue)>) {
        match self {
            Filter::And(parts) => parts.iter().for_each(|p| p.collect_equalities(out)),
            Filter::Equal(path, value) => out.push((path, value)),
            Filter::Name(..) | Filter::Other => {}
        }
    }
}

/// Parse a field path as Firestore writes one: dot-separated segments,
/// a segment in backticks may hold any character (`` \` `` and `\\`
/// escaped). `None` for a malformed path.
pub fn parse_field_path(text: &str) -> Option<FieldPath> {
    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut segment = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            loop {
                match chars.next()? {
                    '`' => break,
                    '\\' => segment.push(chars.next()?),
                    c => segment.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '`' {
                    return None;
                }
                segment.push(c);
                chars.next();
            }
        }
        if segment.is_empty() {
            return None;
        }
        segments.push(segment);
        match chars.next() {
            None => return Some(segments),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> FieldValue {
        FieldValue::String(v.into())
    }

    fn fields(pairs: &[(&str, FieldValue)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn update(fields: Fields, mask: Option<&[&str]>) -> Written {
        Written {
            scope: Scope::Document {
                path: vec!["notes".to_string(), "n1".into()].into(),
            },
            index: 0,
            change: Change::Update {
                fields: Some(fields),
                mask: mask.map(|m| m.iter().map(|p| parse_field_path(p).unwrap()).collect()),
                transforms: vec![(vec!["edited".into()], "serverTimestamp")],
            },
            precondition: Precondition::None,
        }
    }

    #[test]
    fn a_masked_update_merges_into_the_stored_document() {
        let stored = fields(&[("owner", s("alice")), ("title", s("old")), ("tag", s("x"))]);
        let w = update(fields(&[("title", s("new"))]), Some(&["title", "tag"]));
        let after = w.after(Some(&stored)).unwrap().unwrap();
        assert_eq!(after.get("owner"), Some(&s("alice")));
        assert_eq!(after.get("title"), Some(&s("new")));
        assert_eq!(after.get("tag"), None, "masked and absent: removed");
        assert_eq!(
            after.get("edited"),
            Some(&FieldValue::Transform("serverTimestamp"))
        );
        assert_eq!(
            w.changed_fields(Some(&stored)).unwrap(),
            ["edited", "tag", "title"]
        );
    }

    #[test]
    fn a_replace_changes_old_and_new_keys() {
        let stored = fields(&[("owner", s("alice"))]);
        let w = update(fields(&[("title", s("t"))]), None);
        assert_eq!(w.after(Some(&stored)).unwrap().unwrap().get("owner"), None);
        assert_eq!(
            w.changed_fields(Some(&stored)).unwrap(),
            ["edited", "owner", "title"]
        );
    }

    #[test]
    fn fields_not_captured_are_unknown_not_empty() {
        let stored = fields(&[("owner", s("alice"))]);
        let mut replace = update(Fields::new(), None);
        replace.change = Change::Update {
            fields: None,
            mask: None,
            transforms: Vec::new(),
        };
        assert!(!replace.captured());
        assert_eq!(replace.after(Some(&stored)), Err(NotCaptured));
        assert_eq!(replace.changed_fields(Some(&stored)), Err(NotCaptured));
        // A masked update's changed fields are its mask's: known all the same.
        let mut masked = update(Fields::new(), Some(&["title"]));
        if let Change::Update { fields, .. } = &mut masked.change {
            *fields = None;
        }
        assert_eq!(masked.after(Some(&stored)), Err(NotCaptured));
        assert_eq!(
            masked.changed_fields(Some(&stored)).unwrap(),
            ["edited", "title"]
        );
    }

    #[test]
    fn field_paths_parse_as_firestore_writes_them() {
        assert_eq!(parse_field_path("a.b").unwrap(), ["a", "b"]);
        assert_eq!(parse_field_path("`a.b`.c").unwrap(), ["a.b", "c"]);
        assert_eq!(parse_field_path("`x\\`y`").unwrap(), ["x`y"]);
        for bad in ["", "a..b", "a.", "`a", "a`b`"] {
            assert_eq!(parse_field_path(bad), None, "{bad}");
        }
    }
}
