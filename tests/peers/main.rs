//! firegate against real third-party peers: the official Firestore clients
//! (Node, Firebase lite, Python, Java, Go), a real OpenID provider, a real
//! Backstage backend and headless Chromium. They need Node, npm packages, a
//! Python venv, a JDK with Maven, Go and Chromium (tests/README.md says which
//! test needs what), so this binary is built only with `--features peers`;
//! `scripts/test` runs it.

#[path = "../support/mod.rs"]
mod support;

mod backstage;
mod browser;
mod catalog;
mod classify;
mod grpc_clients;
mod jvm_go_clients;
mod masks;
mod oidc;
mod sdk;
mod stream_cap;
