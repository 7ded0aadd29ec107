//! A throwaway CA and a server certificate for `localhost` / `127.0.0.1`,
//! written to a temp dir as PEM files.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

pub struct TestPki {
    pub dir: TempDir,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "firegate test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");

        let dir = tempfile::tempdir().expect("temp dir");
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        // The served chain is leaf + CA, as a real deployment would send it.
        std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
        std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca_cert.pem())).expect("write cert");
        std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write key");
        TestPki {
            dir,
            ca_pem: ca_cert.pem(),
            ca_path,
            cert_path,
            key_path,
        }
    }

    /// A reqwest client that trusts only this CA.
    pub fn client(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA for reqwest");
        reqwest::Client::builder().tls_certs_only([ca]).no_proxy()
    }

    /// rustls acceptor for a fake TLS upstream (ALPN h2 + http/1.1).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let store = firegate::server::CertStore::load(&firegate::server::config::RawTls {
            cert: self.cert_path.clone(),
            key: self.key_path.clone(),
        })
        .expect("cert store");
        store.acceptor().expect("acceptor")
    }
}
