//! A gRPC request as its typed protobuf message: decoded once, judged, given
//! its upstream transaction id, and re-encoded for Firestore.
//!
//! Why re-encode rather than forward the client's bytes: prost skips fields
//! it does not know. A field added to Firestore's protos after this crate
//! was generated (say, a second document name) would be invisible to the
//! classifier yet honoured upstream. Forwarding only the re-encoded message
//! means upstream sees exactly what was authorized, and nothing else.

use bytes::Bytes;
use prost::Message as _;

use super::proto::{
    self, batch_get_documents_request as batch_get, get_document_request as get_doc,
    list_documents_request as list_docs, run_aggregation_query_request as run_agg,
    run_query_request as run_query, transaction_options,
};
use super::{GrpcError, GrpcMethod, frame};

/// One decoded request message, by method.
#[derive(Debug, Clone, PartialEq)]
pub enum GrpcRequest {
    GetDocument(proto::GetDocumentRequest),
    ListDocuments(proto::ListDocumentsRequest),
    CreateDocument(proto::CreateDocumentRequest),
    UpdateDocument(proto::UpdateDocumentRequest),
    DeleteDocument(proto::DeleteDocumentRequest),
    BatchGetDocuments(proto::BatchGetDocumentsRequest),
    BeginTransaction(proto::BeginTransactionRequest),
    Commit(proto::CommitRequest),
    Rollback(proto::RollbackRequest),
    RunQuery(proto::RunQueryRequest),
    RunAggregationQuery(proto::RunAggregationQueryRequest),
    PartitionQuery(proto::PartitionQueryRequest),
    ListCollectionIds(proto::ListCollectionIdsRequest),
    BatchWrite(proto::BatchWriteRequest),
}

impl GrpcRequest {
    /// Decode the message of `method` (unframed bytes).
    pub fn decode(method: GrpcMethod, bytes: &[u8]) -> Result<GrpcRequest, GrpcError> {
        fn d<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, GrpcError> {
            M::decode(bytes).map_err(|_| GrpcError::MalformedMessage)
        }
        use GrpcMethod as M;
        use GrpcRequest as R;
        Ok(match method {
            M::GetDocument => R::GetDocument(d(bytes)?),
            M::ListDocuments => R::ListDocuments(d(bytes)?),
            M::CreateDocument => R::CreateDocument(d(bytes)?),
            M::UpdateDocument => R::UpdateDocument(d(bytes)?),
            M::DeleteDocument => R::DeleteDocument(d(bytes)?),
            M::BatchGetDocuments => R::BatchGetDocuments(d(bytes)?),
            M::BeginTransaction => R::BeginTransaction(d(bytes)?),
            M::Commit => R::Commit(d(bytes)?),
            M::Rollback => R::Rollback(d(bytes)?),
            M::RunQuery => R::RunQuery(d(bytes)?),
            M::RunAggregationQuery => R::RunAggregationQuery(d(bytes)?),
            M::PartitionQuery => R::PartitionQuery(d(bytes)?),
            M::ListCollectionIds => R::ListCollectionIds(d(bytes)?),
            M::BatchWrite => R::BatchWrite(d(bytes)?),
        })
    }

    /// The message as it goes upstream, framed: re-encoded from what was
    /// classified (see the module comment).
    pub fn encode(&self) -> Bytes {
        use GrpcRequest as R;
        match self {
            R::GetDocument(m) => frame::encode(m),
            R::ListDocuments(m) => frame::encode(m),
            R::CreateDocument(m) => frame::encode(m),
            R::UpdateDocument(m) => frame::encode(m),
            R::DeleteDocument(m) => frame::encode(m),
            R::BatchGetDocuments(m) => frame::encode(m),
            R::BeginTransaction(m) => frame::encode(m),
            R::Commit(m) => frame::encode(m),
            R::Rollback(m) => frame::encode(m),
            R::RunQuery(m) => frame::encode(m),
            R::RunAggregationQuery(m) => frame::encode(m),
            R::PartitionQuery(m) => frame::encode(m),
            R::ListCollectionIds(m) => frame::encode(m),
            R::BatchWrite(m) => frame::encode(m),
        }
    }

    /// The encoded size of the message (for the audit's bytes in).
    pub fn encoded_len(&self) -> usize {
        use GrpcRequest as R;
        match self {
            R::GetDocument(m) => m.encoded_len(),
            R::ListDocuments(m) => m.encoded_len(),
            R::CreateDocument(m) => m.encoded_len(),
            R::UpdateDocument(m) => m.encoded_len(),
            R::DeleteDocument(m) => m.encoded_len(),
            R::BatchGetDocuments(m) => m.encoded_len(),
            R::BeginTransaction(m) => m.encoded_len(),
            R::Commit(m) => m.encoded_len(),
            R::Rollback(m) => m.encoded_len(),
            R::RunQuery(m) => m.encoded_len(),
            R::RunAggregationQuery(m) => m.encoded_len(),
            R::PartitionQuery(m) => m.encoded_len(),
            R::ListCollectionIds(m) => m.encoded_len(),
            R::BatchWrite(m) => m.encoded_len(),
        }
    }

    /// The transaction id the client presented (still sealed), where it
    /// sits, so the binding step can put the upstream id in its place. At
    /// most one exists: every place is a member of one `oneof`, or the only
    /// `bytes transaction` of its message.
    pub fn presented_transaction(&mut self) -> Option<&mut Vec<u8>> {
        use GrpcRequest as R;
        let field = match self {
            R::GetDocument(m) => match &mut m.consistency_selector {
                Some(get_doc::ConsistencySelector::Transaction(t)) => t,
                _ => return None,
            },
            R::ListDocuments(m) => match &mut m.consistency_selector {
                Some(list_docs::ConsistencySelector::Transaction(t)) => t,
                _ => return None,
            },
            R::BatchGetDocuments(m) => match &mut m.consistency_selector {
                Some(batch_get::ConsistencySelector::Transaction(t)) => t,
                Some(batch_get::ConsistencySelector::NewTransaction(o)) => retried(o)?,
                _ => return None,
            },
            R::RunQuery(m) => match &mut m.consistency_selector {
                Some(run_query::ConsistencySelector::Transaction(t)) => t,
                Some(run_query::ConsistencySelector::NewTransaction(o)) => retried(o)?,
                _ => return None,
            },
            R::RunAggregationQuery(m) => match &mut m.consistency_selector {
                Some(run_agg::ConsistencySelector::Transaction(t)) => t,
                Some(run_agg::ConsistencySelector::NewTransaction(o)) => retried(o)?,
                _ => return None,
            },
            R::BeginTransaction(m) => retried(m.options.as_mut()?)?,
            R::Commit(m) => &mut m.transaction,
            // An empty id is refused by the classifier.
            R::Rollback(m) => &mut m.transaction,
            R::CreateDocument(_)
            | R::UpdateDocument(_)
            | R::DeleteDocument(_)
            | R::PartitionQuery(_)
            | R::ListCollectionIds(_)
            | R::BatchWrite(_) => return None,
        };
        // proto3: an empty `bytes` is an absent one.
        (!field.is_empty()).then_some(field)
    }

    /// The read time the client asked for (RFC 3339), of the reads that
    /// take one.
    pub fn read_time(&self) -> Option<String> {
        use GrpcRequest as R;
        let time = match self {
            R::GetDocument(m) => match &m.consistency_selector {
                Some(get_doc::ConsistencySelector::ReadTime(t)) => t,
                _ => return None,
            },
            R::BatchGetDocuments(m) => match &m.consistency_selector {
                Some(batch_get::ConsistencySelector::ReadTime(t)) => t,
                _ => return None,
            },
            R::RunQuery(m) => match &m.consistency_selector {
                Some(run_query::ConsistencySelector::ReadTime(t)) => t,
                _ => return None,
            },
            R::RunAggregationQuery(m) => match &m.consistency_selector {
                Some(run_agg::ConsistencySelector::ReadTime(t)) => t,
                _ => return None,
            },
            _ => return None,
        };
        Some(time.to_string())
    }

    /// True when the response carries a new transaction id to seal.
    pub fn begins_transaction(&self) -> bool {
        use GrpcRequest as R;
        match self {
            R::BeginTransaction(_) => true,
            R::BatchGetDocuments(m) => matches!(
                m.consistency_selector,
                Some(batch_get::ConsistencySelector::NewTransaction(_))
            ),
            R::RunQuery(m) => matches!(
                m.consistency_selector,
                Some(run_query::ConsistencySelector::NewTransaction(_))
            ),
            R::RunAggregationQuery(m) => matches!(
                m.consistency_selector,
                Some(run_agg::ConsistencySelector::NewTransaction(_))
            ),
            _ => false,
        }
    }
}

/// `TransactionOptions.read_write.retry_transaction`: the id being retried
/// must be the caller's, like any other presented id.
fn retried(options: &mut proto::TransactionOptions) -> Option<&mut Vec<u8>> {
    match &mut options.mode {
        Some(transaction_options::Mode::ReadWrite(rw)) => Some(&mut rw.retry_transaction),
        _ => None,
    }
}
