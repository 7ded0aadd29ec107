//! Query explain and partitionQuery, as Firestore documents them:
//! `explainOptions` without `analyze` plans the query and returns no
//! results (and no read time); with `analyze` it returns the results and
//! adds execution statistics to the last element. partitionQuery splits a
//! collection group into at most `partitionCount` cursors, partitions of at
//! least 128 documents, which together cover every document exactly once.

use serde_json::{Value, json};

use super::support::emulator::{DB, Fixture, ids, int, status_name};

async fn numbers() -> Fixture {
    let f = Fixture::start().await;
    for n in 0..5 {
        f.put(&format!("n/d{n}"), json!({ "n": int(n) }));
    }
    f
}

fn at_least_two() -> Value {
    json!({"from": [{"collectionId": "n"}], "where": {"fieldFilter": {
        "field": {"fieldPath": "n"}, "op": "GREATER_THAN_OR_EQUAL", "value": int(3)
    }}})
}

#[tokio::test]
async fn explain_without_analyze_plans_and_returns_nothing_else() {
    let f = numbers().await;
    for (rpc, body) in [
        (
            ":runQuery",
            json!({"structuredQuery": at_least_two(), "explainOptions": {}}),
        ),
        (
            ":runAggregationQuery",
            json!({"structuredAggregationQuery": {"structuredQuery": at_least_two(), "aggregations": [{"alias": "c", "count": {}}]},
                   "explainOptions": {"analyze": false}}),
        ),
    ] {
        let (status, elements) = f.post(rpc, body).await;
        assert_eq!(status, 200, "{elements}");
        let [only] = elements.as_array().unwrap().as_slice() else {
            panic!("{rpc}: one element: {elements}");
        };
        assert!(
            only.get("document").is_none()
                && only.get("result").is_none()
                && only.get("readTime").is_none(),
            "{only}"
        );
        assert_eq!(
            only["explainMetrics"],
            json!({"planSummary": {"indexesUsed": [{"query_scope": "Collection", "properties": "(n ASC, __name__ ASC)"}]}}),
            "{rpc}"
        );
    }
}

#[tokio::test]
async fn explain_with_analyze_returns_results_and_statistics() {
    let f = numbers().await;
    let body = json!({"structuredQuery": at_least_two(), "explainOptions": {"analyze": true}});
    let (status, elements) = f.post(":runQuery", body).await;
    assert_eq!(status, 200, "{elements}");
    assert_eq!(ids(&elements), ["d3", "d4"]);
    let all = elements.as_array().unwrap();
    let last = all.last().unwrap();
    assert!(
        all[..all.len() - 1]
            .iter()
            .all(|e| e.get("explainMetrics").is_none())
    );
    let stats = &last["explainMetrics"]["executionStats"];
    assert_eq!(stats["resultsReturned"], "2", "{last}");
    assert_eq!(stats["readOperations"], "2");
    assert_eq!(stats["debugStats"]["documents_scanned"], "5");
    assert!(stats["executionDuration"].as_str().unwrap().ends_with('s'));
    assert!(last["explainMetrics"]["planSummary"]["indexesUsed"][0].is_object());

    let aggregation = json!({
        "structuredAggregationQuery": {"structuredQuery": at_least_two(), "aggregations": [{"alias": "c", "count": {}}]},
        "explainOptions": {"analyze": true}
    });
    let (status, elements) = f.post(":runAggregationQuery", aggregation).await;
    assert_eq!(status, 200, "{elements}");
    assert_eq!(elements[0]["result"]["aggregateFields"]["c"], int(2));
    assert!(elements[0]["readTime"].is_string());
    assert_eq!(
        elements[0]["explainMetrics"]["executionStats"]["readOperations"],
        "1"
    );
    assert_eq!(
        elements[0]["explainMetrics"]["executionStats"]["resultsReturned"],
        "1"
    );

    let (status, body) = f
        .post(
            ":runQuery",
            json!({"structuredQuery": at_least_two(), "explainOptions": {"analyze": 1}}),
        )
        .await;
    assert_eq!((status, status_name(&body)), (400, "INVALID_ARGUMENT"));
}

fn group(id: &str) -> Value {
    json!({"from": [{"collectionId": id, "allDescendants": true}], "orderBy": [{"field": {"fieldPath": "__name__"}}]})
}

async fn partitions(f: &Fixture, query: Value, count: Value, extra: Value) -> (u16, Value) {
    let mut body = json!({"structuredQuery": query, "partitionCount": count});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    f.post(":partitionQuery", body).await
}

#[tokio::test]
async fn partition_query_splits_a_collection_group_into_covering_ranges() {
    let f = Fixture::start().await;
    // 2 × 128 + 127 documents under four parents, as the clients' own tests use.
    let parents = ["", "abc/123/", "def/456/", "ghi/789/"];
    for i in 0..383 {
        f.put(
            &format!("{}g/doc{i:03}", parents[i % 4]),
            json!({ "i": int(i as i64) }),
        );
    }
    f.put("other/x", json!({}));
    let (status, body) = partitions(&f, group("g"), json!("2"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let cursors = body["partitions"].as_array().unwrap().clone();
    assert_eq!(cursors.len(), 2, "{body}");
    assert!(body.get("nextPageToken").is_none());

    // Reading each range between the cursors covers every document once.
    let mut bounds: Vec<Option<&Value>> = vec![None];
    bounds.extend(cursors.iter().map(Some));
    bounds.push(None);
    let mut seen = Vec::new();
    for pair in bounds.windows(2) {
        let mut query = group("g");
        if let Some(start) = pair[0] {
            query["startAt"] = json!({"values": start["values"], "before": true});
        }
        if let Some(end) = pair[1] {
            query["endAt"] = json!({"values": end["values"], "before": true});
        }
        let got = f.query_ids("", query).await;
        assert!(got.len() >= 127, "a partition holds {}", got.len());
        seen.extend(got);
    }
    assert_eq!(seen.len(), 383);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 383);

    // Asking for more than 128-document partitions allow gives fewer; pages page.
    let (_, body) = partitions(&f, group("g"), json!(10), json!({"pageSize": 1})).await;
    assert_eq!(body["partitions"].as_array().unwrap().len(), 1);
    let token = body["nextPageToken"].as_str().unwrap().to_owned();
    let (_, body) = partitions(&f, group("g"), json!(10), json!({"pageToken": token})).await;
    assert_eq!(body["partitions"].as_array().unwrap().len(), 1);
    assert!(body.get("nextPageToken").is_none());
    assert!(
        body["partitions"][0]["values"][0]["referenceValue"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{DB}/documents/"))
    );

    let (status, body) = partitions(&f, group("other"), json!(3), json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!({"partitions": []})),
        "a small group is one partition"
    );
}

#[tokio::test]
async fn partition_query_takes_only_plain_collection_group_queries() {
    let f = numbers().await;
    let mut filtered = group("n");
    filtered["where"] = at_least_two()["where"].clone();
    let mut descending = group("n");
    descending["orderBy"][0]["direction"] = json!("DESCENDING");
    let cases = [
        (json!({"from": [{"collectionId": "n"}]}), json!(2)),
        (filtered, json!(2)),
        (descending, json!(2)),
        (group("n"), json!(0)),
    ];
    for (query, count) in cases {
        let (status, body) = partitions(&f, query.clone(), count, json!({})).await;
        assert_eq!(
            (status, status_name(&body)),
            (400, "INVALID_ARGUMENT"),
            "{query}: {body}"
        );
    }
    let (status, _) = partitions(
        &f,
        json!({"from": [{"collectionId": "n", "allDescendants": true}]}),
        json!(1),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "the order by name may be left out");
}
