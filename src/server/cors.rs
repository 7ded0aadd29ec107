//! CORS for browsers (`server.cors`): preflights answered before
//! authentication, and the `Access-Control-*` headers on answers to allowed
//! origins only. An origin not configured gets no CORS header at all, so the
//! browser refuses to hand the answer to its page.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use crate::body::{self, Body};
use crate::config::errors::ConfigErrors;
use crate::config::value::{default_duration, duration};

/// `server.cors:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// `scheme://host[:port]`; `:*` allows any port (`http://localhost:*`).
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    #[serde(default = "default_headers")]
    pub headers: Vec<String>,
    #[serde(default = "default_max_age")]
    pub max_age: String,
}

impl Default for RawCors {
    fn default() -> Self {
        RawCors {
            origins: Vec::new(),
            methods: default_methods(),
            headers: default_headers(),
            max_age: default_max_age(),
        }
    }
}

fn default_methods() -> Vec<String> {
    ["GET", "POST", "PATCH", "DELETE"].map(String::from).into()
}

/// What the Firestore web clients send (`firebase/firestore/lite` among
/// them), plus the request id and trace context.
fn default_headers() -> Vec<String> {
    [
        "authorization",
        "content-type",
        "x-goog-api-client",
        "google-cloud-resource-prefix",
        "x-goog-request-params",
        "x-firebase-gmpid",
        "x-firebase-appcheck",
        "x-request-id",
        "traceparent",
    ]
    .map(String::from)
    .into()
}

fn default_max_age() -> String {
    default_duration(std::time::Duration::from_secs(600))
}

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    /// Compared byte for byte (lower-cased at load).
    Exact(String),
    /// `scheme://host:` followed by any port.
    AnyPort(String),
}

/// The validated `server.cors:`; `None` in settings when no origin is set.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
}

impl RawCors {
    /// `None` when no origin is configured: CORS is off.
    pub fn validate(self, errors: &mut ConfigErrors) -> Option<Cors> {
        const KEY: &str = "server.cors";
        let origins: Vec<OriginPattern> = self
            .origins
            .iter()
            .enumerate()
            .filter_map(|(i, origin)| {
                parse_origin(origin)
                    .map_err(|why| errors.push(format!("{KEY}.origins[{i}]"), why))
                    .ok()
            })
            .collect();
        let methods: Vec<Method> = self
            .methods
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let upper = m.to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method)
                        if [
                            Method::GET,
                            Method::POST,
                            Method::PATCH,
                            Method::DELETE,
                            Method::PUT,
                            Method::HEAD,
                        ]
                        .contains(&method) =>
                    {
                        Some(method)
                    }
                    _ => {
                        errors.push(
                            format!("{KEY}.methods[{i}]"),
                            format!("`{m}` is not one of GET, POST, PATCH, DELETE, PUT, HEAD"),
                        );
                        None
                    }
                }
            })
            .collect();
        let headers: Vec<String> = self
            .headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Some(name.as_str().to_owned()),
                Err(_) => {
                    errors.push(
                        format!("{KEY}.headers[{i}]"),
                        format!("`{h}` is not a header name"),
                    );
                    None
                }
            })
            .collect();
        let max_age =
            duration(&format!("{KEY}.max_age"), &self.max_age, errors).unwrap_or_default();
        if origins.is_empty() {
            return None;
        }
        let join = |items: Vec<String>| {
            HeaderValue::from_str(&items.join(", ")).unwrap_or(HeaderValue::from_static(""))
        };
        Some(Cors {
            allow_methods: join(methods.iter().map(|m| m.to_string()).collect()),
            methods,
            allow_headers: join(headers),
            max_age: HeaderValue::from(max_age.as_secs()),
            origins,
        })
    }
}

/// `scheme://host[:port|:*]`, nothing else (no path, no `*` host).
fn parse_origin(origin: &str) -> Result<OriginPattern, String> {
    let lower = origin.to_ascii_lowercase();
    let refuse = || {
        format!("`{origin}` is not an origin like https://app.example.com or http://localhost:*")
    };
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(refuse)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']'));
    if !host_ok {
        return Err(refuse());
    }
    match port {
        Some("*") => Ok(OriginPattern::AnyPort(lower[..lower.len() - 1].to_owned())),
        Some(p) if p.parse::<u16>().is_ok() => Ok(OriginPattern::Exact(lower)),
        Some(_) => Err(refuse()),
        None => Ok(OriginPattern::Exact(lower)),
    }
}

impl Cors {
    /// The request's `Origin`, when it is one allowed.
    fn allowed<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let value = headers.get(header::ORIGIN)?;
        let origin = value.to_str().ok()?;
        let allowed = self.origins.iter().any(|p| match p {
            OriginPattern::Exact(o) => origin.eq_ignore_ascii_case(o),
            OriginPattern::AnyPort(prefix) => {
                origin
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
                    && origin[prefix.len()..].parse::<u16>().is_ok()
            }
        });
        allowed.then_some(value)
    }
}

/// A CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) gets its answer here, before
/// authentication: browsers send it without credentials. It carries no
/// data, so it is neither forwarded nor audited. An origin or method not
/// allowed gets a bare 204, which the browser treats as a refusal.
pub fn preflight<B>(cors: Option<&Cors>, req: &Request<B>) -> Option<Response<Body>> {
    let headers = req.headers();
    if req.method() != Method::OPTIONS
        || !headers.contains_key(header::ORIGIN)
        || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(cors) = cors else {
        return Some(response);
    };
    let method_ok = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .is_some_and(|m| cors.methods.contains(&m));
    if let (Some(origin), true) = (cors.allowed(headers), method_ok) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            cors.allow_methods.clone(),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            cors.allow_headers.clone(),
        );
        out.insert(header::ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
    }
    Some(response)
}

/// The `Origin` of a request, kept to [`decorate`] its answer.
pub fn origin<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::ORIGIN).cloned()
}

/// CORS headers on an answer: only for an allowed origin, and never the
/// upstream's own (firegate alone decides which pages may read an answer).
pub fn decorate(cors: Option<&Cors>, origin: Option<&HeaderValue>, response: &mut Response<Body>) {
    let headers = response.headers_mut();
    let upstream: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in upstream {
        headers.remove(name);
    }
    let (Some(cors), Some(origin)) = (cors, origin) else {
        return;
    };
    let mut request_headers = HeaderMap::new();
    request_headers.insert(header::ORIGIN, origin.clone());
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(allowed) = cors.allowed(&request_headers) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed.clone());
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        let raw = RawCors {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            ..RawCors::default()
        };
        ConfigErrors::collect(|errors| raw.validate(errors))
            .expect("valid")
            .expect("on")
    }

    fn preflight_from(cors: &Cors, origin: &str, method: &str) -> Response<Body> {
        let req = Request::builder()
            .method("OPTIONS")
            .uri("/v1/projects/p/databases/(default)/documents:runQuery")
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(())
            .expect("request");
        preflight(Some(cors), &req).expect("a preflight is answered")
    }

    #[test]
    fn an_allowed_origin_gets_the_preflight_headers() {
        let c = cors(&["https://app.example.com"]);
        let r = preflight_from(&c, "https://app.example.com", "POST");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(
            h["access-control-allow-methods"],
            "GET, POST, PATCH, DELETE"
        );
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["vary"], "Origin");
    }

    #[test]
    fn other_origins_and_methods_get_no_cors_headers() {
        let c = cors(&["https://app.example.com", "http://localhost:*"]);
        for (origin, method) in [
            ("https://evil.example.com", "POST"),
            ("https://app.example.com.evil.com", "GET"),
            ("http://app.example.com", "GET"),
            ("http://localhost", "GET"),
            ("http://localhost:8080x", "GET"),
            ("http://localhost.evil.com:80", "GET"),
            ("https://app.example.com", "PUT"),
        ] {
            let r = preflight_from(&c, origin, method);
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            assert!(
                !r.headers().contains_key("access-control-allow-origin"),
                "{origin} {method}"
            );
        }
        let r = preflight_from(&c, "http://localhost:5173", "GET");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "http://localhost:5173"
        );
    }

    #[test]
    fn answers_carry_the_origin_only_when_allowed_and_never_the_upstreams() {
        let c = cors(&["http://127.0.0.1:*"]);
        let answer = || {
            let mut r = Response::new(body::empty());
            r.headers_mut()
                .insert("access-control-allow-origin", HeaderValue::from_static("*"));
            r
        };
        let mut allowed = answer();
        decorate(
            Some(&c),
            Some(&HeaderValue::from_static("http://127.0.0.1:3000")),
            &mut allowed,
        );
        assert_eq!(
            allowed.headers()["access-control-allow-origin"],
            "http://127.0.0.1:3000"
        );
        assert_eq!(
            allowed.headers()["access-control-expose-headers"],
            "x-request-id"
        );
        let mut refused = answer();
        decorate(
            Some(&c),
            Some(&HeaderValue::from_static("https://evil.example")),
            &mut refused,
        );
        assert!(
            !refused
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let mut off = answer();
        decorate(
            None,
            Some(&HeaderValue::from_static("http://127.0.0.1:3000")),
            &mut off,
        );
        assert!(!off.headers().contains_key("access-control-allow-origin"));
    }

    #[test]
    fn a_non_preflight_is_left_to_the_pipeline() {
        let c = cors(&["https://app.example.com"]);
        let plain_options = Request::builder()
            .method("OPTIONS")
            .uri("/")
            .body(())
            .expect("request");
        assert!(preflight(Some(&c), &plain_options).is_none());
        let get = Request::builder()
            .uri("/")
            .header("origin", "https://app.example.com")
            .body(())
            .expect("request");
        assert!(preflight(Some(&c), &get).is_none());
    }

    #[test]
    fn bad_origins_methods_and_headers_are_config_errors() {
        let raw = RawCors {
            origins: vec![
                "*".into(),
                "https://a.example/path".into(),
                "ftp://x".into(),
                "http://ok:*".into(),
            ],
            methods: vec!["GET".into(), "TRACE".into()],
            headers: vec!["bad header".into()],
            max_age: "10m".into(),
        };
        let err = ConfigErrors::collect(|errors| raw.validate(errors)).expect_err("refused");
        let keys: Vec<_> = err.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.cors.origins[0]",
                "server.cors.origins[1]",
                "server.cors.origins[2]",
                "server.cors.methods[1]",
                "server.cors.headers[0]"
            ]
        );
    }
}
