//! Writes the files `benches/compare.sh` runs every proxy against: an RS256
//! and an ES256 key (JWKS for firegate, the RS256 public PEM for HAProxy's
//! `jwt_verify`), tokens for the cache-hit and first-sight mixes, a
//! 1,000-rule policy directory and the `:commit` / `:runQuery` bodies.
//!
//! `cargo run --profile bench --example bench_fixture -- DIR ISSUER [COLD]`
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The audience every token carries and every proxy checks.
const AUDIENCE: &str = "firegate-bench";
/// The database every request names.
const DATABASE: &str = "projects/p/databases/(default)";
/// Distinct tokens of the cache-hit mix.
const HIT_TOKENS: usize = 1_000;
/// Rules in the policy directory.
const RULES: usize = 1_000;
/// Writes in the `:commit` body.
const COMMIT_WRITES: usize = 50;

struct Key {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    public_pem: String,
}

fn key(alg: Algorithm, kid: &'static str) -> anyhow::Result<Key> {
    let rcgen_alg = match alg {
        Algorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let pair = rcgen::KeyPair::generate_for(rcgen_alg)?;
    let pem = pair.serialize_pem();
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes())?,
        _ => EncodingKey::from_ec_pem(pem.as_bytes())?,
    };
    let mut jwk = Jwk::from_encoding_key(&encoding, alg)?;
    jwk.common.key_id = Some(kid.into());
    Ok(Key {
        kid,
        alg,
        encoding,
        jwk,
        public_pem: pair.public_key_pem(),
    })
}

fn token(key: &Key, issuer: &str, subject: &str, now: u64) -> anyhow::Result<String> {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.into());
    let claims = json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": subject,
        "email": format!("{subject}@bench.example"),
        "groups": ["group:default/engineering", "group:default/payments"],
        "iat": now,
        "exp": now + 86_400,
    });
    Ok(jsonwebtoken::encode(&header, &claims, &key.encoding)?)
}

fn tokens(key: &Key, issuer: &str, prefix: &str, count: usize) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut out = String::new();
    for i in 0..count {
        out += &token(key, issuer, &format!("{prefix}-{i}"), now)?;
        out.push('\n');
    }
    Ok(out)
}

/// The example policies' shape plus synthetic rules on their own
/// collections (one in a hundred a deny), as `benches/policy.rs` builds it.
fn policy() -> String {
    let mut yaml = String::from(
        r#"rules:
  - id: catalog-readers
    match: /catalog/{rest=**}
    allow: [read]
    who: { groups: [group:default/engineering] }
  - id: own-team
    match: /teams/{team}/{rest=**}
    allow: [read, write]
    who: { authenticated: true }
    when: "'group:default/' + path.team in principal.groups"
  - id: no-secrets
    match: /secrets/{rest=**}
    deny: [read, write]
    who: { any: true }
  - id: platform-admins
    match: /{path=**}
    allow: [read, write]
    who: { groups: [group:default/platform-admins] }
"#,
    );
    for i in 0..RULES - 4 {
        let effect = if i % 100 == 99 { "deny" } else { "allow" };
        yaml += &format!(
            "  - {{ id: svc-{i}, match: '/svc-{i}/{{doc}}/items/{{item}}', {effect}: [read], who: {{ groups: [group:default/team-{}] }} }}\n",
            i % 50
        );
    }
    yaml
}

fn commit() -> Value {
    let writes: Vec<Value> = (0..COMMIT_WRITES)
        .map(|i| {
            json!({"update": {
                "name": format!("{DATABASE}/documents/teams/payments/deployments/d{i}"),
                "fields": {"env": {"stringValue": "prod"}, "n": {"integerValue": i.to_string()}},
            }})
        })
        .collect();
    json!({ "writes": writes })
}

fn run_query() -> Value {
    json!({"structuredQuery": {
        "from": [{"collectionId": "deployments"}],
        "where": {"fieldFilter": {
            "field": {"fieldPath": "env"},
            "op": "EQUAL",
            "value": {"stringValue": "prod"},
        }},
        "orderBy": [{"field": {"fieldPath": "__name__"}, "direction": "ASCENDING"}],
        "limit": 20,
    }})
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    fs::write(dir.join(name), contents)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_fixture DIR ISSUER [COLD_TOKENS]";
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let issuer = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let cold: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    fs::create_dir_all(dir.join("policies"))?;

    let rsa = key(Algorithm::RS256, "bench-rs256")?;
    let ec = key(Algorithm::ES256, "bench-es256")?;
    let jwks = JwkSet {
        keys: vec![rsa.jwk.clone(), ec.jwk.clone()],
    };
    write(&dir, "jwks.json", serde_json::to_vec(&jwks)?)?;
    write(&dir, "rs256.pub.pem", &rsa.public_pem)?;
    write(
        &dir,
        "tokens-hit.txt",
        tokens(&rsa, &issuer, "hit", HIT_TOKENS)?,
    )?;
    write(
        &dir,
        "tokens-cold-rs256.txt",
        tokens(&rsa, &issuer, "rs", cold)?,
    )?;
    write(
        &dir,
        "tokens-cold-es256.txt",
        tokens(&ec, &issuer, "es", cold)?,
    )?;
    write(&dir, "policies/rules.yaml", policy())?;
    write(&dir, "commit.json", serde_json::to_vec(&commit())?)?;
    write(&dir, "runquery.json", serde_json::to_vec(&run_query())?)?;
    println!("{}", dir.display());
    Ok(())
}
