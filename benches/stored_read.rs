//! What the stored-document read adds: one GET through `firegate dev` (the
//! embedded emulator upstream) of a catalog entry, decided without reading
//! data, against one of a note under `resource.data.owner ==
//! principal.subject`, which firegate first reads with a `batchGet`.
//!
//! `cargo bench --bench stored_read -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use firegate::dev::{Identity, Stack};

const DOCS: &str = "/v1/projects/demo/databases/(default)/documents";

fn bench_stored_read(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let stack: Stack = rt.block_on(support::dev_stack());
    let alice = Identity {
        subject: "alice".into(),
        email: "alice@example.com".into(),
        groups: vec!["group:default/engineering".into()],
    };
    let token = stack.token(&alice).expect("token");
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .expect("client");
    let base = stack.url();
    let note = serde_json::json!({"fields": {"owner": {"stringValue": "alice"}}});
    let created = rt.block_on(
        client
            .post(format!("{base}{DOCS}/notes?documentId=bench"))
            .bearer_auth(&token)
            .json(&note)
            .send(),
    );
    assert_eq!(created.expect("create").status(), 200);
    let mut group = c.benchmark_group("stored_read");
    for (name, path) in [
        ("get_plain", "/catalog/payments-api"),
        ("get_checked_on_stored", "/notes/bench"),
    ] {
        let url = format!("{base}{DOCS}{path}");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let response = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body")
            })
        });
    }
    group.finish();
    rt.block_on(stack.shutdown());
}

criterion_group!(benches, bench_stored_read);
criterion_main!(benches);
