//! The gRPC method table: `/google.firestore.v1.Firestore/{Method}` → the
//! REST twin's [`Method`], and how each one streams.

use super::GrpcError;
use crate::model::Method;

const SERVICE: &str = "/google.firestore.v1.Firestore/";

/// The bidirectional `Listen` stream, served by its own step (`pipeline::listen`).
pub const LISTEN_PATH: &str = "/google.firestore.v1.Firestore/Listen";

/// A Firestore gRPC method firegate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcMethod {
    GetDocument,
    ListDocuments,
    CreateDocument,
    UpdateDocument,
    DeleteDocument,
    BatchGetDocuments,
    BeginTransaction,
    Commit,
    Rollback,
    RunQuery,
    RunAggregationQuery,
    PartitionQuery,
    ListCollectionIds,
    BatchWrite,
}

/// Methods Firestore has and firegate does not serve (UNIMPLEMENTED, as for
/// an unknown name, but audited as known). `Write` is the streaming write
/// of the mobile/web SDKs; the server clients (Python, Java, Go, Node, PHP)
/// write with `Commit`/`BatchWrite`.
const NOT_SERVED: &[&str] = &["Write", "ExecutePipeline"];

impl GrpcMethod {
    /// The method named by a request path.
    pub fn from_path(path: &str) -> Result<GrpcMethod, GrpcError> {
        let name = path.strip_prefix(SERVICE).ok_or(GrpcError::UnknownMethod)?;
        let method = match name {
            "GetDocument" => GrpcMethod::GetDocument,
            "ListDocuments" => GrpcMethod::ListDocuments,
            "CreateDocument" => GrpcMethod::CreateDocument,
            "UpdateDocument" => GrpcMethod::UpdateDocument,
            "DeleteDocument" => GrpcMethod::DeleteDocument,
            "BatchGetDocuments" => GrpcMethod::BatchGetDocuments,
            "BeginTransaction" => GrpcMethod::BeginTransaction,
            "Commit" => GrpcMethod::Commit,
            "Rollback" => GrpcMethod::Rollback,
            "RunQuery" => GrpcMethod::RunQuery,
            "RunAggregationQuery" => GrpcMethod::RunAggregationQuery,
            "PartitionQuery" => GrpcMethod::PartitionQuery,
            "ListCollectionIds" => GrpcMethod::ListCollectionIds,
            "BatchWrite" => GrpcMethod::BatchWrite,
            other if NOT_SERVED.contains(&other) => {
                return Err(GrpcError::MethodNotServed("streaming write or pipeline"));
            }
            _ => return Err(GrpcError::UnknownMethod),
        };
        Ok(method)
    }

    /// `/google.firestore.v1.Firestore/{Method}`, for the upstream request.
    pub fn path(self) -> &'static str {
        match self {
            GrpcMethod::GetDocument => "/google.firestore.v1.Firestore/GetDocument",
            GrpcMethod::ListDocuments => "/google.firestore.v1.Firestore/ListDocuments",
            GrpcMethod::CreateDocument => "/google.firestore.v1.Firestore/CreateDocument",
            GrpcMethod::UpdateDocument => "/google.firestore.v1.Firestore/UpdateDocument",
            GrpcMethod::DeleteDocument => "/google.firestore.v1.Firestore/DeleteDocument",
            GrpcMethod::BatchGetDocuments => "/google.firestore.v1.Firestore/BatchGetDocuments",
            GrpcMethod::BeginTransaction => "/google.firestore.v1.Firestore/BeginTransaction",
            GrpcMethod::Commit => "/google.firestore.v1.Firestore/Commit",
            GrpcMethod::Rollback => "/google.firestore.v1.Firestore/Rollback",
            GrpcMethod::RunQuery => "/google.firestore.v1.Firestore/RunQuery",
            GrpcMethod::RunAggregationQuery => "/google.firestore.v1.Firestore/RunAggregationQuery",
            GrpcMethod::PartitionQuery => "/google.firestore.v1.Firestore/PartitionQuery",
            GrpcMethod::ListCollectionIds => "/google.firestore.v1.Firestore/ListCollectionIds",
            GrpcMethod::BatchWrite => "/google.firestore.v1.Firestore/BatchWrite",
        }
    }

    /// The REST twin: policy, decision cache and audit see only this.
    pub fn rpc(self) -> Method {
        match self {
            GrpcMethod::GetDocument => Method::Get,
            GrpcMethod::ListDocuments => Method::List,
            GrpcMethod::CreateDocument => Method::CreateDocument,
            GrpcMethod::UpdateDocument => Method::Patch,
            GrpcMethod::DeleteDocument => Method::Delete,
            GrpcMethod::BatchGetDocuments => Method::BatchGet,
            GrpcMethod::BeginTransaction => Method::BeginTransaction,
            GrpcMethod::Commit => Method::Commit,
            GrpcMethod::Rollback => Method::Rollback,
            GrpcMethod::RunQuery => Method::RunQuery,
            GrpcMethod::RunAggregationQuery => Method::RunAggregationQuery,
            GrpcMethod::PartitionQuery => Method::PartitionQuery,
            GrpcMethod::ListCollectionIds => Method::ListCollectionIds,
            GrpcMethod::BatchWrite => Method::BatchWrite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_round_trips_through_its_path() {
        for m in [
            GrpcMethod::GetDocument,
            GrpcMethod::ListDocuments,
            GrpcMethod::CreateDocument,
            GrpcMethod::UpdateDocument,
            GrpcMethod::DeleteDocument,
            GrpcMethod::BatchGetDocuments,
            GrpcMethod::BeginTransaction,
            GrpcMethod::Commit,
            GrpcMethod::Rollback,
            GrpcMethod::RunQuery,
            GrpcMethod::RunAggregationQuery,
            GrpcMethod::PartitionQuery,
            GrpcMethod::ListCollectionIds,
            GrpcMethod::BatchWrite,
        ] {
            assert_eq!(GrpcMethod::from_path(m.path()), Ok(m));
        }
    }

    #[test]
    fn other_paths_are_refused() {
        for (path, err) in [
            (
                "/google.firestore.v1.Firestore/Write",
                "grpc_method_not_served",
            ),
            ("/google.firestore.v1.Firestore/Nope", "grpc_unknown_method"),
            (
                "/google.firestore.v1beta1.Firestore/Commit",
                "grpc_unknown_method",
            ),
            (
                "/google.firestore.v1.Firestore/Commit/x",
                "grpc_unknown_method",
            ),
        ] {
            assert_eq!(
                GrpcMethod::from_path(path).map_err(|e| e.reason()),
                Err(err)
            );
        }
    }
}
