//! firegate's integration tests, one binary with a module per contract
//! (tests/README.md maps them). Each starts real servers on `127.0.0.1:0`;
//! nothing here needs more than Rust. Run one module with
//! `cargo test --test it rest::`.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod access_fleet;
mod access_sync;
mod audit;
mod audit_rotation;
mod authn;
mod catalog;
mod credentials;
mod data_rules;
mod emulator;
mod fakes;
mod grpc;
mod limits;
mod masks;
mod operate;
mod policy_tools;
mod rest;
mod server;
