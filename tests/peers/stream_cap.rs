//! A real stream cap: Debian's nginx `grpc_pass` with
//! `http2_max_concurrent_streams` in front of `firegate emulator`, as
//! Google's front ends cap streams per HTTP/2 connection. More Listen
//! streams than the cap stay open through firegate and a unary call still
//! gets through (firegate opens another upstream connection).

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::support::config;
use crate::support::grpc::{self, add_documents, listen, proto, with_auth};
use crate::support::proxy::{DATABASE, TestProxy};
use crate::support::within;

/// nginx capping each client connection at `cap` streams, in front of the
/// gRPC server at `upstream`; stopped when dropped.
struct Nginx {
    port: u16,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(cap: u32, upstream: std::net::SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
             fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
             server {{\n    listen 127.0.0.1:{port} http2;\n\
             http2_max_concurrent_streams {cap};\n    grpc_read_timeout 3600s;\n\
             grpc_send_timeout 3600s;\n    location / {{ grpc_pass grpc://{upstream}; }}\n  }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let program = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nginx");
        let child = tokio::process::Command::new(program)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts (Debian package nginx; scripts/test installs it)");
        within("nginx listening", async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Nginx {
            port,
            _child: child,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_past_nginxs_stream_cap_stay_open_and_a_unary_call_passes() {
    const CAP: u32 = 4;
    let emulator = firegate::emulator::spawn("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("the emulator starts");
    let nginx = Nginx::start(CAP, emulator.local_addr()).await;
    let yaml = config::plain(&format!("http://127.0.0.1:{}", nginx.port))
        .merge(json!({"upstream": {"emulator": true}}))
        .yaml();
    let proxy = TestProxy::start(&yaml).await;
    let doc = format!("{DATABASE}/documents/rooms/a");

    // Three connections' worth of Listens, each answered.
    let mut calls = Vec::new();
    for id in 1..=(3 * CAP as i32) {
        let mut client = grpc::client(proxy.addr).await;
        let mut call = within(
            "a Listen opens",
            listen(
                &mut client,
                &proxy.bearer(),
                &format!("capped-{id}"),
                add_documents(DATABASE, id, std::slice::from_ref(&doc)),
            ),
        )
        .await
        .expect("Listen opens");
        let first = within("a Listen's first answer", call.responses.message())
            .await
            .expect("stream open")
            .expect("a first answer");
        assert!(first.response_type.is_some(), "{first:?}");
        calls.push(call);
    }
    let mut client = grpc::client(proxy.addr).await;
    let unary = within(
        "GetDocument beside the Listens",
        client.get_document(with_auth(
            proto::GetDocumentRequest {
                name: doc.clone(),
                ..Default::default()
            },
            &proxy.bearer(),
        )),
    )
    .await;
    // The emulator has no such document: NOT_FOUND is its answer, not a stall.
    match unary {
        Ok(_) => {}
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
    }
    let open = proxy
        .metric("firegate_upstream_connections{client=\"grpc\"}")
        .await
        .expect("the gauge");
    assert!(
        open >= 4.0,
        "{open} connections for {} streams",
        calls.len() + 1
    );
}
