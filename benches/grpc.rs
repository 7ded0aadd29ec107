//! The gRPC path's cost beside REST's: a 500-write `Commit` decoded,
//! classified and re-encoded (REST's `classify` bench does the JSON one), and
//! one `GetDocument` per iteration called directly on the fake gRPC upstream
//! and through the whole pipeline (token cache hit, classify, cached
//! decision, audit to file, forward over the one HTTP/2 channel), with a
//! REST GET through the same firegate for comparison.
//!
//! `cargo bench --bench grpc -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use tokio::runtime::Runtime;

use firegate::grpc::{self, GrpcMethod, GrpcRequest};
use support::grpc::{GrpcUpstream, proto, with_auth};
use support::{TestProxy, config};

const ROOT: &str = "projects/p/databases/(default)/documents";

fn value(v: proto::value::ValueType) -> proto::Value {
    proto::Value {
        value_type: Some(v),
    }
}

/// The same 500 writes as `benches/classify.rs`'s `:commit`.
fn commit_500() -> Vec<u8> {
    use proto::value::ValueType as V;
    let writes = (0..500)
        .map(|i| {
            let operation = match i % 4 {
                0 => proto::write::Operation::Update(proto::Document {
                    name: format!("{ROOT}/teams/t{i}/deployments/d{i}"),
                    fields: [
                        ("env".to_owned(), value(V::StringValue("prod".into()))),
                        ("n".to_owned(), value(V::IntegerValue(i))),
                        (
                            "tags".to_owned(),
                            value(V::ArrayValue(proto::ArrayValue {
                                values: vec![
                                    value(V::StringValue("a".into())),
                                    value(V::StringValue("b".into())),
                                ],
                            })),
                        ),
                    ]
                    .into(),
                    ..Default::default()
                }),
                1 => proto::write::Operation::Delete(format!("{ROOT}/teams/t{i}/deployments/d{i}")),
                2 => proto::write::Operation::Update(proto::Document {
                    name: format!("{ROOT}/catalog/c{i}"),
                    fields: [("kind".to_owned(), value(V::StringValue("Component".into())))].into(),
                    ..Default::default()
                }),
                _ => proto::write::Operation::Transform(proto::DocumentTransform {
                    document: format!("{ROOT}/counters/c{i}"),
                    field_transforms: vec![proto::document_transform::FieldTransform {
                        field_path: "n".into(),
                        transform_type: Some(
                            proto::document_transform::field_transform::TransformType::Increment(
                                value(V::IntegerValue(1)),
                            ),
                        ),
                    }],
                }),
            };
            proto::Write {
                operation: Some(operation),
                ..Default::default()
            }
        })
        .collect();
    proto::CommitRequest {
        database: "projects/p/databases/(default)".into(),
        writes,
        transaction: Vec::new(),
    }
    .encode_to_vec()
}

fn bench_classify(c: &mut Criterion) {
    let bytes = commit_500();
    let mut group = c.benchmark_group("grpc_classify");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("commit_500_writes", |b| {
        b.iter(|| {
            let request =
                GrpcRequest::decode(GrpcMethod::Commit, black_box(&bytes)).expect("decode");
            let classified = grpc::classify(&request).expect("classify");
            (classified.operation.targets.len(), request.encode().len())
        })
    });
    group.finish();
}

fn bench_calls(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let up = rt.block_on(GrpcUpstream::start());
    let proxy = rt.block_on(TestProxy::start(&config::plain(&up.url()).yaml()));
    let bearer = proxy.bearer();
    let direct = rt.block_on(support::grpc::client(up_addr(&up)));
    let through = rt.block_on(support::grpc::client(proxy.addr));
    let rest = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .expect("client");
    let rest_url = proxy.http("/v1/projects/p/databases/(default)/documents/rooms/r1");
    let get = proto::GetDocumentRequest {
        name: format!("{ROOT}/rooms/r1"),
        ..Default::default()
    };

    let mut group = c.benchmark_group("get_document");
    group.throughput(Throughput::Elements(1));
    for (name, client) in [("grpc_direct", &direct), ("grpc_pipeline", &through)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut client = client.clone();
                let request = with_auth(get.clone(), &bearer);
                async move { client.get_document(request).await.expect("GetDocument") }
            })
        });
    }
    group.bench_function("rest_pipeline", |b| {
        b.to_async(&rt).iter(|| async {
            let response = rest
                .get(&rest_url)
                .header("authorization", &bearer)
                .send()
                .await
                .expect("send");
            response.bytes().await.expect("body")
        })
    });
    group.finish();
    drop(proxy);
    drop(up);
}

fn up_addr(up: &GrpcUpstream) -> std::net::SocketAddr {
    up.url()
        .trim_start_matches("http://")
        .parse()
        .expect("fake address")
}

criterion_group!(benches, bench_classify, bench_calls);
criterion_main!(benches);
