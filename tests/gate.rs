//! The gate's hardening, end to end: body deadlines, per-principal fairness,
//! target limits, bodiless methods over HTTP/2, gRPC callers, Kubernetes
//! service links and pinned databases — each against a whole firegate.

mod support;

use serde_json::json;
use support::config;

/// Kubernetes service links for a Service named `firegate`: not config.
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("FIREGATE_SERVICE_HOST", "10.96.0.12"),
    ("FIREGATE_SERVICE_PORT", "8443"),
    ("FIREGATE_SERVICE_PORT_HTTPS", "8443"),
    ("FIREGATE_PORT", "tcp://10.96.0.12:8443"),
    ("FIREGATE_PORT_8443_TCP", "tcp://10.96.0.12:8443"),
    ("FIREGATE_PORT_8443_TCP_PROTO", "tcp"),
    ("FIREGATE_PORT_8443_TCP_PORT", "8443"),
    ("FIREGATE_PORT_8443_TCP_ADDR", "10.96.0.12"),
];

#[test]
fn the_binary_ignores_kubernetes_service_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("firegate.yaml");
    std::fs::write(&path, config::plain("http://127.0.0.1:9").yaml()).unwrap();
    let check = |extra: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
            .args(["config", "check"])
            .arg(&path)
            .envs(SERVICE_LINKS.iter().copied())
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    };
    let out = check(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A real section override is still read (and still checked).
    let out = check(&[("FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT", "forever")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.limits.idle_timeout"), "{stderr}");
    let _ = json!({});
}
