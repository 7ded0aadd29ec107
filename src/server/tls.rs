//! rustls for the main listener: PEM chain and key from files, TLS 1.2 and
//! 1.3 only, ALPN `h2` + `http/1.1`, and a certificate that can be swapped
//! without a restart.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::RawTls;

/// The one crypto provider firegate uses (aws-lc-rs), passed explicitly so
/// no process-wide default is ever consulted.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

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

    /// Reload whenever a file in the certificate's or key's directory
    /// changes (Kubernetes swaps Secret files by renaming a symlink there).
    /// Reloading stops when the returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<notify::RecommendedWatcher> {
        use notify::Watcher as _;
        let store = Arc::downgrade(self);
        let mut watcher = notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                let Some(store) = store.upgrade() else { return };
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    // The cert and key are rarely replaced in one step: a failure
                    // between the two writes keeps the old pair until the next event.
                    match store.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded after a file change"),
                        Err(err) => {
                            tracing::warn!(error = %format!("{err:#}"), "TLS files changed but do not load; keeping the old pair")
                        }
                    }
                }
            },
        )?;
        let mut dirs: Vec<&Path> = [&self.files.cert, &self.files.key]
            .into_iter()
            .map(|f| {
                f.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
            })
            .collect();
        dirs.dedup();
        for dir in dirs {
            watcher
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", dir.display()))?;
        }
        Ok(watcher)
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
