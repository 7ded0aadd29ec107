//! The catalog index at 100,000 entities: memory and the CPU of a full
//! sync (parsing the `by-query` pages and building the index), then a
//! decision by a catalog-bound rule against one by a plain group rule.
//!
//! `cargo bench --bench catalog` (figures in benches/README.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

use firegate::authn::Principal;
use firegate::catalog::{Identities, Index, View};
use firegate::model::{Access, Database, Method, Operation, Scope, Target};
use firegate::policy::Table;

const ENTITIES: usize = 100_000;
const GROUPS: usize = 2_000;
const USERS: usize = 20_000;
const PAGE: usize = 500;

/// 2,000 groups in a tree (each group's parent is `i / 8`, so 4–5 levels),
/// 20,000 users in one or two groups, the rest components owned by a
/// group (one in twenty by a user), with the relations Backstage adds.
fn entities() -> Vec<Value> {
    let mut out = Vec::with_capacity(ENTITIES);
    for g in 0..GROUPS {
        let mut relations = vec![];
        if g > 0 {
            relations.push(
                json!({"type": "childOf", "targetRef": format!("group:default/team-{}", g / 8)}),
            );
        }
        out.push(json!({"kind": "Group", "metadata": {"name": format!("team-{g}"), "namespace": "default"},
            "spec": {"type": "team", "parent": if g > 0 { json!(format!("team-{}", g / 8)) } else { Value::Null }, "children": []},
            "relations": relations}));
    }
    for u in 0..USERS {
        let mut groups = vec![format!("group:default/team-{}", u % GROUPS)];
        if u % 3 == 0 {
            groups.push(format!("group:default/team-{}", (u * 7) % GROUPS));
        }
        let relations: Vec<Value> = groups
            .iter()
            .map(|g| json!({"type": "memberOf", "targetRef": g}))
            .collect();
        out.push(json!({"kind": "User", "metadata": {"name": format!("user-{u}"), "namespace": "default"},
            "spec": {"memberOf": groups}, "relations": relations}));
    }
    for c in 0..ENTITIES - GROUPS - USERS {
        let owner = if c % 20 == 0 {
            format!("user:default/user-{}", c % USERS)
        } else {
            format!("group:default/team-{}", c % GROUPS)
        };
        out.push(json!({"kind": "Component", "metadata": {"name": format!("svc-{c}"), "namespace": "default"},
            "spec": {"type": "service", "owner": owner},
            "relations": [{"type": "ownedBy", "targetRef": owner}]}));
    }
    out
}

/// The pages as Backstage would send them.
fn pages(items: &[Value]) -> Vec<Vec<u8>> {
    items
        .chunks(PAGE)
        .map(|chunk| {
            serde_json::to_vec(&json!({"items": chunk, "pageInfo": {"nextCursor": "x"}}))
                .expect("page")
        })
        .collect()
}

fn sync(pages: &[Vec<u8>]) -> Index {
    let mut builder = firegate::catalog::index::Builder::default();
    for page in pages {
        let mut value: Value = serde_json::from_slice(page).expect("page");
        if let Some(Value::Array(items)) = value.get_mut("items").map(Value::take) {
            builder.add_items(items);
        }
    }
    builder.build()
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of the whole line; 12 and 13 after the `)`.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn principal(subject: &str) -> Principal {
    Principal::new(
        "https://idp.example.com".into(),
        subject.into(),
        None,
        vec!["group:default/team-77".into()],
        serde_json::Map::new(),
    )
}

fn operation(service: &str) -> Operation {
    Operation::new(
        Database {
            project: "demo".into(),
            database: "(default)".into(),
        },
        Method::Get,
        vec![Target {
            scope: Scope::Document {
                path: ["services", service, "data", "d1"]
                    .map(String::from)
                    .into_iter()
                    .collect(),
            },
            access: Access::Get,
        }],
    )
}

fn bench(c: &mut Criterion) {
    let items = entities();
    let pages = pages(&items);
    drop(items);

    // Full sync: parse every page, build, close the hierarchy. Best of 3.
    let mut best = Duration::MAX;
    let mut best_wall = Duration::MAX;
    for _ in 0..3 {
        let (cpu0, wall0) = (cpu(), Instant::now());
        let index = sync(&pages);
        best = best.min(cpu().saturating_sub(cpu0));
        best_wall = best_wall.min(wall0.elapsed());
        black_box(index);
    }
    let before = rss_bytes();
    let index = sync(&pages);
    let after = rss_bytes();
    let stats = index.stats();
    println!(
        "catalog sync: {} entities ({} groups, {} users) in {} pages: CPU {:.3} s, wall {:.3} s; index ≈ {:.1} MiB (heap estimate), RSS +{:.1} MiB",
        stats.entities,
        stats.groups,
        stats.users,
        pages.len(),
        best.as_secs_f64(),
        best_wall.as_secs_f64(),
        index.heap_bytes() as f64 / (1024.0 * 1024.0),
        after.saturating_sub(before) as f64 / (1024.0 * 1024.0),
    );

    // One decision, uncached: a catalog-bound rule against a plain group
    // rule on the same path, both allowing.
    let view = View::fixed(index, Identities::from_subjects());
    let catalog_rule = Table::from_yaml(
        "rules:\n  - id: owners\n    match: /services/{service}/{rest=**}\n    allow: [read]\n    who: {catalog: {owner_of: \"component:default/{service}\"}}\n",
        1,
    )
    .expect("table");
    let group_rule = Table::from_yaml(
        "rules:\n  - id: team\n    match: /services/{service}/{rest=**}\n    allow: [read]\n    who: {groups: [group:default/team-77]}\n",
        1,
    )
    .expect("table");
    // svc-77 is owned by team-77; user-77 is in team-77 (77 % 2000).
    let owner = principal("user:default/user-77");
    let op = operation("svc-77");
    assert!(
        catalog_rule
            .decide_catalog(&owner, &op, Some(&view))
            .allowed
    );
    assert!(group_rule.decide(&owner, &op).allowed);
    let plain = |p: &Principal| {
        black_box(group_rule.decide(black_box(p), black_box(&op)));
    };
    let catalog = |p: &Principal| {
        black_box(catalog_rule.decide_catalog(black_box(p), black_box(&op), Some(&view)));
    };
    // The caller is kept on the principal, which every request of a token
    // shares: "again" is every request after a token's first since the
    // last sync, "first" that first one (a fresh copy of the principal per
    // decision, for both rules).
    let again = interleaved(&owner, false, plain, catalog);
    let first = interleaved(&owner, true, plain, catalog);
    println!(
        "catalog decision ÷ plain group rule, interleaved batches (median of {ROUNDS}): {again:.2}× (the caller kept on its principal), {first:.2}× (a token's first request after a sync)"
    );
    let mut group = c.benchmark_group("catalog_decision");
    group.bench_function("plain_group_rule", |b| b.iter(|| plain(&owner)));
    group.bench_function("catalog_owner_rule", |b| b.iter(|| catalog(&owner)));
    group.finish();
}

const ROUNDS: usize = 1001;
const BATCH: usize = 1_000;

/// `b`'s cost over `a`'s, from batches run in turn (which goes first
/// alternates) and the median of the rounds' ratios: load that comes and
/// goes on a shared machine falls on both alike. `fresh`: each decision
/// gets its own copy of `p`, made untimed.
fn interleaved(p: &Principal, fresh: bool, a: impl Fn(&Principal), b: impl Fn(&Principal)) -> f64 {
    let time = |f: &dyn Fn(&Principal)| {
        // Few enough copies to stay in cache, as a principal just verified is.
        let batch = if fresh { BATCH / 10 } else { BATCH };
        let copies = if fresh {
            vec![p.clone(); batch]
        } else {
            Vec::new()
        };
        let start = Instant::now();
        for i in 0..batch {
            f(copies.get(i).unwrap_or(p));
        }
        let spent = start.elapsed().as_secs_f64();
        drop(copies);
        spent
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let ta = time(&a);
                time(&b) / ta
            } else {
                let tb = time(&b);
                tb / time(&a)
            }
        })
        .collect();
    ratios.sort_unstable_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
