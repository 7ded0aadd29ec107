//! The gRPC channel to Firestore: a pool of HTTP/2 connections
//! ([`super::pool`]; ALPN `h2` to Google, h2c prior knowledge to an
//! `http://` emulator), multiplexing the gRPC calls; responses stream back,
//! trailers included.

use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version, header};
use hyper_rustls::HttpsConnectorBuilder;

use super::client::UpstreamError;
use super::headers::{self, Forwarding};
use super::pool::{Leased, NotHttp2, Pool, PoolMetrics};
use super::{AccessToken, UpstreamSettings};
use crate::body::Body;

/// Everything one upstream gRPC call needs.
pub struct GrpcOutbound<'a> {
    /// `/google.firestore.v1.Firestore/{Method}`.
    pub path: &'static str,
    pub client_headers: &'a HeaderMap,
    pub forwarding: Forwarding<'a>,
    /// The caller's remaining deadline, already formatted.
    pub timeout: Option<HeaderValue>,
    pub token: &'a AccessToken,
    pub body: Body,
}

/// The HTTP/2-only client for gRPC calls.
pub struct GrpcUpstream {
    pool: Pool,
    scheme: Scheme,
    authority: Authority,
    response_header_timeout: Duration,
}

impl GrpcUpstream {
    pub fn new(settings: &UpstreamSettings, metrics: PoolMetrics) -> anyhow::Result<Self> {
        let (tls, http) = super::client::dialer(settings)?;
        // gRPC is HTTP/2 or nothing: with only `h2` offered by ALPN, a server
        // that cannot do it fails the handshake instead of answering HTTP/1.1.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        let pool = Pool::new(
            settings.pool,
            connector,
            super::client::base(&settings.scheme, &settings.authority),
            settings.connect_timeout,
            metrics,
        );
        Ok(GrpcUpstream {
            pool,
            scheme: settings.scheme.clone(),
            authority: settings.authority.clone(),
            response_header_timeout: settings.response_header_timeout,
        })
    }

    /// Send one call; the response streams back with its trailers.
    pub async fn forward(&self, out: GrpcOutbound<'_>) -> Result<Response<Leased>, UpstreamError> {
        let long = long_lived_grpc(out.path);
        self.call(out, Some(self.response_header_timeout), long)
            .await
    }

    /// Open a bidirectional stream (Listen). No response-head deadline: a
    /// server may hold its headers until it has something to say, and the
    /// request side is already streaming.
    pub async fn open_stream(
        &self,
        out: GrpcOutbound<'_>,
    ) -> Result<Response<Leased>, UpstreamError> {
        self.call(out, None, true).await
    }

    async fn call(
        &self,
        out: GrpcOutbound<'_>,
        head_timeout: Option<Duration>,
        long: bool,
    ) -> Result<Response<Leased>, UpstreamError> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(out.path)
            .build()
            .map_err(|err| UpstreamError::InvalidRequest(err.to_string()))?;
        let mut request = Request::builder()
            .method(http::Method::POST)
            .version(Version::HTTP_2)
            .uri(uri)
            .body(out.body)
            .map_err(|err| UpstreamError::InvalidRequest(err.to_string()))?;
        let h = request.headers_mut();
        *h = headers::grpc_outbound(out.client_headers, &out.forwarding);
        h.insert(header::AUTHORIZATION, out.token.authorization.clone());
        if let Some(timeout) = out.timeout {
            h.insert("grpc-timeout", timeout);
        }
        let sent = async {
            self.pool
                .send(request, long)
                .await
                .map_err(|err| match err {
                    Ok((NotHttp2, _)) => UpstreamError::ConnectFailed(
                        "the upstream does not speak HTTP/2 (ALPN)".into(),
                    ),
                    Err(err) => err,
                })
        };
        let result = match head_timeout {
            Some(limit) => tokio::time::timeout(limit, sent)
                .await
                .unwrap_or(Err(UpstreamError::ResponseHeaderTimeout)),
            None => sent.await,
        };
        if let Err(err) = &result {
            tracing::warn!(reason = err.reason(), error = %err, "upstream gRPC call failed");
        }
        let (mut parts, body) = result?.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}

/// The gRPC methods whose answer streams for as long as the data (or the
/// caller) lasts: they may not take the streams kept for unary calls.
fn long_lived_grpc(path: &str) -> bool {
    matches!(
        path.rsplit('/').next(),
        Some("RunQuery" | "BatchGetDocuments" | "RunAggregationQuery" | "Listen" | "Write")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_that_last_are_long_lived_and_unary_calls_are_not() {
        for method in [
            "Listen",
            "Write",
            "RunQuery",
            "BatchGetDocuments",
            "RunAggregationQuery",
        ] {
            assert!(long_lived_grpc(&format!(
                "/google.firestore.v1.Firestore/{method}"
            )));
        }
        for method in ["GetDocument", "Commit", "BeginTransaction", "ListDocuments"] {
            assert!(!long_lived_grpc(&format!(
                "/google.firestore.v1.Firestore/{method}"
            )));
        }
    }
}
