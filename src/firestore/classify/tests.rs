//! One case per row of firestore-rest.md §1 and §2 with the exact targets,
//! one per trap of §3, and bodies as the Node client and Firebase lite send
//! them.

use http::{HeaderMap, HeaderValue, Method as HttpMethod, Uri};

use super::*;
use crate::firestore::route;

pub(super) const DB: &str = "/v1/projects/p/databases/(default)/documents";
pub(super) const NAME: &str = "projects/p/databases/(default)/documents";

pub(super) fn request(
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: &str,
) -> Result<Classified, ClassifyError> {
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type {
        headers.insert("content-type", HeaderValue::from_str(ct).unwrap());
    }
    let method = HttpMethod::from_bytes(method.as_bytes()).unwrap();
    let uri: Uri = uri.parse().unwrap();
    let route = route(&method, &uri, &headers)?;
    let body = Bytes::from(body.to_owned());
    classify_request(&route, route.needs_body().then_some(&body))
}

pub(super) fn targets(method: &str, uri: &str, body: &str) -> Vec<Target> {
    match request(method, uri, Some("application/json"), body) {
        Ok(c) => c.operation.targets,
        Err(e) => panic!("{method} {uri} {body}: {e}"),
    }
}

pub(super) fn refused(method: &str, uri: &str, body: &str) -> &'static str {
    match request(method, uri, Some("application/json"), body) {
        Ok(c) => panic!(
            "{method} {uri} {body}: accepted as {:?}",
            c.operation.targets
        ),
        Err(e) => e.reason(),
    }
}

pub(super) fn segs(path: &[&str]) -> Segments {
    path.iter().map(|s| s.to_string()).collect()
}

pub(super) fn doc(path: &[&str], access: Access) -> Target {
    Target {
        scope: Scope::Document { path: segs(path) },
        access,
    }
}

pub(super) fn coll(parent: &[&str], collection: &str, access: Access) -> Target {
    Target {
        scope: Scope::Collection {
            parent: segs(parent),
            collection: collection.into(),
        },
        access,
    }
}

pub(super) fn group(parent: &[&str], collection: &str) -> Target {
    Target {
        scope: Scope::CollectionGroup {
            parent: segs(parent),
            collection: collection.into(),
        },
        access: Access::List,
    }
}

// ---- §1, one test per row -------------------------------------------------

#[test]
fn row_get() {
    assert_eq!(
        targets("GET", &format!("{DB}/users/alice"), ""),
        [doc(&["users", "alice"], Access::Get)]
    );
    assert_eq!(
        targets("GET", &format!("{DB}/users/alice/posts/p1"), ""),
        [doc(&["users", "alice", "posts", "p1"], Access::Get)]
    );
}

#[test]
fn row_list() {
    assert_eq!(
        targets("GET", &format!("{DB}/users"), ""),
        [coll(&[], "users", Access::List)]
    );
    assert_eq!(
        targets(
            "GET",
            &format!("{DB}/users/alice/posts?showMissing=true"),
            ""
        ),
        [coll(&["users", "alice"], "posts", Access::List)]
    );
}

#[test]
fn row_create_document() {
    assert_eq!(
        targets(
            "POST",
            &format!("{DB}/users?documentId=bob"),
            r#"{"fields":{}}"#
        ),
        [doc(&["users", "bob"], Access::Create)]
    );
    // Without documentId the id is generated upstream: create on the collection.
    assert_eq!(
        targets(
            "POST",
            &format!("{DB}/users/alice/posts"),
            r#"{"fields":{}}"#
        ),
        [coll(&["users", "alice"], "posts", Access::Create)]
    );
}

#[test]
fn row_patch_is_an_upsert_unless_a_precondition_says_otherwise() {
    let uri = format!("{DB}/users/alice");
    let body = r#"{"fields":{"n":{"integerValue":"1"}}}"#;
    assert_eq!(
        targets("PATCH", &uri, body),
        [
            doc(&["users", "alice"], Access::Create),
            doc(&["users", "alice"], Access::Update)
        ]
    );
    assert_eq!(
        targets("PATCH", &format!("{uri}?currentDocument.exists=true"), body),
        [doc(&["users", "alice"], Access::Update)]
    );
    assert_eq!(
        targets(
            "PATCH",
            &format!("{uri}?currentDocument.exists=false"),
            body
        ),
        [doc(&["users", "alice"], Access::Create)]
    );
    assert_eq!(
        targets(
            "PATCH",
            &format!(
                "{uri}?updateMask.fieldPaths=n&currentDocument.updateTime=2024-01-01T00:00:00Z"
            ),
            body
        ),
        [doc(&["users", "alice"], Access::Update)]
    );
}

#[test]
fn row_delete() {
    assert_eq!(
        targets(
            "DELETE",
            &format!("{DB}/users/alice?currentDocument.exists=true"),
            ""
        ),
        [doc(&["users", "alice"], Access::Delete)]
    );
}

#[test]
fn row_batch_get() {
    let body = format!(
        r#"{{"documents":["{NAME}/users/alice","{NAME}/teams/t1/members/bob"],"mask":{{"fieldPaths":["a"]}}}}"#
    );
    assert_eq!(
        targets("POST", &format!("{DB}:batchGet"), &body),
        [
            doc(&["users", "alice"], Access::Get),
            doc(&["teams", "t1", "members", "bob"], Access::Get)
        ]
    );
}

#[test]
fn row_commit() {
    let body = format!(
        r#"{{"writes":[
            {{"update":{{"name":"{NAME}/a/1","fields":{{}}}}}},
            {{"delete":"{NAME}/b/2"}}
        ]}}"#
    );
    assert_eq!(
        targets("POST", &format!("{DB}:commit"), &body),
        [
            doc(&["a", "1"], Access::Create),
            doc(&["a", "1"], Access::Update),
            doc(&["b", "2"], Access::Delete)
        ]
    );
}

#[test]
fn row_batch_write() {
    let body = format!(
        r#"{{"writes":[{{"delete":"{NAME}/a/1"}},{{"delete":"{NAME}/a/1"}}],"labels":{{"k":"v"}}}}"#
    );
    // A later write naming the same document is still its own target.
    assert_eq!(
        targets("POST", &format!("{DB}:batchWrite"), &body),
        [
            doc(&["a", "1"], Access::Delete),
            doc(&["a", "1"], Access::Delete)
        ]
    );
}

#[test]
fn row_begin_transaction_and_rollback_touch_nothing() {
    let begin = request(
        "POST",
        &format!("{DB}:beginTransaction"),
        Some("application/json"),
        r#"{"options":{"readOnly":{}}}"#,
    )
    .unwrap();
    assert!(begin.operation.targets.is_empty());
    assert!(begin.transaction.begins);
    let rollback = request(
        "POST",
        &format!("{DB}:rollback"),
        Some("application/json"),
        r#"{"transaction":"dHg="}"#,
    )
    .unwrap();
    assert!(rollback.operation.targets.is_empty());
    assert_eq!(rollback.transaction.presented.unwrap().sealed, "dHg=");
    assert_eq!(
        refused("POST", &format!("{DB}:rollback"), "{}"),
        "malformed_body"
    );
}

#[test]
fn row_run_query() {
    let body = r#"{"structuredQuery":{"from":[{"collectionId":"posts"}],"limit":10}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}/users/alice:runQuery"), body),
        [coll(&["users", "alice"], "posts", Access::List)]
    );
    let group_body =
        r#"{"structuredQuery":{"from":[{"collectionId":"posts","allDescendants":true}]}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:runQuery"), group_body),
        [group(&[], "posts")]
    );
    let kindless = r#"{"structuredQuery":{"from":[{"allDescendants":true}]}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}/users/alice:runQuery"), kindless),
        [Target {
            scope: Scope::Descendants {
                parent: segs(&["users", "alice"])
            },
            access: Access::List
        }]
    );
}

#[test]
fn row_run_aggregation_query() {
    let body = r#"{"structuredAggregationQuery":{"structuredQuery":{"from":[{"collectionId":"users"}]},"aggregations":[{"alias":"n","count":{}}]}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:runAggregationQuery"), body),
        [coll(&[], "users", Access::List)]
    );
}

#[test]
fn row_partition_query() {
    let body = r#"{"structuredQuery":{"from":[{"collectionId":"logs","allDescendants":true}]},"partitionCount":"4"}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:partitionQuery"), body),
        [group(&[], "logs")]
    );
}

#[test]
fn row_list_collection_ids() {
    assert_eq!(
        targets(
            "POST",
            &format!("{DB}/users/alice:listCollectionIds"),
            r#"{"pageSize":10}"#
        ),
        [Target {
            scope: Scope::CollectionIds {
                parent: segs(&["users", "alice"])
            },
            access: Access::List
        }]
    );
    assert_eq!(
        targets("POST", &format!("{DB}:listCollectionIds"), ""),
        [Target {
            scope: Scope::CollectionIds {
                parent: Segments::default(),
            },
            access: Access::List
        }]
    );
}

// ---- §2, names hidden in bodies ------------------------------------------

#[test]
fn write_update_access_follows_its_precondition() {
    let cases = [
        ("", vec![Access::Create, Access::Update]),
        (
            r#","currentDocument":{"exists":false}"#,
            vec![Access::Create],
        ),
        (
            r#","currentDocument":{"exists":true}"#,
            vec![Access::Update],
        ),
        (
            r#","currentDocument":{"updateTime":"2024-01-01T00:00:00Z"}"#,
            vec![Access::Update],
        ),
    ];
    for (precondition, accesses) in cases {
        let body = format!(r#"{{"writes":[{{"update":{{"name":"{NAME}/a/1"}}{precondition}}}]}}"#);
        let expected: Vec<Target> = accesses.into_iter().map(|a| doc(&["a", "1"], a)).collect();
        assert_eq!(
            targets("POST", &format!("{DB}:commit"), &body),
            expected,
            "{precondition}"
        );
    }
}

#[test]
fn write_transform_and_verify() {
    let body = format!(
        r#"{{"writes":[
            {{"transform":{{"document":"{NAME}/a/1","fieldTransforms":[{{"fieldPath":"n","increment":{{"integerValue":"1"}}}}]}},"currentDocument":{{"exists":true}}}},
            {{"verify":"{NAME}/b/2"}}
        ]}}"#
    );
    assert_eq!(
        targets("POST", &format!("{DB}:commit"), &body),
        [
            doc(&["a", "1"], Access::Update),
            doc(&["b", "2"], Access::Get)
        ]
    );
}

#[test]
fn write_must_be_exactly_one_operation() {
    let cases = [
        r#"{"writes":[{}]}"#.to_owned(),
        format!(r#"{{"writes":[{{"delete":"{NAME}/a/1","verify":"{NAME}/a/1"}}]}}"#),
        format!(r#"{{"writes":[{{"update":{{"name":"{NAME}/a/1"}},"delete":"{NAME}/b/1"}}]}}"#),
        r#"{"writes":[{"update":{"fields":{}}}]}"#.to_owned(),
        r#"{"writes":[{"transform":{"fieldTransforms":[]}}]}"#.to_owned(),
        format!(
            r#"{{"writes":[{{"delete":"{NAME}/a/1","currentDocument":{{"exists":true,"updateTime":"x"}}}}]}}"#
        ),
    ];
    for body in cases {
        assert_eq!(
            refused("POST", &format!("{DB}:commit"), &body),
            "invalid_write",
            "{body}"
        );
    }
}

#[test]
fn every_name_in_a_body_must_be_in_the_url_database() {
    let foreign = [
        r#"{"writes":[{"delete":"projects/q/databases/(default)/documents/a/1"}]}"#,
        r#"{"writes":[{"update":{"name":"projects/p/databases/other/documents/a/1"}}]}"#,
        r#"{"writes":[{"verify":"projects/q/databases/(default)/documents/a/1"}]}"#,
        r#"{"writes":[{"transform":{"document":"projects/q/databases/(default)/documents/a/1"}}]}"#,
    ];
    for body in foreign {
        assert_eq!(
            refused("POST", &format!("{DB}:commit"), body),
            "foreign_database",
            "{body}"
        );
    }
    let get = r#"{"documents":["projects/p/databases/(default)/documents/a/1","projects/q/databases/(default)/documents/a/1"]}"#;
    assert_eq!(
        refused("POST", &format!("{DB}:batchGet"), get),
        "foreign_database"
    );
}

#[test]
fn body_names_must_be_documents() {
    let body = format!(r#"{{"documents":["{NAME}/users"]}}"#);
    assert_eq!(
        refused("POST", &format!("{DB}:batchGet"), &body),
        "resource_parity_mismatch"
    );
    let body = format!(r#"{{"writes":[{{"delete":"{NAME}"}}]}}"#);
    assert_eq!(
        refused("POST", &format!("{DB}:commit"), &body),
        "resource_parity_mismatch"
    );
}

#[test]
fn query_selectors() {
    let cases = [
        (r#"{"from":[]}"#, "invalid_query"),
        (r#"{}"#, "invalid_query"),
        (r#"{"from":[{}]}"#, "invalid_query"),
        (r#"{"from":[{"collectionId":""}]}"#, "invalid_query"),
        (
            r#"{"from":[{"collectionId":"a/b"}]}"#,
            "invalid_resource_id",
        ),
        (r#"{"from":[{"collectionId":".."}]}"#, "invalid_resource_id"),
        (
            r#"{"from":[{"collectionId":"__x__"}]}"#,
            "invalid_resource_id",
        ),
        (
            r#"{"from":[{"collectionId":"a","allDescendants":"true"}]}"#,
            "malformed_body",
        ),
        (
            r#"{"from":[{"collectionId":"a","kind":"b"}]}"#,
            "unknown_field",
        ),
        (r#"{"from":{"collectionId":"a"}}"#, "malformed_body"),
    ];
    for (query, reason) in cases {
        let body = format!(r#"{{"structuredQuery":{query}}}"#);
        assert_eq!(
            refused("POST", &format!("{DB}:runQuery"), &body),
            reason,
            "{query}"
        );
    }
    assert_eq!(
        refused("POST", &format!("{DB}:runQuery"), "{}"),
        "invalid_query"
    );
}

#[test]
fn several_selectors_each_become_a_target() {
    let body = r#"{"structuredQuery":{"from":[{"collectionId":"a"},{"collectionId":"b","allDescendants":true}]}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:runQuery"), body),
        [coll(&[], "a", Access::List), group(&[], "b")]
    );
}

// ---- §3, encoding traps ---------------------------------------------------

#[test]
fn snake_case_spellings_classify_the_same() {
    let camel = r#"{"structuredQuery":{"from":[{"collectionId":"posts","allDescendants":true}],"orderBy":[{"field":{"fieldPath":"a"}}]}}"#;
    let snake = r#"{"structured_query":{"from":[{"collection_id":"posts","all_descendants":true}],"order_by":[{"field":{"field_path":"a"}}]}}"#;
    let uri = format!("{DB}:runQuery");
    assert_eq!(targets("POST", &uri, camel), targets("POST", &uri, snake));
    assert_eq!(targets("POST", &uri, snake), [group(&[], "posts")]);

    let agg =
        r#"{"structured_aggregation_query":{"structured_query":{"from":[{"collection_id":"u"}]}}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:runAggregationQuery"), agg),
        [coll(&[], "u", Access::List)]
    );

    let write = format!(
        r#"{{"writes":[{{"update":{{"name":"{NAME}/a/1"}},"update_mask":{{"field_paths":["x"]}},"current_document":{{"exists":false}}}}]}}"#
    );
    assert_eq!(
        targets("POST", &format!("{DB}:commit"), &write),
        [doc(&["a", "1"], Access::Create)]
    );
}

#[test]
fn mixed_spellings_are_refused() {
    let cases = [
        (
            ":runQuery",
            r#"{"structuredQuery":{"from":[{"collectionId":"a"}]},"structured_query":{"from":[{"collectionId":"b"}]}}"#,
        ),
        (
            ":runQuery",
            r#"{"structuredQuery":{"from":[{"collectionId":"a","collection_id":"b"}]}}"#,
        ),
        (
            ":runQuery",
            r#"{"structuredQuery":{"from":[{"collectionId":"a","allDescendants":false,"all_descendants":true}]}}"#,
        ),
        (
            ":commit",
            r#"{"writes":[{"delete":"projects/p/databases/(default)/documents/a/1","currentDocument":{"exists":true},"current_document":{"exists":false}}]}"#,
        ),
    ];
    for (verb, body) in cases {
        assert_eq!(
            refused("POST", &format!("{DB}{verb}"), body),
            "mixed_field_spelling",
            "{body}"
        );
    }
}

#[test]
fn repeated_keys_are_refused_anywhere() {
    let cases = [
        (
            ":runQuery",
            r#"{"structuredQuery":{"from":[{"collectionId":"a","collectionId":"b"}]}}"#,
        ),
        (
            ":runQuery",
            r#"{"structuredQuery":{"from":[{"collectionId":"a"}]},"structuredQuery":{"from":[{"collectionId":"b"}]}}"#,
        ),
        (
            ":runQuery",
            r#"{"structuredQuery":{"from":[{"collectionId":"a"}],"where":{"fieldFilter":{"op":1,"op":2}}}}"#,
        ),
        (
            ":commit",
            r#"{"writes":[{"update":{"name":"projects/p/databases/(default)/documents/a/1","fields":{"x":{"stringValue":"1"},"x":{"stringValue":"2"}}}}]}"#,
        ),
        (
            ":commit",
            r#"{"writes":[{"delete":"projects/p/databases/(default)/documents/a/1","delete":"projects/p/databases/(default)/documents/b/1"}]}"#,
        ),
    ];
    for (verb, body) in cases {
        assert_eq!(
            refused("POST", &format!("{DB}{verb}"), body),
            "duplicate_key",
            "{body}"
        );
    }
}

#[test]
fn path_bound_fields_are_not_re_specified() {
    let cases = [
        (
            format!("{DB}:commit"),
            r#"{"database":"projects/p/databases/(default)","writes":[]}"#,
        ),
        (
            format!("{DB}:batchGet"),
            r#"{"database":"projects/q/databases/x","documents":[]}"#,
        ),
        (
            format!("{DB}:runQuery"),
            r#"{"parent":"projects/p/databases/(default)/documents/x/y","structuredQuery":{"from":[{"collectionId":"a"}]}}"#,
        ),
        (
            format!("{DB}:listCollectionIds"),
            r#"{"parent":"projects/p/databases/(default)/documents/x/y"}"#,
        ),
        (
            format!("{DB}:beginTransaction"),
            r#"{"database":"projects/p/databases/(default)"}"#,
        ),
        (
            format!("{DB}:rollback"),
            r#"{"database":"x","transaction":"dHg="}"#,
        ),
    ];
    for (uri, body) in &cases {
        assert_eq!(
            refused("POST", uri, body),
            "path_field_respecified",
            "{body}"
        );
    }
    let patch = format!(r#"{{"name":"{NAME}/users/eve","fields":{{}}}}"#);
    assert_eq!(
        refused("PATCH", &format!("{DB}/users/alice"), &patch),
        "path_field_respecified"
    );
    assert_eq!(
        refused("POST", &format!("{DB}/users"), &patch),
        "path_field_respecified"
    );
}

#[test]
fn unknown_fields_in_what_is_read_are_refused() {
    let cases = [
        (
            format!("{DB}:commit"),
            r#"{"writes":[],"labels":{}}"#.to_owned(),
        ),
        (
            format!("{DB}:batchWrite"),
            r#"{"writes":[],"transaction":"dHg="}"#.to_owned(),
        ),
        (
            format!("{DB}:commit"),
            format!(r#"{{"writes":[{{"delete":"{NAME}/a/1","extra":1}}]}}"#),
        ),
        (
            format!("{DB}:commit"),
            format!(r#"{{"writes":[{{"update":{{"name":"{NAME}/a/1","parent":"x"}}}}]}}"#),
        ),
        (
            format!("{DB}:batchGet"),
            r#"{"documents":[],"names":[]}"#.to_owned(),
        ),
        (
            format!("{DB}:runQuery"),
            r#"{"structuredQuery":{"from":[{"collectionId":"a"}],"union":{}}}"#.to_owned(),
        ),
        (
            format!("{DB}:runQuery"),
            r#"{"structuredQuery":{"from":[{"collectionId":"a"}]},"structuredPipeline":{}}"#
                .to_owned(),
        ),
        (
            format!("{DB}:beginTransaction"),
            r#"{"options":{"readWrite":{},"other":{}}}"#.to_owned(),
        ),
        (
            format!("{DB}/a/b"),
            r#"{"fields":{},"document":{}}"#.to_owned(),
        ),
    ];
    for (uri, body) in &cases {
        let method = if uri.ends_with("/a/b") {
            "PATCH"
        } else {
            "POST"
        };
        assert_eq!(refused(method, uri, body), "unknown_field", "{body}");
    }
}

/// A name written with JSON escapes is the name it unescapes to: the
/// escaped `/` separates ids, an escaped id is that id.
#[test]
fn escaped_names_in_bodies_are_the_names_they_spell() {
    let body = format!(
        r#"{{"writes":[
            {{"delete":"{NAME}\/a\/1"}},
            {{"delete":"{NAME}/\u0062/\u0032"}},
            {{"update":{{"na\u006de":"{NAME}/c/\u00e9","fields":{{}}}}}}
        ]}}"#
    );
    assert_eq!(
        targets("POST", &format!("{DB}:commit"), &body),
        [
            doc(&["a", "1"], Access::Delete),
            doc(&["b", "2"], Access::Delete),
            doc(&["c", "é"], Access::Create),
            doc(&["c", "é"], Access::Update),
        ]
    );
    // An escaped control character is still one.
    let body = format!(r#"{{"writes":[{{"delete":"{NAME}/a/x\u0007"}}]}}"#);
    assert_eq!(
        refused("POST", &format!("{DB}:commit"), &body),
        "invalid_resource_id"
    );
}

#[test]
fn ids_in_bodies_are_validated() {
    let long = "x".repeat(1501);
    for id in ["..", ".", "__x__", long.as_str()] {
        let body = format!(r#"{{"writes":[{{"delete":"{NAME}/a/{id}"}}]}}"#);
        assert_eq!(
            refused("POST", &format!("{DB}:commit"), &body),
            "invalid_resource_id",
            "{id}"
        );
    }
    let body = format!(r#"{{"writes":[{{"delete":"{NAME}/a//b/c"}}]}}"#);
    assert_eq!(
        refused("POST", &format!("{DB}:commit"), &body),
        "invalid_resource_id"
    );
}

#[test]
fn malformed_bodies_are_refused() {
    let cases = [
        "[",
        "[]",
        "null",
        r#"{"writes":{}}"#,
        r#"{"writes":[1]}"#,
        r#"{"writes":[{"delete":1}]}"#,
        "{} {}",
    ];
    for body in cases {
        let reason = refused("POST", &format!("{DB}:commit"), body);
        assert!(["malformed_body"].contains(&reason), "{body}: {reason}");
    }
    let latin1 = request(
        "POST",
        &format!("{DB}:commit"),
        Some("application/json"),
        "{\"writes\":[]}",
    );
    assert!(latin1.is_ok());
}

#[test]
fn text_plain_is_json_and_untyped_bodies_are_refused() {
    let uri = format!("{DB}:runQuery");
    let body = r#"{"structuredQuery":{"from":[{"collectionId":"a"}]}}"#;
    assert!(request("POST", &uri, Some("text/plain;charset=UTF-8"), body).is_ok());
    let untyped = request("POST", &uri, None, body).unwrap_err();
    assert_eq!(untyped.reason(), "unsupported_content_type");
    // An untyped empty body is fine (nothing to misread).
    assert!(request("POST", &format!("{DB}:beginTransaction"), None, "").is_ok());
}

// ---- real clients ----------------------------------------------------------

/// `@google-cloud/firestore` with `preferRest: true`: integer enums and
/// `?$alt=json%3Benum-encoding=int`.
#[test]
fn node_client_bodies() {
    let alt = "?$alt=json%3Benum-encoding=int";
    let query = r#"{"structuredQuery":{"from":[{"collectionId":"deployments"}],"where":{"fieldFilter":{"field":{"fieldPath":"env"},"op":5,"value":{"stringValue":"prod"}}},"orderBy":[{"field":{"fieldPath":"at"},"direction":2}],"limit":{"value":10}}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}/teams/t1:runQuery{alt}"), query),
        [coll(&["teams", "t1"], "deployments", Access::List)]
    );
    let set = format!(
        r#"{{"writes":[{{"update":{{"name":"{NAME}/teams/t1","fields":{{"n":{{"integerValue":"1"}}}}}},"updateTransforms":[{{"fieldPath":"at","setToServerValue":1}}]}},{{"update":{{"name":"{NAME}/teams/t2","fields":{{}}}},"updateMask":{{"fieldPaths":["n"]}},"currentDocument":{{"exists":true}}}},{{"update":{{"name":"{NAME}/teams/t3","fields":{{}}}},"currentDocument":{{"exists":false}}}}]}}"#
    );
    assert_eq!(
        targets("POST", &format!("{DB}:commit{alt}"), &set),
        [
            doc(&["teams", "t1"], Access::Create),
            doc(&["teams", "t1"], Access::Update),
            doc(&["teams", "t2"], Access::Update),
            doc(&["teams", "t3"], Access::Create)
        ]
    );
    let get_all =
        format!(r#"{{"documents":["{NAME}/teams/t1"],"newTransaction":{{"readWrite":{{}}}}}}"#);
    let c = request(
        "POST",
        &format!("{DB}:batchGet{alt}"),
        Some("application/json"),
        &get_all,
    )
    .unwrap();
    assert_eq!(c.operation.targets, [doc(&["teams", "t1"], Access::Get)]);
    assert!(c.transaction.begins);
    let count = r#"{"structuredAggregationQuery":{"structuredQuery":{"from":[{"collectionId":"teams"}]},"aggregations":[{"alias":"aggregate_0","count":{}}]}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}:runAggregationQuery{alt}"), count),
        [coll(&[], "teams", Access::List)]
    );
    // recursiveDelete: a kindless query below the document, then batchWrite.
    let kindless = r#"{"structuredQuery":{"from":[{"allDescendants":true}],"orderBy":[{"field":{"fieldPath":"__name__"},"direction":1}],"select":{"fields":[{"fieldPath":"__name__"}]}}}"#;
    assert_eq!(
        targets("POST", &format!("{DB}/teams/t1:runQuery{alt}"), kindless),
        [Target {
            scope: Scope::Descendants {
                parent: segs(&["teams", "t1"])
            },
            access: Access::List
        }]
    );
    assert_eq!(
        targets("POST", &format!("{DB}:listCollectionIds{alt}"), "{}"),
        [Target {
            scope: Scope::CollectionIds {
                parent: Segments::default(),
            },
            access: Access::List
        }]
    );
}

/// The Node client's `recursiveDelete(db.collection("teams"))` in REST mode:
/// a kindless query on the root whose `__name__` bounds enclose `teams`, its
/// operators sent as numbers (`AND` = 1, `GREATER_THAN_OR_EQUAL` = 4,
/// `LESS_THAN` = 1). It narrows exactly as the same query with names does.
#[test]
fn node_recursive_delete_narrows_with_numeric_enums() {
    let min = "__id-9223372036854775808__";
    let query = |and: &str, from: &str, below: &str| {
        format!(
            r#"{{"structuredQuery":{{"from":[{{"allDescendants":true}}],"select":{{"fields":[{{"fieldPath":"__name__"}}]}},"where":{{"compositeFilter":{{"op":{and},"filters":[
                {{"fieldFilter":{{"field":{{"fieldPath":"__name__"}},"op":{from},"value":{{"referenceValue":"{NAME}/teams/{min}"}}}}}},
                {{"fieldFilter":{{"field":{{"fieldPath":"__name__"}},"op":{below},"value":{{"referenceValue":"{NAME}/teams\u0000/{min}"}}}}}}]}}}},"limit":{{"value":5000}}}}}}"#
        )
    };
    let uri = format!("{DB}:runQuery?$alt=json%3Benum-encoding=int");
    let subtree = [Target {
        scope: Scope::Subtree {
            parent: Segments::default(),
            collection: "teams".into(),
        },
        access: Access::List,
    }];
    let names = query(r#""AND""#, r#""GREATER_THAN_OR_EQUAL""#, r#""LESS_THAN""#);
    assert_eq!(targets("POST", &uri, &names), subtree);
    assert_eq!(targets("POST", &uri, &query("1", "4", "1")), subtree);
}

#[test]
fn order_directions_are_read_by_name_or_number() {
    let uri = format!("{DB}:runQuery");
    let query = |order: &str| {
        format!(r#"{{"structuredQuery":{{"from":[{{"collectionId":"a"}}],"orderBy":[{order}]}}}}"#)
    };
    let ordered = |direction: &str| {
        query(&format!(
            r#"{{"field":{{"fieldPath":"x"}},"direction":{direction}}}"#
        ))
    };
    for known in ["1", "2", "0", "null", r#""ASCENDING""#, r#""DESCENDING""#] {
        assert_eq!(
            targets("POST", &uri, &ordered(known)),
            [coll(&[], "a", Access::List)],
            "{known}"
        );
    }
    for unknown in ["3", "-1", "1.5", "true", r#""DESC""#, r#""1""#] {
        assert_eq!(
            refused("POST", &uri, &ordered(unknown)),
            "invalid_query",
            "{unknown}"
        );
    }
    let extra = query(r#"{"field":{"fieldPath":"x"},"nulls":"FIRST"}"#);
    assert_eq!(refused("POST", &uri, &extra), "unknown_field");
}

/// `firebase/firestore/lite`: string enums, `text/plain`, `?key=`, an added
/// `orderBy __name__`, `verify` writes in transactions.
#[test]
fn firebase_lite_bodies() {
    let key = "?key=AIzaSyDummy";
    let query = r#"{"structuredQuery":{"from":[{"collectionId":"catalog"}],"where":{"fieldFilter":{"field":{"fieldPath":"kind"},"op":"EQUAL","value":{"stringValue":"Component"}}},"orderBy":[{"field":{"fieldPath":"__name__"},"direction":"ASCENDING"}]}}"#;
    let c = request(
        "POST",
        &format!("{DB}:runQuery{key}"),
        Some("text/plain"),
        query,
    )
    .unwrap();
    assert_eq!(c.operation.targets, [coll(&[], "catalog", Access::List)]);
    let tx = format!(
        r#"{{"writes":[{{"verify":"{NAME}/catalog/a","currentDocument":{{"updateTime":"2024-05-01T10:00:00.000000Z"}}}},{{"update":{{"name":"{NAME}/catalog/a","fields":{{"n":{{"integerValue":"2"}}}}}},"updateMask":{{"fieldPaths":["n"]}},"currentDocument":{{"exists":true}}}}]}}"#
    );
    let c = request(
        "POST",
        &format!("{DB}:commit{key}"),
        Some("text/plain"),
        &tx,
    )
    .unwrap();
    assert_eq!(
        c.operation.targets,
        [
            doc(&["catalog", "a"], Access::Get),
            doc(&["catalog", "a"], Access::Update)
        ]
    );
    let get = format!(r#"{{"documents":["{NAME}/catalog/a"]}}"#);
    let c = request(
        "POST",
        &format!("{DB}:batchGet{key}"),
        Some("text/plain"),
        &get,
    )
    .unwrap();
    assert_eq!(c.operation.targets, [doc(&["catalog", "a"], Access::Get)]);
}

// ---- transactions in requests ---------------------------------------------

#[test]
fn presented_transactions_are_located() {
    let cases = [
        (
            format!("{DB}:commit"),
            r#"{"writes":[],"transaction":"dHgx"}"#,
        ),
        (
            format!("{DB}:batchGet"),
            r#"{"documents":[],"transaction":"dHgx"}"#,
        ),
        (
            format!("{DB}:runQuery"),
            r#"{"structuredQuery":{"from":[{"collectionId":"a"}]},"transaction":"dHgx"}"#,
        ),
        (
            format!("{DB}:runAggregationQuery"),
            r#"{"structuredAggregationQuery":{"structuredQuery":{"from":[{"collectionId":"a"}]}},"transaction":"dHgx"}"#,
        ),
        (format!("{DB}:rollback"), r#"{"transaction":"dHgx"}"#),
        (
            format!("{DB}:beginTransaction"),
            r#"{"options":{"readWrite":{"retryTransaction":"dHgx"}}}"#,
        ),
        (
            format!("{DB}:beginTransaction"),
            r#"{"options":{"read_write":{"retry_transaction":"dHgx"}}}"#,
        ),
        (
            format!("{DB}:batchGet"),
            r#"{"documents":[],"newTransaction":{"readWrite":{"retryTransaction":"dHgx"}}}"#,
        ),
    ];
    for (uri, body) in &cases {
        let c = request("POST", uri, Some("application/json"), body).unwrap();
        let presented = c.transaction.presented.unwrap_or_else(|| panic!("{body}"));
        assert_eq!(presented.sealed, "dHgx");
        let Location::Body(range) = presented.at else {
            panic!("{body}")
        };
        assert_eq!(&body[range], "\"dHgx\"", "{body}");
    }
    let get = request("GET", &format!("{DB}/a/b?transaction=dHgx"), None, "").unwrap();
    assert_eq!(get.transaction.presented.unwrap().at, Location::Query);
}

#[test]
fn consistency_selectors_are_exclusive() {
    let body = r#"{"documents":[],"transaction":"dHg=","readTime":"2024-01-01T00:00:00Z"}"#;
    assert_eq!(
        refused("POST", &format!("{DB}:batchGet"), body),
        "malformed_body"
    );
    let body = r#"{"documents":[],"transaction":"dHg=","newTransaction":{}}"#;
    assert_eq!(
        refused("POST", &format!("{DB}:batchGet"), body),
        "malformed_body"
    );
    let body = r#"{"options":{"readOnly":{},"readWrite":{}}}"#;
    assert_eq!(
        refused("POST", &format!("{DB}:beginTransaction"), body),
        "malformed_body"
    );
}

#[test]
fn null_fields_read_as_absent() {
    let body = r#"{"documents":[],"transaction":null,"newTransaction":null,"mask":null}"#;
    let c = request(
        "POST",
        &format!("{DB}:batchGet"),
        Some("application/json"),
        body,
    )
    .unwrap();
    assert_eq!(c.transaction, TransactionUse::default());
}

#[test]
fn a_written_documents_index_is_its_position_in_the_writes_verify_included() {
    // The pin goes to `writes[index]`: a `verify` before a write must not
    // shift it onto the verify.
    let body = format!(r#"{{"writes":[{{"verify":"{NAME}/b/2"}},{{"delete":"{NAME}/a/1"}}]}}"#);
    let op = request(
        "POST",
        &format!("{DB}:commit"),
        Some("application/json"),
        &body,
    )
    .expect("classifies")
    .operation;
    assert_eq!(op.writes.len(), 1);
    assert_eq!(op.writes[0].index, 1);
}

/// Where each write sits, found from the body again only when a write is
/// pinned: the write object and its precondition, in any spelling and
/// spacing the classification accepts.
#[test]
fn write_sites_are_where_each_write_and_its_precondition_sit() {
    let body = format!(
        r#"{{ "writes" : [ {{"delete":"{NAME}/notes/a" , "current_document" : {{"exists":true}} }} ,
            {{"upd\u0061te":{{"name":"{NAME}/notes/b"}},"currentDocument":{{ "updateTime":"2026-01-01T00:00:00Z" }}}},
            {{"verify":"{NAME}/notes/c"}} ] }}"#
    );
    targets("POST", &format!("{DB}:commit"), &body);
    let sites = write_sites(&body).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let value = |range: &Range<usize>| -> serde_json::Value {
        serde_json::from_str(&body[range.clone()]).unwrap()
    };
    assert_eq!(sites.len(), 3);
    for (i, site) in sites.iter().enumerate() {
        let write = &parsed["writes"][i];
        assert_eq!(value(&site.object), *write, "write {i}");
        assert!(body[site.object.clone()].starts_with('{'), "write {i}");
        let precondition = [&write["currentDocument"], &write["current_document"]]
            .into_iter()
            .find(|v| !v.is_null());
        assert_eq!(
            site.precondition.as_ref().map(value).as_ref(),
            precondition,
            "write {i}"
        );
    }
    assert_eq!(write_sites(r#"{"writes":[]}"#).unwrap(), []);
    assert_eq!(write_sites("{}").unwrap(), []);
}

/// A commit's writes are read in the body's own pass, and still judged in
/// their order: the first faulty write is the one refused, whatever is
/// wrong with the writes after it.
#[test]
fn a_commits_writes_are_refused_in_their_order() {
    let foreign = r#"{"delete":"projects/q/databases/(default)/documents/a/1"}"#;
    let bad_id = format!(r#"{{"delete":"{NAME}/a/__x__"}}"#);
    let bad_fields =
        format!(r#"{{"update":{{"name":"{NAME}/a/1","fields":{{"f":{{"bogus":1}}}}}}}}"#);
    let commit = |writes: &[&str]| {
        let body = format!(r#"{{"writes":[{}]}}"#, writes.join(","));
        refused("POST", &format!("{DB}:commit"), &body)
    };
    assert_eq!(commit(&[foreign, "1"]), "foreign_database");
    assert_eq!(commit(&["1", foreign]), "malformed_body");
    assert_eq!(commit(&[foreign, &bad_id]), "foreign_database");
    assert_eq!(commit(&[&bad_id, foreign]), "invalid_resource_id");
    assert_eq!(
        commit(&[&bad_fields, foreign]),
        refused(
            "POST",
            &format!("{DB}:commit"),
            &format!(r#"{{"writes":[{bad_fields}]}}"#)
        )
    );
    assert_eq!(commit(&[foreign, &bad_fields]), "foreign_database");
    assert_eq!(commit(&["null", foreign]), "malformed_body");
}
