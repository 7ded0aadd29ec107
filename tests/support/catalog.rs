//! A fake Backstage catalog: `GET /api/catalog/entities/by-query` paged by
//! `cursor` (an offset here) and `limit`, behind a static token; its
//! entities can be replaced and the whole service taken down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::fake::{self, FakeServer};

pub const CATALOG_TOKEN: &str = "fake-catalog-token";

pub struct FakeCatalog {
    pub server: FakeServer,
    items: Arc<Mutex<Vec<Value>>>,
    up: Arc<AtomicBool>,
}

impl FakeCatalog {
    pub async fn start(items: Vec<Value>) -> FakeCatalog {
        let shared = Arc::new(Mutex::new(items));
        let up = Arc::new(AtomicBool::new(true));
        let (items, alive) = (Arc::clone(&shared), Arc::clone(&up));
        let server = fake::server()
            .route(Method::GET, "/api/catalog/entities/by-query", move |req| {
                if !alive.load(Ordering::SeqCst) {
                    return (StatusCode::SERVICE_UNAVAILABLE, json!({}));
                }
                if req.header("authorization") != Some(&format!("Bearer {CATALOG_TOKEN}")) {
                    return (StatusCode::UNAUTHORIZED, json!({"error": "no token"}));
                }
                // Only the numeric parameters are read: no decoding needed.
                let query = req.query.clone().unwrap_or_default();
                let param = |k: &str| {
                    query
                        .split('&')
                        .filter_map(|p| p.split_once('='))
                        .find(|(n, _)| *n == k)
                        .map(|(_, v)| v.to_owned())
                };
                let from: usize = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                let limit: usize = param("limit").and_then(|c| c.parse().ok()).unwrap_or(1000);
                let all = items.lock().expect("items").clone();
                let page: Vec<Value> = all.iter().skip(from).take(limit).cloned().collect();
                let next = from + page.len();
                let info = if next < all.len() {
                    json!({"nextCursor": next.to_string()})
                } else {
                    json!({})
                };
                (
                    StatusCode::OK,
                    json!({"items": page, "totalItems": 0, "pageInfo": info}),
                )
            })
            .start()
            .await;
        FakeCatalog {
            server,
            items: shared,
            up,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn set(&self, items: Vec<Value>) {
        *self.items.lock().expect("items") = items;
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
    }
}

/// Groups org ⊃ payments, search; users alice (payments), bob (search);
/// components owned as given.
pub fn entities(components: &[(&str, &str)]) -> Vec<Value> {
    let mut items = vec![
        json!({"kind": "Group", "metadata": {"name": "org", "namespace": "default"}}),
        json!({"kind": "Group", "metadata": {"name": "payments", "namespace": "default"}, "spec": {"parent": "org"}}),
        json!({"kind": "Group", "metadata": {"name": "search", "namespace": "default"}, "spec": {"parent": "org"}}),
        json!({"kind": "User", "metadata": {"name": "alice", "namespace": "default"}, "spec": {"memberOf": ["payments"]}}),
        json!({"kind": "User", "metadata": {"name": "bob", "namespace": "default"}, "spec": {"memberOf": ["search"]}}),
    ];
    items.extend(components.iter().map(|(name, owner)| {
        json!({"kind": "Component", "metadata": {"name": name, "namespace": "default"}, "spec": {"owner": owner, "type": "service"}})
    }));
    items
}
