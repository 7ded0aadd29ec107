//! Shared fakes and real peers for the integration tests.
#![allow(dead_code)]

pub mod issuer;
pub mod oidc_provider;
