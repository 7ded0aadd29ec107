//! firegate: an identity-aware proxy for the Google Firestore REST API.
//!
//! A request flows through [`pipeline`]: authenticate ([`authn`]), classify
//! ([`firestore`]), decide ([`policy`]), mint an upstream token and forward
//! ([`upstream`]), and always leave one record ([`audit`]).
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod audit;
pub mod authn;
pub mod body;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod dev;
#[cfg(test)]
mod docs_keys;
pub mod emulator;
pub mod error;
pub mod fetch;
pub mod firestore;
pub mod grpc;
#[cfg(test)]
mod layering;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod server;
pub mod transaction;
pub mod upstream;
