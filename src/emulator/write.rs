//! Writes (`update`, `delete`, `transform`, `verify`) with their masks,
//! field transforms and preconditions, and `commit`: all of them or none.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use super::EmulatorError;
use super::clock::Timestamp;
use super::store::{Doc, DocPath, State, document_name, parse_document_name};
use super::values::{
    FieldPath, Fields, Value, compare, fields_from_json, lookup, remove_path, set_path,
};
use super::wire::{enum_name, mask};

const SERVER_VALUES: &[&str] = &["SERVER_VALUE_UNSPECIFIED", "REQUEST_TIME"];

#[derive(Debug, Clone)]
enum Kind {
    Update {
        fields: Fields,
        mask: Option<Vec<FieldPath>>,
    },
    Delete,
    Transform,
    Verify,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Precondition {
    None,
    Exists(bool),
    UpdateTime(Timestamp),
}

#[derive(Debug, Clone)]
enum TransformOp {
    RequestTime,
    Increment(Value),
    Maximum(Value),
    Minimum(Value),
    AppendMissing(Vec<Value>),
    RemoveAll(Vec<Value>),
}

/// One parsed write.
#[derive(Debug, Clone)]
pub struct Write {
    pub path: DocPath,
    kind: Kind,
    precondition: Precondition,
    transforms: Vec<(FieldPath, TransformOp)>,
}

/// What a write does to its document.
#[derive(Debug)]
pub enum Effect {
    Put(Doc),
    Remove,
    Unchanged,
}

impl Write {
    pub fn parse(database: &str, json: &Json) -> Result<Write, EmulatorError> {
        let precondition = Precondition::parse(json.get("currentDocument"))?;
        let mut transforms = parse_transforms(json.get("updateTransforms"))?;
        let name = |v: &Json| -> Result<DocPath, EmulatorError> {
            let name = v
                .as_str()
                .ok_or_else(|| invalid("a document name must be a string"))?;
            parse_document_name(database, name)
        };
        let (path, kind) = if let Some(update) = json.get("update") {
            let path = name(update.get("name").unwrap_or(&Json::Null))?;
            let fields = fields_from_json(update.get("fields"))?;
            check_field_names(&fields)?;
            let mask = mask(json.get("updateMask"))?;
            (path, Kind::Update { fields, mask })
        } else if let Some(target) = json.get("delete") {
            (name(target)?, Kind::Delete)
        } else if let Some(target) = json.get("verify") {
            (name(target)?, Kind::Verify)
        } else if let Some(transform) = json.get("transform") {
            let path = name(transform.get("document").unwrap_or(&Json::Null))?;
            transforms.extend(parse_transforms(transform.get("fieldTransforms"))?);
            (path, Kind::Transform)
        } else {
            return Err(invalid(
                "a write needs one of update, delete, transform or verify",
            ));
        };
        if !transforms.is_empty() && !matches!(kind, Kind::Update { .. } | Kind::Transform) {
            return Err(invalid("only update and transform writes take transforms"));
        }
        Ok(Write {
            path,
            kind,
            precondition,
            transforms,
        })
    }

    /// A write built from a REST `patch` or `createDocument`.
    pub fn update(
        path: DocPath,
        fields: Fields,
        mask: Option<Vec<FieldPath>>,
        precondition: Precondition,
    ) -> Write {
        Write {
            path,
            kind: Kind::Update { fields, mask },
            precondition,
            transforms: Vec::new(),
        }
    }

    /// A write built from a REST `delete`.
    pub fn delete(path: DocPath, precondition: Precondition) -> Write {
        Write {
            path,
            kind: Kind::Delete,
            precondition,
            transforms: Vec::new(),
        }
    }

    /// Apply to `current` at `now`: the effect and the `WriteResult`.
    pub fn apply(
        &self,
        database: &str,
        current: Option<&Doc>,
        now: Timestamp,
    ) -> Result<(Effect, Json), EmulatorError> {
        self.check_precondition(database, current, now)?;
        let mut result = json!({ "updateTime": now.to_rfc3339() });
        let mut fields = match &self.kind {
            // A delete leaves no version behind, so its result has no time;
            // a write that changes nothing reports the version it left.
            Kind::Delete => return Ok((Effect::Remove, json!({}))),
            Kind::Verify => {
                let unchanged = match current {
                    Some(doc) => json!({ "updateTime": doc.update_time.to_rfc3339() }),
                    None => json!({}),
                };
                return Ok((Effect::Unchanged, unchanged));
            }
            Kind::Update { fields, mask: None } => fields.clone(),
            Kind::Update {
                fields: new,
                mask: Some(mask),
            } => {
                let mut fields = current.map(|d| d.fields.clone()).unwrap_or_default();
                for path in mask {
                    match lookup(new, path) {
                        Some(value) => set_path(&mut fields, path, value.clone()),
                        None => remove_path(&mut fields, path),
                    }
                }
                fields
            }
            Kind::Transform => current.map(|d| d.fields.clone()).unwrap_or_default(),
        };
        if !self.transforms.is_empty() {
            let results: Vec<Json> = self
                .transforms
                .iter()
                .map(|(path, op)| apply_transform(&mut fields, path, op, now).to_json())
                .collect();
            result["transformResults"] = Json::Array(results);
        }
        let doc = Doc {
            fields,
            create_time: current.map_or(now, |d| d.create_time),
            update_time: now,
        };
        Ok((Effect::Put(doc), result))
    }

    fn check_precondition(
        &self,
        database: &str,
        current: Option<&Doc>,
        now: Timestamp,
    ) -> Result<(), EmulatorError> {
        let name = || document_name(database, &self.path);
        match (&self.precondition, current) {
            // No version can carry a time that has not come yet: Firestore
            // calls that a bad argument, not a failed precondition.
            (Precondition::UpdateTime(t), _) if *t > now => Err(invalid(format!(
                "the update time precondition on {} is in the future",
                name()
            ))),
            (Precondition::None, _) => Ok(()),
            (Precondition::Exists(true), None) => Err(EmulatorError::NotFound(format!(
                "No document to update: {}",
                name()
            ))),
            (Precondition::Exists(false), Some(_)) => Err(EmulatorError::AlreadyExists(format!(
                "Document already exists: {}",
                name()
            ))),
            (Precondition::Exists(_), _) => Ok(()),
            (Precondition::UpdateTime(t), Some(doc)) if doc.update_time == *t => Ok(()),
            (Precondition::UpdateTime(_), _) => Err(EmulatorError::FailedPrecondition(format!(
                "the stored version of {} does not match the required base version",
                name()
            ))),
        }
    }
}

impl Precondition {
    pub fn parse(json: Option<&Json>) -> Result<Precondition, EmulatorError> {
        let Some(json) = json.filter(|j| !j.is_null()) else {
            return Ok(Precondition::None);
        };
        if let Some(exists) = json.get("exists") {
            return exists
                .as_bool()
                .map(Precondition::Exists)
                .ok_or_else(|| invalid("currentDocument.exists must be a boolean"));
        }
        if let Some(time) = json.get("updateTime") {
            return time
                .as_str()
                .and_then(Timestamp::parse)
                .map(Precondition::UpdateTime)
                .ok_or_else(|| invalid("currentDocument.updateTime must be a timestamp"));
        }
        Ok(Precondition::None)
    }
}

/// Field names like `__x__` are reserved for Firestore, at any depth.
pub fn check_field_names(fields: &Fields) -> Result<(), EmulatorError> {
    for (name, value) in fields {
        if name.is_empty() || (name.len() > 4 && name.starts_with("__") && name.ends_with("__")) {
            return Err(invalid(format!("field name {name:?} is not allowed")));
        }
        if let Value::Map(inner) = value {
            check_field_names(inner)?;
        }
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> EmulatorError {
    EmulatorError::InvalidArgument(message.into())
}

fn parse_transforms(json: Option<&Json>) -> Result<Vec<(FieldPath, TransformOp)>, EmulatorError> {
    let Some(items) = json.filter(|j| !j.is_null()) else {
        return Ok(Vec::new());
    };
    let items = items
        .as_array()
        .ok_or_else(|| invalid("field transforms must be an array"))?;
    items.iter().map(parse_transform).collect()
}

fn parse_transform(json: &Json) -> Result<(FieldPath, TransformOp), EmulatorError> {
    let path = json
        .get("fieldPath")
        .and_then(Json::as_str)
        .map(FieldPath::parse)
        .unwrap_or_else(|| Err(invalid("a field transform needs fieldPath")))?;
    let values = |v: &Json| -> Result<Vec<Value>, EmulatorError> {
        v.get("values")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(Value::from_json)
            .collect()
    };
    let op = if let Some(server) = json.get("setToServerValue") {
        match enum_name(server, SERVER_VALUES)? {
            "REQUEST_TIME" => TransformOp::RequestTime,
            _ => return Err(invalid("setToServerValue must be REQUEST_TIME")),
        }
    } else if let Some(v) = json.get("increment") {
        TransformOp::Increment(numeric_operand(v)?)
    } else if let Some(v) = json.get("maximum") {
        TransformOp::Maximum(numeric_operand(v)?)
    } else if let Some(v) = json.get("minimum") {
        TransformOp::Minimum(numeric_operand(v)?)
    } else if let Some(v) = json.get("appendMissingElements") {
        TransformOp::AppendMissing(values(v)?)
    } else if let Some(v) = json.get("removeAllFromArray") {
        TransformOp::RemoveAll(values(v)?)
    } else {
        return Err(invalid("unknown field transform"));
    };
    Ok((path, op))
}

fn numeric_operand(json: &Json) -> Result<Value, EmulatorError> {
    let value = Value::from_json(json)?;
    if value.is_number() {
        Ok(value)
    } else {
        Err(invalid("increment, maximum and minimum need a number"))
    }
}

/// Apply one transform in place; returns its transform result.
fn apply_transform(
    fields: &mut Fields,
    path: &FieldPath,
    op: &TransformOp,
    now: Timestamp,
) -> Value {
    let current = lookup(fields, path).cloned();
    let (stored, result) = match op {
        TransformOp::RequestTime => (Value::Timestamp(now), Value::Timestamp(now)),
        TransformOp::Increment(by) => {
            let sum = match (current, by) {
                (Some(Value::Integer(a)), Value::Integer(b)) => {
                    Value::Integer(a.saturating_add(*b))
                }
                (Some(Value::Integer(a)), Value::Double(b)) => Value::Double(a as f64 + b),
                (Some(Value::Double(a)), Value::Integer(b)) => Value::Double(a + *b as f64),
                (Some(Value::Double(a)), Value::Double(b)) => Value::Double(a + b),
                (_, by) => by.clone(),
            };
            (sum.clone(), sum)
        }
        TransformOp::Maximum(other) | TransformOp::Minimum(other) => {
            let want = if matches!(op, TransformOp::Maximum(_)) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            };
            let chosen = match current {
                Some(c) if c.is_number() => {
                    if c.is_nan() || other.is_nan() {
                        Value::Double(f64::NAN)
                    } else if compare(other, &c) == want {
                        other.clone()
                    } else {
                        c
                    }
                }
                _ => other.clone(),
            };
            (chosen.clone(), chosen)
        }
        TransformOp::AppendMissing(values) => {
            let mut items = match current {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            for value in values {
                if !items.iter().any(|i| i.query_eq(value)) {
                    items.push(value.clone());
                }
            }
            (Value::Array(items), Value::Null)
        }
        TransformOp::RemoveAll(values) => {
            let mut items = match current {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            items.retain(|i| !values.iter().any(|v| v.query_eq(i)));
            (Value::Array(items), Value::Null)
        }
    };
    set_path(fields, path, stored);
    result
}

/// Apply `writes` atomically at `now`: either every one succeeds and is
/// stored, or the state is left as it was.
pub fn commit(
    state: &mut State,
    database: &str,
    writes: &[Write],
    now: Timestamp,
) -> Result<Vec<Json>, EmulatorError> {
    let mut staged: HashMap<&DocPath, Option<Doc>> = HashMap::new();
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let current = match staged.get(&write.path) {
            Some(doc) => doc.as_ref(),
            None => state.get(database, &write.path),
        };
        let (effect, result) = write.apply(database, current, now)?;
        match effect {
            Effect::Put(doc) => {
                staged.insert(&write.path, Some(doc));
            }
            Effect::Remove => {
                staged.insert(&write.path, None);
            }
            Effect::Unchanged => {}
        }
        results.push(result);
    }
    for (path, doc) in staged {
        state.apply(database, now, path.clone(), doc);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "projects/p/databases/(default)";

    fn write(json: Json) -> Write {
        Write::parse(DB, &json).unwrap()
    }

    fn now(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let mut state = State::default();
        let writes = [
            write(json!({"update": {"name": format!("{DB}/documents/c/a"), "fields": {}}})),
            write(
                json!({"delete": format!("{DB}/documents/c/b"), "currentDocument": {"exists": true}}),
            ),
        ];
        let err = commit(&mut state, DB, &writes, now(1)).unwrap_err();
        assert!(matches!(err, EmulatorError::NotFound(_)));
        assert!(state.get(DB, &vec!["c".into(), "a".into()]).is_none());
    }

    #[test]
    fn transforms_compute_and_report_results() {
        let mut state = State::default();
        let name = format!("{DB}/documents/c/a");
        let first = write(json!({
            "update": {"name": name, "fields": {"n": {"integerValue": "5"}, "tags": {"arrayValue": {"values": [{"stringValue": "x"}]}}}}
        }));
        commit(&mut state, DB, &[first], now(1)).unwrap();
        let second = write(json!({
            "transform": {"document": name, "fieldTransforms": [
                {"fieldPath": "n", "increment": {"doubleValue": 0.5}},
                {"fieldPath": "m", "maximum": {"integerValue": "3"}},
                {"fieldPath": "tags", "appendMissingElements": {"values": [{"stringValue": "x"}, {"stringValue": "y"}]}},
                {"fieldPath": "tags", "removeAllFromArray": {"values": [{"stringValue": "x"}]}},
                {"fieldPath": "at", "setToServerValue": 1}
            ]}
        }));
        let results = commit(&mut state, DB, &[second], now(2)).unwrap();
        assert_eq!(
            results[0]["transformResults"],
            json!([
                {"doubleValue": 5.5}, {"integerValue": "3"}, {"nullValue": null},
                {"nullValue": null}, {"timestampValue": "1970-01-01T00:00:02Z"}
            ])
        );
        let doc = state.get(DB, &vec!["c".into(), "a".into()]).unwrap();
        assert_eq!(
            crate::emulator::values::fields_to_json(&doc.fields),
            json!({
                "n": {"doubleValue": 5.5}, "m": {"integerValue": "3"},
                "tags": {"arrayValue": {"values": [{"stringValue": "y"}]}},
                "at": {"timestampValue": "1970-01-01T00:00:02Z"}
            })
        );
        assert_eq!(doc.create_time, now(1));
        assert_eq!(doc.update_time, now(2));
    }

    #[test]
    fn update_mask_merges_and_deletes() {
        let mut state = State::default();
        let name = format!("{DB}/documents/c/a");
        commit(
            &mut state,
            DB,
            &[write(json!({"update": {"name": name, "fields": {
                "a": {"integerValue": "1"}, "b": {"integerValue": "2"}
            }}}))],
            now(1),
        )
        .unwrap();
        commit(
            &mut state,
            DB,
            &[write(json!({
                "update": {"name": name, "fields": {"c": {"integerValue": "3"}}},
                "updateMask": {"fieldPaths": ["b", "c"]},
                "currentDocument": {"updateTime": "1970-01-01T00:00:01Z"}
            }))],
            now(2),
        )
        .unwrap();
        let doc = state.get(DB, &vec!["c".into(), "a".into()]).unwrap();
        assert_eq!(
            crate::emulator::values::fields_to_json(&doc.fields),
            json!({"a": {"integerValue": "1"}, "c": {"integerValue": "3"}})
        );
        let stale = write(json!({
            "delete": name, "currentDocument": {"updateTime": "1970-01-01T00:00:01Z"}
        }));
        assert!(matches!(
            commit(&mut state, DB, &[stale], now(3)),
            Err(EmulatorError::FailedPrecondition(_))
        ));
    }

    /// Firestore: an `updateTime` precondition later than the commit is
    /// INVALID_ARGUMENT (python-firestore's system test of `update` and
    /// `delete` with a last-update time an hour ahead), on a document that
    /// exists or not.
    #[test]
    fn an_update_time_in_the_future_is_a_bad_argument() {
        let mut state = State::default();
        let name = format!("{DB}/documents/c/a");
        let fields = json!({"a": {"integerValue": "1"}});
        commit(
            &mut state,
            DB,
            &[write(json!({"update": {"name": name, "fields": fields}}))],
            now(1),
        )
        .unwrap();
        let ahead = json!({"updateTime": "1970-01-01T01:00:01Z"});
        for target in [name.clone(), format!("{DB}/documents/c/missing")] {
            for json in [
                json!({"delete": target, "currentDocument": ahead}),
                json!({"update": {"name": target, "fields": fields}, "currentDocument": ahead}),
            ] {
                assert!(
                    matches!(
                        commit(&mut state, DB, &[write(json.clone())], now(2)),
                        Err(EmulatorError::InvalidArgument(_))
                    ),
                    "{json}"
                );
            }
        }
    }
}
