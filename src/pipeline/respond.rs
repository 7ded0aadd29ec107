//! The one place a failed request becomes the client's answer: [`answer`]
//! names the answer for every failure condition in one exhaustive match, and
//! [`Answer::into_response`] writes it as Firestore does — status, JSON
//! body, `WWW-Authenticate` on a 401, `Retry-After` on a 429 and a 503, the
//! request id in a 403's message, a connection close after a 408 — or, for a
//! gRPC caller, a trailers-only gRPC status.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use super::PipelineError;
use super::stored::StoredReadError;
use crate::access::lifecycle::AccessError;
use crate::audit::AuditError;
use crate::authn::AuthnError;
use crate::body::Body;
use crate::firestore::status::{ApiError, Code};
use crate::grpc::GrpcError;
use crate::model::ClassifyError;
use crate::policy::requestable::RequestRefused;
use crate::server::CloseConnection;
use crate::transaction::{SealError, TransactionError};
use crate::upstream::{CredentialsError, UpstreamError};

/// How long a client is asked to wait after an outage (every 503). Long
/// enough for a failed issuer fetch or token mint to be retried (firegate
/// retries those within a few seconds), short enough that a client does
/// not idle once the service is back.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a principal over its in-flight cap is asked to wait: its own
/// requests end at their own pace; a second is enough to see one finish.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the client is told. Messages are fixed and safe: nothing from the
/// request or from the failure's detail reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 401, with `WWW-Authenticate`: the caller's credentials are at fault.
    Unauthenticated,
    /// 403: the message ends with the request id, which finds the audit line.
    PermissionDenied,
    /// 403 for a database outside `upstream.databases`: a refusal every
    /// client reports as one, where a 404 would read as a missing document.
    DatabaseNotServed,
    /// 400.
    InvalidArgument(&'static str),
    ListenTargetLimit,
    /// 413 (Google's front end answers `INVALID_ARGUMENT` in the body).
    PayloadTooLarge,
    /// 400 naming `server.limits.max_targets` (config, not request content).
    TooManyTargets(usize),
    /// 404.
    NotFound(&'static str),
    /// 408, and the connection is closed: the body did not come in time.
    RequestTimeout,
    /// 503 `UNAVAILABLE` with `Retry-After` (gRPC `UNAVAILABLE`): the
    /// principal has its fill of requests in flight. Not 429 /
    /// `RESOURCE_EXHAUSTED`: the Node client's retry settings (REST and gRPC
    /// alike) retry `UNAVAILABLE` and never `RESOURCE_EXHAUSTED`; Python's
    /// retry both.
    PrincipalBusy,
    /// 501.
    Unimplemented(&'static str),
    /// 500: firegate's own bug.
    Internal,
    /// 502: the upstream answered, but not usably.
    BadGateway(&'static str),
    /// 503, with `Retry-After`: an outage, not the caller's fault.
    Unavailable,
    /// 409: the access request is not in a state that allows this.
    Conflict(&'static str),
    /// 403 with a message of its own (an access-request review).
    Forbidden(&'static str),
    /// 504.
    DeadlineExceeded,
    /// A gRPC caller: HTTP 200, trailers-only, `grpc-status: 12`.
    GrpcUnimplemented,
}

/// The client's answer to `err`. Exhaustive over every step's conditions, so
/// a new condition does not compile until someone decides what it means to
/// the client.
pub fn answer(err: &PipelineError) -> Answer {
    use Answer as A;
    match err {
        PipelineError::Audit(e) => match e {
            AuditError::SinkBackedUp | AuditError::SinkUnwritable => A::Unavailable,
        },
        PipelineError::Authn(e) => match e {
            AuthnError::MissingToken
            | AuthnError::NotBearerScheme
            | AuthnError::MultipleAuthorizationHeaders
            | AuthnError::TokenInQueryString
            | AuthnError::TokenTooLarge
            | AuthnError::MalformedToken
            | AuthnError::WrongTokenType
            | AuthnError::UntrustedIssuer
            | AuthnError::AlgorithmNotAllowed
            | AuthnError::UnknownKeyId
            | AuthnError::BadSignature
            | AuthnError::TokenExpired
            | AuthnError::TokenNotYetValid
            | AuthnError::WrongAudience
            | AuthnError::MissingScope
            | AuthnError::MissingSubject
            | AuthnError::IntrospectionInactive
            | AuthnError::UserinfoRefused => A::Unauthenticated,
            AuthnError::KeysNotLoaded
            | AuthnError::IssuerUnreachable
            | AuthnError::UserinfoUnreachable
            | AuthnError::IntrospectionUnreachable => A::Unavailable,
        },
        PipelineError::Classify(e) => match e {
            ClassifyError::RouteNotFound(_) => A::NotFound("Route not found."),
            ClassifyError::Unsupported(_) => {
                A::Unimplemented("Method not supported by this proxy.")
            }
            ClassifyError::BadPathEncoding(_)
            | ClassifyError::AmbiguousResourceName
            | ClassifyError::InvalidResourceId(_)
            | ClassifyError::MalformedResourceName(_)
            | ClassifyError::ParityMismatch(_) => A::InvalidArgument("Invalid resource name."),
            ClassifyError::ForeignDatabase => {
                A::InvalidArgument("A resource name is not in the request's database.")
            }
            ClassifyError::DuplicateKey => {
                A::InvalidArgument("Invalid JSON payload: repeated key.")
            }
            ClassifyError::MixedFieldSpelling(_) => {
                A::InvalidArgument("Invalid request: a field is given in two spellings.")
            }
            ClassifyError::UnknownField(_) => {
                A::InvalidArgument("Invalid JSON payload: unknown field.")
            }
            ClassifyError::PathFieldRespecified(_) => {
                A::InvalidArgument("Invalid request: a field bound by the URL is given again.")
            }
            ClassifyError::MalformedBody(_) => A::InvalidArgument("Invalid JSON payload."),
            ClassifyError::InvalidWrite(_) => A::InvalidArgument("Invalid write."),
            ClassifyError::InvalidQuery(_) => A::InvalidArgument("Invalid query."),
            ClassifyError::SystemParameterRefused(_) => {
                A::InvalidArgument("System parameter not allowed.")
            }
            ClassifyError::CredentialInQuery => {
                A::InvalidArgument("Credentials are not accepted in the URL.")
            }
            ClassifyError::UnknownParameter => A::InvalidArgument("Unknown query parameter."),
            ClassifyError::DuplicateParameter => A::InvalidArgument("Repeated query parameter."),
            ClassifyError::InvalidParameter(_) => {
                A::InvalidArgument("Invalid query parameter value.")
            }
            ClassifyError::MethodOverride => A::InvalidArgument("Method override is not allowed."),
            ClassifyError::UnsupportedContentType => {
                A::InvalidArgument("Unsupported content type.")
            }
            ClassifyError::UnsupportedContentEncoding => {
                A::InvalidArgument("Unsupported content encoding.")
            }
            ClassifyError::BodyNotAllowed => {
                A::InvalidArgument("This method takes no request body.")
            }
            ClassifyError::GrpcNotServed => A::GrpcUnimplemented,
            ClassifyError::PipelineValue(_) => A::InvalidArgument(
                "Expression values are accepted only by pipelines, which this proxy does not serve.",
            ),
        },
        PipelineError::BodyTooLarge { .. } => A::PayloadTooLarge,
        PipelineError::BodyRead(_) => A::InvalidArgument("Request body could not be read."),
        PipelineError::BodyReadTimeout | PipelineError::BodyTooSlow => A::RequestTimeout,
        PipelineError::PrincipalBusy { .. } => A::PrincipalBusy,
        PipelineError::TooManyTargets { limit, .. } => A::TooManyTargets(*limit),
        PipelineError::DatabaseNotServed => A::DatabaseNotServed,
        // Forged and expired ids are malformed arguments, as Firestore answers
        // an unknown or expired transaction; someone else's is a refusal.
        PipelineError::Transaction(e) => match e {
            TransactionError::Forged => A::InvalidArgument("Invalid transaction."),
            TransactionError::NotOwned => A::PermissionDenied,
            TransactionError::Expired => {
                A::InvalidArgument("The referenced transaction has expired or is no longer valid.")
            }
        },
        PipelineError::Denied => A::PermissionDenied,
        PipelineError::Credentials(e) => match e {
            CredentialsError::BaseUnavailable
            | CredentialsError::InvalidAccount { .. }
            | CredentialsError::ImpersonationDenied { .. }
            | CredentialsError::ImpersonationUnavailable
            | CredentialsError::MalformedTokenResponse
            | CredentialsError::ExpiredTokenIssued => A::Unavailable,
        },
        PipelineError::Upstream(e) => match e {
            UpstreamError::ConnectTimeout | UpstreamError::ResponseHeaderTimeout => {
                A::DeadlineExceeded
            }
            UpstreamError::ConnectFailed(_) => A::Unavailable,
            UpstreamError::ProtocolError(_) => {
                A::BadGateway("The service is currently unavailable.")
            }
            UpstreamError::InvalidRequest(_) => A::Internal,
        },
        // A rule that needs the stored document never fails open.
        PipelineError::Access(e) => access_answer(e),
        PipelineError::StoredRead(e) => match e {
            StoredReadError::ReadFailed(_) | StoredReadError::ReadRefused(_) => A::Unavailable,
            StoredReadError::BeginsTransaction => A::InvalidArgument(
                "This read is checked on its documents and cannot begin a transaction; \
                 begin the transaction first.",
            ),
        },
        PipelineError::Seal(e) => match e {
            SealError::EncodedResponse
            | SealError::BadUpstreamId
            | SealError::Oversized
            | SealError::Truncated => A::BadGateway("Upstream response could not be read."),
        },
        PipelineError::Mask(e) => match e {
            crate::firestore::mask::MaskError::Oversized(_)
            | crate::firestore::mask::MaskError::Malformed
            | crate::firestore::mask::MaskError::Truncated => {
                A::BadGateway("Upstream response could not be read.")
            }
        },
        PipelineError::Grpc(e) => match e {
            GrpcError::UnknownMethod => A::Unimplemented("Method not found."),
            GrpcError::MethodNotServed(_) => {
                A::Unimplemented("Method not supported by this proxy.")
            }
            GrpcError::CompressedMessage => {
                A::Unimplemented("Message compression is not supported; send identity.")
            }
            GrpcError::MalformedFrame(_) | GrpcError::MalformedMessage => {
                A::InvalidArgument("Invalid protobuf message.")
            }
            GrpcError::MessageTooLarge { .. } => A::PayloadTooLarge,
            GrpcError::MalformedTimeout => A::InvalidArgument("Invalid grpc-timeout."),
            GrpcError::DeadlineExceeded | GrpcError::NoFirstMessage | GrpcError::StreamDeadline => {
                A::DeadlineExceeded
            }
            GrpcError::TargetIdInUse => A::InvalidArgument("Target id is already in use."),
            GrpcError::TooManyListenTargets { .. } => A::ListenTargetLimit,
        },
    }
}

/// The gRPC answer for `err` on the call `request_id`: the same [`Answer`]
/// as REST, written as a trailers-only gRPC status.
pub fn grpc_error_response(err: &PipelineError, request_id: &str) -> Response<Body> {
    answer(err).into_grpc_response(request_id)
}

/// The complete error response for `err` on the request `request_id`.
pub fn error_response(err: &PipelineError, request_id: &str) -> Response<Body> {
    answer(err).into_response(request_id)
}

impl Answer {
    /// The Firestore error body and status.
    pub fn api_error(self, request_id: &str) -> ApiError {
        const UNAVAILABLE: &str = "The service is currently unavailable.";
        match self {
            Answer::Unauthenticated => ApiError::new(
                Code::Unauthenticated,
                "Request had invalid authentication credentials.",
            ),
            Answer::PermissionDenied => ApiError::new(
                Code::PermissionDenied,
                format!("Missing or insufficient permissions. Request id: {request_id}."),
            ),
            Answer::DatabaseNotServed => ApiError::new(
                Code::PermissionDenied,
                format!("This database is not served by this proxy. Request id: {request_id}."),
            ),
            Answer::InvalidArgument(message) => ApiError::new(Code::InvalidArgument, message),
            Answer::TooManyTargets(limit) => ApiError::new(
                Code::InvalidArgument,
                format!(
                    "The request names more than {limit} documents or scopes; split it into smaller requests."
                ),
            ),
            Answer::RequestTimeout => ApiError::new(
                Code::DeadlineExceeded,
                "The request body was not received in time.",
            )
            .with_http_status(StatusCode::REQUEST_TIMEOUT),
            Answer::PrincipalBusy => ApiError::new(
                Code::Unavailable,
                "Too many concurrent requests from this caller; retry shortly.",
            ),
            Answer::ListenTargetLimit => ApiError::new(
                Code::ResourceExhausted,
                "Too many targets on this Listen stream.",
            ),
            Answer::PayloadTooLarge => ApiError::new(
                Code::InvalidArgument,
                "Request payload size exceeds the limit.",
            )
            .with_http_status(StatusCode::PAYLOAD_TOO_LARGE),
            Answer::NotFound(message) => ApiError::new(Code::NotFound, message),
            Answer::Unimplemented(message) => ApiError::new(Code::Unimplemented, message),
            Answer::Internal => ApiError::new(Code::Internal, "Internal error."),
            Answer::BadGateway(message) => {
                ApiError::new(Code::Unavailable, message).with_http_status(StatusCode::BAD_GATEWAY)
            }
            Answer::Unavailable => ApiError::new(Code::Unavailable, UNAVAILABLE),
            Answer::Conflict(message) => ApiError::new(Code::FailedPrecondition, message)
                .with_http_status(StatusCode::CONFLICT),
            Answer::Forbidden(message) => ApiError::new(Code::PermissionDenied, message),
            Answer::DeadlineExceeded => ApiError::new(Code::DeadlineExceeded, "Deadline exceeded."),
            Answer::GrpcUnimplemented => ApiError::new(Code::Unimplemented, GRPC_MESSAGE),
        }
    }

    /// The answer as a trailers-only gRPC response (HTTP 200, no body,
    /// `grpc-status` and `grpc-message` in the headers): the code REST
    /// names in its body, the same fixed message.
    pub fn into_grpc_response(self, request_id: &str) -> Response<Body> {
        if self == Answer::GrpcUnimplemented {
            return grpc_unimplemented();
        }
        let error = self.api_error(request_id);
        grpc_status(grpc_code(error.code), &error.message)
    }

    /// The response: body and status, plus the headers the answer calls for.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        if self == Answer::GrpcUnimplemented {
            return grpc_unimplemented();
        }
        let mut response = self.api_error(request_id).to_response();
        let headers = response.headers_mut();
        match self {
            // RFC 6750 §3: a 401 names the scheme the caller must use.
            Answer::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            // RFC 9110 §10.2.3: tells well-behaved clients when to come back.
            Answer::Unavailable => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER.as_secs()),
                );
            }
            Answer::PrincipalBusy => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(BUSY_RETRY_AFTER.as_secs()),
                );
            }
            // A client that stalls its body is not worth a kept-alive
            // connection; the server turns this into `Connection: close` on
            // HTTP/1.1 and a GOAWAY on HTTP/2.
            Answer::RequestTimeout => {
                response.extensions_mut().insert(CloseConnection);
            }
            Answer::PermissionDenied
            | Answer::DatabaseNotServed
            | Answer::InvalidArgument(_)
            | Answer::TooManyTargets(_)
            | Answer::ListenTargetLimit
            | Answer::PayloadTooLarge
            | Answer::NotFound(_)
            | Answer::Unimplemented(_)
            | Answer::Internal
            | Answer::BadGateway(_)
            | Answer::DeadlineExceeded
            | Answer::Conflict(_)
            | Answer::Forbidden(_)
            | Answer::GrpcUnimplemented => {}
        }
        response
    }
}

/// The access-request API's answers: 403 not an approver, 409 wrong
/// state, 400 outside every entry or over `max_duration`, 503 store down.
fn access_answer(e: &AccessError) -> Answer {
    use Answer as A;
    match e {
        AccessError::NotConfigured => A::NotFound("Route not found."),
        AccessError::NotFound => A::NotFound("No such access request."),
        AccessError::NotApprover => A::Forbidden("The caller may not review this access request."),
        AccessError::NotRequester => {
            A::Forbidden("Only the requester may release an access request.")
        }
        AccessError::WrongState(state) => A::Conflict(match *state {
            "pending" => "The access request is pending.",
            "active" => "The access request is active.",
            "denied" => "The access request was denied.",
            "expired" => "The access request has expired.",
            "released" => "The access request was released.",
            _ => "The access request was revoked.",
        }),
        AccessError::Refused(r) => A::InvalidArgument(match r {
            RequestRefused::BadPath(_) => "`path` is not a document path or pattern.",
            RequestRefused::BadActions(_) => "`actions` names an unknown action.",
            RequestRefused::OutsideEntries => {
                "No requestable entry lets the caller ask for these actions on this path."
            }
            RequestRefused::OverMaxDuration(_) => {
                "The duration is over the requestable entry's max_duration."
            }
            RequestRefused::ZeroDuration => "The duration must be positive.",
            RequestRefused::ReasonRequired => "A reason is required.",
        }),
        AccessError::Invalid(message) => A::InvalidArgument(message),
        AccessError::StoreUnavailable(_) => A::Unavailable,
    }
}

/// What a gRPC caller is told (percent-encoding not needed: plain ASCII).
const GRPC_MESSAGE: &str = "firegate serves gRPC over HTTP/2 with application/grpc only; gRPC-Web and gRPC over HTTP/1.1 are not served";

/// The same answer as the trailers that end a stream already under way
/// (Listen): `grpc-status` and `grpc-message`.
pub fn grpc_error_trailers(err: &PipelineError, request_id: &str) -> http::HeaderMap {
    let (parts, _) = answer(err).into_grpc_response(request_id).into_parts();
    let mut trailers = parts.headers;
    trailers.remove(header::CONTENT_TYPE);
    trailers
}

/// True when `err` means the caller's credentials no longer hold (an open
/// stream ends then); an outage does not end a stream already judged.
pub fn is_unauthenticated(err: &PipelineError) -> bool {
    answer(err) == Answer::Unauthenticated
}

/// A `google.rpc.Status` code and message for `err`, for a `cause` inside
/// a message (Listen's REMOVE of a refused target).
pub fn grpc_cause(err: &PipelineError, request_id: &str) -> (i32, String) {
    let error = answer(err).api_error(request_id);
    (i32::from(grpc_code(error.code)), error.message.into_owned())
}

/// The numeric gRPC code of a Firestore status (google.rpc.Code).
fn grpc_code(code: Code) -> u8 {
    match code {
        Code::Cancelled => 1,
        Code::InvalidArgument => 3,
        Code::DeadlineExceeded => 4,
        Code::NotFound => 5,
        Code::AlreadyExists => 6,
        Code::PermissionDenied => 7,
        Code::ResourceExhausted => 8,
        Code::FailedPrecondition => 9,
        Code::Aborted => 10,
        Code::OutOfRange => 11,
        Code::Unimplemented => 12,
        Code::Internal => 13,
        Code::Unavailable => 14,
        Code::Unauthenticated => 16,
    }
}

/// gRPC over HTTP/2: `grpc-message` is percent-encoded outside printable ASCII.
const GRPC_MESSAGE_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// A trailers-only gRPC status response.
fn grpc_status(code: u8, message: &str) -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    let message = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE_ESCAPED).to_string();
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    response
}

/// A trailers-only gRPC response (gRPC over HTTP/2: status in the headers,
/// no body): HTTP 200 and `grpc-status: 12` (UNIMPLEMENTED), which every gRPC
/// client treats as final rather than retrying.
fn grpc_unimplemented() -> Response<Body> {
    grpc_status(12, GRPC_MESSAGE)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http_body_util::BodyExt;
    use serde_json::Value;

    use super::*;

    /// Status, headers and JSON body of the response for `err`.
    async fn respond(err: PipelineError) -> (StatusCode, HeaderMap, Value) {
        let (parts, body) = error_response(&err, "req-42").into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).expect("JSON body");
        (parts.status, parts.headers, json)
    }

    fn check_body(json: &Value, status: StatusCode, code: &str) {
        assert_eq!(json["error"]["code"], status.as_u16(), "{json}");
        assert_eq!(json["error"]["status"], code, "{json}");
        assert!(json["error"]["message"].is_string(), "{json}");
    }

    #[tokio::test]
    async fn a_bad_token_is_401_with_the_bearer_challenge() {
        for err in [
            AuthnError::MissingToken,
            AuthnError::TokenExpired,
            AuthnError::BadSignature,
            AuthnError::UntrustedIssuer,
            AuthnError::UnknownKeyId,
            AuthnError::IntrospectionInactive,
            AuthnError::UserinfoRefused,
        ] {
            let (status, headers, json) = respond(err.into()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            check_body(&json, status, "UNAUTHENTICATED");
            assert_eq!(
                headers[header::WWW_AUTHENTICATE],
                "Bearer error=\"invalid_token\""
            );
            assert!(headers.get(header::RETRY_AFTER).is_none());
        }
    }

    #[tokio::test]
    async fn every_outage_is_503_with_retry_after_and_no_challenge() {
        let outages: Vec<PipelineError> = vec![
            AuthnError::KeysNotLoaded.into(),
            AuthnError::IssuerUnreachable.into(),
            AuthnError::UserinfoUnreachable.into(),
            AuthnError::IntrospectionUnreachable.into(),
            AuditError::SinkBackedUp.into(),
            AuditError::SinkUnwritable.into(),
            CredentialsError::BaseUnavailable.into(),
            CredentialsError::ImpersonationDenied { status: 403 }.into(),
            UpstreamError::ConnectFailed("10.0.0.1 refused".into()).into(),
            StoredReadError::ReadFailed("10.0.0.1 refused".into()).into(),
            StoredReadError::ReadRefused(500).into(),
        ];
        for err in outages {
            let shown = err.to_string();
            let (status, headers, json) = respond(err).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{shown}");
            check_body(&json, status, "UNAVAILABLE");
            assert_eq!(headers[header::RETRY_AFTER], "5", "{shown}");
            assert!(headers.get(header::WWW_AUTHENTICATE).is_none(), "{shown}");
            assert!(!json.to_string().contains("10.0.0.1"), "detail leaked");
        }
    }

    #[tokio::test]
    async fn a_refusal_is_403_naming_the_request_id() {
        for err in [PipelineError::Denied, TransactionError::NotOwned.into()] {
            let (status, headers, json) = respond(err).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            check_body(&json, status, "PERMISSION_DENIED");
            assert_eq!(
                json["error"]["message"],
                "Missing or insufficient permissions. Request id: req-42."
            );
            assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_413_and_an_unreadable_one_400() {
        let (status, headers, json) = respond(PipelineError::BodyTooLarge { limit: 10 }).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        check_body(&json, status, "INVALID_ARGUMENT");
        assert!(headers.get(header::RETRY_AFTER).is_none());
        for err in [
            PipelineError::BodyRead("reset".into()),
            TransactionError::Forged.into(),
            TransactionError::Expired.into(),
        ] {
            let (status, _, json) = respond(err).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            check_body(&json, status, "INVALID_ARGUMENT");
        }
    }

    #[tokio::test]
    async fn an_unsealable_upstream_answer_is_502() {
        let (status, headers, json) = respond(SealError::EncodedResponse.into()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        check_body(&json, status, "UNAVAILABLE");
        assert!(headers.get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn upstream_failures_keep_their_statuses_without_their_detail() {
        let cases: [(PipelineError, StatusCode, &str); 4] = [
            (
                UpstreamError::ConnectTimeout.into(),
                StatusCode::GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
            ),
            (
                UpstreamError::ResponseHeaderTimeout.into(),
                StatusCode::GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
            ),
            (
                UpstreamError::ProtocolError("secret-detail".into()).into(),
                StatusCode::BAD_GATEWAY,
                "UNAVAILABLE",
            ),
            (
                UpstreamError::InvalidRequest("secret-detail".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
            ),
        ];
        for (err, expected, code) in cases {
            let (status, _, json) = respond(err).await;
            assert_eq!(status, expected);
            check_body(&json, status, code);
            assert!(
                !json.to_string().contains("secret"),
                "detail leaked: {json}"
            );
        }
    }

    #[tokio::test]
    async fn classification_failures_are_404_501_or_400() {
        let cases: [(ClassifyError, StatusCode, &str); 4] = [
            (
                ClassifyError::RouteNotFound("x"),
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            ),
            (
                ClassifyError::Unsupported(":listen"),
                StatusCode::NOT_IMPLEMENTED,
                "UNIMPLEMENTED",
            ),
            (
                ClassifyError::AmbiguousResourceName,
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
            ),
            (
                ClassifyError::CredentialInQuery,
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
            ),
        ];
        for (err, expected, code) in cases {
            let (status, _, json) = respond(err.into()).await;
            assert_eq!(status, expected);
            check_body(&json, status, code);
        }
    }

    #[tokio::test]
    async fn a_late_body_is_408_and_asks_for_the_connection_to_close() {
        for err in [PipelineError::BodyReadTimeout, PipelineError::BodyTooSlow] {
            let response = error_response(&err, "req-42");
            assert!(response.extensions().get::<CloseConnection>().is_some());
            let (status, _, json) = respond(err).await;
            assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
            check_body(&json, status, "DEADLINE_EXCEEDED");
        }
        let other = error_response(&PipelineError::Denied, "req-42");
        assert!(other.extensions().get::<CloseConnection>().is_none());
    }

    #[tokio::test]
    async fn a_busy_principal_is_503_unavailable_with_a_short_retry_after() {
        let (status, headers, json) = respond(PipelineError::PrincipalBusy { limit: 2 }).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        check_body(&json, status, "UNAVAILABLE");
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn too_many_targets_is_400_naming_the_limit_and_a_foreign_database_403() {
        let err = PipelineError::TooManyTargets { count: 7, limit: 5 };
        let (status, _, json) = respond(err).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        check_body(&json, status, "INVALID_ARGUMENT");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("more than 5")
        );
        let (status, _, json) = respond(PipelineError::DatabaseNotServed).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        check_body(&json, status, "PERMISSION_DENIED");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("Request id: req-42.")
        );
    }

    #[tokio::test]
    async fn a_grpc_caller_gets_a_trailers_only_unimplemented() {
        let response = error_response(&ClassifyError::GrpcNotServed.into(), "req-42");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "12");
        assert!(http_body::Body::is_end_stream(response.body()));
    }
}
