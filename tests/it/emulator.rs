//! Conformance of the in-memory Firestore emulator, method by method, over
//! real sockets: each table row is a request and what Firestore answers.

use crate::support;

mod explain_partition;
mod ids_and_order;
mod vectors;
mod writes_and_aggregations;

use reqwest::Method;
use serde_json::{Value, json};

use support::emulator::{DB, Fixture, ids, int, status_name, string};

/// Assert that every key of `want` appears in `got` with the same value
/// (recursively for objects); arrays must match exactly.
fn assert_contains(got: &Value, want: &Value, what: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (key, value) in w {
                let inner = g
                    .get(key)
                    .unwrap_or_else(|| panic!("{what}: missing {key:?} in {got}"));
                assert_contains(inner, value, what);
            }
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

fn name(path: &str) -> String {
    format!("{DB}/documents/{path}")
}

async fn seeded() -> Fixture {
    let f = Fixture::start().await;
    f.put(
        "cities/sf",
        json!({"name": string("San Francisco"), "pop": int(860000), "tags": {"arrayValue": {"values": [string("west"), string("coast")]}}, "loc": {"mapValue": {"fields": {"state": string("CA")}}}}),
    );
    f.put(
        "cities/la",
        json!({"name": string("Los Angeles"), "pop": int(3900000), "tags": {"arrayValue": {"values": [string("west")]}}}),
    );
    f.put(
        "cities/ny",
        json!({"name": string("New York"), "pop": {"doubleValue": 8.4e6}, "capital": {"booleanValue": false}}),
    );
    f.put(
        "cities/dc",
        json!({"name": string("Washington"), "pop": {"nullValue": null}, "capital": {"booleanValue": true}}),
    );
    f.put(
        "cities/nan",
        json!({"name": string("Nowhere"), "pop": {"doubleValue": "NaN"}}),
    );
    f.put(
        "cities/sf/landmarks/bridge",
        json!({"kind": string("bridge"), "pop": int(1)}),
    );
    f.put(
        "countries/us/landmarks/liberty",
        json!({"kind": string("statue")}),
    );
    f.put("empty/parent/only/child", json!({}));
    f
}

#[tokio::test]
async fn get_with_and_without_mask() {
    let f = seeded().await;
    let cases: &[(&str, u16, Value)] = &[
        (
            "/cities/sf",
            200,
            json!({"name": name("cities/sf"), "fields": {"name": string("San Francisco"), "pop": int(860000)}}),
        ),
        (
            "/cities/sf?mask.fieldPaths=loc.state&mask.fieldPaths=pop",
            200,
            json!({"fields": {"pop": int(860000), "loc": {"mapValue": {"fields": {"state": string("CA")}}}}}),
        ),
        (
            "/cities/none",
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND"}}),
        ),
        (
            "/cities/sf/landmarks/bridge",
            200,
            json!({"fields": {"kind": string("bridge")}}),
        ),
    ];
    for (suffix, status, want) in cases {
        let (got_status, got) = f.call(Method::GET, suffix, None).await;
        assert_eq!(got_status, *status, "{suffix}: {got}");
        assert_contains(&got, want, suffix);
    }
    let (_, masked) = f
        .call(Method::GET, "/cities/sf?mask.fieldPaths=pop", None)
        .await;
    assert_eq!(
        masked["fields"],
        json!({"pop": int(860000)}),
        "mask drops the rest"
    );
    assert!(masked["createTime"].is_string() && masked["updateTime"].is_string());
}

#[tokio::test]
async fn list_pages_orders_and_shows_missing() {
    let f = seeded().await;
    let (status, page) = f.call(Method::GET, "/cities?pageSize=2", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [name("cities/dc"), name("cities/la")]);
    let token = page["nextPageToken"].as_str().unwrap();
    let (_, next) = f
        .call(
            Method::GET,
            &format!("/cities?pageSize=10&pageToken={token}"),
            None,
        )
        .await;
    assert_eq!(next["documents"].as_array().unwrap().len(), 3);
    assert!(next.get("nextPageToken").is_none());

    let (_, ordered) = f
        .call(Method::GET, "/cities?orderBy=name%20desc", None)
        .await;
    let first = &ordered["documents"][0]["fields"]["name"];
    assert_eq!(*first, string("Washington"));

    let (_, hidden) = f.call(Method::GET, "/empty", None).await;
    assert_eq!(hidden["documents"], json!([]));
    let (_, shown) = f.call(Method::GET, "/empty?showMissing=true", None).await;
    assert_eq!(shown["documents"], json!([{"name": name("empty/parent")}]));

    let (_, nested) = f
        .call(
            Method::GET,
            "/cities/sf/landmarks?mask.fieldPaths=kind",
            None,
        )
        .await;
    assert_eq!(
        nested["documents"][0]["fields"],
        json!({"kind": string("bridge")})
    );
}

#[tokio::test]
async fn create_document_with_given_and_generated_ids() {
    let f = seeded().await;
    let body = json!({"fields": {"a": int(1)}});
    let (status, created) = f
        .call(Method::POST, "/things?documentId=one", Some(body.clone()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(created["name"], name("things/one"));
    let (status, again) = f
        .call(Method::POST, "/things?documentId=one", Some(body.clone()))
        .await;
    assert_eq!((status, status_name(&again)), (409, "ALREADY_EXISTS"));
    let (status, generated) = f
        .call(Method::POST, "/cities/sf/landmarks", Some(body))
        .await;
    assert_eq!(status, 200);
    let id = generated["name"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert_eq!(id.len(), 20);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn patch_masks_preconditions_and_upserts() {
    let f = seeded().await;
    let (_, before) = f.call(Method::GET, "/cities/la", None).await;
    let stamp = before["updateTime"].as_str().unwrap().to_owned();
    let cases: Vec<(String, Value, u16, Value)> = vec![
        (
            "/cities/la?updateMask.fieldPaths=pop&updateMask.fieldPaths=tags".into(),
            json!({"fields": {"pop": int(4000000)}}),
            200,
            json!({"fields": {"name": string("Los Angeles"), "pop": int(4000000)}}),
        ),
        (
            format!("/cities/la?currentDocument.updateTime={stamp}"),
            json!({"fields": {"x": int(1)}}),
            400,
            json!({"error": {"status": "FAILED_PRECONDITION"}}),
        ),
        (
            "/cities/nope?currentDocument.exists=true".into(),
            json!({"fields": {"x": int(1)}}),
            404,
            json!({"error": {"status": "NOT_FOUND"}}),
        ),
        (
            "/cities/la?current_document.exists=false".into(),
            json!({"fields": {"x": int(1)}}),
            409,
            json!({"error": {"status": "ALREADY_EXISTS"}}),
        ),
        (
            "/cities/new".into(),
            json!({"fields": {"x": int(1)}}),
            200,
            json!({"name": name("cities/new"), "fields": {"x": int(1)}}),
        ),
        (
            "/cities/new?mask.fieldPaths=y".into(),
            json!({"fields": {"x": int(2), "y": int(3)}}),
            200,
            json!({"fields": {"y": int(3)}}),
        ),
    ];
    for (suffix, body, status, want) in cases {
        let (got_status, got) = f.call(Method::PATCH, &suffix, Some(body)).await;
        assert_eq!(got_status, status, "{suffix}: {got}");
        assert_contains(&got, &want, &suffix);
    }
    let (_, la) = f.call(Method::GET, "/cities/la", None).await;
    assert!(
        la["fields"].get("tags").is_none(),
        "a masked field absent from the body is deleted"
    );
    assert!(
        la["fields"].get("x").is_none(),
        "refused patches left nothing behind"
    );
}

#[tokio::test]
async fn delete_with_preconditions() {
    let f = seeded().await;
    let cases = [
        ("/cities/nope?currentDocument.exists=true", 404),
        ("/cities/nope", 200),
        (
            "/cities/la?currentDocument.updateTime=2000-01-01T00:00:00Z",
            400,
        ),
        ("/cities/la?currentDocument.exists=true", 200),
    ];
    for (suffix, status) in cases {
        let (got, body) = f.call(Method::DELETE, suffix, None).await;
        assert_eq!(got, status, "{suffix}: {body}");
    }
    let (status, _) = f.call(Method::GET, "/cities/la", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn batch_get_streams_found_and_missing_and_begins_transactions() {
    let f = seeded().await;
    let (status, body) = f
        .post(
            ":batchGet",
            json!({"documents": [name("cities/sf"), name("cities/none")], "mask": {"fieldPaths": ["name"]}, "newTransaction": {"readWrite": {}}}),
        )
        .await;
    assert_eq!(status, 200);
    let items = body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["found"]["fields"],
        json!({"name": string("San Francisco")})
    );
    assert!(items[0]["transaction"].is_string());
    assert!(items[0]["readTime"].is_string());
    assert_eq!(items[1]["missing"], name("cities/none"));

    let (status, wrong_db) = f
        .post(
            ":batchGet",
            json!({"documents": ["projects/other/databases/(default)/documents/a/b"]}),
        )
        .await;
    assert_eq!((status, status_name(&wrong_db)), (400, "INVALID_ARGUMENT"));
}

#[tokio::test]
async fn commit_applies_every_write_kind_atomically() {
    let f = seeded().await;
    let (status, body) = f
        .post(
            ":commit",
            json!({"writes": [
                {"update": {"name": name("cities/sf"), "fields": {"pop": int(1)}}, "updateMask": {"fieldPaths": ["pop"]},
                 "updateTransforms": [{"fieldPath": "visits", "increment": int(2)}, {"fieldPath": "at", "setToServerValue": "REQUEST_TIME"}]},
                {"transform": {"document": name("cities/la"), "fieldTransforms": [
                    {"fieldPath": "tags", "appendMissingElements": {"values": [string("west"), string("south")]}},
                    {"fieldPath": "pop", "minimum": int(5)},
                    {"fieldPath": "peak", "maximum": {"doubleValue": 2.5}}]}},
                {"delete": name("cities/ny"), "currentDocument": {"exists": true}},
                {"verify": name("cities/dc"), "currentDocument": {"exists": true}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["writeResults"].as_array().unwrap().len(), 4);
    assert_eq!(body["writeResults"][0]["transformResults"][0], int(2));
    let at = &body["writeResults"][0]["transformResults"][1]["timestampValue"];
    assert_eq!(*at, body["commitTime"], "REQUEST_TIME is the commit time");
    let (_, sf) = f.call(Method::GET, "/cities/sf", None).await;
    assert_contains(
        &sf,
        &json!({"fields": {"pop": int(1), "visits": int(2), "name": string("San Francisco")}}),
        "sf",
    );
    let (_, la) = f.call(Method::GET, "/cities/la", None).await;
    assert_contains(
        &la,
        &json!({"fields": {"pop": int(5), "peak": {"doubleValue": 2.5}, "tags": {"arrayValue": {"values": [string("west"), string("south")]}}}}),
        "la",
    );
    assert_eq!(f.call(Method::GET, "/cities/ny", None).await.0, 404);

    // One failing write refuses the whole commit.
    let (status, refused) = f
        .post(
            ":commit",
            json!({"writes": [
                {"update": {"name": name("cities/new"), "fields": {}}},
                {"transform": {"document": name("cities/sf"), "fieldTransforms": [{"fieldPath": "tags", "removeAllFromArray": {"values": [string("west")]}}]}},
                {"verify": name("cities/gone"), "currentDocument": {"exists": true}}
            ]}),
        )
        .await;
    assert_eq!((status, status_name(&refused)), (404, "NOT_FOUND"));
    assert_eq!(f.call(Method::GET, "/cities/new", None).await.0, 404);
    let (_, sf) = f.call(Method::GET, "/cities/sf", None).await;
    assert_eq!(
        sf["fields"]["tags"]["arrayValue"]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn batch_write_reports_each_status() {
    let f = seeded().await;
    let (status, body) = f
        .post(
            ":batchWrite",
            json!({"writes": [
                {"update": {"name": name("bw/a"), "fields": {"v": int(1)}}},
                {"update": {"name": name("cities/sf"), "fields": {}}, "currentDocument": {"exists": false}},
                {"delete": name("cities/la")}
            ], "labels": {"my_label": "x"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<i64> = body["status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 6, 0]);
    assert!(body["writeResults"][0]["updateTime"].is_string());
    assert_eq!(body["writeResults"][1], json!({}));
    assert_eq!(f.call(Method::GET, "/bw/a", None).await.0, 200);
    assert_eq!(f.call(Method::GET, "/cities/la", None).await.0, 404);
}

#[tokio::test]
async fn transactions_commit_once_and_abort_on_conflict() {
    let f = seeded().await;
    let (_, begun) = f
        .post(":beginTransaction", json!({"options": {"readWrite": {}}}))
        .await;
    let tx = begun["transaction"].as_str().unwrap().to_owned();
    let (_, read) = f
        .post(
            ":batchGet",
            json!({"documents": [name("cities/sf")], "transaction": tx}),
        )
        .await;
    assert!(read[0]["found"].is_object());
    // Someone else writes what the transaction read.
    f.put("cities/sf", json!({"pop": int(0)}));
    let write = json!({"update": {"name": name("cities/sf"), "fields": {"pop": int(1)}}});
    let (status, aborted) = f
        .post(":commit", json!({"writes": [write], "transaction": tx}))
        .await;
    assert_eq!((status, status_name(&aborted)), (409, "ABORTED"));

    let (_, begun) = f.post(":beginTransaction", json!({})).await;
    let tx = begun["transaction"].as_str().unwrap().to_owned();
    let (_, q) = f
        .post(
            ":runQuery",
            json!({"structuredQuery": {"from": [{"collectionId": "cities"}]}, "transaction": tx}),
        )
        .await;
    assert!(q[0]["document"].is_object());
    let (status, _) = f
        .post(":commit", json!({"writes": [write], "transaction": tx}))
        .await;
    assert_eq!(status, 200);
    let (status, reused) = f
        .post(":commit", json!({"writes": [], "transaction": tx}))
        .await;
    assert_eq!((status, status_name(&reused)), (400, "INVALID_ARGUMENT"));

    let (_, begun) = f
        .post(":beginTransaction", json!({"options": {"readOnly": {}}}))
        .await;
    let tx = begun["transaction"].as_str().unwrap().to_owned();
    assert_eq!(f.post(":rollback", json!({"transaction": tx})).await.0, 200);
    assert_eq!(f.post(":rollback", json!({"transaction": tx})).await.0, 400);
}

fn field_filter(field: &str, op: Value, value: Value) -> Value {
    json!({"fieldFilter": {"field": {"fieldPath": field}, "op": op, "value": value}})
}

fn cities(filter: Value) -> Value {
    json!({"from": [{"collectionId": "cities"}], "where": filter})
}

#[tokio::test]
async fn run_query_filters() {
    let f = seeded().await;
    let arr = |items: Vec<Value>| json!({"arrayValue": {"values": items}});
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "==",
            field_filter("name", json!("EQUAL"), string("New York")),
            &["ny"],
        ),
        (
            "== int enum",
            field_filter("name", json!(5), string("New York")),
            &["ny"],
        ),
        (
            "== int vs double",
            field_filter("pop", json!("EQUAL"), json!({"doubleValue": 860000.0})),
            &["sf"],
        ),
        (
            "!= skips null and missing",
            field_filter("pop", json!("NOT_EQUAL"), int(860000)),
            &["nan", "la", "ny"],
        ),
        (
            "<",
            field_filter("pop", json!("LESS_THAN"), int(4000000)),
            &["sf", "la"],
        ),
        (
            "<=",
            field_filter("pop", json!(2), int(3900000)),
            &["sf", "la"],
        ),
        (
            ">",
            field_filter("pop", json!("GREATER_THAN"), int(3900000)),
            &["ny"],
        ),
        (
            ">=",
            field_filter("pop", json!(4), int(3900000)),
            &["la", "ny"],
        ),
        (
            "in",
            field_filter(
                "name",
                json!("IN"),
                arr(vec![string("Washington"), string("Los Angeles")]),
            ),
            &["dc", "la"],
        ),
        (
            "not-in",
            field_filter(
                "capital",
                json!("NOT_IN"),
                arr(vec![{ json!({"booleanValue": true}) }]),
            ),
            &["ny"],
        ),
        (
            "array-contains",
            field_filter("tags", json!("ARRAY_CONTAINS"), string("coast")),
            &["sf"],
        ),
        (
            "array-contains-any",
            field_filter("tags", json!(9), arr(vec![string("coast"), string("west")])),
            &["la", "sf"],
        ),
        (
            "IS_NAN",
            json!({"unaryFilter": {"field": {"fieldPath": "pop"}, "op": "IS_NAN"}}),
            &["nan"],
        ),
        (
            "IS_NULL",
            json!({"unaryFilter": {"field": {"fieldPath": "pop"}, "op": 3}}),
            &["dc"],
        ),
        (
            "IS_NOT_NAN",
            json!({"unaryFilter": {"field": {"fieldPath": "pop"}, "op": "IS_NOT_NAN"}}),
            &["sf", "la", "ny"],
        ),
        (
            "IS_NOT_NULL",
            json!({"unaryFilter": {"field": {"fieldPath": "capital"}, "op": 5}}),
            &["ny", "dc"],
        ),
        (
            "AND",
            json!({"compositeFilter": {"op": "AND", "filters": [
                field_filter("tags", json!("ARRAY_CONTAINS"), string("west")),
                field_filter("pop", json!("GREATER_THAN"), int(1000000))]}}),
            &["la"],
        ),
        (
            "OR",
            json!({"compositeFilter": {"op": 2, "filters": [
                field_filter("name", json!("EQUAL"), string("Washington")),
                field_filter("pop", json!("LESS_THAN"), int(1000000))]}}),
            &["dc", "sf"],
        ),
    ];
    for (what, filter, want) in cases {
        let got = f.query_ids("", cities(filter)).await;
        assert_eq!(got, want, "{what}");
    }
}

#[tokio::test]
async fn run_query_orders_cursors_and_limits() {
    let f = seeded().await;
    let order = |field: &str, dir: &str| json!({"field": {"fieldPath": field}, "direction": dir});
    let base = json!({"from": [{"collectionId": "cities"}]});
    let with = |extra: Value| {
        let mut q = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        ("by name", with(json!({})), &["dc", "la", "nan", "ny", "sf"]),
        // null < NaN < numbers; the order also drops documents without the field.
        (
            "cross-type ascending",
            with(json!({"orderBy": [order("pop", "ASCENDING")]})),
            &["dc", "nan", "sf", "la", "ny"],
        ),
        (
            "descending by int enum",
            with(json!({"orderBy": [{"field": {"fieldPath": "pop"}, "direction": 2}]})),
            &["ny", "la", "sf", "nan", "dc"],
        ),
        (
            "limit",
            with(json!({"orderBy": [order("name", "DESCENDING")], "limit": 2})),
            &["dc", "sf"],
        ),
        (
            "limit wrapper + offset",
            with(
                json!({"orderBy": [order("name", "ASCENDING")], "limit": {"value": 2}, "offset": 1}),
            ),
            &["ny", "nan"],
        ),
        (
            "startAt before=true is inclusive",
            with(
                json!({"orderBy": [order("name", "ASCENDING")], "startAt": {"values": [string("New York")], "before": true}}),
            ),
            &["ny", "nan", "sf", "dc"],
        ),
        (
            "startAfter",
            with(
                json!({"orderBy": [order("name", "ASCENDING")], "startAt": {"values": [string("New York")]}}),
            ),
            &["nan", "sf", "dc"],
        ),
        (
            "endBefore",
            with(
                json!({"orderBy": [order("name", "ASCENDING")], "endAt": {"values": [string("New York")], "before": true}}),
            ),
            &["la"],
        ),
        (
            "endAt on __name__",
            with(json!({"endAt": {"values": [{"referenceValue": name("cities/la")}]}})),
            &["dc", "la"],
        ),
        (
            "collection group",
            json!({"from": [{"collectionId": "landmarks", "allDescendants": true}]}),
            &["bridge", "liberty"],
        ),
        (
            "kindless",
            json!({"from": [{"allDescendants": true}]}),
            &["dc", "la", "nan", "ny", "sf", "bridge", "liberty", "child"],
        ),
    ];
    for (what, query, want) in cases {
        let got = f.query_ids("", query).await;
        assert_eq!(got, want, "{what}");
    }
    // The descending case must really be reversed.
    let got = f
        .query_ids("", with(json!({"orderBy": [order("pop", "DESCENDING")]})))
        .await;
    assert_eq!(got, ["ny", "la", "sf", "nan", "dc"]);
    // Below a document, queries see only its subcollections.
    let got = f
        .query_ids(
            "/cities/sf",
            json!({"from": [{"collectionId": "landmarks"}]}),
        )
        .await;
    assert_eq!(got, ["bridge"]);
    let got = f
        .query_ids("/countries/us", json!({"from": [{"allDescendants": true}]}))
        .await;
    assert_eq!(got, ["liberty"]);
}

#[tokio::test]
async fn run_query_projects_streams_and_reports() {
    let f = seeded().await;
    let (status, body) = f
        .post(
            ":runQuery",
            json!({"structured_query": {"from": [{"collection_id": "cities"}], "select": {"fields": [{"field_path": "name"}]},
                   "order_by": [{"field": {"field_path": "name"}}], "offset": 3}, "new_transaction": {"read_only": {}}}),
        )
        .await;
    assert_eq!(status, 200);
    let items = body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["document"]["fields"],
        json!({"name": string("San Francisco")})
    );
    assert_eq!(items[0]["skippedResults"], 3);
    assert!(items[0]["transaction"].is_string());
    let (_, none) = f
        .post(
            ":runQuery",
            json!({"structuredQuery": cities(field_filter("name", json!("EQUAL"), string("?")))}),
        )
        .await;
    assert_eq!(none.as_array().unwrap().len(), 1);
    assert!(none[0]["readTime"].is_string() && none[0].get("document").is_none());

    let (status, bad) = f
        .post(
            ":runQuery",
            json!({"structuredQuery": cities(field_filter("name", json!(42), string("x")))}),
        )
        .await;
    assert_eq!((status, status_name(&bad)), (400, "INVALID_ARGUMENT"));
}

#[tokio::test]
async fn run_aggregation_query_counts_sums_and_averages() {
    let f = seeded().await;
    let query = |filter: Value, aggregations: Value| json!({"structuredAggregationQuery": {"structuredQuery": cities(filter), "aggregations": aggregations}});
    let west = field_filter("tags", json!("ARRAY_CONTAINS"), string("west"));
    let cases = vec![
        (
            query(
                west.clone(),
                json!([{"alias": "n", "count": {}}, {"alias": "total", "sum": {"field": {"fieldPath": "pop"}}}, {"alias": "mean", "avg": {"field": {"fieldPath": "pop"}}}]),
            ),
            json!({"n": int(2), "total": int(4760000), "mean": {"doubleValue": 2380000.0}}),
        ),
        (
            query(west, json!([{"alias": "capped", "count": {"up_to": "1"}}])),
            json!({"capped": int(1)}),
        ),
        (
            query(
                field_filter("name", json!("EQUAL"), string("?")),
                json!([{"count": {}}, {"avg": {"field": {"fieldPath": "pop"}}}]),
            ),
            json!({"field_1": int(0), "field_2": {"nullValue": null}}),
        ),
    ];
    for (request, want) in cases {
        let (status, body) = f.post(":runAggregationQuery", request.clone()).await;
        assert_eq!(status, 200, "{request}: {body}");
        assert_eq!(body[0]["result"]["aggregateFields"], want, "{request}");
        assert!(body[0]["readTime"].is_string());
    }
}

#[tokio::test]
async fn list_collection_ids_pages() {
    let f = seeded().await;
    let (status, body) = f.post(":listCollectionIds", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["collectionIds"],
        json!(["cities", "countries", "empty"])
    );
    let (_, first) = f.post(":listCollectionIds", json!({"pageSize": 2})).await;
    assert_eq!(first["collectionIds"], json!(["cities", "countries"]));
    let token = first["nextPageToken"].clone();
    let (_, rest) = f
        .post(
            ":listCollectionIds",
            json!({"page_size": 2, "page_token": token}),
        )
        .await;
    assert_eq!(rest["collectionIds"], json!(["empty"]));
    let (_, below) = f.post("/cities/sf:listCollectionIds", json!({})).await;
    assert_eq!(below["collectionIds"], json!(["landmarks"]));
}

/// `listCollectionIds` at a `readTime` lists only the collections that
/// existed then (python-firestore's `test_collections_w_read_time`), over
/// REST and over gRPC.
#[tokio::test]
async fn list_collection_ids_at_a_read_time_lists_what_existed_then() {
    use support::grpc::proto;
    use time::format_description::well_known::Rfc3339;

    let f = Fixture::start().await;
    let create = |path: &str| json!({"writes": [{"update": {"name": name(path), "fields": {}}}]});
    let (status, first) = f.post(":commit", create("first/doc")).await;
    assert_eq!(status, 200, "{first}");
    let then = first["commitTime"].as_str().unwrap().to_owned();
    let (status, _) = f.post(":commit", create("second/doc")).await;
    assert_eq!(status, 200);

    let (_, now) = f.post(":listCollectionIds", json!({})).await;
    assert_eq!(now["collectionIds"], json!(["first", "second"]));
    let (status, at) = f
        .post(":listCollectionIds", json!({"readTime": then}))
        .await;
    assert_eq!(status, 200, "{at}");
    assert_eq!(at["collectionIds"], json!(["first"]));

    let then = time::OffsetDateTime::parse(&then, &Rfc3339).unwrap();
    let read_time = prost_types::Timestamp {
        seconds: then.unix_timestamp(),
        nanos: i32::try_from(then.nanosecond()).unwrap(),
    };
    let mut grpc = support::grpc::client(f.running.local_addr()).await;
    let listed = grpc
        .list_collection_ids(proto::ListCollectionIdsRequest {
            parent: format!("{DB}/documents"),
            consistency_selector: Some(
                proto::list_collection_ids_request::ConsistencySelector::ReadTime(read_time),
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.collection_ids, ["first"]);
}

#[tokio::test]
async fn every_value_type_round_trips() {
    let f = Fixture::start().await;
    let fields = json!({
        "null": {"nullValue": null}, "bool": {"booleanValue": true}, "int": int(-7),
        "double": {"doubleValue": 2.5}, "inf": {"doubleValue": "Infinity"},
        "ts": {"timestampValue": "2024-01-02T03:04:05.678901Z"}, "str": string("ünï"),
        "bytes": {"bytesValue": "AAEC/w=="}, "ref": {"referenceValue": name("a/b")},
        "geo": {"geoPointValue": {"latitude": 10.5, "longitude": -20.25}},
        "arr": {"arrayValue": {"values": [int(1), string("x")]}},
        "map": {"mapValue": {"fields": {"k": {"mapValue": {"fields": {}}}}}}
    });
    let (status, _) = f
        .call(Method::PATCH, "/types/all", Some(json!({"fields": fields})))
        .await;
    assert_eq!(status, 200);
    let (_, got) = f.call(Method::GET, "/types/all", None).await;
    assert_eq!(got["fields"], fields);
}

#[tokio::test]
async fn wire_variants_and_errors() {
    let f = seeded().await;
    let client = reqwest::Client::new();
    // Firebase's SDK: text/plain body, ?key=, string enums.
    let response = client
        .post(format!("{}:runQuery?key=abc", f.base))
        .header("content-type", "text/plain")
        .body(json!({"structuredQuery": cities(field_filter("name", json!("EQUAL"), string("New York")))}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(ids(&body), ["ny"]);
    // The Node client: $alt=json;enum-encoding=int, numeric enums, no Authorization needed.
    let response = client
        .post(format!(
            "{}:runQuery?%24alt=json%3Benum-encoding%3Dint",
            f.base
        ))
        .body(
            json!({"structuredQuery": cities(field_filter("name", json!(5), string("New York")))})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        (
            Method::GET,
            "/cities/sf?alt=proto",
            None,
            400,
            "INVALID_ARGUMENT",
        ),
        (Method::POST, ":listen", Some(json!({})), 404, "NOT_FOUND"),
        (
            Method::POST,
            ":partitionQuery",
            Some(json!({})),
            400,
            "INVALID_ARGUMENT",
        ),
        (Method::PUT, "/cities/sf", Some(json!({})), 404, "NOT_FOUND"),
        (
            Method::POST,
            ":commit",
            Some(json!({"writes": [{"update": {"name": name("odd")}}]})),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Method::POST,
            ":commit",
            Some(
                json!({"writes": [{"update": {"name": name("a/b"), "fields": {"x": {"nope": 1}}}}]}),
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Method::POST,
            ":runQuery",
            Some(json!({"structuredQuery": {"from": []}})),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Method::POST,
            ":runQuery",
            Some(
                json!({"structuredQuery": {"from": [{"collectionId": "c"}], "startAt": {"values": [int(1), int(2)]}}}),
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Method::POST,
            ":commit",
            Some(
                json!({"writes": [{"update": {"name": name("a/b"), "fields": {"ok": {"mapValue": {"fields": {"__bad__": int(1)}}}}}}]}),
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Method::POST,
            ":commit",
            Some(json!({"database": "projects/x/databases/y", "writes": []})),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (method, suffix, body, status, code) in cases {
        let (got_status, got) = f.call(method.clone(), suffix, body).await;
        assert_eq!(
            (got_status, status_name(&got)),
            (status, code),
            "{method} {suffix}: {got}"
        );
        assert_eq!(got["error"]["code"], status, "{suffix}");
    }
    let response = client
        .post(format!("{}:commit", f.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn reads_at_a_past_read_time() {
    let f = seeded().await;
    let (_, before) = f.call(Method::GET, "/cities/la", None).await;
    let then = before["updateTime"].as_str().unwrap().to_owned();
    f.call(
        Method::PATCH,
        "/cities/sf",
        Some(json!({"fields": {"pop": int(1)}})),
    )
    .await;
    f.call(Method::DELETE, "/cities/la", None).await;

    let (_, got) = f
        .post(
            ":batchGet",
            json!({"documents": [name("cities/sf"), name("cities/la")], "readTime": then}),
        )
        .await;
    assert_eq!(got[0]["found"]["fields"]["pop"], int(860000));
    assert!(got[1]["found"].is_object(), "la still existed then: {got}");
    assert_eq!(got[0]["readTime"], then);

    let (_, got) = f
        .post(
            ":batchGet",
            json!({"documents": [name("cities/sf")], "readTime": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(got[0]["missing"], name("cities/sf"));

    let query = json!({"structuredQuery": cities(field_filter("pop", json!("EQUAL"), int(860000))), "readTime": then});
    let (_, got) = f.post(":runQuery", query).await;
    assert_eq!(ids(&got), ["sf"]);
    let (_, now) = f
        .post(
            ":runQuery",
            json!({"structuredQuery": cities(field_filter("pop", json!("EQUAL"), int(860000)))}),
        )
        .await;
    assert!(ids(&now).is_empty());

    assert_eq!(
        f.call(Method::GET, &format!("/cities/la?readTime={then}"), None)
            .await
            .0,
        200
    );
    assert_eq!(f.call(Method::GET, "/cities/la", None).await.0, 404);
    let (_, listed) = f
        .call(Method::GET, &format!("/cities?readTime={then}"), None)
        .await;
    // Only sf and la had been seeded by then.
    let names: Vec<&str> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [name("cities/la"), name("cities/sf")]);

    let (_, begun) = f
        .post(
            ":beginTransaction",
            json!({"options": {"readOnly": {"readTime": then}}}),
        )
        .await;
    let tx = begun["transaction"].as_str().unwrap();
    let (_, got) = f
        .post(
            ":batchGet",
            json!({"documents": [name("cities/sf")], "transaction": tx}),
        )
        .await;
    assert_eq!(got[0]["found"]["fields"]["pop"], int(860000));
}
