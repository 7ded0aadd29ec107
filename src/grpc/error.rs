//! What can be wrong with a gRPC call before its messages mean anything:
//! the method, the framing, the protobuf, the deadline.

/// Why a gRPC call was refused on the wire level. `pipeline::respond` gives
/// the fixed client-facing status; [`GrpcError::reason`] goes to the audit line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    #[error("not a method of google.firestore.v1.Firestore")]
    UnknownMethod,
    #[error("method not served: {0}")]
    MethodNotServed(&'static str),
    #[error("malformed gRPC frame: {0}")]
    MalformedFrame(&'static str),
    #[error("compressed gRPC message")]
    CompressedMessage,
    #[error("gRPC message over {limit} bytes")]
    MessageTooLarge { limit: usize },
    #[error("message is not valid protobuf for this method")]
    MalformedMessage,
    #[error("malformed grpc-timeout")]
    MalformedTimeout,
    #[error("the call's deadline passed before it was forwarded")]
    DeadlineExceeded,
    #[error("the Listen stream's first message did not come in time")]
    NoFirstMessage,
    #[error("the Listen stream's deadline passed")]
    StreamDeadline,
    #[error("a Listen target id that is already active")]
    TargetIdInUse,
    #[error("a Listen stream over {limit} targets")]
    TooManyListenTargets { limit: usize },
}

impl GrpcError {
    /// A short, stable reason for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            GrpcError::UnknownMethod => "grpc_unknown_method",
            GrpcError::MethodNotServed(_) => "grpc_method_not_served",
            GrpcError::MalformedFrame(_) => "grpc_malformed_frame",
            GrpcError::CompressedMessage => "grpc_compressed_message",
            GrpcError::MessageTooLarge { .. } => "grpc_message_too_large",
            GrpcError::MalformedMessage => "grpc_malformed_message",
            GrpcError::MalformedTimeout => "grpc_malformed_timeout",
            GrpcError::DeadlineExceeded => "grpc_deadline_exceeded",
            GrpcError::NoFirstMessage => "listen_no_first_message",
            GrpcError::StreamDeadline => "listen_deadline_exceeded",
            GrpcError::TargetIdInUse => "listen_target_id_in_use",
            GrpcError::TooManyListenTargets { .. } => "listen_target_limit",
        }
    }
}
