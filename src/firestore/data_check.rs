//! `Document.fields` checked as [`data_json::fields`](super::data_json::fields)
//! reads them, without building them: what a write is classified with when
//! no rule reads the fields it writes. The values are read in the same
//! pass as the fields' shape is checked ([`shape::check_values`]; inside a
//! write's own parse, [`shape::InPlace`](super::shape::InPlace)) by the
//! rules here ([`Kind::admits`]), and refused exactly as that check
//! followed by `data_json::fields` refuses them, with the same error.

use super::data_json::double_text;

/// The kind a `Value`'s one member names, by either spelling.
#[derive(Clone, Copy)]
pub(super) enum Kind {
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
    pub(super) fn of(key: &str) -> Kind {
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

/// What a `Value`'s content turned out to be.
#[derive(Clone, Copy)]
pub(super) enum Found<'a> {
    Bool,
    /// A negative integer.
    Signed,
    Unsigned(u64),
    Float,
    Text(&'a str),
    Null,
    List,
    Map,
}

impl Kind {
    /// Whether `data_json` reads `found` as the content of this kind (a
    /// list's or a map's content is walked on for its values).
    pub(super) fn admits(self, found: Found<'_>) -> bool {
        match self {
            // Read leniently (a geo point's missing or malformed
            // coordinates are 0).
            Kind::Null | Kind::GeoPoint => true,
            Kind::Unknown => false,
            Kind::Boolean => matches!(found, Found::Bool),
            Kind::Integer => match found {
                Found::Signed => true,
                Found::Unsigned(n) => i64::try_from(n).is_ok(),
                Found::Text(text) => text.parse::<i64>().is_ok(),
                _ => false,
            },
            Kind::Double => match found {
                Found::Signed | Found::Unsigned(_) | Found::Float => true,
                Found::Text(text) => double_text(text).is_some(),
                _ => false,
            },
            Kind::Text => matches!(found, Found::Text(_)),
            // `null` content is an empty array or map.
            Kind::Array | Kind::Map => matches!(found, Found::Null | Found::Map),
        }
    }
}

#[cfg(test)]
mod tests;
