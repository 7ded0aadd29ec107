//! The unary and server-streaming RPCs: each builds the REST call its twin
//! takes, runs the emulator's own method, and answers in protobuf.

use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use googleapis_tonic_google_firestore_v1::google::rpc;
use serde_json::{Map, Value as Json, json};
use tonic::Status;

use super::super::ids::check_path;
use super::super::routes::{Call, Params};
use super::super::store::DocPath;
use super::super::{Answer, EmulatorError, Shared, documents, partition, rpc as rest};
use super::from_rest::{self as out, array, string_at, time_at, transaction_at};
use super::to_rest;

/// `projects/P/databases/D/documents[/…]` → (`projects/P/databases/D`, path).
pub fn split_name(name: &str) -> Result<(String, DocPath), EmulatorError> {
    let bad = || EmulatorError::InvalidArgument(format!("{name:?} is not a valid resource name"));
    let segments: Vec<&str> = name.split('/').collect();
    match segments.as_slice() {
        [
            "projects",
            project,
            "databases",
            database,
            "documents",
            path @ ..,
        ] if !project.is_empty() && !database.is_empty() => {
            if path.iter().any(|s| s.is_empty()) {
                return Err(bad());
            }
            let path: DocPath = path.iter().map(|s| (*s).to_owned()).collect();
            check_path(&path)?;
            Ok((format!("projects/{project}/databases/{database}"), path))
        }
        _ => Err(bad()),
    }
}

fn document_name(name: &str) -> Result<(String, DocPath), EmulatorError> {
    let (database, path) = split_name(name)?;
    if path.is_empty() || !path.len().is_multiple_of(2) {
        return Err(EmulatorError::InvalidArgument(format!(
            "{name:?} is not a document name"
        )));
    }
    Ok((database, path))
}

pub fn parent_name(name: &str) -> Result<(String, DocPath), EmulatorError> {
    let (database, path) = split_name(name)?;
    if !path.len().is_multiple_of(2) {
        return Err(EmulatorError::InvalidArgument(format!(
            "{name:?} is not a database root or a document"
        )));
    }
    Ok((database, path))
}

fn database_name(name: &str) -> Result<String, EmulatorError> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", project, "databases", database]
            if !project.is_empty() && !database.is_empty() =>
        {
            Ok(name.to_owned())
        }
        _ => Err(EmulatorError::InvalidArgument(format!(
            "{name:?} is not a database name"
        ))),
    }
}

fn call(
    database: String,
    path: DocPath,
    params: Vec<(&str, String)>,
    body: Map<String, Json>,
) -> Call {
    Call {
        database,
        path,
        params: Params::from_pairs(params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        body: if body.is_empty() {
            Json::Null
        } else {
            Json::Object(body)
        },
    }
}

fn mask_params(
    params: &mut Vec<(&'static str, String)>,
    key: &'static str,
    mask: Option<&proto::DocumentMask>,
) {
    if let Some(mask) = mask {
        params.extend(mask.field_paths.iter().map(|p| (key, p.clone())));
    }
}

fn one(answer: Answer) -> Result<Json, Status> {
    match answer {
        Answer::Object(json) => Ok(json),
        Answer::Stream(_) => Err(Status::internal(
            "The emulator produced a malformed answer.",
        )),
    }
}

fn many(answer: Answer) -> Vec<Json> {
    match answer {
        Answer::Object(json) => vec![json],
        Answer::Stream(elements) => elements,
    }
}

/// A REST field's JSON string as a query parameter.
fn param(json: Json) -> String {
    json.as_str().unwrap_or_default().to_owned()
}

/// The snapshot a read names in its `consistency_selector`.
enum Snapshot<'a> {
    Transaction(&'a [u8]),
    NewTransaction(&'a proto::TransactionOptions),
    ReadTime(&'a prost_types::Timestamp),
}

/// Each request has its own generated `ConsistencySelector`, with all or
/// some of the same three variants.
macro_rules! snapshot_from {
    ($($selector:ty: $($variant:ident)|+;)+) => {$(
        impl<'a> From<&'a $selector> for Snapshot<'a> {
            fn from(selector: &'a $selector) -> Self {
                type Selector = $selector;
                match selector {
                    $(Selector::$variant(value) => Snapshot::$variant(value),)+
                }
            }
        }
    )+};
}

snapshot_from! {
    proto::get_document_request::ConsistencySelector: Transaction | ReadTime;
    proto::list_documents_request::ConsistencySelector: Transaction | ReadTime;
    proto::batch_get_documents_request::ConsistencySelector: Transaction | NewTransaction | ReadTime;
    proto::run_query_request::ConsistencySelector: Transaction | NewTransaction | ReadTime;
    proto::run_aggregation_query_request::ConsistencySelector: Transaction | NewTransaction | ReadTime;
    proto::partition_query_request::ConsistencySelector: ReadTime;
}

impl Snapshot<'_> {
    /// The REST field that carries it (`transaction`, `newTransaction` or
    /// `readTime`) and its value.
    fn rest_field(&self) -> (&'static str, Json) {
        match self {
            Snapshot::Transaction(t) => ("transaction", to_rest::transaction(t)),
            Snapshot::NewTransaction(o) => ("newTransaction", to_rest::transaction_options(o)),
            Snapshot::ReadTime(t) => ("readTime", to_rest::timestamp(t)),
        }
    }
}

/// A GET names its snapshot in the query string (a GET's selector has no
/// `newTransaction`).
fn snapshot_param(params: &mut Vec<(&'static str, String)>, snapshot: Option<Snapshot>) {
    if let Some((name, value)) = snapshot.map(|s| s.rest_field()) {
        params.push((name, param(value)));
    }
}

/// A POST names its snapshot in the body.
fn snapshot_field(body: &mut Map<String, Json>, snapshot: Option<Snapshot>) {
    if let Some((name, value)) = snapshot.map(|s| s.rest_field()) {
        body.insert(name.into(), value);
    }
}

/// A write's `currentDocument` precondition, in the query string.
fn precondition_params(
    params: &mut Vec<(&'static str, String)>,
    precondition: Option<&proto::Precondition>,
) {
    use proto::precondition::ConditionType;
    match precondition.and_then(|p| p.condition_type.as_ref()) {
        Some(ConditionType::Exists(exists)) => {
            params.push(("currentDocument.exists", exists.to_string()))
        }
        Some(ConditionType::UpdateTime(t)) => {
            params.push(("currentDocument.updateTime", param(to_rest::timestamp(t))))
        }
        None => {}
    }
}

/// A query's body: the query under its REST name, its explain options and
/// its snapshot.
fn query_body(
    query: Option<(&str, Json)>,
    explain: Option<&proto::ExplainOptions>,
    snapshot: Option<Snapshot>,
) -> Map<String, Json> {
    let mut body = Map::new();
    if let Some((name, query)) = query {
        body.insert(name.into(), query);
    }
    if let Some(explain) = explain {
        body.insert("explainOptions".into(), to_rest::explain_options(explain));
    }
    snapshot_field(&mut body, snapshot);
    body
}

pub fn get_document(
    shared: &Shared,
    request: proto::GetDocumentRequest,
) -> Result<proto::Document, Status> {
    let (database, path) = document_name(&request.name)?;
    let mut params = Vec::new();
    mask_params(&mut params, "mask.fieldPaths", request.mask.as_ref());
    let snapshot = request.consistency_selector.as_ref().map(Snapshot::from);
    snapshot_param(&mut params, snapshot);
    let answer = documents::get(shared, &call(database, path, params, Map::new()))?;
    out::document(&one(answer)?)
}

pub fn list_documents(
    shared: &Shared,
    request: proto::ListDocumentsRequest,
) -> Result<proto::ListDocumentsResponse, Status> {
    let (database, mut path) = parent_name(&request.parent)?;
    if request.collection_id.is_empty() || request.collection_id.contains('/') {
        return Err(EmulatorError::InvalidArgument(
            "collection_id must be one collection id".into(),
        )
        .into());
    }
    path.push(request.collection_id.clone());
    let mut params = vec![
        ("pageSize", request.page_size.to_string()),
        ("pageToken", request.page_token.clone()),
        ("orderBy", request.order_by.clone()),
        ("showMissing", request.show_missing.to_string()),
    ];
    mask_params(&mut params, "mask.fieldPaths", request.mask.as_ref());
    let snapshot = request.consistency_selector.as_ref().map(Snapshot::from);
    snapshot_param(&mut params, snapshot);
    let json = one(documents::list(
        shared,
        &call(database, path, params, Map::new()),
    )?)?;
    Ok(proto::ListDocumentsResponse {
        documents: out::documents(json.get("documents"))?,
        next_page_token: string_at(&json, "nextPageToken"),
    })
}

pub fn create_document(
    shared: &Shared,
    request: proto::CreateDocumentRequest,
) -> Result<proto::Document, Status> {
    let (database, mut path) = parent_name(&request.parent)?;
    path.push(request.collection_id.clone());
    let mut params = vec![("documentId", request.document_id.clone())];
    mask_params(&mut params, "mask.fieldPaths", request.mask.as_ref());
    let mut body = Map::new();
    if let Some(doc) = &request.document {
        body.insert("fields".into(), to_rest::fields(&doc.fields));
    }
    let answer = documents::create(shared, &call(database, path, params, body))?;
    out::document(&one(answer)?)
}

pub fn update_document(
    shared: &Shared,
    request: proto::UpdateDocumentRequest,
) -> Result<proto::Document, Status> {
    let doc = request
        .document
        .as_ref()
        .ok_or_else(|| EmulatorError::InvalidArgument("document is required".into()))?;
    let (database, path) = document_name(&doc.name)?;
    let mut params = Vec::new();
    mask_params(
        &mut params,
        "updateMask.fieldPaths",
        request.update_mask.as_ref(),
    );
    mask_params(&mut params, "mask.fieldPaths", request.mask.as_ref());
    precondition_params(&mut params, request.current_document.as_ref());
    let mut body = Map::new();
    body.insert("fields".into(), to_rest::fields(&doc.fields));
    let answer = documents::patch(shared, &call(database, path, params, body))?;
    out::document(&one(answer)?)
}

pub fn delete_document(
    shared: &Shared,
    request: proto::DeleteDocumentRequest,
) -> Result<(), Status> {
    let (database, path) = document_name(&request.name)?;
    let mut params = Vec::new();
    precondition_params(&mut params, request.current_document.as_ref());
    documents::delete(shared, &call(database, path, params, Map::new()))?;
    Ok(())
}

pub fn batch_get_documents(
    shared: &Shared,
    request: proto::BatchGetDocumentsRequest,
) -> Result<Vec<proto::BatchGetDocumentsResponse>, Status> {
    use proto::batch_get_documents_response::Result as Found;
    let database = database_name(&request.database)?;
    let mut body = Map::new();
    body.insert("documents".into(), json!(request.documents));
    if let Some(mask) = &request.mask {
        body.insert("mask".into(), to_rest::mask(mask));
    }
    let snapshot = request.consistency_selector.as_ref().map(Snapshot::from);
    snapshot_field(&mut body, snapshot);
    let answer = rest::batch_get(shared, &call(database, Vec::new(), Vec::new(), body))?;
    many(answer)
        .iter()
        .map(|element| {
            let result = match (
                element.get("found"),
                element.get("missing").and_then(Json::as_str),
            ) {
                (Some(found), _) => Some(Found::Found(out::document(found)?)),
                (None, Some(missing)) => Some(Found::Missing(missing.to_owned())),
                (None, None) => None,
            };
            Ok(proto::BatchGetDocumentsResponse {
                transaction: transaction_at(element, "transaction")?,
                read_time: time_at(element, "readTime")?,
                result,
            })
        })
        .collect()
}

pub fn begin_transaction(
    shared: &Shared,
    request: proto::BeginTransactionRequest,
) -> Result<proto::BeginTransactionResponse, Status> {
    let database = database_name(&request.database)?;
    let mut body = Map::new();
    if let Some(options) = &request.options {
        body.insert("options".into(), to_rest::transaction_options(options));
    }
    let json = one(rest::begin_transaction(
        shared,
        &call(database, Vec::new(), Vec::new(), body),
    )?)?;
    Ok(proto::BeginTransactionResponse {
        transaction: transaction_at(&json, "transaction")?,
    })
}

pub fn commit(
    shared: &Shared,
    request: proto::CommitRequest,
) -> Result<proto::CommitResponse, Status> {
    let database = database_name(&request.database)?;
    let mut body = Map::new();
    body.insert("writes".into(), to_rest::writes(&request.writes));
    if !request.transaction.is_empty() {
        body.insert(
            "transaction".into(),
            to_rest::transaction(&request.transaction),
        );
    }
    let json = one(rest::commit(
        shared,
        &call(database, Vec::new(), Vec::new(), body),
    )?)?;
    Ok(proto::CommitResponse {
        write_results: out::write_results(json.get("writeResults"))?,
        commit_time: time_at(&json, "commitTime")?,
    })
}

pub fn rollback(shared: &Shared, request: proto::RollbackRequest) -> Result<(), Status> {
    let database = database_name(&request.database)?;
    let mut body = Map::new();
    body.insert(
        "transaction".into(),
        to_rest::transaction(&request.transaction),
    );
    rest::rollback(shared, &call(database, Vec::new(), Vec::new(), body))?;
    Ok(())
}

pub fn batch_write(
    shared: &Shared,
    request: proto::BatchWriteRequest,
) -> Result<proto::BatchWriteResponse, Status> {
    let database = database_name(&request.database)?;
    let mut body = Map::new();
    body.insert("writes".into(), to_rest::writes(&request.writes));
    let json = one(rest::batch_write(
        shared,
        &call(database, Vec::new(), Vec::new(), body),
    )?)?;
    let status = array(json.get("status"))
        .iter()
        .map(|s| rpc::Status {
            code: s
                .get("code")
                .and_then(Json::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(0),
            message: string_at(s, "message"),
            details: Vec::new(),
        })
        .collect();
    Ok(proto::BatchWriteResponse {
        write_results: out::write_results(json.get("writeResults"))?,
        status,
    })
}

pub fn run_query(
    shared: &Shared,
    request: proto::RunQueryRequest,
) -> Result<Vec<proto::RunQueryResponse>, Status> {
    use proto::run_query_request::QueryType;
    let (database, path) = parent_name(&request.parent)?;
    let query = request.query_type.as_ref().map(|query| match query {
        QueryType::StructuredQuery(query) => ("structuredQuery", to_rest::structured_query(query)),
    });
    let body = query_body(
        query,
        request.explain_options.as_ref(),
        request.consistency_selector.as_ref().map(Snapshot::from),
    );
    let answer = rest::run_query(shared, &call(database, path, Vec::new(), body))?;
    many(answer)
        .iter()
        .map(|element| {
            Ok(proto::RunQueryResponse {
                transaction: transaction_at(element, "transaction")?,
                document: element.get("document").map(out::document).transpose()?,
                read_time: time_at(element, "readTime")?,
                skipped_results: element
                    .get("skippedResults")
                    .and_then(Json::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
                    .unwrap_or(0),
                explain_metrics: out::explain_metrics(element.get("explainMetrics")),
                continuation_selector: None,
            })
        })
        .collect()
}

pub fn run_aggregation_query(
    shared: &Shared,
    request: proto::RunAggregationQueryRequest,
) -> Result<Vec<proto::RunAggregationQueryResponse>, Status> {
    use proto::run_aggregation_query_request::QueryType;
    let (database, path) = parent_name(&request.parent)?;
    let query = request.query_type.as_ref().map(|query| match query {
        QueryType::StructuredAggregationQuery(query) => (
            "structuredAggregationQuery",
            to_rest::aggregation_query(query),
        ),
    });
    let body = query_body(
        query,
        request.explain_options.as_ref(),
        request.consistency_selector.as_ref().map(Snapshot::from),
    );
    let answer = rest::run_aggregation_query(shared, &call(database, path, Vec::new(), body))?;
    many(answer)
        .iter()
        .map(|element| {
            let result = match element.get("result") {
                Some(result) => Some(proto::AggregationResult {
                    aggregate_fields: out::json_fields(result.get("aggregateFields"))?,
                }),
                None => None,
            };
            Ok(proto::RunAggregationQueryResponse {
                result,
                transaction: transaction_at(element, "transaction")?,
                read_time: time_at(element, "readTime")?,
                explain_metrics: out::explain_metrics(element.get("explainMetrics")),
            })
        })
        .collect()
}

pub fn partition_query(
    shared: &Shared,
    request: proto::PartitionQueryRequest,
) -> Result<proto::PartitionQueryResponse, Status> {
    use proto::partition_query_request::QueryType;
    let (database, path) = parent_name(&request.parent)?;
    let mut body = Map::new();
    if let Some(QueryType::StructuredQuery(query)) = &request.query_type {
        body.insert("structuredQuery".into(), to_rest::structured_query(query));
    }
    body.insert("partitionCount".into(), json!(request.partition_count));
    body.insert("pageSize".into(), json!(request.page_size));
    body.insert("pageToken".into(), json!(request.page_token));
    let snapshot = request.consistency_selector.as_ref().map(Snapshot::from);
    snapshot_field(&mut body, snapshot);
    let json = one(partition::partition_query(
        shared,
        &call(database, path, Vec::new(), body),
    )?)?;
    let partitions = array(json.get("partitions"))
        .iter()
        .map(|cursor| {
            Ok(proto::Cursor {
                values: array(cursor.get("values"))
                    .iter()
                    .map(out::json_value)
                    .collect::<Result<_, Status>>()?,
                before: cursor
                    .get("before")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect::<Result<_, Status>>()?;
    Ok(proto::PartitionQueryResponse {
        partitions,
        next_page_token: string_at(&json, "nextPageToken"),
    })
}

pub fn list_collection_ids(
    shared: &Shared,
    request: proto::ListCollectionIdsRequest,
) -> Result<proto::ListCollectionIdsResponse, Status> {
    let (database, path) = parent_name(&request.parent)?;
    let mut body = Map::new();
    body.insert("pageSize".into(), json!(request.page_size));
    body.insert("pageToken".into(), json!(request.page_token));
    if let Some(proto::list_collection_ids_request::ConsistencySelector::ReadTime(t)) =
        &request.consistency_selector
    {
        body.insert("readTime".into(), to_rest::timestamp(t));
    }
    let json = one(documents::list_collection_ids(
        shared,
        &call(database, path, Vec::new(), body),
    )?)?;
    Ok(proto::ListCollectionIdsResponse {
        collection_ids: array(json.get("collectionIds"))
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect(),
        next_page_token: string_at(&json, "nextPageToken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_database_and_path() {
        let (db, path) = split_name("projects/p/databases/(default)/documents/c/d").unwrap();
        assert_eq!(db, "projects/p/databases/(default)");
        assert_eq!(path, ["c", "d"]);
        assert!(
            split_name("projects/p/databases/d/documents")
                .unwrap()
                .1
                .is_empty()
        );
        assert!(split_name("projects/p/databases/d/documents/c//d").is_err());
        assert!(split_name("projects//databases/d/documents").is_err());
        assert!(document_name("projects/p/databases/d/documents/c").is_err());
        assert_eq!(
            database_name("projects/p/databases/d").unwrap(),
            "projects/p/databases/d"
        );
        assert!(database_name("projects/p/databases/d/documents/c/d").is_err());
    }
}
