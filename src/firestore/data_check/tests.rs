use proptest::prelude::*;
use serde_json::value::RawValue;

use crate::firestore::body::{self, Check};
use crate::firestore::{data_json, messages, shape};
use crate::model::ClassifyError;

/// Shape and values checked in one walk of the member's own text.
fn fields(raw: &RawValue) -> Result<(), ClassifyError> {
    shape::check_values(raw, &messages::FIELDS)
}

/// Shape and values checked inside the parse of the write that holds them
/// (`None`: `null`, read as absent).
fn in_place(text: &str) -> Option<Result<(), ClassifyError>> {
    let write: Box<RawValue> =
        serde_json::from_str(&format!(r#"{{"update":{{"fields":{text}}}}}"#)).unwrap();
    let check = Check::new(("fields", "fields"), &messages::FIELDS);
    let mut w = body::object_nesting(&write, "write", ("update", "update"), Some(check)).unwrap();
    let mut doc = w
        .take_object("update", "update", "update")
        .unwrap()
        .unwrap();
    doc.take_checked("fields", "fields", &messages::FIELDS)
        .unwrap()
}

/// What the classifier does with a `fields` member: the shape check, then
/// building; or both in one pass without building, on the member's text or
/// inside its write's parse. They must accept and refuse alike, with the
/// same error, whichever of them refuses.
fn same_as_building(text: &str) {
    let Ok(raw) = serde_json::from_str::<Box<RawValue>>(text) else {
        return;
    };
    let built =
        shape::check(&raw, &messages::FIELDS).and_then(|()| data_json::fields(&raw).map(drop));
    assert_eq!(fields(&raw), built, "{text}");
    match in_place(text) {
        Some(checked) => assert_eq!(checked, built, "in place: {text}"),
        None => assert_eq!(raw.get(), "null"),
    }
}

#[test]
fn refuses_what_building_refuses() {
    let corpus = [
        r#"{}"#,
        r#"{"a":{"stringValue":"x"},"b":{"integerValue":"-7"}}"#,
        r#"{"a":{"integerValue":7}}"#,
        r#"{"a":{"integerValue":-7}}"#,
        r#"{"a":{"integerValue":"+7"}}"#,
        r#"{"a":{"integerValue":"7.5"}}"#,
        r#"{"a":{"integerValue":7.5}}"#,
        r#"{"a":{"integerValue":1e3}}"#,
        r#"{"a":{"integerValue":-0}}"#,
        r#"{"a":{"integerValue":9223372036854775807}}"#,
        r#"{"a":{"integerValue":9223372036854775808}}"#,
        r#"{"a":{"integerValue":"9223372036854775808"}}"#,
        r#"{"a":{"integerValue":99999999999999999999999}}"#,
        r#"{"a":{"integerValue":true}}"#,
        r#"{"a":{"integerValue":null}}"#,
        r#"{"a":{"integerValue":"x\u0031"}}"#,
        r#"{"a":{"integerValue":"\u0031"}}"#,
        r#"{"a":{"doubleValue":1}}"#,
        r#"{"a":{"doubleValue":-1}}"#,
        r#"{"a":{"doubleValue":1.5e300}}"#,
        r#"{"a":{"doubleValue":"NaN"}}"#,
        r#"{"a":{"doubleValue":"-Infinity"}}"#,
        r#"{"a":{"doubleValue":"1.5"}}"#,
        r#"{"a":{"doubleValue":"nan"}}"#,
        r#"{"a":{"doubleValue":"one"}}"#,
        r#"{"a":{"doubleValue":null}}"#,
        r#"{"a":{"doubleValue":[1]}}"#,
        r#"{"a":{"booleanValue":true}}"#,
        r#"{"a":{"booleanValue":"true"}}"#,
        r#"{"a":{"booleanValue":null}}"#,
        r#"{"a":{"nullValue":null}}"#,
        r#"{"a":{"nullValue":"NULL_VALUE"}}"#,
        r#"{"a":{"nullValue":0}}"#,
        r#"{"a":{"stringValue":null}}"#,
        r#"{"a":{"stringValue":5}}"#,
        r#"{"a":{"string_value":"s"}}"#,
        r#"{"a":{"timestampValue":"2020-01-01T00:00:00Z"}}"#,
        r#"{"a":{"bytesValue":"AAE="}}"#,
        r#"{"a":{"referenceValue":{}}}"#,
        r#"{"a":{"geoPointValue":{"latitude":1,"longitude":"x"}}}"#,
        r#"{"a":{"geoPointValue":"nowhere"}}"#,
        r#"{"a":{"geoPointValue":null}}"#,
        r#"{"a":{}}"#,
        r#"{"a":null}"#,
        r#"{"a":"x"}"#,
        r#"{"a":[]}"#,
        r#"{"a":{"stringValue":"x","nullValue":null}}"#,
        r#"{"a":{"nullValue":null,"stringValue":null}}"#,
        r#"{"a":{"arrayValue":null}}"#,
        r#"{"a":{"arrayValue":{}}}"#,
        r#"{"a":{"arrayValue":{"values":null}}}"#,
        r#"{"a":{"arrayValue":{"values":[]}}}"#,
        r#"{"a":{"arrayValue":{"values":[{"stringValue":"x"},{"integerValue":"1"}]}}}"#,
        r#"{"a":{"arrayValue":{"values":[{"integerValue":"x"}]}}}"#,
        r#"{"a":{"arrayValue":{"values":[null]}}}"#,
        r#"{"a":{"arrayValue":{"values":[{}]}}}"#,
        r#"{"a":{"arrayValue":{"values":{"stringValue":"x"}}}}"#,
        r#"{"a":{"mapValue":null}}"#,
        r#"{"a":{"mapValue":{}}}"#,
        r#"{"a":{"mapValue":{"fields":null}}}"#,
        r#"{"a":{"mapValue":{"fields":{}}}}"#,
        r#"{"a":{"mapValue":{"fields":{"b":{"booleanValue":false}}}}}"#,
        r#"{"a":{"mapValue":{"fields":{"b":{"booleanValue":0}}}}}"#,
        r#"{"a":{"mapValue":{"fields":{"b":{"mapValue":{"fields":{"c":{}}}}}}}}"#,
        r#"{"a":{"mapValue":{"fields":[]}}}"#,
        r#"{"a":{"fieldReferenceValue":"x"}}"#,
        r#"{"a":{"unknownValue":"x"}}"#,
        // A shape failure after an unreadable value: the shape's refusal.
        r#"{"a":{"integerValue":"x"},"b":{"stringValue":"s","stringValue":"t"}}"#,
        r#"{"a":null,"b":{"arrayValue":{"values":[],"extra":1}}}"#,
        r#"{"a":{"stringValue":5},"b":{"otherValue":1}}"#,
        r#"{"a":{"geoPointValue":{"latitude":1,"latitude":2}}}"#,
        r#"{"a":{"nullValue":{"x":[{"y":1,"y":2}]}}}"#,
        r#"{"a":{"integerValue":"1","string_value":"s","stringValue":"t"}}"#,
        r#"{"a":{"mapValue":{"fields":{"b":{}}}},"a":{"stringValue":"s"}}"#,
    ];
    for text in corpus {
        same_as_building(text);
    }
    // The corpus reaches refusals past the shape check, not only there.
    let refused = corpus
        .iter()
        .filter_map(|t| serde_json::from_str::<Box<RawValue>>(t).ok())
        .filter(|raw| shape::check(raw, &messages::FIELDS).is_ok())
        .filter(|raw| fields(raw).is_err())
        .count();
    assert!(refused >= 10, "{refused}");
}

/// Maps nested past any depth Firestore takes are refused alike in every
/// way, before `serde_json`'s recursion limit (counted from the top of the
/// body, so deeper inside a write than on the member's own text) could
/// refuse them in one way only.
#[test]
fn deep_nesting_is_refused_alike_in_every_way() {
    let nested = |levels: usize| {
        let mut text = r#"{"stringValue":"x"}"#.to_owned();
        for _ in 0..levels {
            text = format!(r#"{{"mapValue":{{"fields":{{"a":{text}}}}}}}"#);
        }
        format!(r#"{{"a":{text}}}"#)
    };
    for levels in [0, 20, 31, 32, 33, 40, 45, 60, 100] {
        same_as_building(&nested(levels));
    }
    let raw = |levels| serde_json::from_str::<Box<RawValue>>(&nested(levels)).unwrap();
    assert_eq!(fields(&raw(20)), Ok(()));
    assert_eq!(
        fields(&raw(45)),
        Err(ClassifyError::MalformedBody("nested too deep"))
    );
}

/// Scalars of every JSON type, some that look like numbers.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "[-+0-9.eEaNInfity]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ]
}

const KINDS: &[&str] = &[
    "nullValue",
    "booleanValue",
    "integerValue",
    "doubleValue",
    "timestampValue",
    "stringValue",
    "bytes_value",
    "referenceValue",
    "geoPointValue",
    "arrayValue",
    "mapValue",
    "otherValue",
];

/// Values of one, none or two kinds, nested through arrays and maps.
fn value() -> impl Strategy<Value = String> {
    let leaf = (prop::sample::select(KINDS), scalar()).prop_map(|(k, v)| format!("{{{k:?}:{v}}}"));
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|vs| format!(r#"{{"arrayValue":{{"values":[{}]}}}}"#, vs.join(","))),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|vs| {
                let fields: Vec<String> = vs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!(r#""f{i}":{v}"#))
                    .collect();
                format!(r#"{{"mapValue":{{"fields":{{{}}}}}}}"#, fields.join(","))
            }),
            (inner.clone(), inner).prop_map(|(a, b)| {
                let strip = |s: &str| s[1..s.len() - 1].to_string();
                format!("{{{},{}}}", strip(&a), strip(&b))
            }),
        ]
    })
}

proptest! {
    #[test]
    fn any_fields_are_refused_alike(values in prop::collection::vec(value(), 0..4)) {
        let fields: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!(r#""k{i}":{v}"#))
            .collect();
        same_as_building(&format!("{{{}}}", fields.join(",")));
    }
}
