//! An in-memory Firestore (REST v1 and the gRPC API `google.firestore.v1.Firestore`
//! on the same port) for `firegate dev` and for tests.
//!
//! [`Emulator`] is the handle (cheap to clone, mountable behind any server
//! through [`Emulator::handle`]); [`spawn`] runs it on a socket of its own,
//! [`serve`] runs it for the command line until interrupted.

mod aggregate;
mod clock;
mod documents;
mod explain;
mod grpc;
mod ids;
mod nearest;
mod partition;
mod query;
mod routes;
mod rpc;
mod server;
mod store;
mod stream;
mod values;
mod vector;
mod wire;
mod write;

use std::sync::{Arc, Mutex, MutexGuard};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::Value as Json;

use crate::body::{self, Body};
use crate::firestore::status::{ApiError, Code};

pub use server::{Running, serve, spawn};

/// Why the emulator refused a request. Messages name the documents involved,
/// as Firestore's own do; the emulator holds no secrets to leak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulatorError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("no such route: {0}")]
    RouteNotFound(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("aborted: {0}")]
    Aborted(String),
}

impl EmulatorError {
    /// The Firestore-shaped error a client sees.
    pub fn api_error(&self) -> ApiError {
        match self {
            EmulatorError::InvalidArgument(m) => ApiError::new(Code::InvalidArgument, m.clone()),
            EmulatorError::RouteNotFound(_) => {
                ApiError::new(Code::NotFound, "No such Firestore REST route.")
            }
            EmulatorError::NotFound(m) => ApiError::new(Code::NotFound, m.clone()),
            EmulatorError::AlreadyExists(m) => ApiError::new(Code::AlreadyExists, m.clone()),
            EmulatorError::FailedPrecondition(m) => {
                ApiError::new(Code::FailedPrecondition, m.clone())
            }
            EmulatorError::Aborted(m) => ApiError::new(Code::Aborted, m.clone()),
        }
    }

    /// A stable snake_case reason for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            EmulatorError::InvalidArgument(_) => "invalid_argument",
            EmulatorError::RouteNotFound(_) => "route_not_found",
            EmulatorError::NotFound(_) => "document_not_found",
            EmulatorError::AlreadyExists(_) => "document_already_exists",
            EmulatorError::FailedPrecondition(_) => "precondition_failed",
            EmulatorError::Aborted(_) => "transaction_aborted",
        }
    }

    /// The numeric gRPC code, as `batchWrite` statuses carry it.
    pub fn grpc_code(&self) -> u8 {
        match self {
            EmulatorError::InvalidArgument(_) => 3,
            EmulatorError::RouteNotFound(_) | EmulatorError::NotFound(_) => 5,
            EmulatorError::AlreadyExists(_) => 6,
            EmulatorError::FailedPrecondition(_) => 9,
            EmulatorError::Aborted(_) => 10,
        }
    }
}

/// How often an idle Listen stream hears a global `NO_CHANGE` by default.
pub const LISTEN_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// State shared by every clone of an [`Emulator`].
#[derive(Debug)]
struct Shared {
    state: Mutex<store::State>,
    clock: clock::Clock,
    /// An idle Listen stream with targets hears a global `NO_CHANGE` with
    /// a fresh read time this often, as Firestore's heartbeat (zero: never).
    heartbeat: std::time::Duration,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            state: Mutex::default(),
            clock: clock::Clock::default(),
            heartbeat: LISTEN_HEARTBEAT,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, store::State> {
        // Nothing panics while holding the lock, and a poisoned map is
        // still consistent: every change is applied after validation.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An in-memory Firestore; clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Emulator {
    pub fn new() -> Emulator {
        Emulator::default()
    }

    /// An emulator whose idle Listen streams hear a heartbeat every
    /// `every` ([`LISTEN_HEARTBEAT`] by default; zero: never, a silent
    /// stream for tests of watchdogs).
    pub fn with_listen_heartbeat(every: std::time::Duration) -> Emulator {
        Emulator {
            shared: Arc::new(Shared {
                heartbeat: every,
                ..Shared::default()
            }),
        }
    }

    /// Answer one Firestore request, gRPC (by its content type) or REST.
    /// Any `Authorization` is accepted.
    pub async fn handle(&self, request: Request<Body>) -> Response<Body> {
        if grpc::is_grpc(&request) {
            return grpc::handle(Arc::clone(&self.shared), request).await;
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut response = if method == Method::OPTIONS {
            preflight()
        } else {
            let (parts, body) = request.into_parts();
            let outcome = match routes::read_body(body).await {
                Ok(bytes) => routes::route(&self.shared, &parts, &bytes).map(Answer::into_response),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(response) => response,
                Err(error) => {
                    tracing::debug!(%method, %path, reason = error.reason(), "emulator refused");
                    error.api_error().to_response()
                }
            }
        };
        tracing::debug!(%method, %path, status = response.status().as_u16(), "emulator");
        // Browsers using Firebase's SDK call the emulator cross-origin.
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        response
    }

    /// Store a document (create or replace), e.g. to seed sample data.
    /// `database` is `projects/P/databases/D`, `path` like `catalog/svc-a`,
    /// `fields` a Firestore `fields` map in JSON.
    pub fn put(&self, database: &str, path: &str, fields: Json) -> Result<(), EmulatorError> {
        let path: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        let name = store::document_name(database, &path);
        let update =
            serde_json::json!({ "update": { "name": name, "fields": wire::normalize(fields) } });
        let write = write::Write::parse(database, &update)?;
        let now = self.shared.clock.now();
        write::commit(&mut self.shared.lock(), database, &[write], now).map(|_| ())
    }

    /// A stored document's `fields` in JSON, if it exists.
    pub fn fields(&self, database: &str, path: &str) -> Option<Json> {
        let path: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        let state = self.shared.lock();
        state
            .get(database, &path)
            .map(|doc| values::fields_to_json(&doc.fields))
    }
}

/// What a method answers, before it is put on a wire: one JSON object, or
/// the elements of a streamed JSON array (one gRPC message each).
#[derive(Debug)]
pub enum Answer {
    Object(Json),
    Stream(Vec<Json>),
}

impl Answer {
    fn into_response(self) -> Response<Body> {
        match self {
            Answer::Object(json) => json_response(json),
            Answer::Stream(elements) => stream::json_array(elements),
        }
    }
}

fn json_response(json: Json) -> Response<Body> {
    let mut response = Response::new(body::full(json.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn preflight() -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    response
}
