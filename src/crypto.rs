//! The one rustls crypto provider firegate uses, for the listener and the
//! upstream client alike.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// aws-lc-rs, passed explicitly so no process-wide default is ever consulted.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
