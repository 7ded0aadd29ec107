//! Why a request could not be classified, whatever its wire.

/// Why a request could not be classified. Each variant is a condition;
/// `pipeline::respond` gives the fixed client-facing answer. Details are
/// static descriptions, never request content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("route not served: {0}")]
    RouteNotFound(&'static str),
    #[error("method not supported: {0}")]
    Unsupported(&'static str),
    #[error("bad path encoding: {0}")]
    BadPathEncoding(&'static str),
    #[error("raw ':' inside the resource path")]
    AmbiguousResourceName,
    #[error("invalid resource id: {0}")]
    InvalidResourceId(&'static str),
    #[error("malformed resource name: {0}")]
    MalformedResourceName(&'static str),
    #[error("document/collection parity mismatch: {0}")]
    ParityMismatch(&'static str),
    #[error("a name in the request belongs to another database")]
    ForeignDatabase,
    #[error("repeated JSON key")]
    DuplicateKey,
    #[error("field given in both spellings: {0}")]
    MixedFieldSpelling(&'static str),
    #[error("unknown field in {0}")]
    UnknownField(&'static str),
    #[error("path-bound field re-specified in {0}")]
    PathFieldRespecified(&'static str),
    #[error("malformed body: {0}")]
    MalformedBody(&'static str),
    #[error("invalid write: {0}")]
    InvalidWrite(&'static str),
    #[error("invalid query: {0}")]
    InvalidQuery(&'static str),
    #[error("system parameter refused: {0}")]
    SystemParameterRefused(&'static str),
    #[error("credential in the query string")]
    CredentialInQuery,
    #[error("unknown query parameter")]
    UnknownParameter,
    #[error("repeated query parameter")]
    DuplicateParameter,
    #[error("invalid query parameter: {0}")]
    InvalidParameter(&'static str),
    #[error("X-HTTP-Method-Override present")]
    MethodOverride,
    #[error("unsupported content type")]
    UnsupportedContentType,
    #[error("unsupported content encoding")]
    UnsupportedContentEncoding,
    #[error("body on a method without one")]
    BodyNotAllowed,
    #[error("gRPC request; only REST is served")]
    GrpcNotServed,
    #[error("a pipeline expression value ({0}) outside executePipeline")]
    PipelineValue(&'static str),
}

impl ClassifyError {
    /// A short, stable reason for the audit line (`bad_path_encoding`, …).
    pub fn reason(&self) -> &'static str {
        use ClassifyError as E;
        match self {
            E::RouteNotFound(_) => "route_not_found",
            E::Unsupported(_) => "unsupported_method",
            E::BadPathEncoding(_) => "bad_path_encoding",
            E::AmbiguousResourceName => "ambiguous_resource_name",
            E::InvalidResourceId(_) => "invalid_resource_id",
            E::MalformedResourceName(_) => "invalid_resource_name",
            E::ParityMismatch(_) => "resource_parity_mismatch",
            E::ForeignDatabase => "foreign_database",
            E::DuplicateKey => "duplicate_key",
            E::MixedFieldSpelling(_) => "mixed_field_spelling",
            E::UnknownField(_) => "unknown_field",
            E::PathFieldRespecified(_) => "path_field_respecified",
            E::MalformedBody(_) => "malformed_body",
            E::InvalidWrite(_) => "invalid_write",
            E::InvalidQuery(_) => "invalid_query",
            E::SystemParameterRefused(_) => "system_parameter_refused",
            E::CredentialInQuery => "credential_in_query",
            E::UnknownParameter => "unknown_query_parameter",
            E::DuplicateParameter => "duplicate_query_parameter",
            E::InvalidParameter(_) => "invalid_query_parameter",
            E::MethodOverride => "method_override",
            E::UnsupportedContentType => "unsupported_content_type",
            E::UnsupportedContentEncoding => "unsupported_content_encoding",
            E::BodyNotAllowed => "body_not_allowed",
            E::GrpcNotServed => "grpc_not_served",
            E::PipelineValue(_) => "pipeline_value_refused",
        }
    }
}
