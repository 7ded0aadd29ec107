//! Firestore `Value`s and their proto3 JSON form, field paths, and the
//! cross-type ordering every query and transform relies on.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json, json};

use super::EmulatorError;
use super::clock::Timestamp;
use super::ids::compare_paths;
use super::vector;

/// A document's fields: field name → value.
pub type Fields = BTreeMap<String, Value>;

/// One Firestore value.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Double(f64),
    Timestamp(Timestamp),
    String(String),
    Bytes(Vec<u8>),
    Reference(String),
    GeoPoint(f64, f64),
    Array(Vec<Value>),
    /// `FieldValue.vector(…)`: stored as a reserved map, ordered on its own.
    Vector(Vec<f64>),
    Map(Fields),
}

impl Value {
    /// Parse a proto3 JSON `Value` (keys already in camelCase).
    pub fn from_json(json: &Json) -> Result<Value, EmulatorError> {
        let object = json
            .as_object()
            .ok_or_else(|| invalid("a Value must be a JSON object"))?;
        let mut entries = object.iter();
        let (kind, inner) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            _ => return Err(invalid("a Value must have exactly one member")),
        };
        match kind.as_str() {
            "nullValue" => Ok(Value::Null),
            "booleanValue" => inner
                .as_bool()
                .map(Value::Boolean)
                .ok_or_else(|| invalid("booleanValue must be a boolean")),
            "integerValue" => parse_integer(inner).map(Value::Integer),
            "doubleValue" => parse_double(inner).map(Value::Double),
            "timestampValue" => inner
                .as_str()
                .and_then(Timestamp::parse)
                .map(Value::Timestamp)
                .ok_or_else(|| invalid("timestampValue must be an RFC 3339 timestamp")),
            "stringValue" => inner
                .as_str()
                .map(|s| Value::String(s.to_owned()))
                .ok_or_else(|| invalid("stringValue must be a string")),
            "bytesValue" => inner
                .as_str()
                .and_then(decode_bytes)
                .map(Value::Bytes)
                .ok_or_else(|| invalid("bytesValue must be base64")),
            "referenceValue" => inner
                .as_str()
                .map(|s| Value::Reference(s.to_owned()))
                .ok_or_else(|| invalid("referenceValue must be a string")),
            "geoPointValue" => {
                let latitude = inner.get("latitude").map_or(Ok(0.0), parse_double)?;
                let longitude = inner.get("longitude").map_or(Ok(0.0), parse_double)?;
                Ok(Value::GeoPoint(latitude, longitude))
            }
            "arrayValue" => {
                let values = match inner.get("values") {
                    None | Some(Json::Null) => Vec::new(),
                    Some(Json::Array(items)) => items
                        .iter()
                        .map(Value::from_json)
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(invalid("arrayValue.values must be an array")),
                };
                Ok(Value::Array(values))
            }
            "mapValue" => {
                let fields = fields_from_json(inner.get("fields"))?;
                Ok(match vector::from_fields(&fields)? {
                    Some(values) => Value::Vector(values),
                    None => Value::Map(fields),
                })
            }
            other => Err(invalid(format!("unknown value type {other:?}"))),
        }
    }

    /// The proto3 JSON form Firestore sends.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => json!({ "nullValue": null }),
            Value::Boolean(b) => json!({ "booleanValue": b }),
            Value::Integer(i) => json!({ "integerValue": i.to_string() }),
            Value::Double(d) => json!({ "doubleValue": double_to_json(*d) }),
            Value::Timestamp(t) => json!({ "timestampValue": t.to_rfc3339() }),
            Value::String(s) => json!({ "stringValue": s }),
            Value::Bytes(b) => json!({ "bytesValue": BASE64.encode(b) }),
            Value::Reference(r) => json!({ "referenceValue": r }),
            Value::GeoPoint(lat, lng) => {
                json!({ "geoPointValue": { "latitude": lat, "longitude": lng } })
            }
            Value::Array(values) => {
                let values: Vec<Json> = values.iter().map(Value::to_json).collect();
                json!({ "arrayValue": { "values": values } })
            }
            Value::Vector(values) => {
                json!({ "mapValue": { "fields": fields_to_json(&vector::to_fields(values)) } })
            }
            Value::Map(fields) => json!({ "mapValue": { "fields": fields_to_json(fields) } }),
        }
    }

    pub fn is_nan(&self) -> bool {
        matches!(self, Value::Double(d) if d.is_nan())
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Integer(_) | Value::Double(_))
    }

    /// The rank of this value's type in Firestore's cross-type ordering.
    /// Integers and doubles share a rank: they compare as numbers.
    pub fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Boolean(_) => 1,
            Value::Integer(_) | Value::Double(_) => 2,
            Value::Timestamp(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Reference(_) => 6,
            Value::GeoPoint(..) => 7,
            Value::Array(_) => 8,
            Value::Vector(_) => 9,
            Value::Map(_) => 10,
        }
    }

    /// Equality as queries see it (`1 == 1.0`, `NaN == NaN`).
    pub fn query_eq(&self, other: &Value) -> bool {
        compare(self, other) == Ordering::Equal
    }
}

/// Firestore's total order over values: by type rank, then within the type.
/// NaN sorts before every other number.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Double(y)) => compare_int_double(*x, *y),
        (Value::Double(x), Value::Integer(y)) => compare_int_double(*y, *x).reverse(),
        (Value::Double(x), Value::Double(y)) => compare_doubles(*x, *y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Reference(x), Value::Reference(y)) => compare_paths(x.split('/'), y.split('/')),
        (Value::GeoPoint(a1, o1), Value::GeoPoint(a2, o2)) => {
            compare_doubles(*a1, *a2).then_with(|| compare_doubles(*o1, *o2))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y) {
                let ord = compare(l, r);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Vector(x), Value::Vector(y)) => vector::compare(x, y, compare_doubles),
        (Value::Map(x), Value::Map(y)) => {
            for ((lk, lv), (rk, rv)) in x.iter().zip(y) {
                let ord = lk
                    .as_bytes()
                    .cmp(rk.as_bytes())
                    .then_with(|| compare(lv, rv));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => a.type_rank().cmp(&b.type_rank()),
    }
}

fn compare_doubles(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

fn compare_int_double(x: i64, y: f64) -> Ordering {
    if y.is_nan() {
        return Ordering::Greater;
    }
    // Past 2^63 a double cannot equal any i64; below that, compare exactly
    // through i128 so large integers are not rounded.
    if y >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if y < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let whole = y.trunc();
    match (x as i128).cmp(&(whole as i128)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(y - whole)).unwrap_or(Ordering::Equal),
        ord => ord,
    }
}

fn parse_integer(json: &Json) -> Result<i64, EmulatorError> {
    match json {
        Json::String(s) => s.parse().ok(),
        Json::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| invalid("integerValue must be a 64-bit integer"))
}

fn parse_double(json: &Json) -> Result<f64, EmulatorError> {
    crate::firestore::data_json::double(json).ok_or_else(|| invalid("doubleValue must be a number"))
}

pub fn double_to_json(d: f64) -> Json {
    if d.is_nan() {
        Json::from("NaN")
    } else if d == f64::INFINITY {
        Json::from("Infinity")
    } else if d == f64::NEG_INFINITY {
        Json::from("-Infinity")
    } else {
        Json::from(d)
    }
}

fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE;
    BASE64.decode(s).or_else(|_| URL_SAFE.decode(s)).ok()
}

/// Parse a `fields` map (`None` and `null` mean empty).
pub fn fields_from_json(json: Option<&Json>) -> Result<Fields, EmulatorError> {
    match json {
        None | Some(Json::Null) => Ok(Fields::new()),
        Some(Json::Object(map)) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), Value::from_json(v)?)))
            .collect(),
        Some(_) => Err(invalid("fields must be an object")),
    }
}

pub fn fields_to_json(fields: &Fields) -> Json {
    Json::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect::<Map<String, Json>>(),
    )
}

/// A dotted field path, split into its segments (backtick quoting undone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, EmulatorError> {
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars();
        let mut quoted = false;
        let mut was_quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '`' => {
                    quoted = !quoted;
                    was_quoted = true;
                }
                '\\' if quoted => match chars.next() {
                    Some(escaped) => current.push(escaped),
                    None => return Err(invalid(format!("bad field path {text:?}"))),
                },
                '.' if !quoted => {
                    if current.is_empty() && !was_quoted {
                        return Err(invalid(format!("bad field path {text:?}")));
                    }
                    segments.push(std::mem::take(&mut current));
                    was_quoted = false;
                }
                c => current.push(c),
            }
        }
        if quoted || (current.is_empty() && !was_quoted) {
            return Err(invalid(format!("bad field path {text:?}")));
        }
        segments.push(current);
        Ok(FieldPath(segments))
    }

    pub fn is_document_name(&self) -> bool {
        self.0.len() == 1 && self.0[0] == "__name__"
    }
}

/// The value at `path`, if every step exists.
pub fn lookup<'a>(fields: &'a Fields, path: &FieldPath) -> Option<&'a Value> {
    let (first, rest) = path.0.split_first()?;
    let mut value = fields.get(first)?;
    for segment in rest {
        match value {
            Value::Map(inner) => value = inner.get(segment)?,
            _ => return None,
        }
    }
    Some(value)
}

/// Put `value` at `path`, making (or replacing with) maps on the way.
pub fn set_path(fields: &mut Fields, path: &FieldPath, value: Value) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut map = fields;
    for segment in parents {
        let slot = map
            .entry(segment.clone())
            .or_insert_with(|| Value::Map(Fields::new()));
        if !matches!(slot, Value::Map(_)) {
            *slot = Value::Map(Fields::new());
        }
        map = match slot {
            Value::Map(inner) => inner,
            _ => return,
        };
    }
    map.insert(last.clone(), value);
}

/// Remove whatever is at `path`.
pub fn remove_path(fields: &mut Fields, path: &FieldPath) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut map = fields;
    for segment in parents {
        map = match map.get_mut(segment) {
            Some(Value::Map(inner)) => inner,
            _ => return,
        };
    }
    map.remove(last);
}

/// Only the fields named by `mask` (a document mask or a query projection).
pub fn project(fields: &Fields, mask: &[FieldPath]) -> Fields {
    let mut out = Fields::new();
    for path in mask {
        if let Some(value) = lookup(fields, path) {
            set_path(&mut out, path, value.clone());
        }
    }
    out
}

fn invalid(message: impl Into<String>) -> EmulatorError {
    EmulatorError::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: Json) -> Value {
        Value::from_json(&json).unwrap()
    }

    #[test]
    fn every_type_round_trips() {
        let cases = [
            json!({"nullValue": null}),
            json!({"booleanValue": true}),
            json!({"integerValue": "-42"}),
            json!({"doubleValue": 1.5}),
            json!({"doubleValue": "NaN"}),
            json!({"timestampValue": "2024-05-06T07:08:09.123456Z"}),
            json!({"stringValue": "héllo"}),
            json!({"bytesValue": "AAEC"}),
            json!({"referenceValue": "projects/p/databases/(default)/documents/a/b"}),
            json!({"geoPointValue": {"latitude": 1.5, "longitude": -2.0}}),
            json!({"arrayValue": {"values": [{"integerValue": "1"}]}}),
            json!({"mapValue": {"fields": {"k": {"stringValue": "v"}}}}),
        ];
        for case in cases {
            assert_eq!(v(case.clone()).to_json(), case, "{case}");
        }
    }

    fn vector_json(values: &[f64]) -> Json {
        json!({"mapValue": {"fields": {
            "__type__": {"stringValue": "__vector__"},
            "value": {"arrayValue": {"values": values.iter().map(|d| json!({"doubleValue": d})).collect::<Vec<_>>()}}
        }}})
    }

    #[test]
    fn vectors_round_trip_and_other_reserved_maps_are_refused() {
        let vector = vector_json(&[1.0, -0.5]);
        assert!(matches!(v(vector.clone()), Value::Vector(ref d) if d == &[1.0, -0.5]));
        assert_eq!(v(vector.clone()).to_json(), vector);
        let mut extra = vector.clone();
        extra["mapValue"]["fields"]["more"] = json!({"nullValue": null});
        assert!(Value::from_json(&extra).is_err());
        let other = json!({"mapValue": {"fields": {"__type__": {"stringValue": "__other__"}}}});
        assert!(Value::from_json(&other).is_err());
    }

    #[test]
    fn integers_may_arrive_as_numbers() {
        assert!(matches!(v(json!({"integerValue": 7})), Value::Integer(7)));
    }

    #[test]
    fn cross_type_order_follows_firestore() {
        let ordered = [
            json!({"nullValue": null}),
            json!({"booleanValue": false}),
            json!({"booleanValue": true}),
            json!({"doubleValue": "NaN"}),
            json!({"doubleValue": "-Infinity"}),
            json!({"integerValue": "-1"}),
            json!({"doubleValue": 0.5}),
            json!({"integerValue": "1"}),
            json!({"timestampValue": "1970-01-01T00:00:00Z"}),
            json!({"stringValue": "a"}),
            json!({"stringValue": "b"}),
            json!({"bytesValue": "AA=="}),
            json!({"referenceValue": "projects/p/databases/d/documents/a/b"}),
            json!({"geoPointValue": {"latitude": 0, "longitude": 0}}),
            json!({"arrayValue": {}}),
            json!({"arrayValue": {"values": [{"nullValue": null}]}}),
            vector_json(&[9.0]),
            vector_json(&[1.0, 2.0]),
            vector_json(&[1.0, 3.0]),
            json!({"mapValue": {}}),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare(&v(pair[0].clone()), &v(pair[1].clone())),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert!(v(json!({"integerValue": "1"})).query_eq(&v(json!({"doubleValue": 1.0}))));
    }

    #[test]
    fn field_paths_parse_backticks() {
        assert_eq!(
            FieldPath::parse("a.`b.c`.d").unwrap().0,
            vec!["a", "b.c", "d"]
        );
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("").is_err());
    }

    #[test]
    fn set_and_remove_nested_paths() {
        let mut fields = Fields::new();
        let path = FieldPath::parse("a.b").unwrap();
        set_path(&mut fields, &path, Value::Integer(1));
        assert!(matches!(lookup(&fields, &path), Some(Value::Integer(1))));
        remove_path(&mut fields, &path);
        assert!(lookup(&fields, &path).is_none());
        assert!(matches!(fields.get("a"), Some(Value::Map(m)) if m.is_empty()));
    }
}
