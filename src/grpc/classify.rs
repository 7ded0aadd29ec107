//! `classify` for gRPC: a typed request message → the same [`Operation`] its
//! REST twin yields, through the same name validation (`model::path`)
//! and the same target rules (`model::{upsert, selector_scope}`).

use super::proto::{
    self, Value, document_transform::field_transform, structured_query, structured_query::filter,
    value, write,
};
use super::{GrpcRequest, data};
use crate::model::data::{Change, FieldCapture, Fields, Filter, Precondition, Written};
use crate::model::enums::{Direction, ProtoEnum};
use crate::model::path::{database_name, database_of, document_name, parent_name, validate_id};
use crate::model::{
    Access, ClassifyError, Database, Operation, Scope, Segments, Target, nearest_limit_ok,
    reserve_for_writes, selector_scope, upsert,
};

/// The operation, and whether the response will carry a new transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcClassified {
    pub operation: Operation,
    pub begins_transaction: bool,
}

/// Classify one request message.
pub fn classify(request: &GrpcRequest) -> Result<GrpcClassified, ClassifyError> {
    classify_with(request, FieldCapture::Capture)
}

/// [`classify`], building the writes' fields only if `capture` says so
/// (they are validated all the same).
pub fn classify_with(
    request: &GrpcRequest,
    capture: FieldCapture,
) -> Result<GrpcClassified, ClassifyError> {
    let mut c = Classifier {
        capture,
        ..Classifier::default()
    };
    let database = c.run(request)?;
    Ok(GrpcClassified {
        operation: Operation {
            database,
            method: method_of(request),
            targets: c.targets,
            writes: c.writes,
            filter: c.filter,
            queried: c.queried,
        },
        begins_transaction: request.begins_transaction(),
    })
}

/// One `Listen` target in `database` → the operation that must be allowed
/// before it is forwarded: a documents target is a `get` of each document,
/// a query target the `list` of its query, as `RunQuery` would be.
pub fn listen_target(
    database: &Database,
    target: &proto::Target,
) -> Result<Operation, ClassifyError> {
    let mut c = Classifier::default();
    match &target.target_type {
        Some(proto::target::TargetType::Documents(d)) => {
            for name in &d.documents {
                let path = document_name(database, name)?;
                c.push(Scope::Document { path }, Access::Get);
            }
        }
        Some(proto::target::TargetType::Query(q)) => {
            let (named, parent) = parent_name(&q.parent)?;
            if &named != database {
                return Err(ClassifyError::ForeignDatabase);
            }
            let Some(proto::target::query_target::QueryType::StructuredQuery(query)) =
                &q.query_type
            else {
                return Err(ClassifyError::InvalidQuery("no structuredQuery"));
            };
            c.query(database, &parent, query)?;
        }
        None => {
            return Err(ClassifyError::MalformedBody(
                "target without documents or query",
            ));
        }
    }
    if c.targets.is_empty() {
        return Err(ClassifyError::MalformedBody("target names no document"));
    }
    Ok(Operation {
        database: database.clone(),
        method: crate::model::Method::Listen,
        targets: c.targets,
        writes: Vec::new(),
        filter: c.filter,
        queried: c.queried,
    })
}

fn method_of(request: &GrpcRequest) -> crate::model::Method {
    use crate::model::Method as M;
    use GrpcRequest as R;
    match request {
        R::GetDocument(_) => M::Get,
        R::ListDocuments(_) => M::List,
        R::CreateDocument(_) => M::CreateDocument,
        R::UpdateDocument(_) => M::Patch,
        R::DeleteDocument(_) => M::Delete,
        R::BatchGetDocuments(_) => M::BatchGet,
        R::BeginTransaction(_) => M::BeginTransaction,
        R::Commit(_) => M::Commit,
        R::Rollback(_) => M::Rollback,
        R::RunQuery(_) => M::RunQuery,
        R::RunAggregationQuery(_) => M::RunAggregationQuery,
        R::PartitionQuery(_) => M::PartitionQuery,
        R::ListCollectionIds(_) => M::ListCollectionIds,
        R::BatchWrite(_) => M::BatchWrite,
    }
}

#[derive(Default)]
struct Classifier {
    capture: FieldCapture,
    targets: Vec<Target>,
    writes: Vec<Written>,
    filter: Option<Filter>,
    queried: Vec<crate::model::data::FieldPath>,
}

impl Classifier {
    /// Push every target; the database is the one the message names.
    fn run(&mut self, request: &GrpcRequest) -> Result<Database, ClassifyError> {
        use GrpcRequest as R;
        match request {
            R::GetDocument(m) => self.document(&m.name, Access::Get),
            R::DeleteDocument(m) => {
                let database = database_of(&m.name)?;
                let scope = Scope::Document {
                    path: document_name(&database, &m.name)?,
                };
                self.push(scope.clone(), Access::Delete);
                let precondition = data::precondition(m.current_document.as_ref());
                self.written(scope, 0, Change::Delete, precondition);
                Ok(database)
            }
            R::ListDocuments(m) => {
                let (database, parent) = parent_name(&m.parent)?;
                // Firestore lists every collection under `parent` when the
                // id is empty; REST always names one, and so must this.
                if m.collection_id.is_empty() {
                    return Err(ClassifyError::MalformedResourceName(
                        "ListDocuments without a collection id",
                    ));
                }
                validate_id(&m.collection_id)?;
                self.push(
                    Scope::Collection {
                        parent,
                        collection: m.collection_id.clone(),
                    },
                    Access::List,
                );
                Ok(database)
            }
            R::CreateDocument(m) => {
                let (database, path) = parent_name(&m.parent)?;
                validate_id(&m.collection_id)?;
                let document = m.document.as_ref();
                if document.is_some_and(|d| !d.name.is_empty()) {
                    return Err(ClassifyError::PathFieldRespecified("document"));
                }
                fields(document.map(|d| &d.fields))?;
                let scope = if m.document_id.is_empty() {
                    Scope::Collection {
                        parent: path,
                        collection: m.collection_id.clone(),
                    }
                } else {
                    validate_id(&m.document_id)?;
                    Scope::Document {
                        path: path.join([m.collection_id.as_str(), m.document_id.as_str()]),
                    }
                };
                self.push(scope.clone(), Access::Create);
                let change = Change::Update {
                    fields: match document {
                        Some(d) => self.fields(&d.fields)?,
                        None => Some(Fields::new()),
                    },
                    mask: None,
                    transforms: Vec::new(),
                };
                self.written(scope, 0, change, Precondition::Exists(false));
                Ok(database)
            }
            R::UpdateDocument(m) => {
                let document = m.document.as_ref().ok_or(ClassifyError::InvalidWrite(
                    "UpdateDocument without a document",
                ))?;
                let database = database_of(&document.name)?;
                let path = document_name(&database, &document.name)?;
                fields(Some(&document.fields))?;
                let precondition = data::precondition(m.current_document.as_ref());
                let scope = Scope::Document { path };
                upsert(&mut self.targets, scope.clone(), precondition.must_exist());
                let change = Change::Update {
                    fields: self.fields(&document.fields)?,
                    mask: m.update_mask.as_ref().map(data::mask).transpose()?,
                    transforms: Vec::new(),
                };
                self.written(scope, 0, change, precondition);
                Ok(database)
            }
            R::BatchGetDocuments(m) => {
                let database = database_name(&m.database)?;
                for name in &m.documents {
                    let path = document_name(&database, name)?;
                    self.push(Scope::Document { path }, Access::Get);
                }
                Ok(database)
            }
            R::BeginTransaction(m) => database_name(&m.database),
            R::Rollback(m) => {
                if m.transaction.is_empty() {
                    return Err(ClassifyError::MalformedBody(
                        "rollback without a transaction",
                    ));
                }
                database_name(&m.database)
            }
            R::Commit(m) => self.writes(&m.database, &m.writes),
            R::BatchWrite(m) => self.writes(&m.database, &m.writes),
            R::RunQuery(m) => {
                let (database, parent) = parent_name(&m.parent)?;
                let Some(proto::run_query_request::QueryType::StructuredQuery(q)) = &m.query_type
                else {
                    return Err(ClassifyError::InvalidQuery("no structuredQuery"));
                };
                self.query(&database, &parent, q)?;
                Ok(database)
            }
            R::RunAggregationQuery(m) => {
                let (database, parent) = parent_name(&m.parent)?;
                let Some(
                    proto::run_aggregation_query_request::QueryType::StructuredAggregationQuery(
                        aggregation,
                    ),
                ) = &m.query_type
                else {
                    return Err(ClassifyError::InvalidQuery("no structuredAggregationQuery"));
                };
                let Some(proto::structured_aggregation_query::QueryType::StructuredQuery(q)) =
                    &aggregation.query_type
                else {
                    return Err(ClassifyError::InvalidQuery("no structuredQuery"));
                };
                self.query(&database, &parent, q)?;
                for a in &aggregation.aggregations {
                    use proto::structured_aggregation_query::aggregation::Operator;
                    let field = match &a.operator {
                        Some(Operator::Sum(s)) => s.field.as_ref(),
                        Some(Operator::Avg(a)) => a.field.as_ref(),
                        Some(Operator::Count(_)) | None => None,
                    };
                    if let Some(field) = field {
                        self.read_field(&field.field_path)?;
                    }
                }
                Ok(database)
            }
            R::PartitionQuery(m) => {
                let (database, parent) = parent_name(&m.parent)?;
                let Some(proto::partition_query_request::QueryType::StructuredQuery(q)) =
                    &m.query_type
                else {
                    return Err(ClassifyError::InvalidQuery("no structuredQuery"));
                };
                self.query(&database, &parent, q)?;
                Ok(database)
            }
            R::ListCollectionIds(m) => {
                let (database, parent) = parent_name(&m.parent)?;
                self.push(Scope::CollectionIds { parent }, Access::List);
                Ok(database)
            }
        }
    }

    fn push(&mut self, scope: Scope, access: Access) {
        self.targets.push(Target { scope, access });
    }

    /// A write's fields, built or only checked (`None`).
    fn fields(
        &self,
        fields: &std::collections::HashMap<String, Value>,
    ) -> Result<Option<Fields>, ClassifyError> {
        match self.capture {
            FieldCapture::Capture => data::fields(fields).map(Some),
            FieldCapture::ValidateOnly => data::check_fields(fields).map(|()| None),
        }
    }

    /// What one write does; `index` is its position in the message's
    /// `writes` (where the pin goes).
    fn written(&mut self, scope: Scope, index: usize, change: Change, precondition: Precondition) {
        self.writes.push(Written {
            scope,
            index,
            change,
            precondition,
        });
    }

    fn document(&mut self, name: &str, access: Access) -> Result<Database, ClassifyError> {
        let database = database_of(name)?;
        let path = document_name(&database, name)?;
        self.push(Scope::Document { path }, access);
        Ok(database)
    }

    fn writes(
        &mut self,
        database: &str,
        writes: &[proto::Write],
    ) -> Result<Database, ClassifyError> {
        let database = database_name(database)?;
        reserve_for_writes(&mut self.targets, &mut self.writes, writes.len());
        for (index, w) in writes.iter().enumerate() {
            self.write(&database, index, w)?;
        }
        Ok(database)
    }

    /// One `Write`, as the REST classifier reads it: an update or transform
    /// is an upsert unless its precondition says which; a delete deletes.
    fn write(
        &mut self,
        database: &Database,
        index: usize,
        w: &proto::Write,
    ) -> Result<(), ClassifyError> {
        transforms(&w.update_transforms)?;
        let precondition = data::precondition(w.current_document.as_ref());
        let must_exist = precondition.must_exist();
        let mut kinds = data::transforms(&w.update_transforms)?;
        match &w.operation {
            Some(write::Operation::Update(doc)) => {
                fields(Some(&doc.fields))?;
                let path = document_name(database, &doc.name)?;
                let scope = Scope::Document { path };
                upsert(&mut self.targets, scope.clone(), must_exist);
                let change = Change::Update {
                    fields: self.fields(&doc.fields)?,
                    mask: w.update_mask.as_ref().map(data::mask).transpose()?,
                    transforms: kinds,
                };
                self.written(scope, index, change, precondition);
            }
            Some(write::Operation::Delete(name)) => {
                let path = document_name(database, name)?;
                let scope = Scope::Document { path };
                self.push(scope.clone(), Access::Delete);
                self.written(scope, index, Change::Delete, precondition);
            }
            Some(write::Operation::Transform(t)) => {
                transforms(&t.field_transforms)?;
                kinds.extend(data::transforms(&t.field_transforms)?);
                // A transform of a missing document creates it.
                let path = document_name(database, &t.document)?;
                let scope = Scope::Document { path };
                upsert(&mut self.targets, scope.clone(), must_exist);
                let change = Change::Update {
                    fields: Some(Fields::new()),
                    mask: Some(Vec::new()),
                    transforms: kinds,
                };
                self.written(scope, index, change, precondition);
            }
            None => {
                return Err(ClassifyError::InvalidWrite(
                    "not exactly one of update, delete, transform",
                ));
            }
        }
        Ok(())
    }

    /// `from[]` → one `list` target per selector; the rest narrows.
    fn query(
        &mut self,
        database: &Database,
        parent: &Segments,
        q: &proto::StructuredQuery,
    ) -> Result<(), ClassifyError> {
        if q.from.is_empty() {
            return Err(ClassifyError::InvalidQuery("no collection selector"));
        }
        if let Some(f) = &q.r#where {
            filter_values(f)?;
            self.filter = Some(data::filter(database, f)?);
            self.filter_fields(f)?;
        }
        for order in &q.order_by {
            Direction::from_proto_number(order.direction)
                .ok_or(ClassifyError::InvalidQuery("orderBy[].direction"))?;
            if let Some(field) = &order.field {
                self.read_field(&field.field_path)?;
            }
        }
        for cursor in [&q.start_at, &q.end_at].into_iter().flatten() {
            cursor.values.iter().try_for_each(plain_value)?;
        }
        if let Some(nearest) = &q.find_nearest {
            if let Some(field) = &nearest.vector_field {
                self.read_field(&field.field_path)?;
            }
            if let Some(v) = &nearest.query_vector {
                plain_value(v)?;
            }
            if !nearest
                .limit
                .is_some_and(|n| nearest_limit_ok(i64::from(n)))
            {
                return Err(ClassifyError::InvalidQuery(
                    "findNearest.limit is not an integer from 1 to 1000",
                ));
            }
        }
        for s in &q.from {
            let scope = selector_scope(parent, s.collection_id.clone(), s.all_descendants)?;
            // `__name__` bounds narrow the scope judged (never widen it).
            for scope in crate::model::narrow::narrow(scope, self.filter.as_ref()) {
                self.push(scope, Access::List);
            }
        }
        Ok(())
    }
}

impl Classifier {
    /// A field the query reads to choose or order its results.
    fn read_field(&mut self, text: &str) -> Result<(), ClassifyError> {
        let path = crate::model::data::parse_field_path(text)
            .ok_or(ClassifyError::InvalidQuery("malformed fieldPath"))?;
        self.queried.push(path);
        Ok(())
    }

    fn filter_fields(&mut self, f: &structured_query::Filter) -> Result<(), ClassifyError> {
        match &f.filter_type {
            Some(filter::FilterType::CompositeFilter(c)) => {
                c.filters.iter().try_for_each(|f| self.filter_fields(f))
            }
            Some(filter::FilterType::FieldFilter(f)) => match &f.field {
                Some(field) => self.read_field(&field.field_path),
                None => Ok(()),
            },
            Some(filter::FilterType::UnaryFilter(u)) => match &u.operand_type {
                Some(structured_query::unary_filter::OperandType::Field(field)) => {
                    self.read_field(&field.field_path)
                }
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}

fn fields(fields: Option<&std::collections::HashMap<String, Value>>) -> Result<(), ClassifyError> {
    fields
        .into_iter()
        .flat_map(|f| f.values())
        .try_for_each(plain_value)
}

fn transforms(
    transforms: &[proto::document_transform::FieldTransform],
) -> Result<(), ClassifyError> {
    use field_transform::TransformType as T;
    for t in transforms {
        match &t.transform_type {
            Some(T::Increment(v) | T::Maximum(v) | T::Minimum(v)) => plain_value(v)?,
            Some(T::AppendMissingElements(a) | T::RemoveAllFromArray(a)) => {
                a.values.iter().try_for_each(plain_value)?
            }
            Some(T::SetToServerValue(_)) | None => {}
        }
    }
    Ok(())
}

fn filter_values(f: &structured_query::Filter) -> Result<(), ClassifyError> {
    match &f.filter_type {
        Some(filter::FilterType::CompositeFilter(c)) => {
            c.filters.iter().try_for_each(filter_values)
        }
        Some(filter::FilterType::FieldFilter(f)) => f.value.as_ref().map_or(Ok(()), plain_value),
        Some(filter::FilterType::UnaryFilter(_)) | None => Ok(()),
    }
}

/// A value outside a pipeline is data: the expression kinds (field and
/// variable references, functions, pipelines) are refused, as REST does.
fn plain_value(v: &Value) -> Result<(), ClassifyError> {
    use value::ValueType as V;
    match &v.value_type {
        Some(V::ArrayValue(a)) => a.values.iter().try_for_each(plain_value),
        Some(V::MapValue(m)) => m.fields.values().try_for_each(plain_value),
        Some(V::FieldReferenceValue(_)) => Err(ClassifyError::PipelineValue("fieldReferenceValue")),
        Some(V::VariableReferenceValue(_)) => {
            Err(ClassifyError::PipelineValue("variableReferenceValue"))
        }
        Some(V::FunctionValue(_)) => Err(ClassifyError::PipelineValue("functionValue")),
        Some(V::PipelineValue(_)) => Err(ClassifyError::PipelineValue("pipelineValue")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
