//! `classify`: a [`Route`] and its (bounded) body → the [`Operation`] naming
//! every document and collection the request touches (firestore-rest.md §2).

use std::ops::Range;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::Route;
use super::body::{self, Object};
use super::data_json;
use super::splice::Splices;
use super::{messages, shape};
use crate::model::data::{Change, FieldCapture, FieldPath, Fields, Filter, Precondition, Written};
use crate::model::enums::Direction;
use crate::model::path::document_name;
use crate::model::{
    Access, ClassifyError, Database, Method, Operation, Scope, Segments, Target, nearest_limit_ok,
    reserve_for_writes, selector_scope, upsert,
};

/// Classification in full: the operation for policy, and how the request
/// uses transactions, for the sealing hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub operation: Operation,
    pub transaction: TransactionUse,
    /// `requestOptions.requestTags`, as the client sent them (for the audit
    /// line, which bounds and escapes them; they change nothing else).
    pub request_tags: Vec<String>,
    /// The read time the client asked for: `readTime=` of a get, the
    /// `readTime` consistency selector of a batchGet or query.
    pub read_time: Option<String>,
}

/// Where each write of a commit or batchWrite body sits in it, by
/// position: what pinning a write to a stored version rewrites. Only a
/// request whose rules read stored documents is pinned, so the places are
/// found here, when it is, by reading the writes again as raw text,
/// rather than by every classification (which reads each write once, in
/// the body's pass, where `serde_json` gives no place). `text` is a body
/// [`classify_with`] accepted.
pub fn write_sites(text: &str) -> Result<Vec<WriteSite>, ClassifyError> {
    let list = ("writes", "writes");
    let mut req = Object::parse_listing(text, "write request", list)?;
    let writes = req.take_list(list.0, list.1, "writes")?.unwrap_or_default();
    writes
        .into_iter()
        .map(|raw| {
            let mut w = body::object(raw, "write")?;
            let current_document = w.take("currentDocument", "current_document")?;
            Ok(WriteSite {
                object: body::span(text, raw).ok_or(ClassifyError::MalformedBody("write"))?,
                precondition: current_document.and_then(|raw| body::span(text, raw)),
            })
        })
        .collect()
}

/// One write's place in the body (byte ranges of the buffered text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSite {
    /// The write object, braces included.
    pub object: Range<usize>,
    /// The value of its `currentDocument` member, when it has one.
    pub precondition: Option<Range<usize>>,
}

/// How a request uses transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionUse {
    /// A transaction id the client presented (sealed, as the client sent it).
    pub presented: Option<Presented>,
    /// The response carries a new transaction id (`beginTransaction`, or a
    /// read with `newTransaction`).
    pub begins: bool,
}

/// A presented transaction id and where it sits in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub sealed: String,
    pub at: Location,
}

impl Presented {
    /// Put the upstream id (raw bytes, written as base64) where the sealed
    /// one was: in the route's query, or spliced into the body.
    pub fn replace(&self, route: &mut Route, splices: &mut Splices, upstream: &[u8]) {
        use base64::Engine as _;
        let upstream = base64::engine::general_purpose::STANDARD.encode(upstream);
        match &self.at {
            Location::Query => route.set_query_transaction(upstream),
            Location::Body(range) => splices.replace(range.clone(), format!("\"{upstream}\"")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The `transaction=` query parameter.
    Query,
    /// The JSON string (quotes included) at this byte range of the body.
    Body(Range<usize>),
}

/// Finish classification with the (bounded) body, when the route needs it.
pub fn classify(route: &Route, body: Option<&Bytes>) -> Result<Operation, ClassifyError> {
    classify_request(route, body).map(|c| c.operation)
}

/// [`classify`], keeping what the transaction hooks need.
pub fn classify_request(route: &Route, body: Option<&Bytes>) -> Result<Classified, ClassifyError> {
    classify_with(route, body, FieldCapture::Capture)
}

/// [`classify_request`], building the writes' fields only if `capture`
/// says so (they are validated all the same).
pub fn classify_with(
    route: &Route,
    body: Option<&Bytes>,
    capture: FieldCapture,
) -> Result<Classified, ClassifyError> {
    let bytes = body.map(|b| b.as_ref()).unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|_| ClassifyError::MalformedBody("not UTF-8"))?;
    if route.untyped_body && !text.trim().is_empty() {
        return Err(ClassifyError::UnsupportedContentType);
    }
    let mut c = Classifier {
        database: &route.database,
        text,
        capture,
        targets: Vec::new(),
        writes: Vec::new(),
        position: 0,
        filter: None,
        queried: Vec::new(),
        transaction: TransactionUse::default(),
        request_tags: route.request_tags().map(str::to_owned).collect(),
        read_time: None,
    };
    c.run(route)?;
    let read_time = match route.method {
        Method::Get => route.query_read_time().map(str::to_owned),
        _ => c.read_time,
    };
    Ok(Classified {
        operation: Operation {
            database: route.database.clone(),
            method: route.method,
            targets: c.targets,
            writes: c.writes,
            filter: c.filter,
            queried: c.queried,
        },
        transaction: c.transaction,
        request_tags: c.request_tags,
        read_time,
    })
}

struct Classifier<'a> {
    database: &'a Database,
    text: &'a str,
    capture: FieldCapture,
    targets: Vec<Target>,
    writes: Vec<Written>,
    /// The position in the request's `writes` of the write being read
    /// (where its pin goes; a `verify` has a position but no `Written`).
    position: usize,
    filter: Option<Filter>,
    queried: Vec<FieldPath>,
    transaction: TransactionUse,
    request_tags: Vec<String>,
    read_time: Option<String>,
}

impl<'a> Classifier<'a> {
    fn run(&mut self, route: &Route) -> Result<(), ClassifyError> {
        let path = &route.path;
        match route.method {
            Method::Get => {
                self.push(document(path), Access::Get);
                self.query_transaction(route);
            }
            Method::List => {
                self.push(collection(path), Access::List);
                self.query_transaction(route);
            }
            Method::Delete => {
                self.push(document(path), Access::Delete);
                self.written(document(path), Change::Delete, route_precondition(route));
            }
            Method::CreateDocument => {
                let fields = self.document_body()?;
                let scope = match &route.document_id {
                    Some(id) => document(&path.join([id.as_str()])),
                    None => collection(path),
                };
                self.push(scope.clone(), Access::Create);
                let change = Change::Update {
                    fields,
                    mask: None,
                    transforms: Vec::new(),
                };
                self.written(scope, change, Precondition::Exists(false));
            }
            Method::Patch => {
                let fields = self.document_body()?;
                self.upsert(document(path), route.must_exist);
                let mask = route
                    .has_update_mask()
                    .then(|| data_json::mask_params(route.update_mask()))
                    .transpose()?;
                let change = Change::Update {
                    fields,
                    mask,
                    transforms: Vec::new(),
                };
                self.written(document(path), change, route_precondition(route));
            }
            Method::BatchGet => self.batch_get()?,
            Method::Commit => self.writes(Method::Commit)?,
            Method::BatchWrite => self.writes(Method::BatchWrite)?,
            Method::BeginTransaction => self.begin_transaction()?,
            Method::Rollback => self.rollback()?,
            Method::RunQuery => self.run_query(path)?,
            Method::RunAggregationQuery => self.run_aggregation_query(path)?,
            Method::PartitionQuery => self.partition_query(path)?,
            Method::ListCollectionIds => self.list_collection_ids(path)?,
            // The route table never yields it: Listen is gRPC only.
            Method::Listen => return Err(ClassifyError::Unsupported("listen")),
        }
        Ok(())
    }

    fn push(&mut self, scope: Scope, access: Access) {
        self.targets.push(Target { scope, access });
    }

    fn written(&mut self, scope: Scope, change: Change, precondition: Precondition) {
        self.writes.push(Written {
            scope,
            index: self.position,
            change,
            precondition,
        });
    }

    fn upsert(&mut self, scope: Scope, must_exist: Option<bool>) {
        upsert(&mut self.targets, scope, must_exist);
    }

    fn query_transaction(&mut self, route: &Route) {
        if let Some(sealed) = route.query_transaction() {
            self.transaction.presented = Some(Presented {
                sealed: sealed.to_owned(),
                at: Location::Query,
            });
        }
    }

    fn top(&self, within: &'static str) -> Result<Object<'a>, ClassifyError> {
        Object::parse(self.text, within)
    }

    /// [`Classifier::top`] with its one list member (`writes`, `documents`)
    /// split in the same pass.
    fn top_listing(
        &self,
        within: &'static str,
        list: &'static str,
    ) -> Result<Object<'a>, ClassifyError> {
        Object::parse_listing(self.text, within, (list, list))
    }

    /// A document's `fields` member, checked against its shape and then
    /// built, or only checked (`None`; shape and values in one pass).
    fn fields(&self, doc: &mut Object<'a>) -> Result<Option<Fields>, ClassifyError> {
        let checked = match self.capture {
            FieldCapture::Capture => match doc.take("fields", "fields")? {
                None => None,
                Some(raw) => {
                    shape::check(raw, &messages::FIELDS)?;
                    return data_json::fields(raw).map(Some);
                }
            },
            FieldCapture::ValidateOnly => {
                doc.take_checked("fields", "fields", &messages::FIELDS)?
            }
        };
        match checked {
            None => Ok(Some(Fields::new())),
            Some(checked) => checked.map(|()| None),
        }
    }

    /// The `Document` body of createDocument/patch (the URL names it): its
    /// fields.
    fn document_body(&mut self) -> Result<Option<Fields>, ClassifyError> {
        let mut doc = self.top("document")?;
        doc.refuse("name", "name")?;
        let fields = self.fields(&mut doc)?;
        doc.opaque("createTime", "create_time")?;
        doc.opaque("updateTime", "update_time")?;
        doc.finish()?;
        Ok(fields)
    }

    fn batch_get(&mut self) -> Result<(), ClassifyError> {
        let mut req = self.top_listing("batchGet request", "documents")?;
        req.refuse("database", "database")?;
        if let Some(documents) = req.take_list("documents", "documents", "documents")? {
            for raw in documents {
                let name = body::string(raw, "documents[]")?;
                self.push(
                    Scope::Document {
                        path: document_name(self.database, &name)?,
                    },
                    Access::Get,
                );
            }
        }
        req.opaque("mask", "mask")?;
        self.consistency(&mut req)?;
        self.request_options(&mut req)?;
        req.finish()
    }

    fn writes(&mut self, method: Method) -> Result<(), ClassifyError> {
        // Each write is read in the body's own pass, its `update` within
        // it, and its fields checked there when no rule reads them.
        let check = (self.capture == FieldCapture::ValidateOnly)
            .then(|| body::Check::new(("fields", "fields"), &messages::FIELDS));
        let nest = body::Nest::new(("update", "update"), check);
        let list = ("writes", "writes");
        let mut req = Object::parse_listing_objects(self.text, "write request", list, nest)?;
        req.refuse("database", "database")?;
        if let Some(writes) = req.take_objects(list, "writes", "write", nest)? {
            reserve_for_writes(&mut self.targets, &mut self.writes, writes.len());
            for (position, write) in writes.into_iter().enumerate() {
                self.position = position;
                self.write(write?)?;
            }
        }
        match method {
            Method::Commit => {
                if let Some(raw) = req.take("transaction", "transaction")? {
                    self.present(raw)?;
                }
            }
            _ => req.opaque("labels", "labels")?,
        }
        self.request_options(&mut req)?;
        req.finish()
    }

    /// One `Write`: exactly one of update, delete, transform, verify (§2).
    fn write(&mut self, mut w: Object<'a>) -> Result<(), ClassifyError> {
        let update = w.take_object("update", "update", "write.update")?;
        let delete = w.take("delete", "delete")?;
        let transform = w.take("transform", "transform")?;
        let verify = w.take("verify", "verify")?;
        let mask = w.opaque_raw("updateMask", "update_mask")?;
        let update_transforms = w.shaped_raw(
            "updateTransforms",
            "update_transforms",
            &messages::FIELD_TRANSFORMS,
        )?;
        let current_document = w.take("currentDocument", "current_document")?;
        let precondition = match current_document {
            Some(raw) => precondition(raw)?,
            None => Precondition::None,
        };
        let must_exist = precondition.must_exist();
        let mut transforms = match update_transforms {
            Some(raw) => data_json::transforms(raw)?,
            None => Vec::new(),
        };
        w.finish()?;
        match (update, delete, transform, verify) {
            (Some(mut doc), None, None, None) => {
                let name = doc
                    .take("name", "name")?
                    .ok_or(ClassifyError::InvalidWrite("update without a name"))?;
                let name = body::string(name, "write.update.name")?;
                let fields = self.fields(&mut doc)?;
                doc.opaque("createTime", "create_time")?;
                doc.opaque("updateTime", "update_time")?;
                doc.finish()?;
                let path = document_name(self.database, &name)?;
                let scope = Scope::Document { path };
                self.upsert(scope.clone(), must_exist);
                let change = Change::Update {
                    fields,
                    mask: mask.map(data_json::mask).transpose()?,
                    transforms,
                };
                self.written(scope, change, precondition);
            }
            (None, Some(name), None, None) => {
                let path = document_name(self.database, &body::string(name, "write.delete")?)?;
                self.push(Scope::Document { path: path.clone() }, Access::Delete);
                self.written(Scope::Document { path }, Change::Delete, precondition);
            }
            (None, None, Some(t), None) => {
                let mut t = body::object(t, "write.transform")?;
                let name = t
                    .take("document", "document")?
                    .ok_or(ClassifyError::InvalidWrite("transform without a document"))?;
                let name = body::string(name, "write.transform.document")?;
                let field_transforms = t.shaped_raw(
                    "fieldTransforms",
                    "field_transforms",
                    &messages::FIELD_TRANSFORMS,
                )?;
                t.finish()?;
                if let Some(raw) = field_transforms {
                    transforms.extend(data_json::transforms(raw)?);
                }
                // A transform of a missing document creates it.
                let path = document_name(self.database, &name)?;
                let scope = Scope::Document { path };
                self.upsert(scope.clone(), must_exist);
                let change = Change::Update {
                    fields: Some(Fields::new()),
                    mask: Some(Vec::new()),
                    transforms,
                };
                self.written(scope, change, precondition);
            }
            (None, None, None, Some(name)) => {
                // Firebase's transaction read check: a read of that document.
                let path = document_name(self.database, &body::string(name, "write.verify")?)?;
                self.push(Scope::Document { path }, Access::Get);
            }
            _ => {
                return Err(ClassifyError::InvalidWrite(
                    "not exactly one of update, delete, transform, verify",
                ));
            }
        }
        Ok(())
    }

    fn begin_transaction(&mut self) -> Result<(), ClassifyError> {
        let mut req = self.top("beginTransaction request")?;
        req.refuse("database", "database")?;
        if let Some(options) = req.take("options", "options")? {
            self.transaction_options(options)?;
        }
        self.request_options(&mut req)?;
        req.finish()?;
        self.transaction.begins = true;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), ClassifyError> {
        let mut req = self.top("rollback request")?;
        req.refuse("database", "database")?;
        let raw = req
            .take("transaction", "transaction")?
            .ok_or(ClassifyError::MalformedBody(
                "rollback without a transaction",
            ))?;
        self.present(raw)?;
        self.request_options(&mut req)?;
        req.finish()
    }

    fn run_query(&mut self, parent: &Segments) -> Result<(), ClassifyError> {
        let mut req = self.top("runQuery request")?;
        req.refuse("parent", "parent")?;
        let query = req
            .take("structuredQuery", "structured_query")?
            .ok_or(ClassifyError::InvalidQuery("no structuredQuery"))?;
        self.structured_query(parent, query)?;
        self.query_options(req)
    }

    fn run_aggregation_query(&mut self, parent: &Segments) -> Result<(), ClassifyError> {
        let mut req = self.top("runAggregationQuery request")?;
        req.refuse("parent", "parent")?;
        let aggregation = req
            .take("structuredAggregationQuery", "structured_aggregation_query")?
            .ok_or(ClassifyError::InvalidQuery("no structuredAggregationQuery"))?;
        let mut aggregation = body::object(aggregation, "structuredAggregationQuery")?;
        let query = aggregation
            .take("structuredQuery", "structured_query")?
            .ok_or(ClassifyError::InvalidQuery("no structuredQuery"))?;
        self.structured_query(parent, query)?;
        if let Some(raw) = aggregation.take("aggregations", "aggregations")? {
            field_paths(raw, &mut self.queried)?;
        }
        aggregation.finish()?;
        self.query_options(req)
    }

    /// What both query RPCs take after the query: read consistency,
    /// `explainOptions` (authorized as the query it explains) and
    /// `requestOptions`.
    fn query_options(&mut self, mut req: Object<'a>) -> Result<(), ClassifyError> {
        self.consistency(&mut req)?;
        req.shaped(
            "explainOptions",
            "explain_options",
            &messages::EXPLAIN_OPTIONS,
        )?;
        self.request_options(&mut req)?;
        req.finish()
    }

    fn partition_query(&mut self, parent: &Segments) -> Result<(), ClassifyError> {
        let mut req = self.top("partitionQuery request")?;
        req.refuse("parent", "parent")?;
        let query = req
            .take("structuredQuery", "structured_query")?
            .ok_or(ClassifyError::InvalidQuery("no structuredQuery"))?;
        self.structured_query(parent, query)?;
        req.opaque("partitionCount", "partition_count")?;
        req.opaque("pageToken", "page_token")?;
        req.opaque("pageSize", "page_size")?;
        req.opaque("readTime", "read_time")?;
        self.request_options(&mut req)?;
        req.finish()
    }

    fn list_collection_ids(&mut self, parent: &Segments) -> Result<(), ClassifyError> {
        let mut req = self.top("listCollectionIds request")?;
        req.refuse("parent", "parent")?;
        req.opaque("pageSize", "page_size")?;
        req.opaque("pageToken", "page_token")?;
        req.opaque("readTime", "read_time")?;
        self.request_options(&mut req)?;
        req.finish()?;
        self.push(
            Scope::CollectionIds {
                parent: parent.clone(),
            },
            Access::List,
        );
        Ok(())
    }

    /// `structuredQuery.from[]` → one `list` target per selector; the rest
    /// of the query narrows results and cannot widen the scope.
    fn structured_query(
        &mut self,
        parent: &Segments,
        raw: &'a RawValue,
    ) -> Result<(), ClassifyError> {
        let mut q = body::object(raw, "structuredQuery")?;
        let from = q.take("from", "from")?;
        for (camel, snake) in [
            ("select", "select"),
            ("offset", "offset"),
            ("limit", "limit"),
        ] {
            q.opaque(camel, snake)?;
        }
        if let Some(orders) = q.take("orderBy", "order_by")? {
            order_by(orders)?;
            field_paths(orders, &mut self.queried)?;
        }
        // The members that carry values: none may smuggle in a pipeline
        // expression.
        if let Some(raw) = q.shaped_raw("where", "where", &messages::FILTER)? {
            self.filter = Some(data_json::filter(self.database, raw)?);
            field_paths(raw, &mut self.queried)?;
        }
        // Cursor values compare against the `orderBy` fields, already read.
        q.shaped("startAt", "start_at", &messages::CURSOR)?;
        q.shaped("endAt", "end_at", &messages::CURSOR)?;
        if let Some(nearest) = q.take("findNearest", "find_nearest")? {
            find_nearest(nearest)?;
            field_paths(nearest, &mut self.queried)?;
        }
        q.finish()?;
        let selectors = match from {
            Some(from) => body::array(from, "structuredQuery.from")?,
            None => Vec::new(),
        };
        if selectors.is_empty() {
            return Err(ClassifyError::InvalidQuery("no collection selector"));
        }
        for raw in selectors {
            let mut s = body::object(raw, "structuredQuery.from[]")?;
            let collection = match s.take("collectionId", "collection_id")? {
                Some(raw) => body::string(raw, "from[].collectionId")?.into_owned(),
                None => String::new(),
            };
            let all_descendants = match s.take("allDescendants", "all_descendants")? {
                Some(raw) => body::boolean(raw, "from[].allDescendants")?,
                None => false,
            };
            s.finish()?;
            let scope = selector_scope(parent, collection, all_descendants)?;
            // `__name__` bounds narrow the scope judged (never widen it).
            for scope in crate::model::narrow::narrow(scope, self.filter.as_ref()) {
                self.push(scope, Access::List);
            }
        }
        Ok(())
    }

    /// The consistency selector of reads: `transaction`, `newTransaction` or
    /// `readTime`, at most one.
    fn consistency(&mut self, req: &mut Object<'a>) -> Result<(), ClassifyError> {
        let transaction = req.take("transaction", "transaction")?;
        let new_transaction = req.take("newTransaction", "new_transaction")?;
        let read_time = req.take("readTime", "read_time")?;
        let given = [
            transaction.is_some(),
            new_transaction.is_some(),
            read_time.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ClassifyError::MalformedBody(
                "more than one consistency selector",
            ));
        }
        if let Some(raw) = transaction {
            self.present(raw)?;
        }
        if let Some(options) = new_transaction {
            self.transaction_options(options)?;
            self.transaction.begins = true;
        }
        if let Some(raw) = read_time {
            body::check_no_duplicates(raw.get())?;
            // Not a string: Firestore refuses it; there is no time to read at.
            self.read_time = serde_json::from_str(raw.get()).ok();
        }
        Ok(())
    }

    /// `TransactionOptions`: `readOnly {readTime}` or
    /// `readWrite {retryTransaction}`; a retried id must be the caller's.
    fn transaction_options(&mut self, raw: &'a RawValue) -> Result<(), ClassifyError> {
        let mut options = body::object(raw, "transactionOptions")?;
        let read_only = options.take("readOnly", "read_only")?;
        let read_write = options.take("readWrite", "read_write")?;
        options.finish()?;
        match (read_only, read_write) {
            (Some(_), Some(_)) => Err(ClassifyError::MalformedBody("readOnly and readWrite")),
            (Some(ro), None) => {
                let mut ro = body::object(ro, "transactionOptions.readOnly")?;
                ro.opaque("readTime", "read_time")?;
                ro.finish()
            }
            (None, Some(rw)) => {
                let mut rw = body::object(rw, "transactionOptions.readWrite")?;
                if let Some(retry) = rw.take("retryTransaction", "retry_transaction")? {
                    self.present(retry)?;
                }
                if let Some(mode) = rw.take("concurrencyMode", "concurrency_mode")? {
                    concurrency_mode(mode)?;
                }
                rw.finish()
            }
            (None, None) => Ok(()),
        }
    }

    /// `RequestOptions`, which every RPC takes: only `requestTags`, labels
    /// for the caller's own observability, kept for the audit line.
    fn request_options(&mut self, req: &mut Object<'a>) -> Result<(), ClassifyError> {
        let Some(raw) = req.take("requestOptions", "request_options")? else {
            return Ok(());
        };
        let mut options = body::object(raw, "requestOptions")?;
        if let Some(tags) = options.take("requestTags", "request_tags")? {
            for tag in body::array(tags, "requestOptions.requestTags")? {
                let tag = body::string(tag, "requestOptions.requestTags[]")?.into_owned();
                self.request_tags.push(tag);
            }
        }
        options.finish()
    }

    fn present(&mut self, raw: &'a RawValue) -> Result<(), ClassifyError> {
        let sealed = body::string(raw, "transaction")?.into_owned();
        let span = body::span(self.text, raw).ok_or(ClassifyError::MalformedBody("transaction"))?;
        if self.transaction.presented.is_some() {
            return Err(ClassifyError::MalformedBody("two transactions"));
        }
        self.transaction.presented = Some(Presented {
            sealed,
            at: Location::Body(span),
        });
        Ok(())
    }
}

/// `Precondition`: `exists` or `updateTime` (which implies existence).
fn precondition(raw: &RawValue) -> Result<Precondition, ClassifyError> {
    let mut p = body::object(raw, "currentDocument")?;
    let exists = p.take("exists", "exists")?;
    let update_time = p.take("updateTime", "update_time")?;
    p.finish()?;
    match (exists, update_time) {
        (Some(_), Some(_)) => Err(ClassifyError::InvalidWrite("exists and updateTime")),
        (Some(raw), None) => body::boolean(raw, "currentDocument.exists").map(Precondition::Exists),
        (None, Some(raw)) => body::string(raw, "currentDocument.updateTime")
            .map(|time| Precondition::UpdateTime(time.into_owned())),
        (None, None) => Ok(Precondition::None),
    }
}

/// The precondition of patch/delete, from the query string.
fn route_precondition(route: &Route) -> Precondition {
    match route.must_exist {
        Some(exists) => Precondition::Exists(exists),
        None => Precondition::None,
    }
}

/// Every `fieldPath` a query member names (a `FieldReference` in a
/// filter, an order, an aggregation, a vector search): the fields it reads.
/// Values never hold a string under that key (they are typed wrappers).
fn field_paths(raw: &RawValue, out: &mut Vec<FieldPath>) -> Result<(), ClassifyError> {
    let mut malformed = false;
    let walked = body::field_paths(raw.get(), &mut |text| {
        match crate::model::data::parse_field_path(text) {
            Some(path) => out.push(path),
            None => malformed = true,
        }
        !malformed
    });
    if malformed {
        return Err(ClassifyError::InvalidQuery("malformed fieldPath"));
    }
    walked.map_err(|_| ClassifyError::MalformedBody("query"))
}

/// `StructuredQuery.FindNearest`: a vector search that returns at most
/// `limit` documents of the query's collections — the query's targets, no
/// more. `limit` is required and bounded as Firestore bounds it; the query
/// vector is a value like any other.
fn find_nearest(raw: &RawValue) -> Result<(), ClassifyError> {
    let mut f = body::object(raw, "findNearest")?;
    f.shaped("vectorField", "vector_field", &messages::FIELD_REFERENCE)?;
    f.shaped("queryVector", "query_vector", &messages::VALUE)?;
    f.opaque("distanceMeasure", "distance_measure")?;
    let limit = f.take("limit", "limit")?;
    f.opaque("distanceResultField", "distance_result_field")?;
    f.opaque("distanceThreshold", "distance_threshold")?;
    f.finish()?;
    let limit = limit.ok_or(ClassifyError::InvalidQuery("findNearest without a limit"))?;
    match int32_wrapper(limit) {
        Some(n) if nearest_limit_ok(n) => Ok(()),
        _ => Err(ClassifyError::InvalidQuery(
            "findNearest.limit is not an integer from 1 to 1000",
        )),
    }
}

/// An `Int32Value` as clients write it: a JSON integer, a decimal string
/// (proto3 JSON), or `{"value": …}` (the Node client's REST encoding).
fn int32_wrapper(raw: &RawValue) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    let inner = match &value {
        serde_json::Value::Object(o) if o.len() == 1 => o.get("value")?,
        other => other,
    };
    let n: i64 = match inner {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    i32::try_from(n).is_ok().then_some(n)
}

/// `StructuredQuery.orderBy`: it only orders the results, but each
/// direction must be one Firestore knows, by name or number.
fn order_by(raw: &RawValue) -> Result<(), ClassifyError> {
    for order in body::array(raw, "structuredQuery.orderBy")? {
        let mut o = body::object(order, "structuredQuery.orderBy[]")?;
        o.shaped("field", "field", &messages::FIELD_REFERENCE)?;
        let direction = match o.take("direction", "direction")? {
            Some(raw) => Some(
                serde_json::from_str(raw.get())
                    .map_err(|_| ClassifyError::MalformedBody("orderBy[].direction"))?,
            ),
            None => None,
        };
        o.finish()?;
        data_json::proto_enum::<Direction>(direction.as_ref())
            .ok_or(ClassifyError::InvalidQuery("orderBy[].direction"))?;
    }
    Ok(())
}

/// `TransactionOptions.ConcurrencyMode`, by name or number.
fn concurrency_mode(raw: &RawValue) -> Result<(), ClassifyError> {
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|_| ClassifyError::MalformedBody("concurrencyMode"))?;
    let known = match &value {
        serde_json::Value::String(name) => {
            ["CONCURRENCY_MODE_UNSPECIFIED", "OPTIMISTIC", "PESSIMISTIC"].contains(&name.as_str())
        }
        serde_json::Value::Number(n) => n.as_u64().is_some_and(|n| n <= 2),
        _ => false,
    };
    if known {
        Ok(())
    } else {
        Err(ClassifyError::MalformedBody("concurrencyMode"))
    }
}

fn document(path: &Segments) -> Scope {
    Scope::Document { path: path.clone() }
}

/// `path` ends in a collection id (odd length, checked by the route table).
fn collection(path: &Segments) -> Scope {
    Scope::Collection {
        parent: path.prefix(path.len().saturating_sub(1)),
        collection: path.last().unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod recent_fields_tests;
#[cfg(test)]
mod tests;
