//! The loose edges of proto3 JSON: snake_case or camelCase keys, enums as
//! names or numbers, integers as strings, `Int32Value` wrappers.

use serde_json::{Map, Value as Json};

use super::EmulatorError;
use super::values::FieldPath;

/// Rewrite every snake_case key to camelCase, except the keys of document
/// field maps (`fields`), which are user data and stay as they are.
pub fn normalize(json: Json) -> Json {
    normalize_inner(json, false)
}

fn normalize_inner(json: Json, user_keys: bool) -> Json {
    match json {
        Json::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, value) in map {
                let (key, child_user_keys) = if user_keys {
                    (key, false)
                } else {
                    let key = camel_case(&key);
                    let is_fields = key == "fields" || key == "labels";
                    (key, is_fields)
                };
                out.insert(key, normalize_inner(value, child_user_keys));
            }
            Json::Object(out)
        }
        Json::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|item| normalize_inner(item, false))
                .collect(),
        ),
        other => other,
    }
}

pub fn camel_case(key: &str) -> String {
    if !key.contains('_') || key.starts_with('_') {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An enum given by name or by number; `names[n]` is the name of number `n`.
pub fn enum_name(json: &Json, names: &[&'static str]) -> Result<&'static str, EmulatorError> {
    let found = match json {
        Json::String(s) => names.iter().find(|n| !n.is_empty() && *n == s).copied(),
        Json::Number(n) => n
            .as_u64()
            .and_then(|i| names.get(usize::try_from(i).ok()?))
            .copied()
            .filter(|n| !n.is_empty()),
        _ => None,
    };
    found.ok_or_else(|| EmulatorError::InvalidArgument(format!("unknown enum value {json}")))
}

/// A non-negative count given as a number, a string or `{"value": n}`.
pub fn count(json: &Json, what: &str) -> Result<usize, EmulatorError> {
    let parsed = match json {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        Json::Object(map) => return map.get("value").map_or(Ok(0), |v| count(v, what)),
        _ => None,
    };
    parsed.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
        EmulatorError::InvalidArgument(format!("{what} must be a non-negative integer"))
    })
}

/// The paths of a `DocumentMask` (`{"fieldPaths": [...]}`).
pub fn mask(json: Option<&Json>) -> Result<Option<Vec<FieldPath>>, EmulatorError> {
    match json {
        None | Some(Json::Null) => Ok(None),
        Some(mask) => {
            let paths = match mask.get("fieldPaths") {
                None | Some(Json::Null) => Vec::new(),
                Some(Json::Array(paths)) => paths
                    .iter()
                    .map(|p| {
                        p.as_str().map(FieldPath::parse).unwrap_or_else(|| {
                            Err(EmulatorError::InvalidArgument(
                                "fieldPaths must be strings".into(),
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(EmulatorError::InvalidArgument(
                        "fieldPaths must be an array".into(),
                    ));
                }
            };
            Ok(Some(paths))
        }
    }
}

/// `{"fieldPath": "a.b"}` → the parsed path.
pub fn field_reference(json: Option<&Json>) -> Result<FieldPath, EmulatorError> {
    json.and_then(|f| f.get("fieldPath"))
        .and_then(Json::as_str)
        .map(FieldPath::parse)
        .unwrap_or_else(|| {
            Err(EmulatorError::InvalidArgument(
                "a field reference needs fieldPath".into(),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_keys_become_camel_case_but_field_names_do_not() {
        let got = normalize(json!({
            "structured_query": {"from": [{"collection_id": "c", "all_descendants": true}]},
            "writes": [{"update": {"fields": {"my_field": {"integer_value": "1"}}}}]
        }));
        assert_eq!(
            got,
            json!({
                "structuredQuery": {"from": [{"collectionId": "c", "allDescendants": true}]},
                "writes": [{"update": {"fields": {"my_field": {"integerValue": "1"}}}}]
            })
        );
    }

    #[test]
    fn enums_by_name_or_number() {
        let names = ["UNSPECIFIED", "A", "", "C"];
        assert_eq!(enum_name(&json!(1), &names).unwrap(), "A");
        assert_eq!(enum_name(&json!("C"), &names).unwrap(), "C");
        assert!(enum_name(&json!(2), &names).is_err());
        assert!(enum_name(&json!("B"), &names).is_err());
    }

    #[test]
    fn counts_accept_wrappers_and_strings() {
        assert_eq!(count(&json!({"value": 3}), "limit").unwrap(), 3);
        assert_eq!(count(&json!("4"), "limit").unwrap(), 4);
        assert!(count(&json!(-1), "limit").is_err());
    }
}
