//! The RPC-style methods: batchGet, commit, batchWrite, beginTransaction,
//! rollback, runQuery and runAggregationQuery.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore as _;
use serde_json::{Value as Json, json};

use std::ops::ControlFlow;
use std::sync::MutexGuard;
use std::time::Instant;

use super::aggregate::Aggregations;
use super::clock::Timestamp;
use super::explain::{Execution, Explain};
use super::query::Query;
use super::routes::Call;
use super::store::{Doc, State, Transaction, document_json, parse_document_name};
use super::values::{FieldPath, Value, fields_from_json, fields_to_json, set_path};
use super::wire::mask;
use super::write::{Write, commit as commit_writes};
use super::{Answer, EmulatorError, Shared};

/// `:batchGet`: one element per requested name, `found` or `missing`.
pub fn batch_get(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let mask = mask(call.body.get("mask"))?;
    let names = call
        .body
        .get("documents")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let paths = names
        .iter()
        .map(|n| {
            let name = n
                .as_str()
                .ok_or_else(|| EmulatorError::InvalidArgument("documents must be names".into()))?;
            Ok((name, parse_document_name(&call.database, name)?))
        })
        .collect::<Result<Vec<_>, EmulatorError>>()?;
    let now = shared.clock.now();
    let mut state = shared.lock();
    let (transaction, at) = read_transaction(&mut state, call)?;
    let read_time = at.unwrap_or(now).to_rfc3339();
    let docs: Vec<Option<Doc>> = {
        let snapshot = state.snapshot(&call.database, at);
        paths
            .iter()
            .map(|(_, path)| snapshot.as_ref().and_then(|d| d.get(path).cloned()))
            .collect()
    };
    if let Some(id) = &transaction {
        let tx = state.transaction_mut(&call.database, id)?;
        for ((_, path), doc) in paths.iter().zip(&docs) {
            tx.record(path, doc.as_ref());
        }
    }
    let mut elements = Vec::with_capacity(paths.len());
    for ((name, path), doc) in paths.iter().zip(docs) {
        elements.push(match doc {
            Some(doc) => json!({
                "found": document_json(&call.database, path, &doc, mask.as_deref()),
                "readTime": read_time,
            }),
            None => json!({ "missing": name, "readTime": read_time }),
        });
    }
    announce_transaction(&mut elements, call, transaction, Some(&read_time));
    Ok(Answer::Stream(elements))
}

/// `:commit`: every write or none; inside a transaction, only if nothing the
/// transaction read has changed since.
pub fn commit(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let writes = parse_writes(call)?;
    let now = shared.clock.now();
    let mut state = shared.lock();
    if let Some(id) = call.body_str("transaction") {
        let transaction = state
            .transactions
            .remove(id)
            .filter(|t| t.database == call.database)
            .ok_or_else(|| {
                EmulatorError::InvalidArgument("transaction is not valid or has expired".into())
            })?;
        if transaction.read_only && !writes.is_empty() {
            return Err(EmulatorError::InvalidArgument(
                "a read-only transaction cannot write".into(),
            ));
        }
        check_reads_unchanged(&state, &call.database, &transaction)?;
    }
    let results = commit_writes(&mut state, &call.database, &writes, now)?;
    Ok(Answer::Object(json!({
        "writeResults": results,
        "commitTime": now.to_rfc3339(),
    })))
}

/// `:batchWrite`: each write on its own, each with its own status. A write
/// that is not valid at all (a reserved id, a malformed name) refuses the
/// whole request, as Firestore does: only applying a write fails alone.
pub fn batch_write(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let writes = parse_writes(call)?;
    let mut results = Vec::with_capacity(writes.len());
    let mut statuses = Vec::with_capacity(writes.len());
    let mut state = shared.lock();
    for write in writes {
        let now = shared.clock.now();
        let outcome = commit_writes(&mut state, &call.database, &[write], now);
        match outcome {
            Ok(mut result) => {
                results.push(result.pop().unwrap_or_else(|| json!({})));
                statuses.push(json!({ "code": 0 }));
            }
            Err(error) => {
                results.push(json!({}));
                statuses.push(json!({
                    "code": error.grpc_code(),
                    "message": error.api_error().message,
                }));
            }
        }
    }
    Ok(Answer::Object(json!({
        "writeResults": results,
        "status": statuses,
    })))
}

/// `:beginTransaction`.
pub fn begin_transaction(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let (read_only, at) = match call.body.get("options").filter(|o| !o.is_null()) {
        Some(options) => transaction_options(options)?,
        None => (false, None),
    };
    let id = open_transaction(&mut shared.lock(), &call.database, read_only, at);
    Ok(Answer::Object(json!({ "transaction": id })))
}

/// `:rollback`.
pub fn rollback(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let id = call
        .body_str("transaction")
        .ok_or_else(|| EmulatorError::InvalidArgument("rollback needs a transaction".into()))?;
    let mut state = shared.lock();
    state.transaction_mut(&call.database, id)?;
    state.transactions.remove(id);
    Ok(Answer::Object(json!({})))
}

/// `:runQuery`: one element per document, or one bare `readTime` if none.
pub fn run_query(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let query =
        Query::parse(call.body.get("structuredQuery").ok_or_else(|| {
            EmulatorError::InvalidArgument("structuredQuery is required".into())
        })?)?;
    let mut read = match QueryRead::open(shared, call, &query)? {
        ControlFlow::Continue(read) => read,
        ControlFlow::Break(planned) => return Ok(planned),
    };
    let mut documents_read = Vec::new();
    let mut elements = Vec::new();
    let mut skipped = 0;
    let mut scanned = 0;
    if let Some(documents) = read.state.snapshot(&call.database, read.at) {
        let results = query.run(&call.database, &call.path, &documents);
        skipped = results.skipped;
        scanned = results.scanned;
        let distances = results.distances.iter().flatten().map(Some);
        let distances = distances.chain(std::iter::repeat(None));
        for ((path, doc), distance) in results.documents.into_iter().zip(distances) {
            let mut document = document_json(&call.database, path, doc, query.select.as_deref());
            if let (Some(distance), Some(field)) = (
                distance,
                query
                    .nearest
                    .as_ref()
                    .and_then(|n| n.distance_field.as_ref()),
            ) {
                with_distance(&mut document, field, *distance);
            }
            elements.push(json!({ "document": document, "readTime": read.read_time }));
            documents_read.push((path.clone(), doc.clone()));
        }
    }
    let returned = documents_read.len();
    if let Some(id) = &read.transaction {
        let tx = read.state.transaction_mut(&call.database, id)?;
        for (path, doc) in &documents_read {
            tx.record(path, Some(doc));
        }
    }
    if elements.is_empty() {
        elements.push(json!({ "readTime": read.read_time }));
    }
    if skipped > 0 {
        elements[0]["skippedResults"] = Json::from(skipped);
    }
    Ok(read.answer(call, &query, elements, returned, scanned, false))
}

/// Put a vector search's distance into a result document at `field`.
fn with_distance(document: &mut Json, field: &FieldPath, distance: f64) {
    let Ok(mut fields) = fields_from_json(document.get("fields")) else {
        return;
    };
    set_path(&mut fields, field, Value::Double(distance));
    document["fields"] = fields_to_json(&fields);
}

/// `:runAggregationQuery`: one element with every aggregate under its alias.
pub fn run_aggregation_query(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let aggregation = call.body.get("structuredAggregationQuery").ok_or_else(|| {
        EmulatorError::InvalidArgument("structuredAggregationQuery is required".into())
    })?;
    let query = Query::parse(aggregation.get("structuredQuery").ok_or_else(|| {
        EmulatorError::InvalidArgument(
            "structuredAggregationQuery.structuredQuery is required".into(),
        )
    })?)?;
    let aggregations = Aggregations::parse(aggregation.get("aggregations").unwrap_or(&Json::Null))?;
    let query = query.aggregating(aggregations.fields());
    let read = match QueryRead::open(shared, call, &query)? {
        ControlFlow::Continue(read) => read,
        ControlFlow::Break(planned) => return Ok(planned),
    };
    let (fields, scanned) = match read.state.snapshot(&call.database, read.at) {
        Some(documents) => {
            let results = query.run(&call.database, &call.path, &documents);
            let docs: Vec<_> = results.documents.iter().map(|(_, doc)| *doc).collect();
            (aggregations.compute(&docs), results.documents.len())
        }
        None => (aggregations.compute(&[]), 0),
    };
    let elements = vec![json!({
        "result": { "aggregateFields": fields },
        "readTime": read.read_time,
    })];
    Ok(read.answer(call, &query, elements, 1, scanned, true))
}

/// A query's read under way: the state held, the transaction it runs in,
/// the time it reads at, and what `explainOptions` asked to measure.
struct QueryRead<'s> {
    state: MutexGuard<'s, State>,
    transaction: Option<String>,
    at: Option<Timestamp>,
    read_time: String,
    explain: Option<Explain>,
    started: Instant,
}

impl<'s> QueryRead<'s> {
    /// Both queries open the same way; a plan-only explain is answered here,
    /// with nothing read.
    fn open(
        shared: &'s Shared,
        call: &Call,
        query: &Query,
    ) -> Result<ControlFlow<Answer, QueryRead<'s>>, EmulatorError> {
        let explain = Explain::parse(&call.body)?;
        let started = Instant::now();
        let now = shared.clock.now();
        let mut state = shared.lock();
        let (mut transaction, at) = read_transaction(&mut state, call)?;
        if let Some(planned) = plan_only(explain.as_ref(), query, call, &mut transaction) {
            return Ok(ControlFlow::Break(planned));
        }
        Ok(ControlFlow::Continue(QueryRead {
            state,
            transaction,
            at,
            read_time: at.unwrap_or(now).to_rfc3339(),
            explain,
            started,
        }))
    }

    /// Both queries close the same way: the measured execution on the last
    /// element, when asked for, and a transaction begun here announced in
    /// the first.
    fn answer(
        self,
        call: &Call,
        query: &Query,
        mut elements: Vec<Json>,
        results: usize,
        scanned: usize,
        aggregation: bool,
    ) -> Answer {
        if let (Some(explain), Some(last)) = (self.explain, elements.last_mut()) {
            let execution = Execution {
                results,
                scanned,
                aggregation,
                elapsed: self.started.elapsed(),
            };
            last["explainMetrics"] = explain.metrics(query, Some(execution));
        }
        announce_transaction(&mut elements, call, self.transaction, Some(&self.read_time));
        Answer::Stream(elements)
    }
}

fn parse_writes(call: &Call) -> Result<Vec<Write>, EmulatorError> {
    call.body
        .get("writes")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|w| Write::parse(&call.database, w))
        .collect()
}

/// The transaction a read runs in, an existing one (`transaction`) or one
/// begun now (`newTransaction`), and the past time it reads at, if any
/// (`readTime`, or a read-only transaction's).
fn read_transaction(
    state: &mut State,
    call: &Call,
) -> Result<(Option<String>, Option<Timestamp>), EmulatorError> {
    if let Some(id) = call.body_str("transaction") {
        let at = state.transaction_mut(&call.database, id)?.read_time;
        return Ok((Some(id.to_owned()), at));
    }
    if let Some(options) = call.body.get("newTransaction").filter(|o| !o.is_null()) {
        let (read_only, at) = transaction_options(options)?;
        let id = open_transaction(state, &call.database, read_only, at);
        return Ok((Some(id), at));
    }
    Ok((None, read_time(call.body.get("readTime"))?))
}

/// `TransactionOptions` → (read only, read time).
fn transaction_options(options: &Json) -> Result<(bool, Option<Timestamp>), EmulatorError> {
    match options.get("readOnly") {
        Some(read_only) => Ok((true, read_time(read_only.get("readTime"))?)),
        None => Ok((false, None)),
    }
}

pub fn read_time(json: Option<&Json>) -> Result<Option<Timestamp>, EmulatorError> {
    match json {
        None | Some(Json::Null) => Ok(None),
        Some(t) => t
            .as_str()
            .and_then(Timestamp::parse)
            .map(Some)
            .ok_or_else(|| EmulatorError::InvalidArgument("readTime must be a timestamp".into())),
    }
}

/// A transaction begun by this read is reported in the first element.
/// `explainOptions` without `analyze`: the plan, not run — no documents and
/// no read time.
fn plan_only(
    explain: Option<&Explain>,
    query: &Query,
    call: &Call,
    transaction: &mut Option<String>,
) -> Option<Answer> {
    let explain = explain.filter(|e| !e.analyze)?;
    let mut elements = vec![json!({ "explainMetrics": explain.metrics(query, None) })];
    announce_transaction(&mut elements, call, transaction.take(), None);
    Some(Answer::Stream(elements))
}

fn announce_transaction(
    elements: &mut Vec<Json>,
    call: &Call,
    transaction: Option<String>,
    read_time: Option<&str>,
) {
    let begun = call
        .body
        .get("newTransaction")
        .is_some_and(|o| !o.is_null());
    if let (true, Some(id)) = (begun, transaction) {
        if elements.is_empty() {
            elements.push(read_time.map_or_else(|| json!({}), |t| json!({ "readTime": t })));
        }
        elements[0]["transaction"] = Json::from(id);
    }
}

fn open_transaction(
    state: &mut State,
    database: &str,
    read_only: bool,
    read_time: Option<Timestamp>,
) -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let id = BASE64.encode(bytes);
    state.transactions.insert(
        id.clone(),
        Transaction {
            database: database.to_owned(),
            read_only,
            read_time,
            reads: Default::default(),
        },
    );
    id
}

fn check_reads_unchanged(
    state: &State,
    database: &str,
    transaction: &Transaction,
) -> Result<(), EmulatorError> {
    for (path, seen) in &transaction.reads {
        let now = state.get(database, path).map(|d| d.update_time);
        if now != *seen {
            return Err(EmulatorError::Aborted(
                "Transaction aborted: a document it read has changed since.".into(),
            ));
        }
    }
    Ok(())
}
