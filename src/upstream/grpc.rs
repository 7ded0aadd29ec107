//! The gRPC channel to Firestore: one pooled HTTP/2 connection per upstream
//! (ALPN `h2` to Google, h2c prior knowledge to an `http://` emulator),
//! multiplexing every gRPC call; responses stream back, trailers included.

use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::client::UpstreamError;
use super::headers::{self, Forwarding};
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
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: Authority,
    response_header_timeout: Duration,
}

impl GrpcUpstream {
    pub fn new(settings: &UpstreamSettings) -> anyhow::Result<Self> {
        let (tls, http) = super::client::dialer(settings)?;
        // gRPC is HTTP/2 or nothing: with only `h2` offered by ALPN, a server
        // that cannot do it fails the handshake instead of answering HTTP/1.1.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        let client = super::client::pooled(settings)
            .http2_only(true)
            // Long-lived Listen streams sit idle between changes; pings keep
            // NATs and Google's front end from dropping the connection.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            .build(connector);
        Ok(GrpcUpstream {
            client,
            scheme: settings.scheme.clone(),
            authority: settings.authority.clone(),
            response_header_timeout: settings.response_header_timeout,
        })
    }

    /// Send one call; the response streams back with its trailers.
    pub async fn forward(
        &self,
        out: GrpcOutbound<'_>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.call(out, Some(self.response_header_timeout)).await
    }

    /// Open a bidirectional stream (Listen). No response-head deadline: a
    /// server may hold its headers until it has something to say, and the
    /// request side is already streaming.
    pub async fn open_stream(
        &self,
        out: GrpcOutbound<'_>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.call(out, None).await
    }

    async fn call(
        &self,
        out: GrpcOutbound<'_>,
        head_timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, UpstreamError> {
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
        let sent = self.client.request(request);
        let result = match head_timeout {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Err(_) => Err(UpstreamError::ResponseHeaderTimeout),
                Ok(result) => result.map_err(UpstreamError::from_client),
            },
            None => sent.await.map_err(UpstreamError::from_client),
        };
        if let Err(err) = &result {
            tracing::warn!(reason = err.reason(), error = %err, "upstream gRPC call failed");
        }
        let (mut parts, body) = result?.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}
