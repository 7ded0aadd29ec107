//! The route table (§1), the URL traps (§3) and the parameters and headers
//! of §4, one case per row.

use super::*;

const DB: &str = "/v1/projects/p/databases/(default)/documents";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn json() -> HeaderMap {
    headers(&[("content-type", "application/json")])
}

fn route_of(method: &str, uri: &str, h: &HeaderMap) -> Result<Route, ClassifyError> {
    let method = HttpMethod::from_bytes(method.as_bytes()).unwrap();
    let uri: Uri = uri.parse().unwrap();
    route(&method, &uri, h)
}

fn ok(method: &str, uri: &str) -> Route {
    route_of(method, uri, &json()).unwrap_or_else(|e| panic!("{method} {uri}: {e}"))
}

fn refused(method: &str, uri: &str, h: &HeaderMap) -> &'static str {
    match route_of(method, uri, h) {
        Ok(r) => panic!("{method} {uri} was accepted as {:?}", r.method),
        Err(e) => e.reason(),
    }
}

#[test]
fn every_route_of_section_1() {
    let cases: &[(&str, String, Method, &[&str])] = &[
        (
            "GET",
            format!("{DB}/users/alice"),
            Method::Get,
            &["users", "alice"],
        ),
        ("GET", format!("{DB}/users"), Method::List, &["users"]),
        (
            "GET",
            format!("{DB}/users/alice/posts"),
            Method::List,
            &["users", "alice", "posts"],
        ),
        (
            "POST",
            format!("{DB}/users"),
            Method::CreateDocument,
            &["users"],
        ),
        (
            "POST",
            format!("{DB}/users/alice/posts"),
            Method::CreateDocument,
            &["users", "alice", "posts"],
        ),
        (
            "PATCH",
            format!("{DB}/users/alice"),
            Method::Patch,
            &["users", "alice"],
        ),
        (
            "DELETE",
            format!("{DB}/users/alice"),
            Method::Delete,
            &["users", "alice"],
        ),
        ("POST", format!("{DB}:batchGet"), Method::BatchGet, &[]),
        ("POST", format!("{DB}:commit"), Method::Commit, &[]),
        ("POST", format!("{DB}:batchWrite"), Method::BatchWrite, &[]),
        (
            "POST",
            format!("{DB}:beginTransaction"),
            Method::BeginTransaction,
            &[],
        ),
        ("POST", format!("{DB}:rollback"), Method::Rollback, &[]),
        ("POST", format!("{DB}:runQuery"), Method::RunQuery, &[]),
        (
            "POST",
            format!("{DB}/users/alice:runQuery"),
            Method::RunQuery,
            &["users", "alice"],
        ),
        (
            "POST",
            format!("{DB}:runAggregationQuery"),
            Method::RunAggregationQuery,
            &[],
        ),
        (
            "POST",
            format!("{DB}/users/alice:runAggregationQuery"),
            Method::RunAggregationQuery,
            &["users", "alice"],
        ),
        (
            "POST",
            format!("{DB}:partitionQuery"),
            Method::PartitionQuery,
            &[],
        ),
        (
            "POST",
            format!("{DB}:listCollectionIds"),
            Method::ListCollectionIds,
            &[],
        ),
        (
            "POST",
            format!("{DB}/users/alice:listCollectionIds"),
            Method::ListCollectionIds,
            &["users", "alice"],
        ),
    ];
    for (method, uri, rpc, path) in cases {
        let r = ok(method, uri);
        assert_eq!(r.method, *rpc, "{method} {uri}");
        assert_eq!(r.path, *path, "{method} {uri}");
        assert_eq!(r.database.project, "p");
        assert_eq!(r.database.database, "(default)");
        assert_eq!(
            r.upstream_path_and_query, *uri,
            "canonical form is unchanged"
        );
    }
}

#[test]
fn routes_outside_the_table_are_refused() {
    let cases: &[(&str, String, &str)] = &[
        ("GET", DB.to_owned(), "route_not_found"),
        ("POST", format!("{DB}/users/alice"), "route_not_found"),
        ("PATCH", format!("{DB}/users"), "route_not_found"),
        ("DELETE", format!("{DB}/users"), "route_not_found"),
        ("PUT", format!("{DB}/users/alice"), "route_not_found"),
        ("HEAD", format!("{DB}/users/alice"), "route_not_found"),
        ("GET", format!("{DB}:batchGet"), "route_not_found"),
        ("POST", format!("{DB}/users:runQuery"), "route_not_found"),
        (
            "POST",
            format!("{DB}/users/alice:commit"),
            "route_not_found",
        ),
        ("POST", format!("{DB}:frobnicate"), "route_not_found"),
        ("POST", format!("{DB}:listen"), "unsupported_method"),
        ("POST", format!("{DB}:write"), "unsupported_method"),
        (
            "POST",
            format!("{DB}:executePipeline"),
            "unsupported_method",
        ),
        (
            "POST",
            "/v1/projects/p/databases/(default):exportDocuments".into(),
            "unsupported_method",
        ),
        (
            "GET",
            "/v1/projects/p/databases/(default)".into(),
            "unsupported_method",
        ),
        (
            "POST",
            "/v1beta1/projects/p/databases/(default)/documents:commit".into(),
            "unsupported_method",
        ),
        ("POST", "/batch".into(), "route_not_found"),
        ("GET", "/emulator/v1/projects/p".into(), "route_not_found"),
        ("POST", "/shutdown".into(), "route_not_found"),
        (
            "GET",
            "/v1/projects/p/databases/(default)/%64ocuments/a/b".into(),
            "unsupported_method",
        ),
        ("GET", "/".into(), "route_not_found"),
    ];
    for (method, uri, reason) in cases {
        assert_eq!(refused(method, uri, &json()), *reason, "{method} {uri}");
    }
}

#[test]
fn path_encoding_traps_of_section_3() {
    let cases: &[(&str, &str)] = &[
        ("/users/a%2Fb", "bad_path_encoding"),
        ("/users/a%2fb", "bad_path_encoding"),
        ("/users/%2541", "bad_path_encoding"),
        ("/users/a%", "bad_path_encoding"),
        ("/users//b", "invalid_resource_id"),
        ("/users/b/", "invalid_resource_id"),
        ("/users/.", "invalid_resource_id"),
        ("/users/..", "invalid_resource_id"),
        ("/users/%2E%2E", "invalid_resource_id"),
        ("/users/__x__", "invalid_resource_id"),
        ("/__x__/a", "invalid_resource_id"),
        ("/us:ers/a", "ambiguous_resource_name"),
    ];
    for (tail, reason) in cases {
        let uri = format!("{DB}{tail}");
        assert_eq!(refused("GET", &uri, &json()), *reason, "{uri}");
    }
    let long = format!("{DB}/users/{}", "a".repeat(1501));
    assert_eq!(refused("GET", &long, &json()), "invalid_resource_id");
    assert_eq!(
        refused("POST", &format!("{DB}/a/b:runQuery:x"), &json()),
        "ambiguous_resource_name"
    );
    assert_eq!(
        refused(
            "GET",
            "/v1/projects/p/databases/%2E%2E/documents/a/b",
            &json()
        ),
        "invalid_resource_id"
    );
}

#[test]
fn ids_decode_once_and_are_reencoded_upstream() {
    let r = ok("GET", &format!("{DB}/users/a%3Ab%20c"));
    assert_eq!(r.path, ["users", "a:b c"]);
    assert_eq!(r.upstream_path_and_query, format!("{DB}/users/a%3Ab%20c"));
    let r = ok(
        "GET",
        "/v1/projects/p/databases/%28default%29/documents/users/__id7__",
    );
    assert_eq!(r.database.database, "(default)");
    assert_eq!(r.upstream_path_and_query, format!("{DB}/users/__id7__"));
    let r = ok("GET", &format!("{DB}/users/caf%C3%A9"));
    assert_eq!(r.path.get(1), Some("café"));
}

#[test]
fn allowed_system_parameters_are_forwarded_canonically() {
    let node = ok(
        "POST",
        &format!("{DB}:commit?$alt=json%3Benum-encoding=int"),
    );
    assert_eq!(
        node.upstream_path_and_query,
        format!("{DB}:commit?$alt=json%3Benum-encoding%3Dint")
    );
    let encoded_dollar = ok("POST", &format!("{DB}:commit?%24alt=json"));
    assert_eq!(
        encoded_dollar.upstream_path_and_query,
        format!("{DB}:commit?$alt=json")
    );
    let r = ok(
        "GET",
        &format!("{DB}/users/a?fields=name&prettyPrint=false&$.xgafv=2"),
    );
    assert_eq!(
        r.upstream_path_and_query,
        format!("{DB}/users/a?fields=name&prettyPrint=false&$.xgafv=2")
    );
}

#[test]
fn api_keys_and_quota_user_are_stripped() {
    for query in [
        "key=AIzaSyX",
        "$key=AIzaSyX",
        "%24key=k",
        "quotaUser=q",
        "key=a&key=b",
    ] {
        let r = ok("POST", &format!("{DB}:runQuery?{query}"));
        assert_eq!(
            r.upstream_path_and_query,
            format!("{DB}:runQuery"),
            "{query}"
        );
    }
    let lite = ok("POST", &format!("{DB}:commit?key=AIzaSyX&$alt=json"));
    assert_eq!(
        lite.upstream_path_and_query,
        format!("{DB}:commit?$alt=json")
    );
}

#[test]
fn system_parameters_of_section_4_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("access_token=ya29.x", "credential_in_query"),
        ("oauth_token=ya29.x", "credential_in_query"),
        ("$access_token=x", "credential_in_query"),
        ("%24oauth_token=x", "credential_in_query"),
        ("$ct=application/x-protobuf", "system_parameter_refused"),
        ("callback=f", "system_parameter_refused"),
        ("$callback=f", "system_parameter_refused"),
        ("alt=proto", "system_parameter_refused"),
        ("$alt=media", "system_parameter_refused"),
        ("alt=json;enum-encoding=int;x", "system_parameter_refused"),
        ("uploadType=media", "system_parameter_refused"),
        ("upload_protocol=raw", "system_parameter_refused"),
        ("$unknown=1", "system_parameter_refused"),
        ("frobnicate=1", "unknown_query_parameter"),
        ("documentId=x", "unknown_query_parameter"),
        ("prettyPrint=yes", "invalid_query_parameter"),
        ("$.xgafv=3", "invalid_query_parameter"),
        ("fields=a&fields=b", "duplicate_query_parameter"),
        ("fields=a&$fields=b", "mixed_field_spelling"),
        ("alt=json&$alt=json", "mixed_field_spelling"),
        ("database=projects/q/databases/d", "path_field_respecified"),
        ("parent=x", "path_field_respecified"),
        ("name=x", "path_field_respecified"),
        ("fields=%zz", "invalid_query_parameter"),
    ];
    for (query, reason) in cases {
        let uri = format!("{DB}:runQuery?{query}");
        assert_eq!(refused("POST", &uri, &json()), *reason, "{query}");
    }
}

#[test]
fn method_parameters_in_both_spellings() {
    let r = ok(
        "GET",
        &format!(
            "{DB}/users?page_size=10&pageToken=t&show_missing=true&mask.field_paths=a&mask.field_paths=b&order_by=name+desc"
        ),
    );
    assert_eq!(
        r.upstream_path_and_query,
        format!(
            "{DB}/users?pageSize=10&pageToken=t&showMissing=true&mask.fieldPaths=a&mask.fieldPaths=b&orderBy=name%20desc"
        ),
        "snake_case is forwarded as camelCase"
    );
    for mixed in [
        "pageSize=1&page_size=2",
        "mask.fieldPaths=a&mask.field_paths=b",
    ] {
        let uri = format!("{DB}/users?{mixed}");
        assert_eq!(
            refused("GET", &uri, &json()),
            "mixed_field_spelling",
            "{mixed}"
        );
    }
    let r = ok("POST", &format!("{DB}/users?document_id=alice"));
    assert_eq!(r.document_id.as_deref(), Some("alice"));
    assert_eq!(
        r.upstream_path_and_query,
        format!("{DB}/users?documentId=alice")
    );
}

#[test]
fn preconditions_in_the_query() {
    let doc = format!("{DB}/users/a");
    assert_eq!(ok("PATCH", &doc).must_exist, None);
    assert_eq!(
        ok("PATCH", &format!("{doc}?currentDocument.exists=true")).must_exist,
        Some(true)
    );
    assert_eq!(
        ok("PATCH", &format!("{doc}?current_document.exists=false")).must_exist,
        Some(false)
    );
    assert_eq!(
        ok(
            "PATCH",
            &format!("{doc}?currentDocument.updateTime=2020-01-01T00:00:00Z")
        )
        .must_exist,
        Some(true)
    );
    let both = format!("{doc}?currentDocument.exists=false&currentDocument.updateTime=x");
    assert_eq!(refused("PATCH", &both, &json()), "invalid_query_parameter");
    let maybe = format!("{doc}?currentDocument.exists=maybe");
    assert_eq!(refused("PATCH", &maybe, &json()), "invalid_query_parameter");
    assert_eq!(
        refused(
            "GET",
            &format!("{doc}?currentDocument.exists=true"),
            &json()
        ),
        "unknown_query_parameter"
    );
}

#[test]
fn document_id_is_validated_as_an_id() {
    for id in ["a%2Fb", "..", "__x__", ""] {
        let uri = format!("{DB}/users?documentId={id}");
        assert_eq!(
            refused("POST", &uri, &json()),
            "invalid_resource_id",
            "{id}"
        );
    }
}

#[test]
fn transaction_in_the_query_can_be_replaced() {
    let mut r = ok(
        "GET",
        &format!("{DB}/users/a?transaction=c2VhbGVk&fields=x"),
    );
    assert_eq!(r.query_transaction(), Some("c2VhbGVk"));
    r.set_query_transaction("dXA+/w==".into());
    assert_eq!(
        r.upstream_path_and_query,
        format!("{DB}/users/a?transaction=dXA%2B%2Fw%3D%3D&fields=x")
    );
}

#[test]
fn headers_that_change_meaning_are_refused() {
    let uri = format!("{DB}:runQuery");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("x-http-method-override", "DELETE")], "method_override"),
        (&[("X-HTTP-Method", "GET")], "method_override"),
        (&[("x-method-override", "PATCH")], "method_override"),
        (
            &[("content-type", "application/x-protobuf")],
            "unsupported_content_type",
        ),
        (
            &[("content-type", "application/grpc")],
            "unsupported_content_type",
        ),
        (
            &[("content-type", "multipart/mixed")],
            "unsupported_content_type",
        ),
        (
            &[("content-type", "application/json; charset=utf-16")],
            "unsupported_content_type",
        ),
        (
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ],
            "unsupported_content_type",
        ),
        (
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            "unsupported_content_encoding",
        ),
    ];
    for (h, reason) in cases {
        assert_eq!(refused("POST", &uri, &headers(h)), *reason, "{h:?}");
    }
    let get = format!("{DB}/users/a");
    assert_eq!(
        refused("GET", &get, &headers(&[("content-length", "5")])),
        "body_not_allowed"
    );
    assert_eq!(
        refused(
            "DELETE",
            &get,
            &headers(&[("transfer-encoding", "chunked")])
        ),
        "body_not_allowed"
    );
}

#[test]
fn json_content_types_are_accepted() {
    let uri = format!("{DB}:runQuery");
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "text/plain",
        "text/plain;charset=UTF-8",
    ] {
        let r = route_of("POST", &uri, &headers(&[("content-type", ct)])).unwrap();
        assert!(!r.untyped_body, "{ct}");
    }
    let untyped = route_of("POST", &uri, &HeaderMap::new()).unwrap();
    assert!(untyped.untyped_body);
    let get = route_of("GET", &format!("{DB}/a/b"), &HeaderMap::new()).unwrap();
    assert!(!get.untyped_body);
}

#[test]
fn routing_hint_headers_do_not_change_the_route() {
    let h = headers(&[
        ("content-type", "application/json"),
        (
            "x-goog-request-params",
            "database=projects%2Fq%2Fdatabases%2Fother",
        ),
        ("google-cloud-resource-prefix", "projects/q/databases/other"),
    ]);
    let r = route_of("POST", &format!("{DB}:commit"), &h).unwrap();
    assert_eq!(r.database.to_string(), "projects/p/databases/(default)");
    assert_eq!(r.database.name(), r.database.to_string());
}

#[test]
fn needs_body_only_for_body_methods() {
    assert!(!ok("GET", &format!("{DB}/a/b")).needs_body());
    assert!(!ok("GET", &format!("{DB}/a")).needs_body());
    assert!(!ok("DELETE", &format!("{DB}/a/b")).needs_body());
    assert!(ok("PATCH", &format!("{DB}/a/b")).needs_body());
    assert!(ok("POST", &format!("{DB}:commit")).needs_body());
}
