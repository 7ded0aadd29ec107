//! Seal and unseal with two principals, forgery, expiry, and both hooks.

use http_body_util::BodyExt;
use proptest::prelude::*;

use bytes::Bytes;

use super::*;

fn db() -> Database {
    Database::new("p", "(default)")
}

const ALICE: Fingerprint = [1; 32];
const BOB: Fingerprint = [2; 32];
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn sealer() -> TransactionSealer {
    TransactionSealer::with_key(KEY, Duration::from_secs(600)).unwrap()
}

#[test]
fn the_owner_gets_the_upstream_id_back() {
    let s = sealer();
    let sealed = s.seal(&ALICE, &db(), b"upstream-tx");
    assert_eq!(s.unseal(&sealed, &ALICE, &db()).unwrap(), b"upstream-tx");
    assert_ne!(sealed, STANDARD.encode(b"upstream-tx"));
}

#[test]
fn another_principal_is_refused() {
    let s = sealer();
    let sealed = s.seal(&ALICE, &db(), b"upstream-tx");
    assert_eq!(
        s.unseal(&sealed, &BOB, &db()),
        Err(TransactionError::NotOwned)
    );
}

#[test]
fn every_replica_with_the_key_accepts_the_seal() {
    let sealed = sealer().seal(&ALICE, &db(), b"tx");
    let other_replica = sealer();
    assert_eq!(other_replica.unseal(&sealed, &ALICE, &db()).unwrap(), b"tx");
    let other_key = TransactionSealer::with_key(&[7; 32], Duration::from_secs(600)).unwrap();
    assert_eq!(
        other_key.unseal(&sealed, &ALICE, &db()),
        Err(TransactionError::Forged)
    );
}

#[test]
fn forgeries_are_refused() {
    let s = sealer();
    let sealed = s.seal(&ALICE, &db(), b"upstream-tx");
    let raw = STANDARD.decode(&sealed).unwrap();
    // Flip each byte in turn: every tampering is caught.
    for i in 0..raw.len() {
        let mut tampered = raw.clone();
        tampered[i] ^= 0x01;
        let result = s.unseal(&STANDARD.encode(&tampered), &ALICE, &db());
        assert!(
            matches!(
                result,
                Err(TransactionError::Forged | TransactionError::NotOwned)
            ),
            "byte {i}: {result:?}"
        );
    }
    // A raw upstream id, garbage, truncations, another database.
    for text in ["dXBzdHJlYW0tdHg=", "", "!!!", &sealed[..sealed.len() - 8]] {
        assert_eq!(
            s.unseal(text, &ALICE, &db()),
            Err(TransactionError::Forged),
            "{text}"
        );
    }
    let other = Database::new("p", "other");
    assert_eq!(
        s.unseal(&sealed, &ALICE, &other),
        Err(TransactionError::Forged)
    );
}

#[test]
fn changing_the_id_inside_a_seal_is_a_forgery() {
    let s = sealer();
    let raw = STANDARD.decode(s.seal(&ALICE, &db(), b"aaaa")).unwrap();
    let mut swapped = raw.clone();
    swapped[9..13].copy_from_slice(b"bbbb");
    assert_eq!(
        s.unseal(&STANDARD.encode(swapped), &ALICE, &db()),
        Err(TransactionError::Forged)
    );
}

#[test]
fn expired_seals_are_refused() {
    let s = sealer();
    let sealed = s.seal(&ALICE, &db(), b"tx");
    let later = now() + 601;
    assert_eq!(
        s.keys.unseal(&sealed, &ALICE, &db(), later),
        Err(TransactionError::Expired)
    );
    assert!(s.keys.unseal(&sealed, &ALICE, &db(), now() + 599).is_ok());
}

#[test]
fn url_safe_and_unpadded_forms_are_accepted() {
    let s = sealer();
    let sealed = s.seal(&ALICE, &db(), b"\xfb\xff\xfe-tx");
    let bytes = STANDARD.decode(&sealed).unwrap();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    assert_eq!(s.unseal(&url, &ALICE, &db()).unwrap(), b"\xfb\xff\xfe-tx");
}

fn streamed(chunks: &[&'static str]) -> Body {
    let frames: Vec<Result<http_body::Frame<Bytes>, crate::body::BoxError>> = chunks
        .iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    crate::body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
}

#[tokio::test]
async fn responses_are_sealed_for_the_principal_as_they_stream() {
    let s = sealer();
    let sealing = s.sealing(&ALICE, &db());
    let mut response = Response::new(streamed(&[
        "[{\"transaction\": \"dXAt",
        "aWQ=\", \"readTime\": \"t\"}\n,{\"document\":{\"name\":\"n\"},\"readTime\":\"t\"}",
        "]",
    ]));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("99"));
    let response = sealing.seal_response(response).expect("sealable");
    assert!(response.headers().get(header::CONTENT_LENGTH).is_none());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let sealed = value[0]["transaction"].as_str().unwrap();
    assert_ne!(sealed, "dXAtaWQ=");
    assert_eq!(s.unseal(sealed, &ALICE, &db()).unwrap(), b"up-id");
    assert_eq!(
        s.unseal(sealed, &BOB, &db()),
        Err(TransactionError::NotOwned)
    );
    assert_eq!(value[1]["document"]["name"], "n");
}

#[tokio::test]
async fn error_responses_pass_unchanged_and_compressed_ones_are_refused() {
    let s = sealer();
    let sealing = s.sealing(&ALICE, &db());
    let mut error = Response::new(streamed(&["{\"error\":{}}"]));
    *error.status_mut() = http::StatusCode::CONFLICT;
    let error = sealing.clone().seal_response(error).expect("passed on");
    assert_eq!(error.status(), http::StatusCode::CONFLICT);
    let mut gzip = Response::new(streamed(&["\x1f"]));
    gzip.headers_mut().insert(
        header::CONTENT_ENCODING,
        http::HeaderValue::from_static("gzip"),
    );
    let refused = sealing.seal_response(gzip).expect_err("compressed");
    assert_eq!(refused.reason(), "response_not_sealable");
}

fn validated(config: TransactionConfig) -> Result<TransactionSettings, Vec<String>> {
    ConfigErrors::collect(|errors| config.validate(errors))
        .map_err(|e| e.errors.into_iter().map(|e| e.key).collect())
}

#[test]
fn config_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too short\n").unwrap();
    let found = validated(TransactionConfig {
        key_file: Some(short),
        ttl: "forever".into(),
    });
    assert_eq!(
        found.unwrap_err(),
        ["transactions.ttl", "transactions.key_file"]
    );

    let good = dir.path().join("good");
    std::fs::write(&good, format!("{}\n", "k".repeat(44))).unwrap();
    let settings = validated(TransactionConfig {
        key_file: Some(good),
        ttl: "5m".into(),
    })
    .unwrap();
    let a = TransactionSealer::new(&settings).unwrap();
    let b = TransactionSealer::new(&settings).unwrap();
    let sealed = a.seal(&ALICE, &db(), b"tx");
    assert_eq!(
        b.unseal(&sealed, &ALICE, &db()).unwrap(),
        b"tx",
        "same key file, same key"
    );
}

#[test]
fn a_ttl_out_of_range_is_an_error_not_clamped() {
    for ttl in ["0s", "9s", "24h 1s", "48h"] {
        let found = validated(TransactionConfig {
            ttl: ttl.into(),
            ..TransactionConfig::default()
        });
        assert_eq!(found.unwrap_err(), ["transactions.ttl"], "ttl {ttl}");
    }
}

#[test]
fn the_sealer_gets_the_validated_ttl_unchanged() {
    for (ttl, secs) in [("10s", 10), ("90s", 90), ("24h", 86_400)] {
        let settings = validated(TransactionConfig {
            ttl: ttl.into(),
            ..TransactionConfig::default()
        })
        .unwrap();
        assert_eq!(settings.ttl, Duration::from_secs(secs));
        let sealer = TransactionSealer::new(&settings).unwrap();
        assert_eq!(sealer.ttl, settings.ttl, "ttl {ttl}");
        let before = now();
        let sealing = sealer.sealing(&ALICE, &db());
        assert!(
            (before + secs..=now() + secs).contains(&sealing.expiry),
            "ttl {ttl}"
        );
    }
    let default = validated(TransactionConfig::default()).unwrap();
    assert_eq!(default.ttl, DEFAULT_TTL);
}

#[test]
fn without_a_key_file_each_start_has_its_own_key() {
    let settings = validated(TransactionConfig::default()).unwrap();
    let a = TransactionSealer::new(&settings).unwrap();
    let b = TransactionSealer::new(&settings).unwrap();
    let sealed = a.seal(&ALICE, &db(), b"tx");
    assert_eq!(
        b.unseal(&sealed, &ALICE, &db()),
        Err(TransactionError::Forged)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn seal_round_trips_and_binds(
        id in prop::collection::vec(any::<u8>(), 1..64),
        owner in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        garbage in ".{0,80}",
    ) {
        let db = Database { project: "p".into(), database: "d".into() };
        let sealer = TransactionSealer::with_key(&[9; 32], std::time::Duration::from_secs(60))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let sealed = sealer.seal(&owner, &db, &id);
        prop_assert_eq!(sealer.unseal(&sealed, &owner, &db).ok(), Some(id));
        if other != owner {
            prop_assert!(sealer.unseal(&sealed, &other, &db).is_err());
        }
        prop_assert!(sealer.unseal(&garbage, &owner, &db).is_err());
    }
}
