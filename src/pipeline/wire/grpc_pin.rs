//! The gRPC twin of [`pin`](super::pin): the typed message pinned to the
//! versions the rules saw before it is re-encoded for Firestore — each
//! document's first write gets `current_document` (the read's `update_time`,
//! or `exists: false`), and a checked read outside a transaction reads at
//! the time of the check.

use prost_types::Timestamp;

use super::pin::{Pin, first_write_pins, pin_of};
use crate::grpc::GrpcRequest;
use crate::grpc::proto::{
    self, batch_get_documents_request as batch_get, get_document_request as get_doc, precondition,
};
use crate::model::Operation;
use crate::pipeline::stored::{ReadStored, StoredReadError};

/// Rewrite `request` in place. `consistent`: the read already happens in
/// a transaction or at the client's read time.
pub fn pin(
    request: &mut GrpcRequest,
    op: &Operation,
    read: &ReadStored,
    consistent: bool,
) -> Result<(), StoredReadError> {
    let stored = &read.documents;
    match request {
        GrpcRequest::UpdateDocument(m) => {
            if let Some(p) = op.writes.first().and_then(|w| pin_of(w, stored)) {
                m.current_document = Some(precondition_of(&p)?);
            }
        }
        GrpcRequest::DeleteDocument(m) => {
            if let Some(p) = op.writes.first().and_then(|w| pin_of(w, stored)) {
                m.current_document = Some(precondition_of(&p)?);
            }
        }
        GrpcRequest::Commit(proto::CommitRequest { writes, .. })
        | GrpcRequest::BatchWrite(proto::BatchWriteRequest { writes, .. }) => {
            for (index, p) in first_write_pins(op, stored) {
                let write = writes
                    .get_mut(index)
                    .ok_or_else(|| unpinnable("no such write"))?;
                write.current_document = Some(precondition_of(&p)?);
            }
        }
        GrpcRequest::GetDocument(m) if !consistent => {
            if let Some(t) = &read.read_time {
                m.consistency_selector =
                    Some(get_doc::ConsistencySelector::ReadTime(timestamp(t)?));
            }
        }
        GrpcRequest::BatchGetDocuments(m) if !consistent => {
            if let Some(t) = &read.read_time {
                m.consistency_selector =
                    Some(batch_get::ConsistencySelector::ReadTime(timestamp(t)?));
            }
        }
        _ => {}
    }
    Ok(())
}

fn precondition_of(pin: &Pin<'_>) -> Result<proto::Precondition, StoredReadError> {
    let condition = match pin {
        Pin::UpdateTime(t) => precondition::ConditionType::UpdateTime(timestamp(t)?),
        Pin::Missing => precondition::ConditionType::Exists(false),
    };
    Ok(proto::Precondition {
        condition_type: Some(condition),
    })
}

/// An RFC 3339 time Firestore gave; one that does not parse cannot pin,
/// and the request is refused rather than forwarded unpinned.
fn timestamp(text: &str) -> Result<Timestamp, StoredReadError> {
    text.parse().map_err(unpinnable)
}

fn unpinnable(e: impl std::fmt::Display) -> StoredReadError {
    StoredReadError::ReadFailed(format!("the request could not be pinned: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::write;
    use crate::model::data::{Change, Precondition, Stored, StoredDocument, Written};
    use crate::model::{Database, Method, Scope};

    const ROOT: &str = "projects/p/databases/(default)/documents";

    fn path(id: &str) -> crate::model::Segments {
        crate::model::Segments::from(&["notes", id][..])
    }

    fn delete(id: &str) -> proto::Write {
        proto::Write {
            operation: Some(write::Operation::Delete(format!("{ROOT}/notes/{id}"))),
            ..Default::default()
        }
    }

    #[test]
    fn each_documents_first_write_is_pinned_to_the_read() {
        let mut op = Operation::new(Database::new("p", "(default)"), Method::Commit, Vec::new());
        let written = |id: &str, index| Written {
            scope: Scope::Document { path: path(id) },
            index,
            change: Change::Delete,
            precondition: Precondition::None,
        };
        op.writes = vec![written("a", 0), written("b", 1), written("a", 2)];
        let read = ReadStored {
            documents: Stored::from([
                (
                    path("a"),
                    Some(StoredDocument {
                        fields: Default::default(),
                        update_time: "2026-01-01T00:00:00.000001Z".into(),
                    }),
                ),
                (path("b"), None),
            ]),
            read_time: None,
        };
        let mut request = GrpcRequest::Commit(proto::CommitRequest {
            database: "projects/p/databases/(default)".into(),
            writes: vec![delete("a"), delete("b"), delete("a")],
            ..Default::default()
        });
        pin(&mut request, &op, &read, false).unwrap();
        let GrpcRequest::Commit(m) = request else {
            unreachable!()
        };
        let condition = |i: usize| m.writes[i].current_document.and_then(|p| p.condition_type);
        assert_eq!(
            condition(0),
            Some(precondition::ConditionType::UpdateTime(Timestamp {
                seconds: 1_767_225_600,
                nanos: 1_000,
            }))
        );
        assert_eq!(
            condition(1),
            Some(precondition::ConditionType::Exists(false))
        );
        assert_eq!(condition(2), None, "a later write of the same document");
    }
}
