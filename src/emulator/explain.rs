//! Query explain (`explainOptions`): the `explainMetrics` Firestore attaches
//! to the last element of a runQuery / runAggregationQuery answer — a plan
//! summary, and with `analyze: true` the execution statistics too.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::EmulatorError;
use super::query::Query;
use super::values::FieldPath;

/// Firestore bills at least one read per query, and one per batch of up to
/// 1,000 index entries an aggregation scans.
const ENTRIES_PER_AGGREGATION_READ: usize = 1000;

/// Parsed `explainOptions`.
#[derive(Debug, Clone, Copy)]
pub struct Explain {
    /// Run the query too (results and statistics), not just plan it.
    pub analyze: bool,
}

/// What a run of the query cost.
#[derive(Debug, Clone, Copy)]
pub struct Execution {
    pub results: usize,
    pub scanned: usize,
    pub aggregation: bool,
    pub elapsed: Duration,
}

impl Explain {
    /// `explainOptions` of a request body, if it asks for an explanation.
    pub fn parse(body: &Json) -> Result<Option<Explain>, EmulatorError> {
        match body.get("explainOptions") {
            None | Some(Json::Null) => Ok(None),
            Some(options) if options.is_object() => {
                let analyze = match options.get("analyze") {
                    None | Some(Json::Null) => false,
                    Some(Json::Bool(b)) => *b,
                    Some(_) => {
                        return Err(EmulatorError::InvalidArgument(
                            "explainOptions.analyze must be a boolean".into(),
                        ));
                    }
                };
                Ok(Some(Explain { analyze }))
            }
            Some(_) => Err(EmulatorError::InvalidArgument(
                "explainOptions must be an object".into(),
            )),
        }
    }

    /// `explainMetrics` for `query`; `execution` is given when analyzed.
    pub fn metrics(&self, query: &Query, execution: Option<Execution>) -> Json {
        let mut metrics = json!({ "planSummary": plan_summary(query) });
        if let Some(run) = execution.filter(|_| self.analyze) {
            metrics["executionStats"] = execution_stats(run);
        }
        metrics
    }
}

/// The index the query reads, as Firestore names it: equality fields first,
/// then the query's order, the fields an aggregation reads if the order has
/// not named them (before `__name__`), and last a vector search's field
/// (`embedding VECTOR<3>`). (The emulator itself scans; this is the index
/// Firestore would use, so client code that reads the plan sees its shape.)
fn plan_summary(query: &Query) -> Json {
    let order = query.effective_order();
    let mut fields: Vec<(FieldPath, bool)> = query
        .equality_fields()
        .into_iter()
        .filter(|field| !order.iter().any(|(p, _)| p == field))
        .map(|field| (field, false))
        .collect();
    fields.extend(order);
    let name_at = fields
        .iter()
        .rposition(|(p, _)| p.is_document_name())
        .unwrap_or(fields.len());
    let unnamed: Vec<(FieldPath, bool)> = query
        .aggregated()
        .iter()
        .filter(|field| !fields.iter().any(|(p, _)| p == *field))
        .map(|field| (field.clone(), false))
        .collect();
    fields.splice(name_at..name_at, unnamed);
    let mut properties: Vec<String> = fields
        .iter()
        .map(|(field, descending)| {
            let direction = if *descending { "DESC" } else { "ASC" };
            format!("{} {direction}", field_name(field))
        })
        .collect();
    if let Some(nearest) = &query.nearest {
        let (field, dimension) = nearest.indexed();
        properties.push(format!("{} VECTOR<{dimension}>", field_name(field)));
    }
    let scope = if query.is_collection_group() {
        "Collection group"
    } else {
        "Collection"
    };
    json!({ "indexesUsed": [{
        "query_scope": scope,
        "properties": format!("({})", properties.join(", ")),
    }] })
}

fn execution_stats(run: Execution) -> Json {
    let read_operations = if run.aggregation {
        run.scanned.div_ceil(ENTRIES_PER_AGGREGATION_READ).max(1)
    } else {
        run.results.max(1)
    };
    json!({
        "resultsReturned": run.results.to_string(),
        "executionDuration": format!("{}.{:09}s", run.elapsed.as_secs(), run.elapsed.subsec_nanos()),
        "readOperations": read_operations.to_string(),
        "debugStats": {
            "documents_scanned": run.scanned.to_string(),
            "index_entries_scanned": run.scanned.to_string(),
            "billing_details": {
                "documents_billable": run.results.to_string(),
                "index_entries_billable": "0",
                "small_ops": "0",
                "min_query_cost": u8::from(run.results == 0).to_string(),
            },
        },
    })
}

fn field_name(field: &FieldPath) -> String {
    field.0.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_name_equalities_then_order_and_analysis_adds_statistics() {
        let query = Query::parse(&json!({
            "from": [{"collectionId": "c"}],
            "where": {"compositeFilter": {"op": "AND", "filters": [
                {"fieldFilter": {"field": {"fieldPath": "a"}, "op": "EQUAL", "value": {"integerValue": "1"}}},
                {"fieldFilter": {"field": {"fieldPath": "b"}, "op": "GREATER_THAN", "value": {"integerValue": "1"}}}
            ]}},
            "orderBy": [{"field": {"fieldPath": "c"}, "direction": "DESCENDING"}]
        }))
        .unwrap();
        let plan = Explain { analyze: false }.metrics(&query, None);
        assert_eq!(
            plan,
            json!({"planSummary": {"indexesUsed": [{
                "query_scope": "Collection", "properties": "(a ASC, c DESC, b DESC, __name__ DESC)"
            }]}})
        );
        let run = Execution {
            results: 0,
            scanned: 2500,
            aggregation: true,
            elapsed: Duration::from_micros(1500),
        };
        let analyzed = Explain { analyze: true }.metrics(&query, Some(run));
        assert_eq!(analyzed["executionStats"]["readOperations"], "3");
        assert_eq!(
            analyzed["executionStats"]["executionDuration"],
            "0.001500000s"
        );
        assert_eq!(analyzed["executionStats"]["resultsReturned"], "0");
        assert!(Explain::parse(&json!({"explainOptions": {"analyze": "yes"}})).is_err());
        assert!(Explain::parse(&json!({})).unwrap().is_none());
    }

    /// The index also names what an aggregation reads and what a vector
    /// search searches, as Firestore's plans do (python-firestore's system
    /// test: `(color ASC, __name__ ASC, embedding VECTOR<3>)`).
    #[test]
    fn plans_name_aggregated_and_vector_fields() {
        let properties = |query: Query| {
            Explain { analyze: false }.metrics(&query, None)["planSummary"]["indexesUsed"][0]
                ["properties"]
                .clone()
        };
        let red = json!({"fieldFilter": {"field": {"fieldPath": "color"}, "op": "EQUAL", "value": {"stringValue": "red"}}});
        let nearest = Query::parse(&json!({
            "from": [{"collectionId": "c", "allDescendants": true}],
            "where": red,
            "findNearest": {"vectorField": {"fieldPath": "embedding"}, "distanceMeasure": "EUCLIDEAN", "limit": 1,
                            "queryVector": {"mapValue": {"fields": {
                                "__type__": {"stringValue": "__vector__"},
                                "value": {"arrayValue": {"values": [{"doubleValue": 1.0}, {"doubleValue": 2.0}, {"doubleValue": 3.0}]}}}}}}
        }))
        .unwrap();
        assert_eq!(
            properties(nearest),
            "(color ASC, __name__ ASC, embedding VECTOR<3>)"
        );
        let amount = || FieldPath(vec!["amount".into()]);
        let plain = Query::parse(&json!({"from": [{"collectionId": "c"}], "where": red})).unwrap();
        assert_eq!(
            properties(plain.aggregating(vec![amount()])),
            "(color ASC, amount ASC, __name__ ASC)"
        );
        let ordered = Query::parse(&json!({
            "from": [{"collectionId": "c"}],
            "orderBy": [{"field": {"fieldPath": "year"}, "direction": "DESCENDING"}]
        }))
        .unwrap();
        assert_eq!(
            properties(ordered.aggregating(vec![amount()])),
            "(year DESC, amount ASC, __name__ DESC)"
        );
    }
}
