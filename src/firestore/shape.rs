//! A body member checked against the shape of its proto message in one
//! pass over its text: every member known (both spellings, never both at
//! once), no key repeated, at most one member of a `oneof`, and members that
//! belong elsewhere refused. Used where a body carries Firestore `Value`s
//! (documents, filters, cursors, transforms), whose nesting is too deep to
//! walk by re-reading each level.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::data_check::{Found, Kind};
use crate::model::ClassifyError;

/// What a JSON value must look like.
pub enum Shape {
    /// Any JSON value without repeated keys (scalars, timestamps, field
    /// paths: read by Firestore, not by firegate).
    Any,
    /// An array of this shape.
    List(&'static Shape),
    /// An object whose keys are names of the caller's choosing (document
    /// field names) and whose values have this shape.
    Map(&'static Shape),
    Message(Message),
}

/// A proto message: its members and, where it has one, its `oneof`.
pub struct Message {
    /// For refusals: `value`, `filter`, ….
    pub name: &'static str,
    pub members: &'static [Member],
    /// Members of which at most one may be set (`null` is unset).
    pub oneof: &'static [&'static str],
}

/// One member of a message, in its proto3 JSON spellings.
pub struct Member {
    pub camel: &'static str,
    pub snake: &'static str,
    pub shape: Role,
}

/// What a member is to firegate.
pub enum Role {
    Is(&'static Shape),
    /// A member that is valid proto but not here: the `Value` kinds of
    /// `executePipeline` expressions.
    Refused(ClassifyError),
}

/// Check `raw` against `shape`.
pub fn check(raw: &RawValue, shape: &'static Shape) -> Result<(), ClassifyError> {
    walk(raw, shape, None)
}

/// [`check`], and in the same pass every Firestore `Value` in `raw` as
/// [`data_json`](super::data_json) reads it ([`data_check`]'s rules):
/// refuses what `check` refuses, else what reading the values would
/// (`MalformedBody("value")`), as the two one after the other would.
pub fn check_values(raw: &RawValue, shape: &'static Shape) -> Result<(), ClassifyError> {
    let unreadable = Cell::new(false);
    walk(raw, shape, Some(&unreadable))?;
    if unreadable.get() {
        Err(ClassifyError::MalformedBody("value"))
    } else {
        Ok(())
    }
}

fn walk(
    raw: &RawValue,
    shape: &'static Shape,
    values: Option<&Cell<bool>>,
) -> Result<(), ClassifyError> {
    let failure = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let walked = Walk {
        shape,
        failure: &failure,
        values,
        content: None,
        drain: false,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (walked, failure.take()) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(err)) => Err(err),
        // Only a body that is not JSON fails without naming why.
        (Err(_), None) => Err(ClassifyError::MalformedBody("not JSON")),
    }
}

#[derive(Clone, Copy)]
struct Walk<'f> {
    shape: &'static Shape,
    failure: &'f Cell<Option<ClassifyError>>,
    /// Set when the `Value`s are read too ([`check_values`]): raised at
    /// the first one `data_json` could not read. The walk goes on, for a
    /// shape failure further on comes first.
    values: Option<&'f Cell<bool>>,
    /// This is the content of a `Value` of this kind.
    content: Option<Kind>,
    /// On a failure, record it and read the rest of the value through
    /// instead of stopping: the member is checked inside the parse of the
    /// object that holds it ([`InPlace`]), which must go on.
    drain: bool,
    /// The lists and objects this value is inside, within the member.
    depth: u16,
}

/// The most lists and objects a member may nest (a third of it in
/// Firestore maps: Firestore itself takes 20). Refused here, the same
/// whether the member is walked on its own text or inside its object's
/// parse, before `serde_json`'s own recursion limit (128, counted from the
/// body's top) could refuse it in one of them only.
const MAX_DEPTH: u16 = 96;

impl<'f> Walk<'f> {
    fn with(self, shape: &'static Shape) -> Self {
        Walk {
            shape,
            content: None,
            depth: self.depth + 1,
            ..self
        }
    }

    /// Whether a list or object here nests too deep.
    fn too_deep(self) -> bool {
        self.depth >= MAX_DEPTH
    }

    /// A `Value`'s content found to be `found`: is it what its kind reads?
    fn content_is(self, found: Found<'_>) {
        if let (Some(unreadable), Some(kind)) = (self.values, self.content)
            && !kind.admits(found)
        {
            unreadable.set(true);
        }
    }

    /// Where a `Value` must be, when `Value`s are read.
    fn at_value(self) -> Option<&'f Cell<bool>> {
        self.values
            .filter(|_| std::ptr::eq(self.shape, &super::messages::VALUE))
    }

    /// Record why and stop the walk.
    fn fail<E: de::Error>(self, err: ClassifyError) -> E {
        let text = err.to_string();
        self.failure.set(Some(err));
        E::custom(text)
    }

    /// Record why; stop the walk, unless it drains
    /// (then the caller reads the rest of its value through).
    fn stop<E: de::Error>(self, err: ClassifyError) -> Result<(), E> {
        if !self.drain {
            return Err(self.fail(err));
        }
        let first = self.failure.take().unwrap_or(err);
        self.failure.set(Some(first));
        Ok(())
    }

    /// A draining walk has met a failure: what is left is only read.
    fn failed(self) -> bool {
        if !self.drain {
            return false;
        }
        let failure = self.failure.take();
        let failed = failure.is_some();
        self.failure.set(failure);
        failed
    }

    fn expected(self) -> ClassifyError {
        let within = match self.shape {
            Shape::Message(m) => m.name,
            Shape::List(_) => "a list",
            Shape::Map(_) => "a map of fields",
            Shape::Any => "a value",
        };
        ClassifyError::MalformedBody(within)
    }

    fn scalar<E: de::Error>(self) -> Result<(), E> {
        match self.shape {
            Shape::Any => Ok(()),
            Shape::List(_) | Shape::Map(_) | Shape::Message(_) => self.stop(self.expected()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Firestore request member")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.content_is(Found::Bool);
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.content_is(Found::Signed);
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.content_is(Found::Unsigned(n));
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.content_is(Found::Float);
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.content_is(Found::Text(text));
        self.scalar()
    }
    // proto3 JSON: `null` is the default value, whatever the shape; but
    // not a `Value` that `data_json` can read.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.content_is(Found::Null);
        if let Some(unreadable) = self.at_value() {
            unreadable.set(true);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.too_deep() {
            self.stop(ClassifyError::MalformedBody("nested too deep"))?;
            return drain_seq(seq);
        }
        self.content_is(Found::List);
        let item = match self.shape {
            Shape::Any => &Shape::Any,
            Shape::List(item) => *item,
            Shape::Map(_) | Shape::Message(_) => {
                self.stop(self.expected())?;
                return drain_seq(seq);
            }
        };
        while seq.next_element_seed(self.with(item))?.is_some() {
            if self.failed() {
                return drain_seq(seq);
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.too_deep() {
            self.stop(ClassifyError::MalformedBody("nested too deep"))?;
            return drain_map(map, false);
        }
        self.content_is(Found::Map);
        // A `Value` is read by its one member: its first, of that kind.
        let value = self.at_value();
        let mut members = 0usize;
        let mut keys = super::body::KeySet::default();
        let mut oneof_set: Option<&'static str> = None;
        while let Some(key) = map.next_key::<super::body::Str<'de>>()? {
            // Why this member is refused before its value is read.
            let refuse = |map: A, err: ClassifyError| -> Result<(), A::Error> {
                self.stop(err)?;
                drain_map(map, true)
            };
            if !keys.insert(key.clone()) {
                return refuse(map, ClassifyError::DuplicateKey);
            }
            let key = &*key.0;
            let message = match self.shape {
                Shape::Any => {
                    map.next_value_seed(self.with(&Shape::Any))?;
                    if self.failed() {
                        return drain_map(map, false);
                    }
                    continue;
                }
                Shape::Map(value) => {
                    map.next_value_seed(self.with(value))?;
                    if self.failed() {
                        return drain_map(map, false);
                    }
                    continue;
                }
                Shape::List(_) => return refuse(map, self.expected()),
                Shape::Message(message) => message,
            };
            let Some(member) = message
                .members
                .iter()
                .find(|m| m.camel == key || m.snake == key)
            else {
                return refuse(map, ClassifyError::UnknownField(message.name));
            };
            let other_spelling = if key == member.camel {
                member.snake
            } else {
                member.camel
            };
            if other_spelling != key && keys.contains(other_spelling) {
                return refuse(map, ClassifyError::MixedFieldSpelling(member.camel));
            }
            let shape = match &member.shape {
                Role::Is(shape) => *shape,
                Role::Refused(err) => return refuse(map, err.clone()),
            };
            let mut walk = self.with(shape);
            if let Some(unreadable) = value {
                members += 1;
                match members {
                    1 => walk.content = Some(Kind::of(key)),
                    _ => unreadable.set(true),
                }
            }
            let null = NullSeen::default();
            map.next_value_seed(MemberValue { walk, null: &null })?;
            if self.failed() {
                return drain_map(map, false);
            }
            if message.oneof.contains(&member.camel) && !null.0.get() {
                if oneof_set.is_some() {
                    self.stop(ClassifyError::MalformedBody(message.name))?;
                    return drain_map(map, false);
                }
                oneof_set = Some(member.camel);
            }
        }
        if let Some(unreadable) = value.filter(|_| members == 0) {
            unreadable.set(true);
        }
        Ok(())
    }
}

/// Whether a member's value was `null` (unset, so it does not take the
/// `oneof`).
#[derive(Default)]
struct NullSeen(Cell<bool>);

struct MemberValue<'a, 'f> {
    walk: Walk<'f>,
    null: &'a NullSeen,
}

impl<'de> DeserializeSeed<'de> for MemberValue<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberValue<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.walk.expecting(f)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.walk.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.walk.visit_i64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.walk.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.walk.visit_f64(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.walk.visit_str(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.null.0.set(true);
        self.walk.content_is(Found::Null);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.walk.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.walk.visit_map(map)
    }
}

/// Read the rest of a list through.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Read the rest of an object through (`pending`: from the value of the
/// key just read).
fn drain_map<'de, A: MapAccess<'de>>(mut map: A, pending: bool) -> Result<(), A::Error> {
    if pending {
        map.next_value::<IgnoredAny>()?;
    }
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// [`check_values`] of a member inside the parse of the object that holds
/// it, so that its text is read once: `None` for `null` (unset), else what
/// `check_values` of its raw text answers. A failure is recorded and the
/// rest of the member read through, so that the object's parse goes on
/// and the failure is raised only where the member is taken, after every
/// failure the classifier meets before it.
pub(super) struct InPlace(pub &'static Shape);

impl<'de> DeserializeSeed<'de> for InPlace {
    type Value = Option<Result<(), ClassifyError>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let failure = Cell::new(None);
        let unreadable = Cell::new(false);
        let null = NullSeen::default();
        let walk = Walk {
            shape: self.0,
            failure: &failure,
            values: Some(&unreadable),
            content: None,
            drain: true,
            depth: 0,
        };
        MemberValue { walk, null: &null }.deserialize(deserializer)?;
        if null.0.get() {
            return Ok(None);
        }
        Ok(Some(match failure.take() {
            Some(err) => Err(err),
            None if unreadable.get() => Err(ClassifyError::MalformedBody("value")),
            None => Ok(()),
        }))
    }
}
