//! Firestore-shaped errors, `{"error":{"code","message","status"}}`: written
//! only by `pipeline::respond` and by the emulator (its own server).

use std::borrow::Cow;

use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::{self, Body};

/// The canonical gRPC status names Firestore uses in error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    InvalidArgument,
    FailedPrecondition,
    OutOfRange,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    ResourceExhausted,
    Cancelled,
    DeadlineExceeded,
    Unimplemented,
    Internal,
    Unavailable,
}

impl Code {
    /// The HTTP status Google's front end uses for this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status name as it appears in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Aborted => "ABORTED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Cancelled => "CANCELLED",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
        }
    }
}

/// An error as a client sees it: a code, an HTTP status and a fixed, safe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    /// Normally `code.http_status()`; differs only where HTTP has a sharper
    /// word than gRPC (413 for an oversized body, 502 for a broken upstream).
    pub http_status: StatusCode,
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            code,
            http_status: code.http_status(),
            message: message.into(),
        }
    }

    pub fn with_http_status(mut self, status: StatusCode) -> Self {
        self.http_status = status;
        self
    }

    /// The JSON body, `{"error":{"code":…,"message":…,"status":…}}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: u16,
            message: &'a str,
            status: &'a str,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        let outer = Outer {
            error: Inner {
                code: self.http_status.as_u16(),
                message: &self.message,
                status: self.code.as_str(),
            },
        };
        serde_json::to_string(&outer).unwrap_or_else(|_| String::from("{}"))
    }

    /// A complete response carrying this error.
    pub fn to_response(&self) -> Response<Body> {
        body::json(self.http_status, self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_firestore_shape() {
        let err = ApiError::new(Code::PermissionDenied, "Permission denied.");
        let v: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap();
        assert_eq!(v["error"]["code"], 403);
        assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(v["error"]["message"], "Permission denied.");
    }

    #[test]
    fn http_status_override_shows_in_body() {
        let err = ApiError::new(Code::InvalidArgument, "too large")
            .with_http_status(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.to_response().status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.to_json().contains("\"code\":413"));
    }
}
