//! Write results and aggregations, as Firestore documents them: a delete's
//! write result has no `updateTime` (nothing is left to have one), and an
//! aggregation over several fields only includes documents that have every
//! aggregated field — for all its aggregations, count included.

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
