//! Header hygiene between client and upstream: hop-by-hop headers (RFC 9110
//! §7.6.1), client credentials, forwarding headers, routing hints.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Hop-by-hop headers of RFC 9110 §7.6.1 plus the de-facto ones.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Client headers that must never reach Firestore: credentials, method
/// overrides, routing hints we regenerate, and forwarding headers we rebuild.
const NEVER_FORWARD: &[&str] = &[
    "authorization",
    "cookie",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-goog-api-key",
    "x-goog-request-params",
    "google-cloud-resource-prefix",
    "x-goog-user-project",
    "x-goog-fieldmask",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "host",
    "content-length",
];

/// Remove hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The client's address after honouring `X-Forwarded-For` from trusted proxies:
/// walk the chain right to left and stop at the first untrusted hop.
pub fn client_ip(remote: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(remote, trusted) {
        return remote;
    }
    let mut client = remote;
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map(|hop| hop.parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(hop, trusted) {
            break;
        }
    }
    client
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// What the upstream request carries besides the client's safe headers.
pub struct Forwarding<'a> {
    pub remote: IpAddr,
    pub trusted: &'a [IpNet],
    pub proto: &'static str,
    pub request_id: &'a str,
    pub database: &'a str,
}

/// Build the upstream request headers from the client's.
pub fn outbound(client: &HeaderMap, fwd: &Forwarding<'_>) -> HeaderMap {
    let mut out = client.clone();
    strip_hop_by_hop(&mut out);
    for name in NEVER_FORWARD {
        out.remove(*name);
    }
    let chain = if is_trusted(fwd.remote, fwd.trusted) {
        let prior: Vec<&str> = client
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            fwd.remote.to_string()
        } else {
            format!("{}, {}", prior.join(", "), fwd.remote)
        }
    } else {
        fwd.remote.to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        out.insert("x-forwarded-for", v);
    }
    out.insert("x-forwarded-proto", HeaderValue::from_static(fwd.proto));
    if let Ok(v) = HeaderValue::from_str(fwd.request_id) {
        out.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("database={}", fwd.database)) {
        out.insert("x-goog-request-params", v);
    }
    out
}
