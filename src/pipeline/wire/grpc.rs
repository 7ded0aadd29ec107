//! The gRPC wire's ends: the method path and the one length-prefixed
//! request message decoded into a typed request and classified, and the
//! (rewritten) message re-encoded for the pooled HTTP/2 channel; the
//! answer's messages, then its trailers, stream back.

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;

use super::{Call, Encoded};
use crate::body::{self, Body};
use crate::grpc::{self, GrpcError, GrpcMethod, GrpcRequest, GrpcTimeout};
use crate::model::Operation;
use crate::pipeline::{Exchange, Pipeline, PipelineError};
use crate::upstream::headers::Forwarding;
use crate::upstream::{AccessToken, GrpcOutbound};

/// A gRPC call as it will be forwarded.
pub(super) struct GrpcCall {
    headers: HeaderMap,
    pub(super) method: GrpcMethod,
    pub(super) request: GrpcRequest,
    timeout: Option<GrpcTimeout>,
}

/// The method must be one firegate serves, and a `grpc-timeout` must be
/// well-formed: both answered before the token or the body is looked at.
pub(super) fn admit(parts: &Parts) -> Result<(), GrpcError> {
    GrpcMethod::from_path(parts.uri.path())?;
    GrpcTimeout::from_headers(&parts.headers)?;
    Ok(())
}

/// Path → method, the one request message (bounded, under the body
/// deadline) → typed request → `Call`.
pub(super) async fn classify(
    pipeline: &Pipeline,
    parts: Parts,
    body: Body,
    ex: &mut Exchange,
) -> Result<Call, PipelineError> {
    let method = GrpcMethod::from_path(parts.uri.path())?;
    let timeout = GrpcTimeout::from_headers(&parts.headers)?;
    let max = pipeline.settings.max_grpc_message_bytes;
    // The frame header rides on top of the message limit.
    let bytes: Bytes = pipeline
        .read_body(body, max.saturating_add(5))
        .await
        .map_err(|err| match err {
            PipelineError::BodyTooLarge { .. } => GrpcError::MessageTooLarge { limit: max }.into(),
            err => err,
        })?;
    ex.add_bytes_in(bytes.len() as u64);
    let message = grpc::frame::single(&bytes, max)?;
    let request = GrpcRequest::decode(method, message)?;
    ex.request_tags = crate::audit::request_tags(&grpc::tags::request_tags(method, message));
    let classified = grpc::classify_with(&request, pipeline.policy.field_capture())?;
    let operation = classified.operation;
    ex.route = Some((operation.method, operation.database.name()));
    let read_time = request.read_time();
    let encoded = Encoded::Grpc(GrpcCall {
        headers: parts.headers,
        method,
        request,
        timeout,
    });
    Ok(Call::new(
        operation,
        read_time,
        classified.begins_transaction,
        encoded,
    ))
}

impl GrpcCall {
    pub(super) fn presented(&mut self) -> Option<&[u8]> {
        self.request.presented_transaction().map(|t| t.as_slice())
    }

    pub(super) fn use_transaction(&mut self, upstream: &[u8]) {
        if let Some(sealed) = self.request.presented_transaction() {
            sealed.clear();
            sealed.extend_from_slice(upstream);
        }
    }

    /// The re-encoded message over the pooled HTTP/2 channel, with what is
    /// left of the caller's deadline (502/503/504).
    pub(super) async fn forward(
        &mut self,
        pipeline: &Pipeline,
        op: &Operation,
        token: &AccessToken,
        ex: &mut Exchange,
    ) -> Result<http::Response<Body>, PipelineError> {
        let timeout = self
            .timeout
            .map(|t| t.remaining(ex.started().elapsed()))
            .transpose()?;
        let database = op.database.to_string();
        let response = pipeline
            .grpc_upstream
            .forward(GrpcOutbound {
                path: self.method.path(),
                client_headers: &self.headers,
                forwarding: Forwarding {
                    remote: ex.remote_ip(),
                    trusted: &pipeline.settings.trusted_proxies,
                    proto: ex.proto(),
                    request_id: &ex.request_id,
                    database: &database,
                    routing: None,
                },
                timeout,
                token,
                body: body::full(self.request.encode()),
            })
            .await?;
        ex.upstream_status = Some(response.status().as_u16());
        ex.upstream_grpc_status = grpc::status_code(response.headers());
        Ok(response.map(body::boxed))
    }
}
