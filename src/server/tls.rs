//! rustls for the main listener: PEM chain and key from files, TLS 1.2 and
//! 1.3 only, ALPN `h2` + `http/1.1`, and a certificate that can be swapped
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::RawTls;

use crate::crypto::provider;

/// Read and check a certificate chain and its private key.
pub fn load_certified_key(tls: &RawTls) -> anyhow::Result<CertifiedKey> {
    let chain = load_chain(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("{}: no usable PEM private key", tls.key.display()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .with_context(|| format!("{}: key does not fit the certificate", tls.key.display()))
}

fn load_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: unreadable PEM certificate chain", path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}: no certificate in the file",
        path.display()
    );
    Ok(chain)
}

/// The certificate the listener presents; [`CertStore::reload`] swaps it
/// atomically, so handshakes in progress keep the one they started with.
#[derive(Debug)]
pub struct CertStore {
    files: RawTls,
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn load(files: &RawTls) -> anyhow::Result<Arc<CertStore>> {
        Ok(Arc::new(CertStore {
            files: files.clone(),
            current: ArcSwap::from_pointee(load_certified_key(files)?),
        }))
    }

    /// Re-read the files; on any error the old certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        self.current
            .store(Arc::new(load_certified_key(&self.files)?));
        Ok(())
    }

    /// The directories holding the certificate and the key: the reload hub
    /// watches them (Kubernetes swaps Secret files by renaming a symlink
    /// there).
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.files.cert, &self.files.key]
            .into_iter()
            .map(|f| {
                f.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_owned()
            })
            .collect();
        dirs.dedup();
        dirs
    }

    /// A TLS acceptor presenting this store's current certificate.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS 1.2/1.3 with the aws-lc-rs provider")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The negotiated protocol version as it appears in audit lines.
pub fn version_name(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    }
}
