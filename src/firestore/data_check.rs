//! `Document.fields` checked as [`data_json::fields`](super::data_json::fields)
//! reads them, in one pass over the text and without building them: what a
//! write is classified with when no rule reads the fields it writes. For
//! text the shape check (`messages::FIELDS`) passed, it refuses exactly
//! what `data_json::fields` refuses, with the same error.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::data_json::double_text;
use crate::model::ClassifyError;

/// Check `Document.fields` (a map of `Value`s).
pub fn fields(raw: &RawValue) -> Result<(), ClassifyError> {
    let failure = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let walked = Fields { failure: &failure }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (walked, failure.take()) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(err)) => Err(err),
        (Err(_), None) => Err(ClassifyError::MalformedBody("fields")),
    }
}

/// Record why and stop the walk.
fn fail<E: de::Error>(failure: &Cell<Option<ClassifyError>>, within: &'static str) -> E {
    failure.set(Some(ClassifyError::MalformedBody(within)));
    E::custom(within)
}

/// A map of field names to `Value`s.
#[derive(Clone, Copy)]
struct Fields<'f> {
    failure: &'f Cell<Option<ClassifyError>>,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Value {
                failure: self.failure,
            })?;
        }
        Ok(())
    }
    // Anything but a map is refused by serde's defaults, with no reason
    // recorded: `fields` reads that as `MalformedBody("fields")`.
}

/// The kind a `Value`'s one member names, by either spelling.
#[derive(Clone, Copy)]
enum Kind {
    Null,
    Boolean,
    Integer,
    Double,
    /// A string: timestamp, string, bytes, reference.
    Text,
    GeoPoint,
    Array,
    Map,
    Unknown,
}

impl Kind {
    fn of(key: &str) -> Kind {
        match key {
            "nullValue" | "null_value" => Kind::Null,
            "booleanValue" | "boolean_value" => Kind::Boolean,
            "integerValue" | "integer_value" => Kind::Integer,
            "doubleValue" | "double_value" => Kind::Double,
            "timestampValue" | "timestamp_value" | "stringValue" | "string_value"
            | "bytesValue" | "bytes_value" | "referenceValue" | "reference_value" => Kind::Text,
            "geoPointValue" | "geo_point_value" => Kind::GeoPoint,
            "arrayValue" | "array_value" => Kind::Array,
            "mapValue" | "map_value" => Kind::Map,
            _ => Kind::Unknown,
        }
    }
}

/// A key read without allocating.
struct Key<F: Fn(&str) -> T, T>(F);

impl<'de, F: Fn(&str) -> T, T> DeserializeSeed<'de> for Key<F, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, F: Fn(&str) -> T, T> Visitor<'de> for Key<F, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<T, E> {
        Ok((self.0)(key))
    }
}

/// One `Value`: an object of exactly one known member, whose content is
/// what that kind reads.
#[derive(Clone, Copy)]
struct Value<'f> {
    failure: &'f Cell<Option<ClassifyError>>,
}

impl Value<'_> {
    fn bad<E: de::Error>(self) -> E {
        fail(self.failure, "value")
    }
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Firestore value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(kind) = map.next_key_seed(Key(Kind::of))? else {
            return Err(self.bad());
        };
        let content = Content { kind, value: self };
        map.next_value_seed(content)?;
        match map.next_key::<IgnoredAny>()? {
            None => Ok(()),
            Some(_) => Err(self.bad()),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.bad())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.bad())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.bad())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.bad())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.bad())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.bad())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.bad())
    }
}

/// The member of a `Value`, checked for its kind.
#[derive(Clone, Copy)]
struct Content<'f> {
    kind: Kind,
    value: Value<'f>,
}

impl<'de> DeserializeSeed<'de> for Content<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.kind {
            // Read leniently by `data_json` (a geo point's missing or
            // malformed coordinates are 0).
            Kind::Null | Kind::GeoPoint => deserializer.deserialize_any(IgnoredAny).map(drop),
            Kind::Unknown => Err(self.value.bad()),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Content<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Firestore value's content")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        match self.kind {
            Kind::Boolean => Ok(()),
            _ => Err(self.value.bad()),
        }
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        match self.kind {
            Kind::Integer | Kind::Double => Ok(()),
            _ => Err(self.value.bad()),
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        match self.kind {
            Kind::Integer if i64::try_from(n).is_ok() => Ok(()),
            Kind::Double => Ok(()),
            _ => Err(self.value.bad()),
        }
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        match self.kind {
            Kind::Double => Ok(()),
            _ => Err(self.value.bad()),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        let ok = match self.kind {
            Kind::Integer => text.parse::<i64>().is_ok(),
            Kind::Double => double_text(text).is_some(),
            Kind::Text => true,
            _ => false,
        };
        if ok { Ok(()) } else { Err(self.value.bad()) }
    }

    /// `null` content: an empty array or map; any other kind has no value.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match self.kind {
            Kind::Array | Kind::Map => Ok(()),
            _ => Err(self.value.bad()),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.value.bad())
    }

    /// `arrayValue.values` (a list of `Value`s) or `mapValue.fields`; other
    /// members are not read.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let failure = self.value.failure;
        let member = match self.kind {
            Kind::Array => "values",
            Kind::Map => "fields",
            _ => return Err(self.value.bad()),
        };
        while let Some(read) = map.next_key_seed(Key(|key| key == member))? {
            match (read, self.kind) {
                (false, _) => map.next_value::<IgnoredAny>().map(drop)?,
                (true, Kind::Array) => map.next_value_seed(Values(self.value))?,
                (true, _) => map.next_value_seed(Nullable(Fields { failure }))?,
            }
        }
        Ok(())
    }
}

/// `ArrayValue.values`: a list of `Value`s, or `null` for none.
struct Values<'f>(Value<'f>);

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.0)?.is_some() {}
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.0.bad())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.0.bad())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.0.bad())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.0.bad())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.0.bad())
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.0.bad())
    }
}

/// `null` (nothing to check) or the fields.
struct Nullable<'f>(Fields<'f>);

impl<'de> DeserializeSeed<'de> for Nullable<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Nullable<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fields or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.0.deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests;
