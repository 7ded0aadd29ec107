//! Vector values and `findNearest`, as Firestore documents them: a vector
//! is the reserved map `{__type__: "__vector__", value: [doubles]}`, orders
//! after arrays and before maps (by dimension, then element by element),
//! and vector search returns the nearest `limit` documents by the chosen
//! measure, keeping only those within `distanceThreshold`.

use serde_json::{Value, json};

use super::support::emulator::{DB, Fixture, ids, int, status_name, string};

pub fn vector(values: &[f64]) -> Value {
    let values: Vec<Value> = values.iter().map(|d| json!({"doubleValue": d})).collect();
    json!({"mapValue": {"fields": {
        "__type__": string("__vector__"),
        "value": {"arrayValue": {"values": values}}
    }}})
}

fn commit_one(fields: Value) -> Value {
    json!({"writes": [{"update": {"name": format!("{DB}/documents/v/one"), "fields": fields}}]})
}

#[tokio::test]
async fn vectors_round_trip_and_only_their_reserved_shape_is_accepted() {
    let f = Fixture::start().await;
    let stored = json!({"embedding": vector(&[1.0, -2.5, 0.125]), "nested": {"mapValue": {"fields": {"e": vector(&[])}}}});
    let (status, body) = f.post(":commit", commit_one(stored.clone())).await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = f.call(reqwest::Method::GET, "/v/one", None).await;
    assert_eq!(got["fields"], stored);

    let refused = [
        (
            "another reserved type",
            json!({"mapValue": {"fields": {"__type__": string("__other__")}}}),
        ),
        (
            "a vector with an extra key",
            json!({"mapValue": {"fields": {"__type__": string("__vector__"), "value": {"arrayValue": {}}, "x": int(1)}}}),
        ),
        (
            "a vector of integers",
            json!({"mapValue": {"fields": {"__type__": string("__vector__"), "value": {"arrayValue": {"values": [int(1)]}}}}}),
        ),
        (
            "a vector without value",
            json!({"mapValue": {"fields": {"__type__": string("__vector__")}}}),
        ),
    ];
    for (what, value) in refused {
        let (status, body) = f.post(":commit", commit_one(json!({ "v": value }))).await;
        assert_eq!(
            (status, status_name(&body)),
            (400, "INVALID_ARGUMENT"),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn vectors_order_after_arrays_by_dimension_then_elements() {
    let f = Fixture::start().await;
    let values = [
        ("map", json!({"mapValue": {"fields": {"a": int(1)}}})),
        ("v13", vector(&[1.0, 3.0])),
        ("v9", vector(&[9.0])),
        (
            "array",
            json!({"arrayValue": {"values": [{"doubleValue": 9.0}, int(9)]}}),
        ),
        ("v12", vector(&[1.0, 2.0])),
        ("v0", vector(&[])),
    ];
    for (id, value) in &values {
        f.put(&format!("v/{id}"), json!({ "v": value }));
    }
    let order = json!([{"field": {"fieldPath": "v"}}]);
    let got = f
        .query_ids(
            "",
            json!({"from": [{"collectionId": "v"}], "orderBy": order}),
        )
        .await;
    assert_eq!(got, ["array", "v0", "v9", "v12", "v13", "map"]);
    let above = json!({"fieldFilter": {"field": {"fieldPath": "v"}, "op": "GREATER_THAN", "value": vector(&[1.0, 2.0])}});
    let got = f
        .query_ids("", json!({"from": [{"collectionId": "v"}], "where": above}))
        .await;
    assert_eq!(got, ["v13"], "a range on a vector matches only vectors");
}

async fn points() -> Fixture {
    let f = Fixture::start().await;
    let docs = [
        ("a", [1.0, 0.0], "red"),
        ("b", [0.0, 3.0], "red"),
        ("c", [2.0, 2.0], "blue"),
        ("d", [-1.0, 0.0], "red"),
        ("e", [3.0, 0.0], "red"),
    ];
    for (id, v, color) in docs {
        f.put(
            &format!("p/{id}"),
            json!({"v": vector(&v), "color": string(color)}),
        );
    }
    f.put(
        "p/short",
        json!({"v": vector(&[1.0]), "color": string("red")}),
    );
    f.put("p/array", json!({"v": {"arrayValue": {"values": [{"doubleValue": 1.0}, {"doubleValue": 0.0}]}}, "color": string("red")}));
    f.put("p/none", json!({"color": string("red")}));
    f.put(
        "p/zero",
        json!({"v": vector(&[0.0, 0.0]), "color": string("red")}),
    );
    f
}

fn nearest(measure: &str, limit: Value, extra: Value) -> Value {
    let mut find = json!({
        "vectorField": {"fieldPath": "v"}, "queryVector": vector(&[1.0, 0.0]),
        "distanceMeasure": measure, "limit": limit
    });
    for (k, v) in extra.as_object().unwrap() {
        find[k] = v.clone();
    }
    json!({"from": [{"collectionId": "p"}], "findNearest": find})
}

#[tokio::test]
async fn find_nearest_orders_by_each_measure_and_skips_what_is_not_a_matching_vector() {
    let f = points().await;
    let cases = [
        // Distances from (1, 0): a 0, e 2, d 2, c √5, zero 1, b √10.
        (
            "EUCLIDEAN",
            json!({}),
            vec!["a", "zero", "d", "e", "c", "b"],
        ),
        // 1 − cos: a 0, e 0, c 1−1/√2, b 1, d 2; the zero vector has no angle.
        ("COSINE", json!({}), vec!["a", "e", "c", "b", "d"]),
        // Dot product, largest first: e 3, c 2, a 1, b 0, zero 0, d −1.
        (
            "DOT_PRODUCT",
            json!({}),
            vec!["e", "c", "a", "b", "zero", "d"],
        ),
        (
            "EUCLIDEAN",
            json!({"distanceThreshold": 2.0}),
            vec!["a", "zero", "d", "e"],
        ),
        (
            "COSINE",
            json!({"distanceThreshold": {"value": 1.0}}),
            vec!["a", "e", "c", "b"],
        ),
        (
            "DOT_PRODUCT",
            json!({"distanceThreshold": 1.0}),
            vec!["e", "c", "a"],
        ),
    ];
    for (measure, extra, want) in cases {
        let got = f
            .query_ids("", nearest(measure, json!(10), extra.clone()))
            .await;
        assert_eq!(got, want, "{measure} {extra}");
    }
    let got = f
        .query_ids("", nearest("EUCLIDEAN", json!({"value": 2}), json!({})))
        .await;
    assert_eq!(got, ["a", "zero"], "limit");
}

#[tokio::test]
async fn find_nearest_prefilters_and_reports_the_distance() {
    let f = points().await;
    let mut query = nearest(
        "EUCLIDEAN",
        json!(3),
        json!({"distanceResultField": "found.distance"}),
    );
    query["where"] = json!({"fieldFilter": {"field": {"fieldPath": "color"}, "op": "EQUAL", "value": string("red")}});
    query["select"] = json!({"fields": [{"fieldPath": "color"}]});
    let (status, body) = f
        .post(":runQuery", json!({ "structuredQuery": query }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["a", "zero", "d"]);
    let distances: Vec<&Value> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["document"]["fields"]["found"]["mapValue"]["fields"]["distance"])
        .collect();
    assert_eq!(
        distances,
        [
            &json!({"doubleValue": 0.0}),
            &json!({"doubleValue": 1.0}),
            &json!({"doubleValue": 2.0})
        ]
    );
    assert!(
        body[0]["document"]["fields"].get("v").is_none(),
        "select still applies"
    );
}

#[tokio::test]
async fn find_nearest_refuses_bad_limits_and_measures() {
    let f = points().await;
    let refused = [
        nearest("EUCLIDEAN", json!(0), json!({})),
        nearest("EUCLIDEAN", json!({"value": 1001}), json!({})),
        nearest("DISTANCE_MEASURE_UNSPECIFIED", json!(5), json!({})),
        nearest(
            "EUCLIDEAN",
            json!(5),
            json!({"queryVector": {"arrayValue": {"values": [{"doubleValue": 1.0}]}}}),
        ),
        nearest("EUCLIDEAN", json!(5), json!({"queryVector": vector(&[])})),
    ];
    for query in refused {
        let (status, body) = f
            .post(":runQuery", json!({ "structuredQuery": query }))
            .await;
        assert_eq!(
            (status, status_name(&body)),
            (400, "INVALID_ARGUMENT"),
            "{query}: {body}"
        );
    }
    let most = f
        .query_ids("", nearest("EUCLIDEAN", json!(1000), json!({})))
        .await;
    assert_eq!(most.len(), 6);
}
