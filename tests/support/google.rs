//! Fakes of Google's token endpoints (metadata server, STS, IAM Credentials)
//! and service-account keys made at test time. Each fake runs on the one
//! [`fake`](super::fake) server, checks what it receives and records every
//! deviation (answering 400) rather than panicking, so a test fails on the
//! deviation it names if firegate sends anything else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::fake::{self, FakeServer, Received};

pub const DATASTORE: &str = "https://www.googleapis.com/auth/datastore";
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";

/// Deviations a fake saw, shared between the server task and the test.
#[derive(Default, Clone)]
pub struct Deviations(Arc<Mutex<Vec<String>>>);

impl Deviations {
    fn push(&self, what: String) {
        self.0.lock().expect("lock").push(what);
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

fn refuse(deviations: &Deviations, what: String) -> (StatusCode, Value) {
    deviations.push(what.clone());
    (
        StatusCode::BAD_REQUEST,
        json!({"error": {"code": 400, "message": what}}),
    )
}

// ---------------------------------------------------------------------------

/// The metadata server: `GET .../service-accounts/default/token` with
/// `Metadata-Flavor: Google`, answering `mds-token-N`.
pub struct FakeMetadata {
    pub server: FakeServer,
    pub deviations: Deviations,
    hits: Arc<AtomicUsize>,
    /// Answer 404 to token requests while set.
    pub broken: Arc<AtomicBool>,
}

impl FakeMetadata {
    pub async fn start() -> FakeMetadata {
        let deviations = Deviations::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(AtomicBool::new(false));
        let (d, h, b) = (deviations.clone(), Arc::clone(&hits), Arc::clone(&broken));
        let server = fake::server()
            .fallback(move |req: Received| {
            if req.header("metadata-flavor") != Some("Google") {
                d.push(format!("{} without Metadata-Flavor: Google", req.path));
                return (StatusCode::FORBIDDEN, json!({}));
            }
            if req.path != "/computeMetadata/v1/instance/service-accounts/default/token" {
                return (StatusCode::NOT_FOUND, json!({}));
            }
            let n = h.fetch_add(1, Ordering::SeqCst) + 1;
            if b.load(Ordering::SeqCst) {
                return (StatusCode::NOT_FOUND, json!({}));
            }
            if req.method != Method::GET {
                return refuse(&d, format!("token with {}", req.method));
            }
            let scopes = req
                .query
                .as_deref()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("scopes=")))
                .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned());
            if scopes.as_deref() != Some(DATASTORE) {
                return refuse(&d, format!("token scopes {scopes:?}"));
            }
            (
                StatusCode::OK,
                json!({"access_token": format!("mds-token-{n}"), "expires_in": 3600, "token_type": "Bearer"}),
            )
            })
            .start()
            .await;
        FakeMetadata {
            server,
            deviations,
            hits,
            broken,
        }
    }

    /// Token requests received (including refused ones).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------

/// What the STS fake expects of a token exchange.
#[derive(Clone)]
pub struct StsExpect {
    pub subject_token: String,
    pub subject_token_type: String,
    pub audience: String,
    pub scope: String,
}

/// Security Token Service: RFC 8693 token exchange, answering `sts-token`.
pub struct FakeSts {
    pub server: FakeServer,
    pub deviations: Deviations,
    hits: Arc<AtomicUsize>,
}

impl FakeSts {
    pub async fn start(expect: StsExpect) -> FakeSts {
        let deviations = Deviations::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (deviations.clone(), Arc::clone(&hits));
        let server = fake::server()
            .fallback(move |req: Received| {
                h.fetch_add(1, Ordering::SeqCst);
                if req.method != Method::POST || req.path != "/v1/token" {
                    return refuse(&d, format!("{} {}", req.method, req.path));
                }
                let wanted = [
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("subject_token", expect.subject_token.as_str()),
                    ("subject_token_type", expect.subject_token_type.as_str()),
                    ("audience", expect.audience.as_str()),
                    ("scope", expect.scope.as_str()),
                ];
                for (field, value) in wanted {
                    let got = req.form_field(field);
                    if got.as_deref() != Some(value) {
                        return refuse(&d, format!("STS {field} = {got:?}, want {value:?}"));
                    }
                }
                (
                    StatusCode::OK,
                    json!({
                        "access_token": "sts-token",
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    }),
                )
            })
            .start()
            .await;
        FakeSts {
            server,
            deviations,
            hits,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------

/// What the IAM Credentials fake expects of `generateAccessToken`.
#[derive(Clone)]
pub struct IamExpect {
    /// The `Authorization` header the caller must present.
    pub authorization: String,
    pub scope: Vec<String>,
    pub lifetime: String,
    /// Full `projects/-/serviceAccounts/...` names; empty may also be absent.
    pub delegates: Vec<String>,
}

/// IAM Credentials `generateAccessToken`, answering `iam:ACCOUNT:N`. Accounts
/// whose name starts with `denied` get 403, as IAM does without the Token
/// Creator role.
pub struct FakeIam {
    pub server: FakeServer,
    pub deviations: Deviations,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Lifetime of the tokens minted from now on, in milliseconds.
    pub token_ttl_ms: Arc<AtomicU64>,
    /// Answer 503 while set.
    pub down: Arc<AtomicBool>,
}

impl FakeIam {
    pub async fn start(expect: IamExpect) -> FakeIam {
        let deviations = Deviations::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let ttl = Arc::new(AtomicU64::new(3_600_000));
        let down = Arc::new(AtomicBool::new(false));
        let (d, h, t, dn) = (
            deviations.clone(),
            Arc::clone(&hits),
            Arc::clone(&ttl),
            Arc::clone(&down),
        );
        let server = fake::server()
            .fallback(move |req: Received| {
                let Some(account) = req
                    .path
                    .strip_prefix("/v1/projects/-/serviceAccounts/")
                    .and_then(|rest| rest.strip_suffix(":generateAccessToken"))
                    .map(str::to_owned)
                else {
                    return refuse(&d, format!("{} {}", req.method, req.path));
                };
                let n = {
                    let mut hits = h.lock().expect("lock");
                    let n = hits.entry(account.clone()).or_default();
                    *n += 1;
                    *n
                };
                if dn.load(Ordering::SeqCst) {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": {"code": 503}}),
                    );
                }
                if req.method != Method::POST {
                    return refuse(&d, format!("generateAccessToken with {}", req.method));
                }
                if req.header("authorization") != Some(expect.authorization.as_str()) {
                    return refuse(&d, format!("{account}: wrong Authorization"));
                }
                let Some(body) = req.json() else {
                    return refuse(&d, format!("{account}: body is not JSON"));
                };
                let delegates = match body.get("delegates") {
                    None | Some(Value::Null) => json!([]),
                    Some(v) => v.clone(),
                };
                let want = json!({"scope": expect.scope, "lifetime": expect.lifetime});
                if body.get("scope") != want.get("scope")
                    || body.get("lifetime") != want.get("lifetime")
                    || delegates != json!(expect.delegates)
                {
                    return refuse(&d, format!("{account}: body {body}"));
                }
                if account.starts_with("denied") {
                    return (
                        StatusCode::FORBIDDEN,
                        json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}}),
                    );
                }
                let ttl = Duration::from_millis(t.load(Ordering::SeqCst));
                let expire = OffsetDateTime::now_utc() + ttl;
                (
                    StatusCode::OK,
                    json!({
                        "accessToken": format!("iam:{account}:{n}"),
                        "expireTime": expire.format(&Rfc3339).expect("formats"),
                    }),
                )
            })
            .start()
            .await;
        FakeIam {
            server,
            deviations,
            hits,
            token_ttl_ms: ttl,
            down,
        }
    }

    /// `generateAccessToken` calls received for `account`.
    pub fn hits(&self, account: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .get(account)
            .copied()
            .unwrap_or(0)
    }

    pub fn set_ttl(&self, ttl: Duration) {
        self.token_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------

/// A service-account key made now: an RSA key pair in Google's JSON format.
pub struct TestKey {
    pub json: Value,
    pub email: String,
    pub key_id: String,
    /// SubjectPublicKeyInfo PEM, to verify what the key signed.
    pub public_pem: String,
}

impl TestKey {
    pub fn generate(email: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let key_id = format!("kid-{}", rand_suffix());
        let json = json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": key_id,
            "private_key": pair.serialize_pem(),
            "client_email": email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "http://127.0.0.1:9/token",
            "universe_domain": "googleapis.com",
        });
        TestKey {
            json,
            email: email.to_owned(),
            key_id,
            public_pem: pair.public_key_pem(),
        }
    }

    /// Write the key to `dir/name` and return the path.
    pub fn write(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.json.to_string()).expect("write key");
        path
    }

    /// Verify a self-signed JWT access token (RS256, `kid`, unexpired) and
    /// return its claims.
    pub fn verify(&self, jwt: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
        if header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Err(format!("kid {:?}", header.kid));
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(self.public_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        jsonwebtoken::decode::<Value>(jwt, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
