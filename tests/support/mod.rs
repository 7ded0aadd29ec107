//! Shared fakes and real peers for integration tests and benches: key
//! material made at test time, one builder fake server (under the recording
//! upstream, the test OIDC issuer and the Google fakes), configs as values,
//! the real oidc-provider, a proxy to put between.
// Each test binary uses a different subset.
#![allow(dead_code, unused_imports)]

pub mod authn;
pub mod backstage;
pub mod catalog;
pub mod certs;
pub mod clock;
pub mod config;
pub mod dev;
pub mod emulator;
pub mod fake;
pub mod google;
pub mod grpc;
pub mod issuer;
pub mod oidc_provider;
pub mod proxy;
pub mod upstream;

pub use certs::TestPki;
pub use proxy::TestProxy;
pub use upstream::{Gate, Step, upstream};

use std::time::Duration;

/// Upper bound for anything a test waits on: a hang becomes a failure,
/// never a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Await `fut` or fail the test after [`PATIENCE`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("gave up waiting for {what}"),
    }
}

/// `firegate dev` as the binary starts it, on ephemeral ports, with the
/// repository's example policies.
pub async fn dev_stack() -> firegate::dev::Stack {
    dev::start(dev::options()).await
}
