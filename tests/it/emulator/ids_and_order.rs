//! Document ids and query order, as Firestore documents them: `__id<n>__`
//! ids (negative too) sort before string ids, numerically; every other
//! `__…__` id is reserved and refused; with several inequality filters the
//! implicit orders take the direction of the last explicit order, and the
//! document name always comes last.

use reqwest::Method;
use serde_json::{Value, json};

use super::support::emulator::{DB, Fixture, ids, int, status_name};

#[tokio::test]
async fn numeric_ids_sort_before_string_ids_in_numeric_order() {
    let f = Fixture::start().await;
    for id in ["a", "__id10__", "B", "__id-3__", "__id2__", "_x"] {
        f.put(&format!("c/{id}"), json!({ "k": int(1) }));
    }
    let want = ["__id-3__", "__id2__", "__id10__", "B", "_x", "a"];
    let by_name = f
        .query_ids("", json!({"from": [{"collectionId": "c"}]}))
        .await;
    assert_eq!(by_name, want, "runQuery");
    let mut reversed = want;
    reversed.reverse();
    let descending = f
        .query_ids("", json!({"from": [{"collectionId": "c"}], "orderBy": [{"field": {"fieldPath": "__name__"}, "direction": "DESCENDING"}]}))
        .await;
    assert_eq!(descending, reversed, "runQuery by name, descending");
    let after = f
        .query_ids(
            "",
            json!({"from": [{"collectionId": "c"}], "where": {"fieldFilter": {
            "field": {"fieldPath": "__name__"}, "op": "LESS_THAN",
            "value": {"referenceValue": format!("{DB}/documents/c/B")}}}}),
        )
        .await;
    assert_eq!(after, ["__id-3__", "__id2__", "__id10__"], "a name range");
    let (_, listed) = f.call(Method::GET, "/c", None).await;
    let listed: Vec<&str> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(listed, want, "list");
}

#[tokio::test]
async fn reserved_ids_are_refused_by_commit_and_batch_write() {
    let f = Fixture::start().await;
    let update =
        |path: &str| json!({"update": {"name": format!("{DB}/documents/{path}"), "fields": {}}});
    for (path, message) in [
        (
            "c/__doc__",
            "Resource id \"__doc__\" is invalid because it is reserved.",
        ),
        (
            "__c__/d",
            "Collection id \"__c__\" is invalid because it is reserved.",
        ),
        (
            "c/__id__",
            "Resource id \"__id__\" is invalid because it is reserved.",
        ),
    ] {
        let (status, body) = f.post(":commit", json!({ "writes": [update(path)] })).await;
        assert_eq!(
            (status, status_name(&body)),
            (400, "INVALID_ARGUMENT"),
            "{path}: {body}"
        );
        assert_eq!(body["error"]["message"], message);
    }
    // batchWrite answers each write's own failure in its status, but a
    // reserved id is not a write that can be tried: the whole request is
    // refused and nothing is written (Firestore; nodejs-firestore's system
    // test of BulkWriter retrying a `__doc__` create reads INVALID_ARGUMENT).
    let (status, body) = f
        .post(
            ":batchWrite",
            json!({"writes": [update("c/ok"), update("c/__x__"), update("c/__id-9__")]}),
        )
        .await;
    assert_eq!(
        (status, status_name(&body)),
        (400, "INVALID_ARGUMENT"),
        "{body}"
    );
    assert_eq!(
        body["error"]["message"],
        "Resource id \"__x__\" is invalid because it is reserved."
    );
    assert_eq!(f.call(Method::GET, "/c/ok", None).await.0, 404);
    let (status, body) = f
        .post(
            ":batchWrite",
            json!({"writes": [update("c/ok"), update("c/__id-9__")]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = f
        .post(":commit", json!({ "writes": [update("c/__id7__")] }))
        .await;
    assert_eq!(status, 200, "numeric ids are not reserved");
    let (status, _) = f.call(Method::GET, "/c/__id-9__", None).await;
    assert_eq!(status, 200);
    let (status, body) = f
        .call(Method::POST, "/c?documentId=__new__", Some(json!({})))
        .await;
    assert_eq!(
        (status, status_name(&body)),
        (400, "INVALID_ARGUMENT"),
        "createDocument"
    );
}

fn gt(field: &str, n: i64) -> Value {
    json!({"fieldFilter": {"field": {"fieldPath": field}, "op": "GREATER_THAN", "value": int(n)}})
}

#[tokio::test]
async fn implicit_orders_follow_the_last_explicit_direction_and_the_name_comes_last() {
    let f = Fixture::start().await;
    let rows = [
        ("p", 1, 2, 9),
        ("q", 1, 1, 9),
        ("r", 2, 1, 8),
        ("s", 2, 2, 8),
        ("t", 1, 1, 8),
    ];
    for (id, a, b, c) in rows {
        f.put(
            &format!("m/{id}"),
            json!({"a": int(a), "b": int(b), "c": int(c)}),
        );
    }
    let both = json!({"compositeFilter": {"op": "AND", "filters": [gt("a", 0), gt("b", 0)]}});
    let query = |order: Value, filter: &Value| json!({"from": [{"collectionId": "m"}], "where": filter, "orderBy": order});
    let cases = [
        // a ASC, b ASC, __name__ ASC.
        (json!([]), both.clone(), vec!["q", "t", "p", "r", "s"]),
        // c DESC, then a DESC, b DESC, __name__ DESC.
        (
            json!([{"field": {"fieldPath": "c"}, "direction": "DESCENDING"}]),
            both.clone(),
            vec!["p", "q", "s", "r", "t"],
        ),
        // c ASC, then a ASC, b ASC, __name__ ASC.
        (
            json!([{"field": {"fieldPath": "c"}}]),
            both.clone(),
            vec!["t", "r", "s", "q", "p"],
        ),
    ];
    for (order, filter, want) in cases {
        assert_eq!(
            f.query_ids("", query(order.clone(), &filter)).await,
            want,
            "{order}"
        );
    }
    // A name inequality does not put the name first: b ASC, then __name__.
    let name_and_b = json!({"compositeFilter": {"op": "AND", "filters": [
        {"fieldFilter": {"field": {"fieldPath": "__name__"}, "op": "GREATER_THAN", "value": {"referenceValue": format!("{DB}/documents/m/p")}}},
        gt("b", 0)
    ]}});
    assert_eq!(
        f.query_ids("", query(json!([]), &name_and_b)).await,
        ["q", "r", "t", "s"]
    );
    // The same through the wire order: cursors follow the implicit order.
    let mut cursor = query(json!([]), &name_and_b);
    cursor["startAt"] =
        json!({"values": [int(1), {"referenceValue": format!("{DB}/documents/m/r")}]});
    assert_eq!(
        ids(&f
            .post(":runQuery", json!({"structuredQuery": cursor}))
            .await
            .1),
        ["t", "s"]
    );
}
