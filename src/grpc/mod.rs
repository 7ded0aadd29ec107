//! gRPC: Firestore's `google.firestore.v1.Firestore` service on the REST
//! listener — which requests are gRPC, the length-prefixed framing, the typed
//! messages and their classification into the same [`Operation`] as REST,
//! and the sealing of the transaction ids in responses.
//!
//! [`Operation`]: crate::model::Operation

mod classify;
pub mod data;
mod error;
pub mod frame;
mod mask;
mod method;
mod request;
mod requests;
mod seal;
pub mod tags;
mod timeout;

use http::{HeaderMap, Version, header};

pub use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
pub use googleapis_tonic_google_firestore_v1::google::rpc;

pub use classify::{GrpcClassified, classify, classify_with, listen_target};
pub use error::GrpcError;
pub use mask::mask_document;
pub use method::{GrpcMethod, LISTEN_PATH};
pub use request::GrpcRequest;
pub use requests::ListenRequests;
pub use seal::{Masking, seal_response};
pub use timeout::GrpcTimeout;

/// The `grpc-status` in these headers or trailers, for the audit line
/// (`None` when absent or not a number).
pub fn status_code(headers: &HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A gRPC call this module serves: HTTP/2 with `application/grpc` or
/// `application/grpc+proto`. gRPC-Web, other codecs and gRPC over HTTP/1.1
/// stay on the REST path, which refuses them at once.
pub fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    if version != Version::HTTP_2 {
        return false;
    }
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let value = value.as_bytes();
    let essence = value
        .iter()
        .position(|b| *b == b';')
        .map_or(value, |end| &value[..end]);
    let essence = essence.trim_ascii();
    essence.eq_ignore_ascii_case(b"application/grpc")
        || essence.eq_ignore_ascii_case(b"application/grpc+proto")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(content_type: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h
    }

    #[test]
    fn only_grpc_proto_over_http2_is_grpc() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC; x=1",
        ] {
            assert!(is_grpc(Version::HTTP_2, &headers(ct)), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpc+json",
            "application/json",
            "application/grpcx",
        ] {
            assert!(!is_grpc(Version::HTTP_2, &headers(ct)), "{ct}");
        }
        assert!(!is_grpc(Version::HTTP_11, &headers("application/grpc")));
        assert!(!is_grpc(Version::HTTP_2, &HeaderMap::new()));
    }
}
