//! Shared test helpers: fake servers on `127.0.0.1:0` and key material made
//! at test time. Each test binary uses a part, hence the allowance.
#![allow(dead_code)]

pub mod fake;
pub mod google;
