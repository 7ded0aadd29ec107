//! Write results and aggregations, as Firestore documents them: a delete's
//! write result has no `updateTime` (nothing is left to have one), and an
//! aggregation over several fields only includes documents that have every
//! aggregated field — for all its aggregations, count included; with a
//! limit, the first documents of the index scan are aggregated, which for a
//! query without an order of its own is the aggregated field's order.

use serde_json::{Value, json};

use super::support::emulator::{DB, Fixture, int, string};

#[tokio::test]
async fn delete_results_carry_no_update_time() {
    let f = Fixture::start().await;
    f.put("d/old", json!({}));
    let name = |id: &str| format!("{DB}/documents/d/{id}");
    let writes = json!({"writes": [
        {"update": {"name": name("new"), "fields": {}}},
        {"delete": name("old")},
        {"delete": name("never")}
    ]});
    let (status, body) = f.post(":commit", writes.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["writeResults"][0]["updateTime"].is_string());
    assert_eq!(body["writeResults"][1], json!({}));
    assert_eq!(body["writeResults"][2], json!({}));
    let (status, body) = f.post(":batchWrite", writes).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["writeResults"][1], json!({}));
    assert!(body["writeResults"][0]["updateTime"].is_string());
}

#[tokio::test]
async fn aggregations_skip_documents_missing_any_aggregated_field() {
    let f = Fixture::start().await;
    let books = [
        ("a", Some(100), Some(1980)),
        ("b", Some(50), Some(2020)),
        ("c", Some(150), Some(2021)),
        ("d", Some(50), None),
        ("e", None, Some(1999)),
    ];
    for (id, pages, year) in books {
        let mut fields = json!({"title": string(id)});
        if let Some(p) = pages {
            fields["pages"] = int(p);
        }
        if let Some(y) = year {
            fields["year"] = int(y);
        }
        f.put(&format!("books/{id}"), fields);
    }
    let aggregate = |aggregations: Value| json!({"structuredAggregationQuery": {"structuredQuery": {"from": [{"collectionId": "books"}]}, "aggregations": aggregations}});
    let sum = |field: &str| json!({"sum": {"field": {"fieldPath": field}}});
    let avg = |field: &str| json!({"avg": {"field": {"fieldPath": field}}});
    let cases = [
        (
            json!([
                {"alias": "totalPages", "sum": sum("pages")["sum"]},
                {"alias": "averagePages", "avg": avg("pages")["avg"]},
                {"alias": "averageYear", "avg": avg("year")["avg"]},
                {"alias": "count", "count": {}}
            ]),
            json!({"totalPages": int(300), "averagePages": {"doubleValue": 100.0}, "averageYear": {"doubleValue": 2007.0}, "count": int(3)}),
        ),
        (
            json!([{"alias": "totalPages", "sum": sum("pages")["sum"]}, {"alias": "count", "count": {}}]),
            json!({"totalPages": int(350), "count": int(4)}),
        ),
        (
            json!([{"alias": "count", "count": {}}]),
            json!({"count": int(5)}),
        ),
    ];
    for (aggregations, want) in cases {
        let (status, body) = f
            .post(":runAggregationQuery", aggregate(aggregations.clone()))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body[0]["result"]["aggregateFields"], want, "{aggregations}");
    }
}

/// python-firestore's `test_sum_query_get_with_limit` and
/// `test_avg_query_get_with_limit`: 25 documents with `stats.product = a * b`
/// for `a, b` in `0..5`; `limit(12).sum("stats.product")` is 5 (nine 0s, a
/// 1 and two 2s: the smallest twelve), whatever the documents' names.
#[tokio::test]
async fn a_limit_cuts_the_scan_in_the_aggregated_fields_order() {
    let f = Fixture::start().await;
    for a in 0..5 {
        for b in 0..5 {
            // Names that sort opposite to the products: in name order the
            // first twelve sum to 92.
            let id = format!("p{:02}-{a}{b}", 16 - a * b);
            let stats = json!({"mapValue": {"fields": {"product": int(a * b)}}});
            f.put(
                &format!("qs/{id}"),
                json!({"a": int(a), "b": int(b), "stats": stats}),
            );
        }
    }
    let product = json!({"field": {"fieldPath": "stats.product"}});
    let aggregate = |limit: Option<i64>, aggregations: Value| {
        let mut query = json!({"from": [{"collectionId": "qs"}]});
        if let Some(limit) = limit {
            query["limit"] = json!(limit);
        }
        json!({"structuredAggregationQuery": {"structuredQuery": query, "aggregations": aggregations},
               "explainOptions": {"analyze": true}})
    };
    let cases = [
        (
            Some(12),
            json!({"total": int(5), "mean": {"doubleValue": 5.0 / 12.0}}),
        ),
        (
            None,
            json!({"total": int(100), "mean": {"doubleValue": 4.0}}),
        ),
    ];
    for (limit, want) in cases {
        let request = aggregate(
            limit,
            json!([{"alias": "total", "sum": product}, {"alias": "mean", "avg": product}]),
        );
        let (status, body) = f.post(":runAggregationQuery", request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body[0]["result"]["aggregateFields"], want,
            "limit {limit:?}"
        );
        assert_eq!(
            body[0]["explainMetrics"]["planSummary"]["indexesUsed"][0]["properties"],
            "(stats.product ASC, __name__ ASC)"
        );
    }
    // A count reads no field: its limit cuts the name order, as before.
    let (_, body) = f
        .post(
            ":runAggregationQuery",
            aggregate(Some(3), json!([{"count": {}}])),
        )
        .await;
    assert_eq!(body[0]["result"]["aggregateFields"]["field_1"], int(3));
    assert_eq!(
        body[0]["explainMetrics"]["planSummary"]["indexesUsed"][0]["properties"],
        "(__name__ ASC)"
    );
}
