//! The upstream half of a Listen stream: opened with the first allowed
//! target, its request side fed from a channel, its response read frame by
//! frame; dropping it cancels the call.

use crate::upstream::Leased;
use bytes::Bytes;
use futures_channel::mpsc;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use crate::grpc::frame;
use crate::upstream::UpstreamError;

/// The upstream half of the stream: opened with the first allowed target,
/// under that decision's upstream identity.
pub(super) enum Upstream {
    Closed,
    Opening {
        account: Option<String>,
        tx: mpsc::Sender<Bytes>,
        call: AbortOnDrop<Result<Response<Leased>, UpstreamError>>,
    },
    Open {
        account: Option<String>,
        tx: Option<mpsc::Sender<Bytes>>,
        body: Leased,
        deframer: frame::Deframer,
    },
}

impl Upstream {
    /// The upstream identity of the stream (`None`: the default account,
    /// or no upstream call yet).
    pub(super) fn account(&self) -> &Option<String> {
        const NONE: &Option<String> = &None;
        match self {
            Upstream::Closed => NONE,
            Upstream::Opening { account, .. } | Upstream::Open { account, .. } => account,
        }
    }
}

/// A spawned call that ends with the stream (cancellation reaches upstream).
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `grpc-status` and `grpc-message` of upstream, passed on as they are.
pub(super) fn grpc_status_of(headers: &HeaderMap) -> HeaderMap {
    let mut end = HeaderMap::new();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        if let Some(v) = headers.get(name) {
            end.insert(name, v.clone());
        }
    }
    if !end.contains_key("grpc-status") {
        end.insert("grpc-status", HeaderValue::from_static("13"));
    }
    end
}

/// What the upstream half did.
pub(super) enum UpstreamEvent {
    Opened(Result<Result<Response<Leased>, UpstreamError>, tokio::task::JoinError>),
    Frame(Option<Result<Frame<Bytes>, hyper::Error>>),
}

/// The upstream call connected, or its response's next frame; pending
/// while there is no upstream call.
pub(super) async fn upstream_event(upstream: &mut Upstream) -> UpstreamEvent {
    match upstream {
        Upstream::Opening { call, .. } => UpstreamEvent::Opened((&mut call.0).await),
        Upstream::Open { body, .. } => UpstreamEvent::Frame(body.frame().await),
        Upstream::Closed => std::future::pending().await,
    }
}
