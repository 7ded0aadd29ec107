//! Proto3-JSON request bodies, read the way Google's parser reads them: both
//! `camelCase` and `snake_case` field names, `null` meaning "unset" — and
//! refused where a bypass could hide: a repeated key, a field spelled both
//! ways, a field this proxy does not know.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::shape::Shape;
use crate::model::ClassifyError;

/// One JSON object whose members are still raw text, so that each can be
/// read on demand and located in the original body (for transaction ids).
pub struct Object<'a> {
    /// Each member: its key, its value, and whether it was read.
    entries: Vec<(Str<'a>, Member<'a>, bool)>,
    within: &'static str,
}

/// A member's value as the object's one pass left it.
enum Member<'a> {
    Raw(&'a RawValue),
    /// The member named when parsing ([`Object::parse_listing`],
    /// [`object_nesting`]), split in the same pass.
    Split(Split<'a>),
    /// The member [`object_nesting`] was told to check, checked in the
    /// same pass ([`shape::InPlace`](super::shape::InPlace)): `None` for
    /// `null`.
    Checked(Option<Result<(), ClassifyError>>),
}

/// What a member is split into.
#[derive(Clone, Copy)]
enum SplitInto {
    /// An array's elements.
    Elements,
    /// An array's elements, each an object read as [`SplitInto::Nesting`]
    /// reads one (a commit's writes).
    Objects(Nest),
    /// An object's members, one of them split into its own members (a
    /// write's `update`).
    Nesting(Nest),
    /// An object's members, one of them checked in place, if named.
    Members(Option<Check>),
}

/// The member of an object to split into its members in the object's
/// pass, and the member of that one to check in place, if any.
#[derive(Clone, Copy)]
pub struct Nest {
    member: (&'static str, &'static str),
    check: Option<Check>,
}

impl Nest {
    pub fn new(member: (&'static str, &'static str), check: Option<Check>) -> Nest {
        Nest { member, check }
    }

    fn splitting(self) -> Splitting {
        Splitting::new(self.member, SplitInto::Members(self.check))
    }
}

/// A member to check against its shape, and its `Value`s, while its object
/// is parsed ([`object_nesting`]).
#[derive(Clone, Copy)]
pub struct Check {
    camel: &'static str,
    snake: &'static str,
    shape: &'static Shape,
}

impl Check {
    pub fn new((camel, snake): (&'static str, &'static str), shape: &'static Shape) -> Check {
        Check {
            camel,
            snake,
            shape,
        }
    }
}

/// A member split in its object's pass.
enum Split<'a> {
    Elements(Vec<&'a RawValue>),
    /// Each element as [`SplitInto::Nesting`] left it.
    Objects(Vec<Split<'a>>),
    Members(Entries<'a>),
    Null,
    /// Not what it was to be split into, nor `null`.
    Other,
}

/// The member to split while parsing an object, in both its spellings.
#[derive(Clone, Copy)]
struct Splitting {
    camel: &'static str,
    snake: &'static str,
    into: SplitInto,
}

impl Splitting {
    fn new((camel, snake): (&'static str, &'static str), into: SplitInto) -> Splitting {
        Splitting { camel, snake, into }
    }
}

impl<'a> Object<'a> {
    /// Parse `text` as a JSON object, refusing repeated keys. An empty body
    /// is the empty object (Google treats it so).
    pub fn parse(text: &'a str, within: &'static str) -> Result<Self, ClassifyError> {
        Object::parse_splitting(text, within, None)
    }

    fn parse_splitting(
        text: &'a str,
        within: &'static str,
        split: Option<Splitting>,
    ) -> Result<Self, ClassifyError> {
        if text.trim().is_empty() {
            return Ok(Object::empty(within));
        }
        Ok(Object {
            entries: ObjectEntries::parse(text, split)?,
            within,
        })
    }

    /// [`Object::parse`], with the member spelled `list` (in either
    /// spelling) split into its elements in the same pass, for
    /// [`Object::take_list`]: the body of a 500-write commit is read once
    /// to its writes, not twice.
    pub fn parse_listing(
        text: &'a str,
        within: &'static str,
        list: (&'static str, &'static str),
    ) -> Result<Self, ClassifyError> {
        let split = Splitting::new(list, SplitInto::Elements);
        Object::parse_splitting(text, within, Some(split))
    }

    /// [`Object::parse_listing`], with each element of `list` read in the
    /// same pass as an object whose member `nest` names is split too, for
    /// [`Object::take_objects`]: a commit's writes are each read once, in
    /// the body's pass, not first skipped over as raw text and then read.
    pub fn parse_listing_objects(
        text: &'a str,
        within: &'static str,
        list: (&'static str, &'static str),
        nest: Nest,
    ) -> Result<Self, ClassifyError> {
        let split = Splitting::new(list, SplitInto::Objects(nest));
        Object::parse_splitting(text, within, Some(split))
    }

    fn empty(within: &'static str) -> Self {
        Object {
            entries: Vec::new(),
            within,
        }
    }

    /// The member spelled `camel` or `snake` (proto3 JSON accepts both);
    /// `null` reads as absent. Both spellings at once are refused.
    pub fn take(
        &mut self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<Option<&'a RawValue>, ClassifyError> {
        match self.find(camel, snake)? {
            None => Ok(None),
            Some(Member::Raw(raw)) => Ok(Some(*raw).filter(|v| v.get() != "null")),
            Some(Member::Checked(None)) => Ok(None),
            // The member split or checked at parse time is read with
            // `take_list`, `take_object` or `take_checked`.
            Some(Member::Split(_) | Member::Checked(Some(_))) => {
                Err(ClassifyError::MalformedBody(self.within))
            }
        }
    }

    /// The member spelled `camel` or `snake`, checked against `shape` and
    /// its `Value`s as [`shape::check_values`](super::shape::check_values)
    /// checks it (in the object's own pass if it was told to,
    /// [`object_nesting`]); `None`: absent or `null`.
    pub fn take_checked(
        &mut self,
        camel: &'static str,
        snake: &'static str,
        shape: &'static Shape,
    ) -> Result<Option<Result<(), ClassifyError>>, ClassifyError> {
        let within = self.within;
        match self.find(camel, snake)? {
            None => Ok(None),
            Some(Member::Raw(raw)) if raw.get() == "null" => Ok(None),
            Some(Member::Raw(raw)) => Ok(Some(super::shape::check_values(raw, shape))),
            Some(Member::Checked(checked)) => Ok(checked.take()),
            Some(Member::Split(_)) => Err(ClassifyError::MalformedBody(within)),
        }
    }

    /// The object member spelled `camel` or `snake`, as [`object`] reads
    /// it (`within` names it); `null` reads as absent.
    pub fn take_object(
        &mut self,
        camel: &'static str,
        snake: &'static str,
        within: &'static str,
    ) -> Result<Option<Object<'a>>, ClassifyError> {
        let member = match self.find(camel, snake)? {
            None => return Ok(None),
            Some(Member::Raw(raw)) if raw.get() == "null" => return Ok(None),
            Some(Member::Raw(raw)) => return object(raw, within).map(Some),
            Some(Member::Split(split)) => std::mem::replace(split, Split::Null),
            Some(Member::Checked(_)) => return Err(ClassifyError::MalformedBody(within)),
        };
        match member {
            Split::Members(entries) => Ok(Some(Object { entries, within })),
            Split::Null => Ok(None),
            Split::Elements(_) | Split::Objects(_) | Split::Other => {
                Err(ClassifyError::MalformedBody(within))
            }
        }
    }

    /// The elements of the array member spelled `camel` or `snake`, each
    /// an object as [`object_nesting`] reads it with `nest` (read in this
    /// object's pass when it was parsed with
    /// [`Object::parse_listing_objects`]); `null` reads as absent, anything
    /// else but an array is `MalformedBody(within)`, and an element that is
    /// not an object is `MalformedBody(element)` when its turn comes, so
    /// the writes before it are judged first, as when each was read in turn.
    pub fn take_objects(
        &mut self,
        (camel, snake): (&'static str, &'static str),
        within: &'static str,
        element: &'static str,
        nest: Nest,
    ) -> Result<Option<Vec<Result<Object<'a>, ClassifyError>>>, ClassifyError> {
        let split = match self.find(camel, snake)? {
            None => return Ok(None),
            Some(Member::Raw(raw)) if raw.get() == "null" => return Ok(None),
            Some(Member::Raw(raw)) => {
                let elements = array(raw, within)?;
                let read = |raw| object_nesting(raw, element, nest.member, nest.check);
                return Ok(Some(elements.into_iter().map(read).collect()));
            }
            Some(Member::Split(split)) => std::mem::replace(split, Split::Null),
            Some(Member::Checked(_)) => return Err(ClassifyError::MalformedBody(within)),
        };
        let elements = match split {
            Split::Objects(elements) => elements,
            Split::Null => return Ok(None),
            Split::Elements(_) | Split::Members(_) | Split::Other => {
                return Err(ClassifyError::MalformedBody(within));
            }
        };
        let read = |split| match split {
            Split::Members(entries) => Ok(Object {
                entries,
                within: element,
            }),
            _ => Err(ClassifyError::MalformedBody(element)),
        };
        Ok(Some(elements.into_iter().map(read).collect()))
    }

    /// The elements of the array member spelled `camel` or `snake`, each
    /// still raw; `null` reads as absent, anything else but an array is
    /// `MalformedBody(within)`.
    pub fn take_list(
        &mut self,
        camel: &'static str,
        snake: &'static str,
        within: &'static str,
    ) -> Result<Option<Vec<&'a RawValue>>, ClassifyError> {
        match self.find(camel, snake)? {
            None => Ok(None),
            Some(Member::Raw(raw)) if raw.get() == "null" => Ok(None),
            Some(Member::Raw(raw)) => array(raw, within).map(Some),
            Some(Member::Split(split)) => match std::mem::replace(split, Split::Null) {
                Split::Elements(elements) => Ok(Some(elements)),
                Split::Null => Ok(None),
                Split::Objects(_) | Split::Members(_) | Split::Other => {
                    Err(ClassifyError::MalformedBody(within))
                }
            },
            Some(Member::Checked(_)) => Err(ClassifyError::MalformedBody(within)),
        }
    }

    /// The one member spelled `camel` or `snake`, marked read; both
    /// spellings at once are refused.
    fn find(
        &mut self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<Option<&mut Member<'a>>, ClassifyError> {
        let mut found = None;
        for (key, value, used) in &mut self.entries {
            if key.0 == camel || key.0 == snake {
                if found.is_some() {
                    return Err(ClassifyError::MixedFieldSpelling(camel));
                }
                *used = true;
                found = Some(value);
            }
        }
        Ok(found)
    }

    /// Refuse a member that the URL already binds (`name`, `parent`, …).
    pub fn refuse(
        &mut self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<(), ClassifyError> {
        let present = self
            .entries
            .iter()
            .any(|(key, _, _)| key.0 == camel || key.0 == snake);
        if present {
            Err(ClassifyError::PathFieldRespecified(camel))
        } else {
            Ok(())
        }
    }

    /// A member this proxy does not read but knows is harmless: only checked
    /// to be well-formed JSON without repeated keys.
    pub fn opaque(
        &mut self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<(), ClassifyError> {
        if let Some(raw) = self.take(camel, snake)? {
            check_no_duplicates(raw.get())?;
        }
        Ok(())
    }

    /// A member checked in full against its message's shape (one that
    /// carries Firestore values).
    pub fn shaped(
        &mut self,
        camel: &'static str,
        snake: &'static str,
        shape: &'static Shape,
    ) -> Result<(), ClassifyError> {
        match self.take(camel, snake)? {
            Some(raw) => super::shape::check(raw, shape),
            None => Ok(()),
        }
    }

    /// [`Object::shaped`], keeping the checked member for reading.
    pub fn shaped_raw(
        &mut self,
        camel: &'static str,
        snake: &'static str,
        shape: &'static Shape,
    ) -> Result<Option<&'a RawValue>, ClassifyError> {
        let raw = self.take(camel, snake)?;
        if let Some(raw) = raw {
            super::shape::check(raw, shape)?;
        }
        Ok(raw)
    }

    /// A member checked like [`Object::opaque`], kept for reading.
    pub fn opaque_raw(
        &mut self,
        camel: &'static str,
        snake: &'static str,
    ) -> Result<Option<&'a RawValue>, ClassifyError> {
        let raw = self.take(camel, snake)?;
        if let Some(raw) = raw {
            check_no_duplicates(raw.get())?;
        }
        Ok(raw)
    }

    /// Every member must have been read: unknown fields are refused.
    pub fn finish(self) -> Result<(), ClassifyError> {
        if self.entries.iter().all(|(_, _, used)| *used) {
            Ok(())
        } else {
            Err(ClassifyError::UnknownField(self.within))
        }
    }
}

/// A nested object member.
pub fn object<'a>(raw: &'a RawValue, within: &'static str) -> Result<Object<'a>, ClassifyError> {
    if !raw.get().starts_with('{') {
        return Err(ClassifyError::MalformedBody(within));
    }
    Object::parse(raw.get(), within)
}

/// [`object`], with the member spelled `member` (in either spelling)
/// parsed as an object in the same pass, for [`Object::take_object`]: a
/// write's `update` is read once, not first skipped over and then read.
/// `check` names a member of that object to check in the same pass too,
/// for [`Object::take_checked`] (a write's `fields`, when no rule reads
/// them).
pub fn object_nesting<'a>(
    raw: &'a RawValue,
    within: &'static str,
    member: (&'static str, &'static str),
    check: Option<Check>,
) -> Result<Object<'a>, ClassifyError> {
    if !raw.get().starts_with('{') {
        return Err(ClassifyError::MalformedBody(within));
    }
    let split = Splitting::new(member, SplitInto::Members(check));
    Object::parse_splitting(raw.get(), within, Some(split))
}

/// A string member, borrowed from the body unless written with escapes.
pub fn string<'a>(raw: &'a RawValue, within: &'static str) -> Result<Cow<'a, str>, ClassifyError> {
    serde_json::from_str::<Str<'a>>(raw.get())
        .map(|s| s.0)
        .map_err(|_| ClassifyError::MalformedBody(within))
}

/// A bool member. Only JSON `true`/`false` (proto3 parsers differ on
/// `"true"`; refusing it is the safe reading).
pub fn boolean(raw: &RawValue, within: &'static str) -> Result<bool, ClassifyError> {
    serde_json::from_str(raw.get()).map_err(|_| ClassifyError::MalformedBody(within))
}

/// The elements of an array member, each still raw.
pub fn array<'a>(
    raw: &'a RawValue,
    within: &'static str,
) -> Result<Vec<&'a RawValue>, ClassifyError> {
    serde_json::from_str(raw.get()).map_err(|_| ClassifyError::MalformedBody(within))
}

/// Where `raw` sits in `text` (which it must borrow from), as a byte range.
pub fn span(text: &str, raw: &RawValue) -> Option<std::ops::Range<usize>> {
    let start = (raw.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(raw.get().len())?;
    (end <= text.len()).then_some(start..end)
}

/// The top-level members of one object, duplicates refused.
struct ObjectEntries;

type Entries<'a> = Vec<(Str<'a>, Member<'a>, bool)>;

impl ObjectEntries {
    fn parse<'a>(text: &'a str, split: Option<Splitting>) -> Result<Entries<'a>, ClassifyError> {
        let mut de = serde_json::Deserializer::from_str(text);
        // A member checked in place is one of a nested object's (a write's
        // `update`), never of the text's own object.
        let entries = de
            .deserialize_map(EntriesVisitor { split, check: None })
            .map_err(classify_json_error)?;
        de.end()
            .map_err(|_| ClassifyError::MalformedBody("trailing data"))?;
        Ok(entries)
    }
}

struct EntriesVisitor {
    split: Option<Splitting>,
    check: Option<Check>,
}

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Entries<'de> = Vec::new();
        let mut keys = KeySet::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if !keys.insert(key.clone()) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let split = self.split.filter(|s| key.0 == s.camel || key.0 == s.snake);
            let check = self.check.filter(|c| key.0 == c.camel || key.0 == c.snake);
            let value = match (split, check) {
                (Some(split), _) => Member::Split(map.next_value_seed(SplitSeed(split.into))?),
                (None, Some(check)) => {
                    Member::Checked(map.next_value_seed(super::shape::InPlace(check.shape))?)
                }
                (None, None) => Member::Raw(map.next_value()?),
            };
            entries.push((key, value, false));
        }
        Ok(entries)
    }
}

/// A member's value read as a [`Split`]: any JSON value is taken (what it
/// should have been is for [`Object::take_list`] or
/// [`Object::take_object`] to say).
struct SplitSeed(SplitInto);

impl<'de> DeserializeSeed<'de> for SplitSeed {
    type Value = Split<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Split<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SplitSeed {
    type Value = Split<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Split<'de>, A::Error> {
        match self.0 {
            SplitInto::Elements => {
                let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(element) = seq.next_element::<&'de RawValue>()? {
                    elements.push(element);
                }
                Ok(Split::Elements(elements))
            }
            SplitInto::Objects(nest) => {
                let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(element) =
                    seq.next_element_seed(SplitSeed(SplitInto::Nesting(nest)))?
                {
                    elements.push(element);
                }
                Ok(Split::Objects(elements))
            }
            SplitInto::Nesting(_) | SplitInto::Members(_) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Split::Other)
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Split<'de>, A::Error> {
        let visitor = match self.0 {
            SplitInto::Members(check) => EntriesVisitor { split: None, check },
            SplitInto::Nesting(nest) => EntriesVisitor {
                split: Some(nest.splitting()),
                check: None,
            },
            SplitInto::Elements | SplitInto::Objects(_) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Split::Other);
            }
        };
        visitor.visit_map(map).map(Split::Members)
    }

    fn visit_unit<E>(self) -> Result<Split<'de>, E> {
        Ok(Split::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Split<'de>, E> {
        Ok(Split::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Split<'de>, E> {
        Ok(Split::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Split<'de>, E> {
        Ok(Split::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Split<'de>, E> {
        Ok(Split::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Split<'de>, E> {
        Ok(Split::Other)
    }
}

const DUPLICATE: &str = "firegate: duplicate key";

fn classify_json_error(err: serde_json::Error) -> ClassifyError {
    if err.to_string().starts_with(DUPLICATE) {
        ClassifyError::DuplicateKey
    } else {
        ClassifyError::MalformedBody("not a JSON object")
    }
}

/// The visits of a walk that reads nothing from JSON booleans, numbers
/// and `null`.
macro_rules! numbers_and_null_are_nothing {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

/// Walk any JSON value and refuse a repeated key at any depth, without
/// building the value.
pub fn check_no_duplicates(text: &str) -> Result<(), ClassifyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    NoDuplicates
        .deserialize(&mut de)
        .map_err(classify_json_error)?;
    de.end()
        .map_err(|_| ClassifyError::MalformedBody("trailing data"))
}

#[derive(Clone, Copy)]
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    numbers_and_null_are_nothing!();

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = KeySet::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

/// Every string member named `fieldPath` (or `field_path`) at any depth of
/// a JSON text, handed to `each` in order without building the value;
/// `each` answering false stops the walk with an error.
pub fn field_paths(
    text: &str,
    each: &mut dyn FnMut(&str) -> bool,
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    FieldPaths { each, named: false }.deserialize(&mut de)?;
    de.end()
}

struct FieldPaths<'f, 'g> {
    each: &'f mut (dyn FnMut(&str) -> bool + 'g),
    /// The value stands under a `fieldPath` key.
    named: bool,
}

impl<'de> DeserializeSeed<'de> for FieldPaths<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldPaths<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    numbers_and_null_are_nothing!();

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if self.named && !(self.each)(s) {
            return Err(E::custom("refused field path"));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let each = self.each;
        while seq
            .next_element_seed(FieldPaths {
                each: &mut *each,
                named: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let each = self.each;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let named = key == "fieldPath" || key == "field_path";
            map.next_value_seed(FieldPaths {
                each: &mut *each,
                named,
            })?;
        }
        Ok(())
    }
}

/// A JSON string (an object's key or a string member) as it reads after
/// unescaping: borrowed from the body unless it was written with an escape
/// (so the key `"na\u006de"` is `name`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Str<'de>(pub(super) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
        Ok(Str(Cow::Owned(s.to_owned())))
    }
}

/// The keys of one object seen so far: the usual handful in place (no
/// allocation for an object of a few members, nearly every one a request
/// holds), a hash set once an object is large, so that a body of many keys
/// costs linear time, not quadratic. Keys stay borrowed from the body.
#[derive(Default)]
pub(super) struct KeySet<'de> {
    /// Filled from the front: the first `None` ends the keys in place.
    few: [Option<Str<'de>>; KeySet::FEW],
    many: Option<HashSet<Str<'de>>>,
}

impl<'de> KeySet<'de> {
    const FEW: usize = 8;

    fn few(&self) -> impl Iterator<Item = &Str<'de>> {
        self.few.iter().map_while(Option::as_ref)
    }

    /// False if `key` was already there.
    pub(super) fn insert(&mut self, key: Str<'de>) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(key);
        }
        if self.few().any(|k| *k == key) {
            return false;
        }
        if let Some(free) = self.few.iter_mut().find(|k| k.is_none()) {
            *free = Some(key);
        } else {
            let mut many: HashSet<Str<'de>> =
                self.few.iter_mut().filter_map(Option::take).collect();
            many.insert(key);
            self.many = Some(many);
        }
        true
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        match &self.many {
            Some(many) => many.contains(&Str(Cow::Borrowed(key))),
            None => self.few().any(|k| k.0 == key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_are_read() {
        for text in [r#"{"structuredQuery":{}}"#, r#"{"structured_query":{}}"#] {
            let mut obj = Object::parse(text, "t").unwrap();
            assert!(
                obj.take("structuredQuery", "structured_query")
                    .unwrap()
                    .is_some()
            );
            obj.finish().unwrap();
        }
    }

    #[test]
    fn mixed_spelling_is_refused() {
        let mut obj =
            Object::parse(r#"{"structuredQuery":{},"structured_query":{}}"#, "t").unwrap();
        let err = obj.take("structuredQuery", "structured_query").unwrap_err();
        assert_eq!(err.reason(), "mixed_field_spelling");
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        let top = Object::parse(r#"{"a":1,"a":2}"#, "t").err().unwrap();
        assert_eq!(top.reason(), "duplicate_key");
        // The same key written with an escape is the same key.
        let escaped = Object::parse(r#"{"name":1,"na\u006de":2}"#, "t")
            .err()
            .unwrap();
        assert_eq!(escaped.reason(), "duplicate_key");
        let deep = check_no_duplicates(r#"{"x":[{"y":{"z":1,"z":1}}]}"#).unwrap_err();
        assert_eq!(deep.reason(), "duplicate_key");
        assert!(check_no_duplicates(r#"{"x":[{"z":1},{"z":1}]}"#).is_ok());
        // Past the short list, the hash set still sees repeats.
        let many: Vec<String> = (0..100).map(|i| format!(r#""k{i}":1"#)).collect();
        let unique = format!("{{{}}}", many.join(","));
        assert!(check_no_duplicates(&unique).is_ok());
        // An escaped spelling of a key is that key in the hash set too.
        let escaped = format!(r#"{{{},"k\u0033":2}}"#, many.join(","));
        assert_eq!(
            Object::parse(&escaped, "t").err().unwrap().reason(),
            "duplicate_key"
        );
        let repeated = format!(r#"{{{},"k3":2}}"#, many.join(","));
        assert_eq!(
            check_no_duplicates(&repeated).unwrap_err().reason(),
            "duplicate_key"
        );
        assert_eq!(
            Object::parse(&repeated, "t").err().unwrap().reason(),
            "duplicate_key"
        );
    }

    #[test]
    fn a_key_set_knows_every_key_in_place_and_past_it() {
        let names: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let mut keys = KeySet::default();
        for (i, name) in names.iter().enumerate() {
            assert!(!keys.contains(name), "{name} before");
            assert!(keys.insert(Str(Cow::Borrowed(name))), "{name}");
            // Every key so far is known, and is refused a second time.
            for seen in &names[..=i] {
                assert!(keys.contains(seen), "{seen} after {name}");
                assert!(
                    !keys.insert(Str(Cow::Owned(seen.clone()))),
                    "{seen} after {name}"
                );
            }
        }
    }

    #[test]
    fn unknown_members_are_refused() {
        let mut obj = Object::parse(r#"{"a":1,"b":2}"#, "t").unwrap();
        obj.take("a", "a").unwrap();
        assert_eq!(obj.finish().unwrap_err().reason(), "unknown_field");
    }

    #[test]
    fn null_reads_as_absent() {
        let mut obj = Object::parse(r#"{"transaction":null}"#, "t").unwrap();
        assert!(obj.take("transaction", "transaction").unwrap().is_none());
        obj.finish().unwrap();
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for text in ["[]", "1", "{", r#"{"a":1} x"#, "\"s\"", "{\"a\":}"] {
            assert!(Object::parse(text, "t").is_err(), "{text}");
        }
    }

    #[test]
    fn a_listed_member_is_split_in_the_same_pass() {
        let text = r#"{"writes": [{"a":1}, "b" ,null], "x": [1]}"#;
        let mut obj = Object::parse_listing(text, "t", ("writes", "writes")).unwrap();
        let elements = obj.take_list("writes", "writes", "w").unwrap().unwrap();
        let spelled: Vec<&str> = elements
            .iter()
            .map(|raw| &text[span(text, raw).unwrap()])
            .collect();
        assert_eq!(spelled, [r#"{"a":1}"#, r#""b""#, "null"]);
        // Another member is raw as ever, and a list too when taken as one.
        assert_eq!(obj.take_list("x", "x", "x").unwrap().unwrap().len(), 1);
        obj.finish().unwrap();
        // `null` is absent; anything but an array is the caller's refusal.
        for (member, expected) in [("null", Ok(None)), ("[]", Ok(Some(0)))] {
            let text = format!(r#"{{"writes":{member}}}"#);
            let mut obj = Object::parse_listing(&text, "t", ("writes", "writes")).unwrap();
            let got = obj
                .take_list("writes", "writes", "w")
                .map(|l| l.map(|l| l.len()));
            assert_eq!(got.map_err(|e| e.reason()), expected, "{member}");
        }
        for member in ["{}", r#"{"a":[1]}"#, "1", "-1", "1.5", "true", r#""s""#] {
            let text = format!(r#"{{"writes":{member}}}"#);
            let mut obj = Object::parse_listing(&text, "t", ("writes", "writes")).unwrap();
            let err = obj.take_list("writes", "writes", "w").unwrap_err();
            assert_eq!(
                err.to_string(),
                ClassifyError::MalformedBody("w").to_string(),
                "{member}"
            );
        }
        // What the list holds must still be JSON, and its object's keys
        // one of each.
        for text in [
            r#"{"writes":[{]}"#,
            r#"{"writes":[1,"#,
            r#"{"writes":[],"writes":[]}"#,
        ] {
            assert!(
                Object::parse_listing(text, "t", ("writes", "writes")).is_err(),
                "{text}"
            );
        }
        // Listed, it is not also raw.
        let mut obj = Object::parse_listing(r#"{"writes":[]}"#, "t", ("writes", "writes")).unwrap();
        assert!(obj.take("writes", "writes").is_err());
    }

    /// What the walk finds is what walking the parsed value finds: every
    /// string under a `fieldPath` key, at any depth, keys unescaped.
    #[test]
    fn field_paths_are_found_at_any_depth_as_in_the_parsed_value() {
        fn parsed(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    for (key, value) in o {
                        match (key.as_str(), value) {
                            ("fieldPath" | "field_path", serde_json::Value::String(t)) => {
                                out.push(t.clone())
                            }
                            _ => parsed(value, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| parsed(v, out)),
                _ => {}
            }
        }
        for text in [
            r#"{"fieldFilter":{"field":{"fieldPath":"env"},"op":"EQUAL","value":{"stringValue":"prod"}}}"#,
            r#"{"compositeFilter":{"op":"AND","filters":[{"fieldFilter":{"field":{"field_path":"a.b"}}},{"unaryFilter":{"field":{"fieldPath":"`x y`"}}}]}}"#,
            r#"[{"field":{"fieldPath":"n"},"direction":"ASCENDING"},{"field":{"fieldPath":"__name__"}}]"#,
            r#"{"field\u0050ath":"escaped","field_path":{"fieldPath":"inner"},"value":{"mapValue":{"fields":{"fieldPath":{"stringValue":"not a path"}}}}}"#,
            r#"{"count":{"upTo":3},"alias":"fieldPath","sum":{"field":{"fieldPath":"total"}}}"#,
            r#"[1, true, null, "fieldPath", {"fieldPath": 3}, [[{"fieldPath":"deep"}]]]"#,
        ] {
            let mut walked = Vec::new();
            field_paths(text, &mut |t| {
                walked.push(t.to_owned());
                true
            })
            .unwrap();
            let mut expected = Vec::new();
            parsed(&serde_json::from_str(text).unwrap(), &mut expected);
            assert!(!expected.is_empty(), "{text}");
            assert_eq!(walked, expected, "{text}");
        }
        // Refused by the callback: the walk stops there.
        let mut seen = 0;
        let stopped = field_paths(r#"[{"fieldPath":"a"},{"fieldPath":"b"}]"#, &mut |_| {
            seen += 1;
            false
        });
        assert!(stopped.is_err());
        assert_eq!(seen, 1);
        assert!(field_paths(r#"{"fieldPath":"a"} x"#, &mut |_| true).is_err());
    }

    #[test]
    fn a_nested_member_is_read_in_the_same_pass() {
        let outer: Box<RawValue> =
            serde_json::from_str(r#"{"update": {"name": "n", "fields": {"a": 1}}, "x": 2}"#)
                .unwrap();
        let mut w = object_nesting(&outer, "w", ("update", "update"), None).unwrap();
        let mut doc = w
            .take_object("update", "update", "w.update")
            .unwrap()
            .unwrap();
        assert_eq!(doc.take("name", "name").unwrap().unwrap().get(), r#""n""#);
        let fields = doc.take("fields", "fields").unwrap().unwrap();
        assert_eq!(
            &outer.get()[span(outer.get(), fields).unwrap()],
            r#"{"a": 1}"#
        );
        doc.finish().unwrap();
        assert!(w.take("x", "x").unwrap().is_some());
        w.finish().unwrap();
        // The nested object is checked as `object` checks it.
        let nested = |text: &str| -> Result<Option<()>, String> {
            let raw: Box<RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let mut w = object_nesting(&raw, "w", ("update", "update"), None)
                .map_err(|e| e.reason().to_string())?;
            let doc = w
                .take_object("update", "update", "w.update")
                .map_err(|e| e.to_string())?;
            doc.map(|mut d| {
                d.take("name", "name").map_err(|e| e.to_string())?;
                d.finish().map_err(|e| e.reason().to_string())
            })
            .transpose()
        };
        assert_eq!(nested(r#"{"update":null}"#), Ok(None));
        assert_eq!(nested(r#"{"update":{}}"#), Ok(Some(())));
        assert_eq!(
            nested(r#"{"update":{"name":1,"other":2}}"#),
            Err("unknown_field".into())
        );
        assert_eq!(
            nested(r#"{"update":{"name":1,"name":2}}"#),
            Err("duplicate_key".into())
        );
        assert_eq!(
            nested(r#"{"update":{"name":1,"na\u006de":2}}"#),
            Err("duplicate_key".into())
        );
        // Below the nested object, members stay raw, as ever.
        assert_eq!(nested(r#"{"update":{"name":{"b":1,"b":1}}}"#), Ok(Some(())));
        let refused = ClassifyError::MalformedBody("w.update").to_string();
        for member in ["[]", "[{}]", "1", "\"s\"", "true"] {
            assert_eq!(
                nested(&format!(r#"{{"update":{member}}}"#)),
                Err(refused.clone()),
                "{member}"
            );
        }
        assert_eq!(
            nested(r#"{"update":{},"update":{}}"#),
            Err("duplicate_key".into())
        );
        assert_eq!(nested("[1]"), Err("malformed_body".into()));
    }

    #[test]
    fn spans_point_into_the_body() {
        let text = r#"{"a": "xyz", "b": 1}"#;
        let mut obj = Object::parse(text, "t").unwrap();
        let a = obj.take("a", "a").unwrap().unwrap();
        assert_eq!(&text[span(text, a).unwrap()], r#""xyz""#);
    }

    /// Each element of a list read in the list's own pass
    /// ([`Object::take_objects`]) is the object [`object_nesting`] reads
    /// from that element alone: the same members, the same checks, the
    /// same refusals.
    #[test]
    fn listed_objects_are_read_in_the_list_pass_as_each_alone_would_be() {
        let fields = Check::new(("fields", "fields"), &super::super::messages::FIELDS);
        let describe = |w: Result<Object<'_>, ClassifyError>| -> Result<String, &'static str> {
            let mut w = w.map_err(|e| e.reason())?;
            let mut out = String::new();
            match w.take_object("update", "update", "w.update") {
                Ok(Some(mut doc)) => {
                    let name = doc.take("name", "name").map_err(|e| e.reason())?;
                    out += &format!("name {:?}; ", name.map(RawValue::get));
                    let checked =
                        doc.take_checked("fields", "fields", &super::super::messages::FIELDS);
                    out += &format!(
                        "fields {:?}; ",
                        checked
                            .map(|c| c.map(|c| c.map_err(|e| e.reason())))
                            .map_err(|e| e.reason())
                    );
                    out += &format!("doc {:?}; ", doc.finish().map_err(|e| e.reason()));
                }
                Ok(None) => out += "no update; ",
                Err(e) => out += &format!("update {}; ", e.reason()),
            }
            let x = w.take("x", "x").map_err(|e| e.reason())?;
            out += &format!("x {:?}; ", x.map(RawValue::get));
            out += &format!("write {:?}", w.finish().map_err(|e| e.reason()));
            Ok(out)
        };
        let elements = [
            r#"{"update":{"name":"n","fields":{"a":{"stringValue":"s"}}},"x":1}"#,
            r#"{"update":{"name":"n","fields":{"a":{"bogus":1}}}}"#,
            r#"{"update":{"fields":{"a":1}}}"#,
            r#"{"update":{"fields":null,"createTime":1}}"#,
            r#"{"update":null}"#,
            r#"{"update":[1]}"#,
            r#"{"update":{"name":1,"name":2}}"#,
            r#"{"update":{"name":1,"na\u006de":2}}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"upd\u0061te":{"name":"m"},"y":1}"#,
            "{}",
            "null",
            "1",
            r#""s""#,
            "[1]",
            "[]",
        ];
        for check in [None, Some(fields)] {
            for element in elements {
                let raw: Box<RawValue> = serde_json::from_str(element).unwrap();
                let alone = describe(object_nesting(&raw, "w", ("update", "update"), check));
                let text = format!(r#"{{"writes":[{element}]}}"#);
                let nest = Nest::new(("update", "update"), check);
                let listed = Object::parse_listing_objects(&text, "t", ("writes", "writes"), nest)
                    .map_err(|e| e.reason())
                    .and_then(|mut obj| {
                        let mut list = obj
                            .take_objects(("writes", "writes"), "ws", "w", nest)
                            .map_err(|e| e.reason())?
                            .unwrap();
                        assert_eq!(list.len(), 1, "{element}");
                        describe(list.remove(0))
                    });
                assert_eq!(
                    listed,
                    alone,
                    "{element} (checked in place: {})",
                    check.is_some()
                );
            }
        }
        // The list itself: `null` is absent, anything else but an array the
        // caller's refusal, and an element that is no object is refused in
        // its turn, after the ones before it were read.
        let nest = Nest::new(("update", "update"), None);
        let list = |member: &str| {
            let text = format!(r#"{{"writes":{member}}}"#);
            let mut obj =
                Object::parse_listing_objects(&text, "t", ("writes", "writes"), nest).unwrap();
            let list = obj.take_objects(("writes", "writes"), "ws", "w", nest);
            list.map(|l| {
                l.map(|l| {
                    l.into_iter()
                        .map(|w| w.map(|_| ()).map_err(|e| e.to_string()))
                        .collect::<Vec<_>>()
                })
            })
            .map_err(|e| e.to_string())
        };
        assert_eq!(list("null"), Ok(None));
        assert_eq!(list("[]"), Ok(Some(vec![])));
        let malformed = |within| ClassifyError::MalformedBody(within).to_string();
        assert_eq!(
            list(r#"[{}, 1, {}]"#),
            Ok(Some(vec![Ok(()), Err(malformed("w")), Ok(())]))
        );
        for member in ["{}", "1", r#""s""#, "true"] {
            assert_eq!(list(member), Err(malformed("ws")), "{member}");
        }
    }
}
