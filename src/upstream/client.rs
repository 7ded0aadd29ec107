//! The pooled, streaming hyper client that forwards to Firestore: HTTP/2 over
//! TLS (ALPN) to Google, plain HTTP/1.1 to an `http://` emulator.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, Uri, header};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::headers::{self, Forwarding};
use super::pool::{Leased, NotHttp2, Pool, PoolMetrics};
use super::{AccessToken, UpstreamSettings};
use crate::body::Body;

/// Why forwarding failed, by condition. The client sees a fixed message
/// (`pipeline::respond`); the reason goes to the audit line.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no TCP connection to the upstream within connect_timeout")]
    ConnectTimeout,
    #[error("cannot connect to the upstream: {0}")]
    ConnectFailed(String),
    #[error("no response head from the upstream within response_header_timeout")]
    ResponseHeaderTimeout,
    #[error("the upstream connection failed mid-request: {0}")]
    ProtocolError(String),
    #[error("the upstream request could not be built: {0}")]
    InvalidRequest(String),
}

impl UpstreamError {
    /// A short, stable reason for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::ConnectTimeout => "upstream_connect_timeout",
            UpstreamError::ConnectFailed(_) => "upstream_connect_failed",
            UpstreamError::ResponseHeaderTimeout => "upstream_response_timeout",
            UpstreamError::ProtocolError(_) => "upstream_protocol_error",
            UpstreamError::InvalidRequest(_) => "upstream_request_invalid",
        }
    }

    pub(super) fn from_client(err: hyper_util::client::legacy::Error) -> Self {
        if !err.is_connect() {
            return UpstreamError::ProtocolError(crate::error::chain(&err));
        }
        UpstreamError::from_connect(&err)
    }

    /// A failed dial: past `connect_timeout`, or refused, unreachable, TLS.
    pub(super) fn from_connect(err: &(dyn std::error::Error + 'static)) -> Self {
        let detail = crate::error::chain(err);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return UpstreamError::ConnectTimeout;
            }
            source = cause.source();
        }
        UpstreamError::ConnectFailed(detail)
    }
}

/// Everything `forward` needs to build the upstream request.
pub struct Outbound<'a> {
    pub method: http::Method,
    /// Canonical path and query (client API keys already stripped).
    pub path_and_query: &'a str,
    /// The client's headers; sanitized by [`headers::outbound`] before use.
    pub client_headers: &'a HeaderMap,
    /// The peer address of the client connection (the hop `X-Forwarded-For`
    /// extends).
    pub client_ip: IpAddr,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: &'a [IpNet],
    /// `https` or `http`, as the client reached firegate.
    pub client_proto: &'static str,
    pub request_id: &'a str,
    /// `projects/P/databases/D`, for the regenerated routing header.
    pub database: &'a str,
    pub token: &'a AccessToken,
    pub body: Body,
}

/// Scheme and authority of the upstream base URL, or why it is unusable.
pub(super) fn base_uri(url: &str) -> Result<(Scheme, Authority), String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL like https://firestore.googleapis.com"))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::HTTPS,
        Some("http") => Scheme::HTTP,
        _ => return Err(format!("`{url}`: the scheme must be https or http")),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{url}`: no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{url}`: credentials in the URL are not allowed"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{url}`: give only scheme, host and port"));
    }
    Ok((scheme, authority))
}

/// The URI a connector dials: scheme and authority only.
pub(super) fn base(scheme: &Scheme, authority: &Authority) -> Uri {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .unwrap_or_default()
}

/// A REST call whose answer streams for as long as the data lasts
/// (`:runQuery`, `:batchGet`, `:runAggregationQuery`): it may not take the
/// streams kept for the rest.
fn long_lived_rest(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or_default();
    [":runQuery", ":batchGet", ":runAggregationQuery"]
        .iter()
        .any(|rpc| path.ends_with(rpc))
}

/// Read extra trusted roots from a PEM file.
pub(super) fn load_roots(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let roots = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: unreadable PEM certificates", path.display()))?;
    anyhow::ensure!(!roots.is_empty(), "{}: no certificate", path.display());
    Ok(roots)
}

pub(super) fn root_store(extra: &[CertificateDer<'static>]) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Native roots add a corporate CA when the system has one; a broken
    // system store must not stop firegate, the webpki set is enough for Google.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for root in extra {
        roots
            .add(root.clone())
            .context("upstream.ca_file: unusable root")?;
    }
    Ok(roots)
}

/// An upstream request's outcome as a label: the status code, or why there
/// was none. Counting it allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Outcome {
    Status(u16),
    Failed(&'static str),
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Outcome::Status(code) => code.encode(encoder),
            Outcome::Failed(reason) => reason.encode(encoder),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// Upstream requests by outcome (status code or failure reason).
#[derive(Clone)]
struct UpstreamMetrics {
    requests: Family<OutcomeLabels, Counter>,
    /// The status outcomes, counted without hashing their labels.
    by_status: crate::metrics::Resolved,
}

impl UpstreamMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = UpstreamMetrics {
            requests: Family::default(),
            by_status: crate::metrics::Resolved::statuses(),
        };
        registry.register(
            "upstream_requests",
            "Requests forwarded upstream, by outcome",
            m.requests.clone(),
        );
        m
    }

    fn count(&self, outcome: Outcome) {
        let index = match outcome {
            Outcome::Status(status) => crate::metrics::Resolved::status(status),
            Outcome::Failed(_) => None,
        };
        self.by_status.inc(index, || {
            self.requests
                .get_or_create(&OutcomeLabels { outcome })
                .clone()
        });
    }
}

/// The pooled, streaming client to Firestore.
pub struct Upstream {
    /// HTTP/1.1: an `http://` emulator, or an `https` server that chose it.
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// HTTP/2 to an `https` upstream (Google), many streams per connection.
    pool: Option<Pool>,
    /// The `https` upstream answered ALPN with HTTP/1.1: the pool is not used.
    http1_only: AtomicBool,
    /// The gRPC client's pool metrics, registered with these.
    pub(super) grpc_pool_metrics: PoolMetrics,
    scheme: Scheme,
    authority: Authority,
    response_header_timeout: Duration,
    metrics: UpstreamMetrics,
    /// Routing headers of every served database, made once.
    routing: std::collections::HashMap<String, headers::Routing>,
}

/// The TLS settings and TCP connector both upstream clients (REST and
/// gRPC) dial Firestore with: TLS 1.2/1.3 to the configured roots, no Nagle,
/// the connect timeout.
pub(super) fn dialer(
    settings: &UpstreamSettings,
) -> anyhow::Result<(rustls::ClientConfig, HttpConnector)> {
    let tls = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2/1.3 with the aws-lc-rs provider")?
        .with_root_certificates(root_store(&settings.ca_roots)?)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    Ok((tls, http))
}

/// The pool settings both upstream clients share: tokio timers, idle
/// connections closed after 90 s, at most `max_idle_connections` kept.
pub(super) fn pooled(settings: &UpstreamSettings) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(settings.max_idle_connections);
    builder
}

impl Upstream {
    pub fn new(settings: &UpstreamSettings, registry: &mut Registry) -> anyhow::Result<Self> {
        let (tls, http) = dialer(settings)?;
        // ALPN offers h2 first: Google answers HTTP/2; `http://` stays HTTP/1.1.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = pooled(settings).build(connector.clone());
        let [rest_metrics, grpc_pool_metrics] = PoolMetrics::register(registry);
        let pool = (settings.scheme == Scheme::HTTPS).then(|| {
            Pool::new(
                settings.pool,
                connector,
                base(&settings.scheme, &settings.authority),
                settings.connect_timeout,
                rest_metrics,
            )
        });
        Ok(Upstream {
            client,
            pool,
            http1_only: AtomicBool::new(false),
            grpc_pool_metrics,
            scheme: settings.scheme.clone(),
            authority: settings.authority.clone(),
            response_header_timeout: settings.response_header_timeout,
            metrics: UpstreamMetrics::register(registry),
            routing: settings
                .databases
                .iter()
                .map(|db| {
                    let name = db.to_string();
                    let routing = headers::Routing::of(&name);
                    (name, routing)
                })
                .collect(),
        })
    }

    /// Step 5: send the request, stream the response back. The response body
    /// is never buffered; its hop-by-hop headers are already removed.
    pub async fn forward(&self, out: Outbound<'_>) -> Result<Response<Leased>, UpstreamError> {
        let result = self.send(out).await;
        match &result {
            Ok(response) => self
                .metrics
                .count(Outcome::Status(response.status().as_u16())),
            Err(err) => {
                tracing::warn!(reason = err.reason(), error = %err, "upstream request failed");
                self.metrics.count(Outcome::Failed(err.reason()));
            }
        }
        let (mut parts, body) = result?.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }

    async fn send(&self, out: Outbound<'_>) -> Result<Response<Leased>, UpstreamError> {
        // The authority comes from the config, so `Host` (HTTP/1.1) and
        // `:authority` (HTTP/2) name the upstream, never the client's host.
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(out.path_and_query)
            .build()
            .map_err(|err| UpstreamError::InvalidRequest(err.to_string()))?;
        let mut request = Request::builder()
            .method(out.method)
            .uri(uri)
            .body(out.body)
            .map_err(|err| UpstreamError::InvalidRequest(err.to_string()))?;
        *request.headers_mut() = headers::outbound(
            out.client_headers,
            &Forwarding {
                remote: out.client_ip,
                trusted: out.trusted_proxies,
                proto: out.client_proto,
                request_id: out.request_id,
                database: out.database,
                routing: self.routing.get(out.database),
            },
        );
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, out.token.authorization.clone());
        let long = long_lived_rest(out.path_and_query);
        tokio::time::timeout(self.response_header_timeout, self.request(request, long))
            .await
            .unwrap_or(Err(UpstreamError::ResponseHeaderTimeout))
    }

    async fn request(
        &self,
        mut request: Request<Body>,
        long: bool,
    ) -> Result<Response<Leased>, UpstreamError> {
        if let Some(pool) = &self.pool
            && !self.http1_only.load(Ordering::Relaxed)
        {
            match pool.send(request, long).await {
                Ok(response) => return Ok(response),
                Err(Err(err)) => return Err(err),
                Err(Ok((NotHttp2, given_back))) => {
                    tracing::info!("the upstream chose HTTP/1.1 by ALPN; REST calls use it");
                    self.http1_only.store(true, Ordering::Relaxed);
                    request = given_back;
                }
            }
        }
        match self.client.request(request).await {
            Ok(response) => Ok(response.map(Leased::unpooled)),
            Err(err) => Err(UpstreamError::from_client(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_rest_reads_are_long_lived() {
        let docs = "/v1/projects/p/databases/(default)/documents";
        assert!(long_lived_rest(&format!("{docs}:runQuery")));
        assert!(long_lived_rest(&format!("{docs}/a/b:runQuery?alt=json")));
        assert!(long_lived_rest(&format!("{docs}:batchGet")));
        assert!(!long_lived_rest(&format!("{docs}:commit")));
        assert!(!long_lived_rest(&format!("{docs}/a/b")));
    }

    #[test]
    fn base_uri_accepts_scheme_host_port_only() {
        assert!(base_uri("https://firestore.googleapis.com").is_ok());
        assert!(base_uri("http://127.0.0.1:8081/").is_ok());
        for bad in [
            "ftp://x",
            "firestore.googleapis.com",
            "https://u:p@firestore.googleapis.com",
            "https://firestore.googleapis.com/v1",
            "https://firestore.googleapis.com?x=1",
            "",
        ] {
            assert!(base_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
