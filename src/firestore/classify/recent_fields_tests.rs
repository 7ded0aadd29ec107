//! What Firestore added to its RPCs lately, read as Google reads it:
//! `requestOptions` everywhere, `concurrencyMode`, `explainOptions`,
//! `findNearest`, negative numeric ids — and the pipeline expression values
//! that stay refused wherever a document or a query holds a value.

use super::tests::{DB, NAME, coll, doc, refused, request, targets};
use super::*;

/// Every RPC with a body, a body for it, and the targets it has.
fn bodies() -> Vec<(String, String, Vec<Target>)> {
    let query = r#""structuredQuery":{"from":[{"collectionId":"posts"}]}"#;
    vec![
        (
            format!("{DB}:batchGet"),
            format!(r#"{{"documents":["{NAME}/a/1"]"#),
            vec![doc(&["a", "1"], Access::Get)],
        ),
        (
            format!("{DB}:commit"),
            format!(r#"{{"writes":[{{"delete":"{NAME}/a/1"}}]"#),
            vec![doc(&["a", "1"], Access::Delete)],
        ),
        (
            format!("{DB}:batchWrite"),
            format!(r#"{{"writes":[{{"delete":"{NAME}/a/1"}}]"#),
            vec![doc(&["a", "1"], Access::Delete)],
        ),
        (
            format!("{DB}:beginTransaction"),
            r#"{"options":{"readWrite":{}}"#.to_owned(),
            vec![],
        ),
        (
            format!("{DB}:rollback"),
            r#"{"transaction":"dHg=""#.to_owned(),
            vec![],
        ),
        (
            format!("{DB}:runQuery"),
            format!("{{{query}"),
            vec![coll(&[], "posts", Access::List)],
        ),
        (
            format!("{DB}:runAggregationQuery"),
            format!(
                r#"{{"structuredAggregationQuery":{{{query},"aggregations":[{{"count":{{}}}}]}}"#
            ),
            vec![coll(&[], "posts", Access::List)],
        ),
        (
            format!("{DB}:partitionQuery"),
            format!(r#"{{{query},"partitionCount":"2""#),
            vec![coll(&[], "posts", Access::List)],
        ),
        (
            format!("{DB}:listCollectionIds"),
            r#"{"pageSize":5"#.to_owned(),
            vec![Target {
                scope: Scope::CollectionIds {
                    parent: Segments::default(),
                },
                access: Access::List,
            }],
        ),
    ]
}

fn classified(method: &str, uri: &str, body: &str) -> Classified {
    request(method, uri, Some("application/json"), body)
        .unwrap_or_else(|e| panic!("{method} {uri} {body}: {e}"))
}

#[test]
fn request_options_pass_on_every_rpc_and_their_tags_are_kept() {
    for (uri, open_body, expected) in bodies() {
        let plain = classified("POST", &uri, &format!("{open_body}}}"));
        assert!(plain.request_tags.is_empty());
        for options in [
            r#""requestOptions":{"requestTags":["checkout","p1"]}"#,
            r#""request_options":{"request_tags":["checkout","p1"]}"#,
        ] {
            let body = format!("{open_body},{options}}}");
            let tagged = classified("POST", &uri, &body);
            assert_eq!(tagged.operation.targets, expected, "{body}");
            assert_eq!(tagged.operation, plain.operation, "{body}");
            assert_eq!(tagged.request_tags, ["checkout", "p1"], "{body}");
        }
        let unknown = format!(r#"{open_body},"requestOptions":{{"priority":1}}}}"#);
        assert_eq!(
            refused("POST", &uri, &unknown),
            "unknown_field",
            "{unknown}"
        );
        let not_text = format!(r#"{open_body},"requestOptions":{{"requestTags":[1]}}}}"#);
        assert_eq!(refused("POST", &uri, &not_text), "malformed_body");
    }
}

#[test]
fn request_tags_in_the_query_string_of_the_document_rpcs() {
    let tags = "requestOptions.requestTags=a&requestOptions.requestTags=b%20c";
    let cases = [
        ("GET", format!("{DB}/users/alice?{tags}"), ""),
        ("GET", format!("{DB}/users?{tags}"), ""),
        ("DELETE", format!("{DB}/users/alice?{tags}"), ""),
        (
            "PATCH",
            format!("{DB}/users/alice?{tags}"),
            r#"{"fields":{}}"#,
        ),
        ("POST", format!("{DB}/users?documentId=x&{tags}"), "{}"),
    ];
    for (method, uri, body) in cases {
        let c = classified(method, &uri, body);
        assert_eq!(c.request_tags, ["a", "b c"], "{method} {uri}");
    }
    let snake = format!("{DB}/users/alice?request_options.request_tags=a");
    assert_eq!(classified("GET", &snake, "").request_tags, ["a"]);
    // The body RPCs take them in the body only.
    let uri = format!("{DB}:commit?requestOptions.requestTags=a");
    assert_eq!(refused("POST", &uri, "{}"), "unknown_query_parameter");
}

#[test]
fn concurrency_mode_passes_in_read_write_options() {
    for mode in [r#""OPTIMISTIC""#, r#""PESSIMISTIC""#, "1", "0"] {
        let begin = format!(r#"{{"options":{{"readWrite":{{"concurrencyMode":{mode}}}}}}}"#);
        assert!(
            classified("POST", &format!("{DB}:beginTransaction"), &begin)
                .transaction
                .begins
        );
        let query = format!(
            r#"{{"structuredQuery":{{"from":[{{"collectionId":"a"}}]}},"newTransaction":{{"readWrite":{{"concurrency_mode":{mode}}}}}}}"#
        );
        assert_eq!(
            targets("POST", &format!("{DB}:runQuery"), &query),
            [coll(&[], "a", Access::List)]
        );
    }
    for bad in [r#""LOCKED""#, "7", "-1", "{}"] {
        let body = format!(r#"{{"options":{{"readWrite":{{"concurrencyMode":{bad}}}}}}}"#);
        assert_eq!(
            refused("POST", &format!("{DB}:beginTransaction"), &body),
            "malformed_body",
            "{bad}"
        );
    }
    let read_only = r#"{"options":{"readOnly":{"concurrencyMode":"OPTIMISTIC"}}}"#;
    assert_eq!(
        refused("POST", &format!("{DB}:beginTransaction"), read_only),
        "unknown_field"
    );
}

#[test]
fn explain_options_are_authorized_exactly_as_their_query() {
    let query = r#""structuredQuery":{"from":[{"collectionId":"posts","allDescendants":true}]}"#;
    let aggregation = format!(
        r#""structuredAggregationQuery":{{{query},"aggregations":[{{"alias":"n","count":{{}}}}]}}"#
    );
    for (rpc, inner) in [
        ("runQuery", query.to_owned()),
        ("runAggregationQuery", aggregation),
    ] {
        let uri = format!("{DB}/users/alice:{rpc}");
        let plain = classified("POST", &uri, &format!("{{{inner}}}"));
        for explain in [r#"{"analyze":true}"#, r#"{"analyze":false}"#, "{}"] {
            let body = format!(r#"{{{inner},"explainOptions":{explain}}}"#);
            assert_eq!(classified("POST", &uri, &body).operation, plain.operation);
        }
        let sneaky = format!(r#"{{{inner},"explainOptions":{{"analyze":true,"from":[]}}}}"#);
        assert_eq!(refused("POST", &uri, &sneaky), "unknown_field");
    }
}

fn nearest(find_nearest: &str) -> String {
    format!(
        r#"{{"structuredQuery":{{"from":[{{"collectionId":"docs"}}],"findNearest":{find_nearest}}}}}"#
    )
}

const VECTOR: &str = r#"{"mapValue":{"fields":{"__type__":{"stringValue":"__vector__"},"value":{"arrayValue":{"values":[{"doubleValue":1.0},{"doubleValue":0.5}]}}}}}"#;

#[test]
fn find_nearest_passes_with_its_limit_bounded_as_firestore_bounds_it() {
    let uri = format!("{DB}:runQuery");
    for limit in ["1", "1000", r#"{"value":10}"#, r#""5""#] {
        let body = nearest(&format!(
            r#"{{"vectorField":{{"fieldPath":"embedding"}},"queryVector":{VECTOR},"distanceMeasure":"COSINE","limit":{limit},"distanceResultField":"d","distanceThreshold":0.5}}"#
        ));
        assert_eq!(
            targets("POST", &uri, &body),
            [coll(&[], "docs", Access::List)],
            "{limit}"
        );
    }
    for limit in [
        "0",
        "1001",
        "-1",
        "1.5",
        r#""x""#,
        "4294967297",
        r#"{"value":0}"#,
    ] {
        let body = nearest(&format!(
            r#"{{"vectorField":{{"fieldPath":"e"}},"queryVector":{VECTOR},"distanceMeasure":3,"limit":{limit}}}"#
        ));
        assert_eq!(refused("POST", &uri, &body), "invalid_query", "{limit}");
    }
    let unbounded = nearest(&format!(
        r#"{{"vectorField":{{"fieldPath":"e"}},"queryVector":{VECTOR},"distanceMeasure":1}}"#
    ));
    assert_eq!(refused("POST", &uri, &unbounded), "invalid_query");
    let unknown = nearest(r#"{"vectorField":{"fieldPath":"e"},"limit":3,"collection":"x"}"#);
    assert_eq!(refused("POST", &uri, &unknown), "unknown_field");
}

#[test]
fn pipeline_values_are_refused_in_documents_and_queries() {
    let expression = r#"{"functionValue":{"name":"add","args":[{"fieldReferenceValue":"a"}]}}"#;
    let field = r#"{"fieldReferenceValue":"secret"}"#;
    let cases = [
        ("POST", format!("{DB}/a?documentId=1"), format!(r#"{{"fields":{{"x":{expression}}}}}"#)),
        ("PATCH", format!("{DB}/a/1"), format!(r#"{{"fields":{{"x":{{"mapValue":{{"fields":{{"y":{field}}}}}}}}}}}"#)),
        ("POST", format!("{DB}:commit"), format!(r#"{{"writes":[{{"update":{{"name":"{NAME}/a/1","fields":{{"x":{field}}}}}}}]}}"#)),
        ("POST", format!("{DB}:batchWrite"), format!(r#"{{"writes":[{{"update":{{"name":"{NAME}/a/1","fields":{{}}}},"updateTransforms":[{{"fieldPath":"n","increment":{field}}}]}}]}}"#)),
        ("POST", format!("{DB}:commit"), format!(r#"{{"writes":[{{"transform":{{"document":"{NAME}/a/1","fieldTransforms":[{{"fieldPath":"n","appendMissingElements":{{"values":[{{"pipelineValue":{{}}}}]}}}}]}}}}]}}"#)),
        ("POST", format!("{DB}:runQuery"), format!(r#"{{"structuredQuery":{{"from":[{{"collectionId":"a"}}],"where":{{"fieldFilter":{{"field":{{"fieldPath":"x"}},"op":"EQUAL","value":{expression}}}}}}}}}"#)),
        ("POST", format!("{DB}:runQuery"), r#"{"structuredQuery":{"from":[{"collectionId":"a"}],"where":{"compositeFilter":{"op":"AND","filters":[{"fieldFilter":{"field":{"fieldPath":"x"},"op":"EQUAL","value":{"variableReferenceValue":"v"}}}]}}}}"#.to_owned()),
        ("POST", format!("{DB}:runQuery"), format!(r#"{{"structuredQuery":{{"from":[{{"collectionId":"a"}}],"orderBy":[{{"field":{{"fieldPath":"x"}}}}],"startAt":{{"values":[{field}]}}}}}}"#)),
        ("POST", format!("{DB}:runAggregationQuery"), format!(r#"{{"structuredAggregationQuery":{{"structuredQuery":{{"from":[{{"collectionId":"a"}}],"endAt":{{"values":[{field}]}}}}}}}}"#)),
        ("POST", format!("{DB}:runQuery"), nearest(&format!(r#"{{"vectorField":{{"fieldPath":"e"}},"queryVector":{field},"distanceMeasure":1,"limit":3}}"#))),
    ];
    for (method, uri, body) in &cases {
        // Well-formed JSON: the refusal is the value's, not the syntax's.
        assert!(
            serde_json::from_str::<serde_json::Value>(body).is_ok(),
            "{body}"
        );
        assert_eq!(
            refused(method, uri, body),
            "pipeline_value_refused",
            "{body}"
        );
    }
    // The same places with stored kinds pass.
    let fine = r#"{"structuredQuery":{"from":[{"collectionId":"a"}],"where":{"fieldFilter":{"field":{"fieldPath":"x"},"op":"IN","value":{"arrayValue":{"values":[{"stringValue":"functionValue"}]}}}},"orderBy":[{"field":{"fieldPath":"x"}}],"startAt":{"values":[{"integerValue":"1"}],"before":true}}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:runQuery"), fine),
        [coll(&[], "a", Access::List)]
    );
}

#[test]
fn negative_numeric_ids_name_documents_in_urls_and_bodies() {
    for id in ["__id-2__", "__id-9223372036854775808__"] {
        assert_eq!(
            targets("GET", &format!("{DB}/a/{id}"), ""),
            [doc(&["a", id], Access::Get)]
        );
        let body = format!(r#"{{"writes":[{{"delete":"{NAME}/a/{id}"}}]}}"#);
        assert_eq!(
            targets("POST", &format!("{DB}:commit"), &body),
            [doc(&["a", id], Access::Delete)]
        );
    }
    for id in ["__id-0__", "__id007__", "__id9223372036854775808__"] {
        assert_eq!(
            refused("GET", &format!("{DB}/a/{id}"), ""),
            "invalid_resource_id",
            "{id}"
        );
    }
}
