//! An in-process OIDC / JWKS issuer on the one fake server that mints good and
//! deliberately bad tokens, rotates keys, counts JWKS fetches, can be taken
//! down, and (as a Backstage backend) answers `/api/auth/v1/userinfo`.
//!
//! ```ignore
//! let issuer = TestIssuer::builder().start().await;          // RS256 OIDC
//! let bs = TestIssuer::builder().backstage().start().await;  // ES256 Backstage
//! let token = issuer.token().claim("groups", json!(["a"])).sign();
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::fake::{self, FakeServer, Received, Reply};

/// Default audience of minted tokens.
pub const AUDIENCE: &str = "https://firegate.test";

/// A signing key and what the JWKS publishes for it.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
    /// SubjectPublicKeyInfo PEM: the bytes an attacker would use as an
    /// HMAC secret in an algorithm-confusion attack.
    pub public_pem: String,
}

impl SigningKey {
    /// A fresh key pair, made now.
    pub fn generate(alg: Algorithm, kid: &str) -> SigningKey {
        let (rcgen_alg, from_pem): (_, fn(&[u8]) -> _) = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                (&rcgen::PKCS_RSA_SHA256, EncodingKey::from_rsa_pem)
            }
            Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, EncodingKey::from_ec_pem),
            Algorithm::EdDSA => (&rcgen::PKCS_ED25519, EncodingKey::from_ed_pem),
            other => panic!("test issuer does not make {other:?} keys"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("generate key");
        let encoding = from_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
        let jwk = match alg {
            // jsonwebtoken cannot derive an OKP JWK; Ed25519's is just the
            // raw public key (RFC 8037).
            Algorithm::EdDSA => serde_json::from_value(json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
            }))
            .expect("okp jwk"),
            _ => {
                let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk");
                jwk.common.key_id = Some(kid.to_string());
                jwk
            }
        };
        SigningKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
            public_pem: pair.public_key_pem(),
        }
    }
}

/// Builder for [`TestIssuer`].
pub struct TestIssuerBuilder {
    alg: Algorithm,
    backstage: bool,
    cache_control: Option<String>,
    available: bool,
    publishing: bool,
}

impl TestIssuerBuilder {
    /// Sign with this algorithm (RS256, PS256, ES256, EdDSA).
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Behave as a Backstage backend: issuer `<base>/api/auth`, keys at
    /// `/api/auth/.well-known/jwks.json`, ES256 user tokens
    /// (`typ: vnd.backstage.user`, `aud: backstage`), and userinfo.
    pub fn backstage(mut self) -> Self {
        self.backstage = true;
        self.alg = Algorithm::ES256;
        self
    }

    /// `Cache-Control` sent with the JWKS.
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_string());
        self
    }

    /// Start answering 503 until [`TestIssuer::set_available`]`(true)`.
    pub fn down(mut self) -> Self {
        self.available = false;
        self
    }

    /// Publish `{"keys":[]}` until [`TestIssuer::set_publishing`]`(true)`,
    /// as a fresh Backstage does before its first sign-in.
    pub fn empty_jwks(mut self) -> Self {
        self.publishing = false;
        self
    }

    pub async fn start(self) -> TestIssuer {
        // The issuer's URLs name its own port, so the state is made once
        // the fake is bound and reached through a cell.
        let cell: Arc<OnceLock<Arc<State>>> = Arc::default();
        let serving = Arc::clone(&cell);
        let server = fake::server()
            .fallback(move |req: Received| match serving.get() {
                Some(state) => state.answer(&req),
                None => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "starting"}),
                ),
            })
            .start()
            .await;
        let addr = server.addr();
        let base = server.url();
        let issuer = if self.backstage {
            format!("{base}/api/auth")
        } else {
            base.clone()
        };
        let state = Arc::new(State {
            issuer: issuer.clone(),
            backstage: self.backstage,
            cache_control: self.cache_control,
            available: AtomicBool::new(self.available),
            publishing: AtomicBool::new(self.publishing),
            keys: Mutex::new(vec![SigningKey::generate(
                self.alg,
                &format!("key-1-{:08x}", rand::random::<u32>()),
            )]),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            userinfo_calls: AtomicUsize::new(0),
            ownership: Mutex::new(HashMap::new()),
            plugin_keys: Mutex::new(HashMap::new()),
        });
        let _ = cell.set(Arc::clone(&state));
        TestIssuer {
            addr,
            base,
            issuer,
            state,
            server,
        }
    }
}

struct State {
    issuer: String,
    backstage: bool,
    cache_control: Option<String>,
    available: AtomicBool,
    /// `false`: the JWKS lists no keys (the last one still signs).
    publishing: AtomicBool,
    /// Published keys; the last one signs.
    keys: Mutex<Vec<SigningKey>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    userinfo_calls: AtomicUsize,
    /// Backstage `sub` → ownership refs returned by userinfo.
    ownership: Mutex<HashMap<String, Vec<String>>>,
    /// Backstage plugin id → the key its plugin tokens are signed with.
    plugin_keys: Mutex<HashMap<String, SigningKey>>,
}

impl State {
    fn answer(&self, req: &Received) -> Reply {
        if !self.available.load(Ordering::SeqCst) {
            return reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "down"}));
        }
        let prefix = if self.backstage { "/api/auth" } else { "" };
        let path = req.path.as_str();
        let jwks_path = if self.backstage {
            "/api/auth/.well-known/jwks.json"
        } else {
            "/jwks"
        };
        if path == format!("{prefix}/.well-known/openid-configuration") {
            self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            let base = self.issuer.trim_end_matches(prefix);
            return reply(
                StatusCode::OK,
                json!({
                    "issuer": self.issuer,
                    "authorization_endpoint": format!("{}/authorize", self.issuer),
                    "jwks_uri": format!("{base}{jwks_path}"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "PS256", "EdDSA"],
                }),
            );
        }
        if path == jwks_path {
            self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = self.keys.lock().expect("keys");
            let publishing = self.publishing.load(Ordering::SeqCst);
            let set = JwkSet {
                keys: keys
                    .iter()
                    .filter(|_| publishing)
                    .map(|k| k.jwk.clone())
                    .collect(),
            };
            let response = reply(StatusCode::OK, serde_json::to_value(set).expect("jwks"));
            return match &self.cache_control {
                Some(cc) => response.header("cache-control", cc),
                None => response,
            };
        }
        if let Some(plugin) = self.backstage.then(|| plugin_jwks_path(path)).flatten() {
            self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = self.plugin_keys.lock().expect("plugin keys");
            let set = JwkSet {
                keys: keys
                    .get(plugin)
                    .map(|k| k.jwk.clone())
                    .into_iter()
                    .collect(),
            };
            return reply(StatusCode::OK, serde_json::to_value(set).expect("jwks"));
        }
        if self.backstage && path == "/api/auth/v1/userinfo" {
            self.userinfo_calls.fetch_add(1, Ordering::SeqCst);
            return self.userinfo(req);
        }
        reply(StatusCode::NOT_FOUND, json!({"error": "not found"}))
    }

    /// Backstage answers with the caller's `sub` and ownership refs. Here
    /// the token's payload is read without checking it: the test issuer is
    /// the one that signed it.
    fn userinfo(&self, req: &Received) -> Reply {
        let sub = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| t.split('.').nth(1))
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_string));
        let Some(sub) = sub else {
            return reply(StatusCode::UNAUTHORIZED, json!({"error": "no token"}));
        };
        let ent = self
            .ownership
            .lock()
            .expect("ownership")
            .get(&sub)
            .cloned()
            .unwrap_or_else(|| vec![sub.clone()]);
        reply(StatusCode::OK, json!({"claims": {"sub": sub, "ent": ent}}))
    }
}

/// `/api/<plugin>/.backstage/auth/v1/jwks.json` → `<plugin>`.
fn plugin_jwks_path(path: &str) -> Option<&str> {
    path.strip_prefix("/api/")?
        .strip_suffix("/.backstage/auth/v1/jwks.json")
        .filter(|id| !id.contains('/'))
}

fn reply(status: StatusCode, body: Value) -> Reply {
    Reply::json(status, &body)
}

/// A running issuer; stops when dropped or joined.
pub struct TestIssuer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The `iss` of its tokens (`<base>/api/auth` for Backstage).
    pub issuer: String,
    state: Arc<State>,
    server: FakeServer,
}

impl TestIssuer {
    /// Stop it and fail with its panic, if it had one.
    pub async fn join(self) {
        self.server.join().await;
    }

    pub fn builder() -> TestIssuerBuilder {
        TestIssuerBuilder {
            alg: Algorithm::RS256,
            backstage: false,
            cache_control: None,
            available: true,
            publishing: true,
        }
    }

    /// Where its JWKS is served.
    pub fn jwks_uri(&self) -> String {
        if self.state.backstage {
            format!("{}/api/auth/.well-known/jwks.json", self.base)
        } else {
            format!("{}/jwks", self.base)
        }
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    pub fn userinfo_calls(&self) -> usize {
        self.state.userinfo_calls.load(Ordering::SeqCst)
    }

    /// Answer every request with 503 (`false`) or normally (`true`).
    pub fn set_available(&self, available: bool) {
        self.state.available.store(available, Ordering::SeqCst);
    }

    /// List the keys in the JWKS (`true`) or publish an empty set.
    pub fn set_publishing(&self, publishing: bool) {
        self.state.publishing.store(publishing, Ordering::SeqCst);
    }

    /// What Backstage userinfo returns as `ent` for `sub`.
    pub fn set_ownership(&self, sub: &str, refs: &[&str]) {
        self.state.ownership.lock().expect("ownership").insert(
            sub.to_string(),
            refs.iter().map(|r| r.to_string()).collect(),
        );
    }

    /// The key that signs now.
    pub fn current_key(&self) -> SigningKey {
        self.state
            .keys
            .lock()
            .expect("keys")
            .last()
            .cloned()
            .expect("a key")
    }

    /// Make a new signing key with a new `kid`; the JWKS publishes it from
    /// now on. `keep_old` keeps publishing the previous keys too.
    pub fn rotate(&self, keep_old: bool) -> SigningKey {
        let mut keys = self.state.keys.lock().expect("keys");
        let alg = keys.last().map_or(Algorithm::RS256, |k| k.alg);
        let kid = format!("key-{}-{:08x}", keys.len() + 1, rand::random::<u32>());
        let key = SigningKey::generate(alg, &kid);
        if !keep_old {
            keys.clear();
        }
        keys.push(key.clone());
        key
    }

    /// A token with this issuer's usual claims (valid for 5 minutes),
    /// ready to be altered and signed.
    pub fn token(&self) -> TokenBuilder {
        let key = self.current_key();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 300));
        if self.state.backstage {
            header.typ = Some("vnd.backstage.user".into());
            claims.insert("aud".into(), json!("backstage"));
            claims.insert("sub".into(), json!("user:default/alice"));
            claims.insert(
                "ent".into(),
                json!(["user:default/alice", "group:default/team-a"]),
            );
        } else {
            header.typ = Some("at+jwt".into());
            claims.insert("aud".into(), json!(AUDIENCE));
            claims.insert("sub".into(), json!("alice"));
            claims.insert("email".into(), json!("alice@firegate.test"));
            claims.insert("groups".into(), json!(["team-a", "readers"]));
            claims.insert("scope".into(), json!("firestore.read"));
        }
        TokenBuilder {
            header,
            claims,
            key,
        }
    }
}

impl TestIssuer {
    /// A Backstage plugin token from `plugin` for the target `aud`, signed
    /// with that plugin's own key (made on first use and published at
    /// `/api/<plugin>/.backstage/auth/v1/jwks.json`).
    pub fn plugin_token(&self, plugin: &str, aud: &str) -> TokenBuilder {
        let key = self
            .state
            .plugin_keys
            .lock()
            .expect("plugin keys")
            .entry(plugin.to_string())
            .or_insert_with(|| {
                SigningKey::generate(
                    Algorithm::ES256,
                    &format!("{plugin}-{:08x}", rand::random::<u32>()),
                )
            })
            .clone();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("vnd.backstage.plugin".into());
        header.kid = Some(key.kid.clone());
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(plugin));
        claims.insert("aud".into(), json!(aud));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 300));
        TokenBuilder {
            header,
            claims,
            key,
        }
    }

    /// A Backstage limited user token for `sub` (`typ:
    /// vnd.backstage.limited-user`, only `sub`, `iat`, `exp`), signed with
    /// the user key: what a plugin token carries as `obo`.
    pub fn limited_user_token(&self, sub: &str) -> TokenBuilder {
        let key = self.current_key();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut header = Header::new(key.alg);
        header.typ = Some("vnd.backstage.limited-user".into());
        header.kid = Some(key.kid.clone());
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(sub));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 300));
        TokenBuilder {
            header,
            claims,
            key,
        }
    }
}

/// One token being made; every field can be bent to make it bad.
pub struct TokenBuilder {
    pub header: Header,
    pub claims: Map<String, Value>,
    key: SigningKey,
}

impl TokenBuilder {
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.to_string(), value);
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Set `exp` to now + `seconds` (negative for the past).
    pub fn expires_in(self, seconds: i64) -> Self {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        self.claim("exp", json!(now + seconds))
    }

    /// Set `nbf` to now + `seconds`.
    pub fn not_before_in(self, seconds: i64) -> Self {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        self.claim("nbf", json!(now + seconds))
    }

    /// The key this token will be signed with.
    pub fn signing_key(&self) -> SigningKey {
        self.key.clone()
    }

    pub fn kid(mut self, kid: &str) -> Self {
        self.header.kid = Some(kid.to_string());
        self
    }

    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.header.typ = typ.map(str::to_string);
        self
    }

    /// Sign with a key of its own instead of the issuer's current one.
    pub fn signed_by(mut self, key: &SigningKey) -> Self {
        self.header.alg = key.alg;
        self.header.kid = Some(key.kid.clone());
        self.key = key.clone();
        self
    }

    /// Sign with the chosen key.
    pub fn sign(self) -> String {
        jsonwebtoken::encode(&self.header, &self.claims, &self.key.encoding).expect("sign")
    }

    /// HS256 over the same claims with `secret` (e.g. the issuer's public
    /// key PEM, for the algorithm-confusion attack).
    pub fn sign_hs256(mut self, secret: &[u8]) -> String {
        self.header.alg = Algorithm::HS256;
        jsonwebtoken::encode(
            &self.header,
            &self.claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    }

    /// `alg: none` with an empty signature.
    pub fn unsigned(self) -> String {
        let mut header = serde_json::to_value(&self.header).expect("header");
        header["alg"] = json!("none");
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(self.claims).to_string())
        )
    }
}

/// Replace the payload of a signed token, keeping header and signature.
pub fn tamper(token: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    change(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    parts[1] = &payload;
    parts.join(".")
}
