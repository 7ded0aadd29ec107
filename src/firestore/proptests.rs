//! Property tests: nothing in route, classify or the transaction seal panics
//! on any input, and what is accepted is canonical. The `regression_corpus`
//! keeps the interesting inputs found while writing them.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Uri};
use proptest::prelude::*;

use super::{classify_request, classify_with, route};
use crate::model::Scope;
use crate::model::data::{Change, FieldCapture};
use crate::model::path::validate_id;

fn run(
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<super::Classified, crate::model::ClassifyError> {
    let Ok(method) = HttpMethod::from_bytes(method.as_bytes()) else {
        return Err(crate::model::ClassifyError::RouteNotFound("bad method"));
    };
    let Ok(uri) = uri.parse::<Uri>() else {
        return Err(crate::model::ClassifyError::RouteNotFound("bad uri"));
    };
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert("content-type", ct);
    }
    let route = route(&method, &uri, &headers)?;
    let body = Bytes::copy_from_slice(body);
    let classified = classify_request(&route, route.needs_body().then_some(&body));
    // Fields checked but not built: refused alike, the same in all else.
    let checked = classify_with(
        &route,
        route.needs_body().then_some(&body),
        FieldCapture::ValidateOnly,
    );
    assert_eq!(
        checked.clone().map(without_fields),
        classified.clone().map(without_fields)
    );
    let classified = classified?;
    check_accepted(&route, &classified);
    Ok(classified)
}

fn without_fields(mut classified: super::Classified) -> super::Classified {
    for w in &mut classified.operation.writes {
        if let Change::Update { fields, .. } = &mut w.change {
            *fields = None;
        }
    }
    classified
}

/// What any accepted request must satisfy.
fn check_accepted(route: &super::Route, classified: &super::Classified) {
    for target in &classified.operation.targets {
        let (parent, last): (&crate::model::Segments, Option<&String>) = match &target.scope {
            Scope::Document { path } => {
                assert!(
                    path.len() >= 2 && path.len().is_multiple_of(2),
                    "document {path:?}"
                );
                (path, None)
            }
            Scope::Collection { parent, collection }
            | Scope::CollectionGroup { parent, collection }
            | Scope::Subtree { parent, collection } => (parent, Some(collection)),
            Scope::Descendants { parent } | Scope::CollectionIds { parent } => (parent, None),
        };
        if !matches!(target.scope, Scope::Document { .. }) {
            assert!(parent.len().is_multiple_of(2), "parent {parent:?}");
        }
        for id in parent.iter().chain(last.map(String::as_str)) {
            assert!(validate_id(id).is_ok(), "id {id:?}");
        }
    }
    // The forwarded URL routes to the same thing: canonical form is a fixpoint.
    let uri: Uri = route
        .upstream_path_and_query
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", route.upstream_path_and_query));
    let method = match route.method {
        crate::model::Method::Get | crate::model::Method::List => HttpMethod::GET,
        crate::model::Method::Patch => HttpMethod::PATCH,
        crate::model::Method::Delete => HttpMethod::DELETE,
        _ => HttpMethod::POST,
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let again = route::route(&method, &uri, &headers).expect("canonical URL re-routes");
    assert_eq!(again.method, route.method);
    assert_eq!(again.path, route.path);
    assert_eq!(again.database, route.database);
    assert_eq!(again.upstream_path_and_query, route.upstream_path_and_query);
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,4}",
        "(%2F|%2f|%25|%3A|%2E|%C3%A9|%FF|%|\\.|_|:|~|\\(|\\)|a|b){0,5}",
        Just("__id1__".to_owned()),
        Just("__x__".to_owned()),
    ]
}

fn uri() -> impl Strategy<Value = String> {
    let verb = prop_oneof![
        Just(String::new()),
        Just(":commit".to_owned()),
        Just(":batchGet".to_owned()),
        Just(":runQuery".to_owned()),
        Just(":runAggregationQuery".to_owned()),
        Just(":listCollectionIds".to_owned()),
        Just(":beginTransaction".to_owned()),
        ":[a-zA-Z:/]{0,8}",
    ];
    let query = prop_oneof![
        Just(String::new()),
        "\\?(key|\\$alt|alt|fields|documentId|transaction|currentDocument.exists|mask.fieldPaths|%24key|access_token)=[a-z%;=+0-9]{0,8}(&(key|pageSize|fields)=[a-z0-9]{0,3}){0,2}",
    ];
    (
        prop_oneof![Just("(default)".to_owned()), segment()],
        prop::collection::vec(segment(), 0..6),
        verb,
        query,
    )
        .prop_map(|(db, segments, verb, query)| {
            let mut uri = format!("/v1/projects/p/databases/{db}/documents");
            for s in segments {
                uri.push('/');
                uri.push_str(&s);
            }
            uri + &verb + &query
        })
}

const KEYS: &[&str] = &[
    "writes",
    "update",
    "delete",
    "transform",
    "verify",
    "name",
    "fields",
    "document",
    "currentDocument",
    "current_document",
    "exists",
    "updateTime",
    "documents",
    "transaction",
    "newTransaction",
    "readWrite",
    "retryTransaction",
    "readOnly",
    "structuredQuery",
    "structured_query",
    "from",
    "collectionId",
    "collection_id",
    "allDescendants",
    "all_descendants",
    "where",
    "structuredAggregationQuery",
    "options",
    "database",
    "parent",
    "mask",
    "readTime",
    "labels",
    "x",
];

fn json() -> impl Strategy<Value = serde_json::Value> {
    let name = prop_oneof![
        Just("projects/p/databases/(default)/documents/a/b".to_owned()),
        Just("projects/p/databases/(default)/documents/a".to_owned()),
        Just("projects/q/databases/(default)/documents/a/b".to_owned()),
        "[a-z/_.]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        name.prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|entries| {
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// A modest run in `cargo test`; `FIREGATE_FUZZ_CASES=100000` runs longer.
fn config() -> ProptestConfig {
    let cases = std::env::var("FIREGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn route_and_classify_never_panic(
        method in prop::sample::select(&["GET", "POST", "PATCH", "DELETE", "PUT"][..]),
        uri in uri(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = run(method, &uri, Some("application/json"), &body);
        let _ = run(method, &uri, None, &body);
    }

    #[test]
    fn structured_bodies_never_panic(
        verb in prop::sample::select(&[":commit", ":batchWrite", ":batchGet", ":runQuery",
            ":runAggregationQuery", ":partitionQuery", ":beginTransaction", ":rollback",
            ":listCollectionIds"][..]),
        body in json(),
    ) {
        let uri = format!("/v1/projects/p/databases/(default)/documents{verb}");
        let text = body.to_string();
        let classified = run("POST", &uri, Some("text/plain"), text.as_bytes());
        if let Ok(super::Classified {
            transaction: super::TransactionUse {
                presented: Some(super::Presented { at: super::Location::Body(range), .. }),
                ..
            },
            ..
        }) = &classified
        {
            prop_assert!(text.get(range.clone()).is_some_and(|s| s.starts_with('"')));
        }
    }
}

/// Inputs worth keeping: each once broke an assumption, or nearly did.
#[test]
fn regression_corpus() {
    let db = "/v1/projects/p/databases/(default)/documents";
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_query = format!(
        r#"{{"structuredQuery":{{"from":[{{"collectionId":"a"}}],"where":{}}}}}"#,
        "{\"x\":".repeat(5_000) + "1" + &"}".repeat(5_000)
    );
    // Filters nested past serde_json's recursion limit, each level valid.
    let deep_filter = format!(
        r#"{{"structuredQuery":{{"from":[{{"collectionId":"a"}}],"where":{}{}}}}}"#,
        r#"{"compositeFilter":{"op":"AND","filters":["#.repeat(5_000),
        "]}}".repeat(5_000)
    );
    let deep_value = format!(
        r#"{{"fields":{{"a":{}{{"nullValue":null}}{}}}}}"#,
        r#"{"mapValue":{"fields":{"a":"#.repeat(5_000),
        "}}}".repeat(5_000)
    );
    type Case = (&'static str, String, Vec<u8>, Result<(), &'static str>);
    let cases: Vec<Case> = vec![
        (
            "POST",
            format!("{db}:commit"),
            deep.into_bytes(),
            Err("malformed_body"),
        ),
        (
            "POST",
            format!("{db}:runQuery"),
            deep_query.into_bytes(),
            Err("unknown_field"),
        ),
        (
            "POST",
            format!("{db}:runQuery"),
            deep_filter.into_bytes(),
            Err("malformed_body"),
        ),
        (
            "PATCH",
            format!("{db}/a/b"),
            deep_value.into_bytes(),
            Err("malformed_body"),
        ),
        (
            "POST",
            format!("{db}:commit"),
            b"\xEF\xBB\xBF{}".to_vec(),
            Err("malformed_body"),
        ),
        (
            "POST",
            format!("{db}:commit"),
            br#"{"writes":[{"delete":"\ud800"}]}"#.to_vec(),
            Err("malformed_body"),
        ),
        (
            "POST",
            format!("{db}:commit"),
            b"{\"writes\":[],\"\\u0000\":1}".to_vec(),
            Err("unknown_field"),
        ),
        (
            "POST",
            format!("{db}:commit"),
            br#"{"writes":[{"delete":"projects/p/databases/(default)/documents/a/b\u0000"}]}"#
                .to_vec(),
            Err("invalid_resource_id"),
        ),
        (
            "POST",
            format!("{db}:commit"),
            br#"{"writes":[],"transaction":1e999}"#.to_vec(),
            Err("malformed_body"),
        ),
        (
            "POST",
            format!("{db}:commit"),
            b"\xff\xfe".to_vec(),
            Err("malformed_body"),
        ),
        ("POST", format!("{db}:commit"), b"   ".to_vec(), Ok(())),
        ("GET", format!("{db}/a/%E2%80%AE"), vec![], Ok(())),
        (
            "GET",
            format!("{db}/a/%C0%AF"),
            vec![],
            Err("bad_path_encoding"),
        ),
        ("GET", format!("{db}/a/b?transaction="), vec![], Ok(())),
        (
            "POST",
            format!("{db}:batchGet"),
            br#"{"documents":null}"#.to_vec(),
            Ok(()),
        ),
        (
            "POST",
            format!("{db}:runQuery?$alt=json%3benum-encoding%3dint"),
            br#"{"structuredQuery":{"from":[{"collectionId":"a"}]}}"#.to_vec(),
            Ok(()),
        ),
    ];
    for (method, uri, body, expected) in cases {
        let got = run(method, &uri, Some("application/json"), &body)
            .map(|_| ())
            .map_err(|e| e.reason());
        assert_eq!(got, expected, "{method} {}", &uri[..uri.len().min(120)]);
    }
}
