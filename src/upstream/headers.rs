//! Header hygiene between client and upstream: hop-by-hop headers (RFC 9110
//! §7.6.1), client credentials, forwarding headers, routing hints.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Hop-by-hop headers of RFC 9110 §7.6.1 plus the de-facto ones.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The only client headers that reach Firestore: content negotiation and
/// client identification. An allowlist, not a denylist: credentials
/// (`Authorization`, `Cookie`, `X-Goog-Api-Key`), method overrides, Google
/// system headers (`X-Goog-User-Project`, `X-Goog-FieldMask`, …), routing
/// hints and forwarding headers are dropped, and so is any header nobody
/// has thought about yet that could change what Firestore does.
static FORWARDED: [HeaderName; 6] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_TYPE,
    header::USER_AGENT,
    HeaderName::from_static("x-goog-api-client"),
];

// Names looked up on every request, parsed once (a `&str` name is parsed
// and hashed anew at each lookup).
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The request id firegate answers with and forwards.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_GOOG_REQUEST_PARAMS: HeaderName = HeaderName::from_static("x-goog-request-params");
static GOOGLE_CLOUD_RESOURCE_PREFIX: HeaderName =
    HeaderName::from_static("google-cloud-resource-prefix");

/// The request's W3C `traceparent` (version `00`:
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower-case, ids
/// not all zero), or `None` when absent, repeated or malformed.
pub fn traceparent(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let b = value.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &[u8]| s.iter().any(|c| *c != b'0');
    let well_formed = b.len() == 55
        && &b[..3] == b"00-"
        && b[35] == b'-'
        && b[52] == b'-'
        && hex(&b[3..35])
        && hex(&b[36..52])
        && hex(&b[53..55])
        && nonzero(&b[3..35])
        && nonzero(&b[36..52]);
    well_formed.then_some(value)
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded,
/// as Google's clients encode `x-goog-request-params` values.
const PARAM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The header names listed in every `Connection` header (case-folded by
/// `HeaderName`).
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
}

/// Remove hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few headers an answer has, marking which of the
    // hop-by-hop names are there; then only those are removed (each
    // removal hashes its name anew).
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // `HOP_BY_HOP[0]` is `Connection`: only it can name more.
    // (`Connection: keep-alive` names one of the list: nothing to collect.)
    if present[0] {
        let named: Vec<HeaderName> = connection_named(headers)
            .filter(|name| !HOP_BY_HOP.contains(name))
            .collect();
        for name in named {
            headers.remove(&name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(name);
    }
}

/// The client's address after honouring `X-Forwarded-For` from trusted proxies:
/// walk the chain right to left and stop at the first untrusted hop. A chain
/// with an unparsable entry is ignored as a whole.
pub fn client_ip(remote: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(remote, trusted) {
        return remote;
    }
    let mut client = remote;
    let hops: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
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

/// An address as `Display` writes it; IPv4 without the formatting machinery
/// (it is written into every forwarded request).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// What the upstream request carries besides the client's safe headers.
pub struct Forwarding<'a> {
    /// The peer of the client connection.
    pub remote: IpAddr,
    pub trusted: &'a [IpNet],
    /// `https` or `http`, as the peer reached firegate.
    pub proto: &'static str,
    pub request_id: &'a str,
    /// `projects/P/databases/D`, taken from the URL.
    pub database: &'a str,
    /// `database`'s routing headers when made ahead (a served database).
    pub routing: Option<&'a Routing>,
}

/// The routing headers of one database: `x-goog-request-params` and
/// `google-cloud-resource-prefix`. Made once per served database instead of
/// on every request.
#[derive(Debug, Clone)]
pub struct Routing {
    params: Option<HeaderValue>,
    prefix: Option<HeaderValue>,
}

impl Routing {
    pub fn of(database: &str) -> Routing {
        let params = format!("database={}", utf8_percent_encode(database, PARAM_VALUE));
        Routing {
            params: HeaderValue::try_from(params).ok(),
            prefix: HeaderValue::from_str(database).ok(),
        }
    }
}

/// Build the upstream request headers from the client's. `Host` and
/// `Authorization` are set by the client from the config and the minted token.
pub fn outbound(client: &HeaderMap, fwd: &Forwarding<'_>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(FORWARDED.len() + 5);
    // RFC 9110 §7.6.1: a header the client named in `Connection` is meant for
    // this hop only, whatever its name; the allowlist does not bring it back.
    let hop_only: Vec<HeaderName> = connection_named(client).collect();
    for name in &FORWARDED {
        if hop_only.contains(name) {
            continue;
        }
        for value in client.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    let trusted_peer = is_trusted(fwd.remote, fwd.trusted);
    let prior: Vec<&str> = if trusted_peer {
        client
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let chain = if prior.is_empty() {
        ip_text(fwd.remote)
    } else {
        format!("{}, {}", prior.join(", "), fwd.remote)
    };
    // Owned strings become header values without a copy.
    if let Ok(v) = HeaderValue::try_from(chain) {
        out.insert(X_FORWARDED_FOR.clone(), v);
    }
    // A trusted TLS-terminating balancer knows how the client really came in.
    let proto = client
        .get(&X_FORWARDED_PROTO)
        .filter(|_| trusted_peer)
        .and_then(|v| match v.as_bytes() {
            b"https" => Some("https"),
            b"http" => Some("http"),
            _ => None,
        })
        .unwrap_or(fwd.proto);
    out.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_str(fwd.request_id) {
        out.insert(X_REQUEST_ID.clone(), v);
    }
    // Trace context continues upstream only when well-formed; a malformed
    // one is dropped, as W3C Trace Context asks of a vendor that cannot parse it.
    if let Some(v) = client
        .get(&TRACEPARENT)
        .filter(|_| traceparent(client).is_some())
    {
        out.insert(TRACEPARENT.clone(), v.clone());
    }
    let made;
    let routing = match fwd.routing {
        Some(routing) => routing,
        None => {
            made = Routing::of(fwd.database);
            &made
        }
    };
    if let Some(v) = &routing.params {
        out.insert(X_GOOG_REQUEST_PARAMS.clone(), v.clone());
    }
    if let Some(v) = &routing.prefix {
        out.insert(GOOGLE_CLOUD_RESOURCE_PREFIX.clone(), v.clone());
    }
    out
}

/// The upstream headers of a gRPC call: [`outbound`]'s allowlist, forwarding
/// and regenerated routing headers, with HTTP-level content negotiation
/// dropped (gRPC does not use it) and the gRPC framing fixed: messages are
/// re-encoded uncompressed, and responses are asked for uncompressed so a
/// transaction id in them can be sealed. `grpc-timeout` is set by the caller
/// from what is left of the deadline.
pub fn grpc_outbound(client: &HeaderMap, fwd: &Forwarding<'_>) -> HeaderMap {
    let mut out = outbound(client, fwd);
    for name in ["accept", "accept-encoding", "accept-language"] {
        out.remove(name);
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    // The one `TE` value HTTP/2 allows, and the one gRPC servers require.
    out.insert(header::TE, HeaderValue::from_static("trailers"));
    out.insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn nets(cidrs: &[&str]) -> Vec<IpNet> {
        cidrs.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn fwd<'a>(remote: &str, trusted: &'a [IpNet]) -> Forwarding<'a> {
        Forwarding {
            remote: remote.parse().unwrap(),
            trusted,
            proto: "https",
            request_id: "req-1",
            database: "projects/p/databases/(default)",
            routing: None,
        }
    }

    #[test]
    fn a_well_formed_traceparent_goes_upstream_and_a_malformed_one_is_dropped() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let out = outbound(&map(&[("traceparent", good)]), &fwd("10.0.0.1", &[]));
        assert_eq!(
            out.get("traceparent").map(|v| v.to_str().unwrap()),
            Some(good)
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "",
        ] {
            let client = map(&[("traceparent", bad)]);
            assert_eq!(traceparent(&client), None, "{bad}");
            let out = outbound(&client, &fwd("10.0.0.1", &[]));
            assert!(out.get("traceparent").is_none(), "{bad} was forwarded");
        }
        let twice = map(&[("traceparent", good), ("traceparent", good)]);
        assert_eq!(traceparent(&twice), None, "a repeated header is ambiguous");
        assert!(
            outbound(&twice, &fwd("10.0.0.1", &[]))
                .get("traceparent")
                .is_none()
        );
        let tracestate = map(&[("tracestate", "vendor=secret")]);
        assert!(
            outbound(&tracestate, &fwd("10.0.0.1", &[]))
                .get("tracestate")
                .is_none()
        );
    }

    #[test]
    fn credentials_overrides_and_hop_by_hop_never_go_upstream() {
        let client = map(&[
            ("authorization", "Bearer client-token"),
            ("proxy-authorization", "Basic abc"),
            ("cookie", "session=1"),
            ("x-http-method-override", "DELETE"),
            ("x-goog-api-key", "k"),
            ("x-goog-user-project", "other"),
            ("x-goog-fieldmask", "name"),
            ("x-goog-request-params", "database=projects%2Fevil"),
            ("google-cloud-resource-prefix", "projects/evil"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("transfer-encoding", "chunked"),
            ("host", "firegate.example"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-unknown-google-knob", "1"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", "test/1"),
            ("x-goog-api-client", "gl-node/20"),
        ]);
        let out = outbound(&client, &fwd("10.0.0.9", &[]));
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "content-type",
                "google-cloud-resource-prefix",
                "user-agent",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-goog-api-client",
                "x-goog-request-params",
                "x-request-id",
            ]
        );
        assert_eq!(
            out["google-cloud-resource-prefix"],
            "projects/p/databases/(default)"
        );
    }

    #[test]
    fn allowlisted_headers_named_in_connection_stay_on_this_hop() {
        let client = map(&[
            ("connection", "User-Agent, X-Goog-Api-Client"),
            ("connection", "accept"),
            ("user-agent", "test/1"),
            ("x-goog-api-client", "gl-node/20"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
        ]);
        let out = outbound(&client, &fwd("10.0.0.9", &[]));
        for name in ["user-agent", "x-goog-api-client", "accept", "connection"] {
            assert!(out.get(name).is_none(), "{name} forwarded: {out:?}");
        }
        assert_eq!(out["content-type"], "application/json");
    }

    #[test]
    fn request_params_are_url_encoded() {
        let out = outbound(&HeaderMap::new(), &fwd("10.0.0.9", &[]));
        assert_eq!(
            out["x-goog-request-params"],
            "database=projects%2Fp%2Fdatabases%2F%28default%29"
        );
        assert_eq!(out["x-request-id"], "req-1");
    }

    #[test]
    fn untrusted_peer_forwarded_for_is_replaced() {
        let client = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
        ]);
        let trusted = nets(&["10.0.0.0/8"]);
        let out = outbound(&client, &fwd("192.0.2.7", &trusted));
        assert_eq!(out["x-forwarded-for"], "192.0.2.7");
        assert_eq!(out["x-forwarded-proto"], "https");
    }

    #[test]
    fn trusted_peer_forwarded_for_is_extended() {
        let client = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "http"),
        ]);
        let trusted = nets(&["10.0.0.0/8"]);
        let out = outbound(&client, &fwd("10.0.0.2", &trusted));
        assert_eq!(out["x-forwarded-for"], "198.51.100.1, 10.1.1.1, 10.0.0.2");
        assert_eq!(out["x-forwarded-proto"], "http");
    }

    #[test]
    fn default_trusts_no_one() {
        let client = map(&[("x-forwarded-for", "198.51.100.1")]);
        let out = outbound(&client, &fwd("127.0.0.1", &[]));
        assert_eq!(out["x-forwarded-for"], "127.0.0.1");
        let ip = client_ip("127.0.0.1".parse().unwrap(), &client, &[]);
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn client_ip_stops_at_first_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let client = map(&[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.1.1.1")]);
        let ip = client_ip("10.0.0.2".parse().unwrap(), &client, &trusted);
        assert_eq!(ip, "198.51.100.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn client_ip_ignores_a_garbled_chain() {
        let trusted = nets(&["10.0.0.0/8"]);
        let client = map(&[("x-forwarded-for", "198.51.100.1, not-an-ip")]);
        let ip = client_ip("10.0.0.2".parse().unwrap(), &client, &trusted);
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ip_text_writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "192.168.9.10",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 0, octet, 9]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn strip_hop_by_hop_removes_connection_named_headers() {
        let mut h = map(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type"]);
    }
}
