//! The ownership index: built once per sync from the catalog's entities,
//! then only read. Every ref is interned to a `u32`; a decision is a few
//! hash lookups and binary searches, whatever the catalog's size.
//!
//! - entity → its owners (`spec.owner` and `ownedBy` relations);
//! - group → its ancestors, itself included (`spec.parent`, `spec.children`,
//!   `childOf` / `parentOf` relations), closed at build time; a cycle just
//!   makes its groups ancestors of one another;
//! - user → the groups it is a direct member of (`spec.memberOf`,
//!   `memberOf` relations, a group's `hasMember` relations).
//!
//! Refs to groups that are not in the catalog are dropped from the
//! hierarchy and from memberships (counted as `dangling`): a membership
//! in a group nobody defined grants nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::refs::{kind_of, normalize};

/// Most ancestors one group may have; past it the closure stops (and a
/// membership through the rest is not seen: fail closed, logged).
pub const MAX_ANCESTORS: usize = 4096;

/// What the sync saw, for logs and `/readyz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entities: usize,
    pub groups: usize,
    pub users: usize,
    /// Entities without a kind or name, skipped.
    pub skipped: usize,
    /// Parent, child or membership refs naming no group of the catalog.
    pub dangling: usize,
    /// Groups whose ancestors were cut at [`MAX_ANCESTORS`].
    pub truncated: usize,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&id) = self.ids.get(name.as_str()) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = name.into();
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }
}

/// The index itself. Immutable; a sync builds a new one.
pub struct Index {
    interner: Interner,
    owners: HashMap<u32, Box<[u32]>>,
    /// Every group of the catalog → its ancestors and itself, sorted.
    ancestors: HashMap<u32, Box<[u32]>>,
    /// Every user of the catalog → its direct groups (existing ones).
    member_of: HashMap<u32, Box<[u32]>>,
    stats: Stats,
    /// A digest of the content: an unchanged catalog keeps its generation.
    digest: u64,
}

/// One entity as `by-query` returns it with the fields firegate asks for.
#[derive(Debug, Deserialize)]
struct RawEntity {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: RawMetadata,
    #[serde(default)]
    spec: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    relations: Vec<RawRelation>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRelation {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "targetRef", default)]
    target_ref: Option<String>,
}

/// Collects entities page by page, then closes the hierarchy.
#[derive(Default)]
pub struct Builder {
    interner: Interner,
    owners: HashMap<u32, Vec<u32>>,
    groups: HashSet<u32>,
    users: HashSet<u32>,
    /// child group → parent groups (unchecked refs).
    parents: HashMap<u32, Vec<u32>>,
    /// user → groups (unchecked refs).
    memberships: HashMap<u32, Vec<u32>>,
    stats: Stats,
}

impl Builder {
    /// Add one entity given as JSON; a malformed one is skipped.
    pub fn add_value(&mut self, entity: Value) {
        match serde_json::from_value::<RawEntity>(entity) {
            Ok(raw) => self.add(raw),
            Err(_) => self.stats.skipped += 1,
        }
    }

    /// Add the entities of one `by-query` page (or a snapshot's `items`).
    pub fn add_items(&mut self, items: Vec<Value>) {
        for item in items {
            self.add_value(item);
        }
    }

    fn add(&mut self, raw: RawEntity) {
        let (Some(kind), Some(name)) = (raw.kind.as_deref(), raw.metadata.name.as_deref()) else {
            self.stats.skipped += 1;
            return;
        };
        let namespace = raw.metadata.namespace.as_deref().unwrap_or("default");
        let Some(me) = normalize(&format!("{kind}:{namespace}/{name}"), None, "default") else {
            self.stats.skipped += 1;
            return;
        };
        let kind = kind_of(&me).to_owned();
        let me = self.interner.intern(me);
        self.stats.entities += 1;
        let spec = raw.spec.unwrap_or_default();
        let spec_refs = |key: &str| -> Vec<String> {
            match spec.get(key) {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut refs = |texts: Vec<String>, default_kind: &str| -> Vec<u32> {
            texts
                .iter()
                .filter_map(|t| normalize(t, Some(default_kind), namespace))
                .map(|r| self.interner.intern(r))
                .collect()
        };
        let owners = refs(spec_refs("owner"), "group");
        let parent = refs(spec_refs("parent"), "group");
        let children = refs(spec_refs("children"), "group");
        let member_of = refs(spec_refs("memberOf"), "group");
        let mut related = |wanted: &str| -> Vec<u32> {
            let texts = raw
                .relations
                .iter()
                .filter(|r| r.kind.eq_ignore_ascii_case(wanted))
                .filter_map(|r| r.target_ref.clone())
                .collect();
            refs(texts, "group")
        };
        let owned_by = related("ownedBy");
        let child_of = related("childOf");
        let parent_of = related("parentOf");
        let member_of_rel = related("memberOf");
        let has_member = related("hasMember");
        let mut all_owners: Vec<u32> = owners.into_iter().chain(owned_by).collect();
        all_owners.sort_unstable();
        all_owners.dedup();
        if !all_owners.is_empty() {
            self.owners.entry(me).or_default().extend(all_owners);
        }
        match kind.as_str() {
            "group" => {
                self.groups.insert(me);
                for p in parent.into_iter().chain(child_of) {
                    self.parents.entry(me).or_default().push(p);
                }
                for c in children.into_iter().chain(parent_of) {
                    self.parents.entry(c).or_default().push(me);
                }
                for u in has_member {
                    self.memberships.entry(u).or_default().push(me);
                }
            }
            "user" => {
                self.users.insert(me);
                for g in member_of.into_iter().chain(member_of_rel) {
                    self.memberships.entry(me).or_default().push(g);
                }
            }
            _ => {}
        }
    }

    /// Close the hierarchy and freeze.
    pub fn build(mut self) -> Index {
        let groups = &self.groups;
        let mut dangling = 0;
        let mut parents: HashMap<u32, Vec<u32>> = HashMap::with_capacity(self.parents.len());
        for (child, ps) in std::mem::take(&mut self.parents) {
            if !groups.contains(&child) {
                dangling += ps.len();
                continue;
            }
            let mut kept: Vec<u32> = ps
                .into_iter()
                .filter(|p| {
                    let ok = groups.contains(p);
                    dangling += usize::from(!ok);
                    ok
                })
                .collect();
            kept.sort_unstable();
            kept.dedup();
            parents.insert(child, kept);
        }
        let mut truncated = 0;
        let mut ancestors = HashMap::with_capacity(groups.len());
        let mut seen = HashSet::new();
        let mut queue = VecDeque::new();
        for &g in groups {
            seen.clear();
            queue.clear();
            seen.insert(g);
            queue.push_back(g);
            while let Some(at) = queue.pop_front() {
                for &p in parents.get(&at).map_or(&[][..], Vec::as_slice) {
                    if seen.len() >= MAX_ANCESTORS {
                        break;
                    }
                    if seen.insert(p) {
                        queue.push_back(p);
                    }
                }
            }
            if seen.len() >= MAX_ANCESTORS {
                truncated += 1;
            }
            let mut all: Vec<u32> = seen.iter().copied().collect();
            all.sort_unstable();
            ancestors.insert(g, all.into_boxed_slice());
        }
        let mut member_of = HashMap::with_capacity(self.users.len());
        for (user, gs) in std::mem::take(&mut self.memberships) {
            if !self.users.contains(&user) {
                // `hasMember` naming a user the catalog lacks: nobody can
                // be identified as it, so it grants nothing.
                continue;
            }
            let mut kept: Vec<u32> = gs
                .into_iter()
                .filter(|g| {
                    let ok = groups.contains(g);
                    dangling += usize::from(!ok);
                    ok
                })
                .collect();
            kept.sort_unstable();
            kept.dedup();
            member_of.insert(user, kept.into_boxed_slice());
        }
        let owners: HashMap<u32, Box<[u32]>> = self
            .owners
            .into_iter()
            .map(|(e, mut o)| {
                o.sort_unstable();
                o.dedup();
                (e, o.into_boxed_slice())
            })
            .collect();
        let stats = Stats {
            groups: groups.len(),
            users: self.users.len(),
            dangling,
            truncated,
            ..self.stats
        };
        let mut index = Index {
            interner: self.interner,
            owners,
            ancestors,
            member_of,
            stats,
            digest: 0,
        };
        index.digest = index.compute_digest();
        index
    }
}

impl Index {
    /// An index of `items` (entities as `by-query` returns them).
    pub fn from_items(items: Vec<Value>) -> Index {
        let mut builder = Builder::default();
        builder.add_items(items);
        builder.build()
    }

    /// An empty index (no entity: every catalog rule matches nobody).
    pub fn empty() -> Index {
        Builder::default().build()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn id(&self, canonical: &str) -> Option<u32> {
        self.interner.ids.get(canonical).copied()
    }

    fn name(&self, id: u32) -> &str {
        self.interner.names.get(id as usize).map_or("", |s| s)
    }

    /// Whether the catalog holds this entity (canonical ref).
    pub fn contains(&self, canonical: &str) -> bool {
        self.id(canonical).is_some_and(|id| {
            self.owners.contains_key(&id)
                || self.ancestors.contains_key(&id)
                || self.member_of.contains_key(&id)
        })
    }

    /// The owners of an entity (canonical refs), empty when unknown.
    pub fn owners(&self, canonical: &str) -> Vec<&str> {
        self.id(canonical)
            .and_then(|id| self.owners.get(&id))
            .map(|o| o.iter().map(|&id| self.name(id)).collect())
            .unwrap_or_default()
    }

    /// Whether `user` is a member of `group`, directly or through the
    /// hierarchy (a member of a child group is a member of its parents).
    fn member(&self, user: Option<u32>, group: u32) -> bool {
        let Some(direct) = user.and_then(|u| self.member_of.get(&u)) else {
            return false;
        };
        direct.iter().any(|d| {
            self.ancestors
                .get(d)
                .is_some_and(|a| a.binary_search(&group).is_ok())
        })
    }

    /// Whether `user` (canonical) owns `entity` (canonical): it is an
    /// owner, or a member of an owning group. An entity the catalog lacks
    /// is owned by nobody.
    pub fn owns(&self, user: &str, entity: &str) -> bool {
        let Some(owners) = self.id(entity).and_then(|e| self.owners.get(&e)) else {
            return false;
        };
        let user = self.id(user);
        owners
            .iter()
            .any(|&o| Some(o) == user || (self.ancestors.contains_key(&o) && self.member(user, o)))
    }

    /// Whether `user` is a member of `group` (both canonical), directly or
    /// through the hierarchy. A group the catalog lacks has no members.
    pub fn is_member(&self, user: &str, group: &str) -> bool {
        match self.id(group) {
            Some(g) if self.ancestors.contains_key(&g) => self.member(self.id(user), g),
            _ => false,
        }
    }

    /// Every entity that has an owner (canonical refs), for expanding
    /// catalog-bound rules against a snapshot.
    pub fn owned_entities(&self) -> impl Iterator<Item = &str> {
        self.owners.keys().map(|&e| self.name(e))
    }

    /// Every group of the catalog (canonical refs).
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.ancestors.keys().map(|&g| self.name(g))
    }

    /// Every user that owns `entity` (for `policy who-can`), sorted.
    pub fn owning_users(&self, entity: &str) -> Vec<&str> {
        let Some(owners) = self.id(entity).and_then(|e| self.owners.get(&e)) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self
            .member_of
            .keys()
            .filter(|&&u| {
                owners.iter().any(|&o| {
                    o == u || (self.ancestors.contains_key(&o) && self.member(Some(u), o))
                })
            })
            .map(|&u| self.name(u))
            .collect();
        for &o in owners.iter() {
            if kind_of(self.name(o)) == "user" && !out.contains(&self.name(o)) {
                out.push(self.name(o));
            }
        }
        out.sort_unstable();
        out
    }

    /// Every user that is a member of `group` (for `policy who-can`), sorted.
    pub fn members(&self, group: &str) -> Vec<&str> {
        let Some(g) = self.id(group) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self
            .member_of
            .keys()
            .filter(|&&u| self.member(Some(u), g))
            .map(|&u| self.name(u))
            .collect();
        out.sort_unstable();
        out
    }

    /// Roughly the heap bytes the index holds (hash tables at capacity,
    /// slices, interned strings), for the memory bench.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        fn table<K, V>(map: &HashMap<K, V>) -> usize {
            // hashbrown: one control byte per bucket; buckets ≥ capacity·8/7.
            map.capacity() * 8 / 7 * (size_of::<(K, V)>() + 1)
        }
        let slices = |map: &HashMap<u32, Box<[u32]>>| -> usize {
            table(map)
                + map
                    .values()
                    .map(|s| s.len() * size_of::<u32>())
                    .sum::<usize>()
        };
        let strings: usize = self
            .interner
            .names
            .iter()
            .map(|s| s.len() + 2 * size_of::<usize>())
            .sum();
        table(&self.interner.ids)
            + self.interner.names.capacity() * size_of::<Arc<str>>()
            + strings
            + slices(&self.owners)
            + slices(&self.ancestors)
            + slices(&self.member_of)
    }

    /// Order-independent digest of the content.
    fn compute_digest(&self) -> u64 {
        let mut total: u64 = 0;
        let mut mix = |tag: u8, key: &str, values: &[u32]| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            tag.hash(&mut h);
            key.hash(&mut h);
            let mut names: Vec<&str> = values.iter().map(|&v| self.name(v)).collect();
            names.sort_unstable();
            names.hash(&mut h);
            total = total.wrapping_add(h.finish());
        };
        for (k, v) in &self.owners {
            mix(0, self.name(*k), v);
        }
        for (k, v) in &self.ancestors {
            mix(1, self.name(*k), v);
        }
        for (k, v) in &self.member_of {
            mix(2, self.name(*k), v);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(name: &str, parent: Option<&str>, children: &[&str]) -> Value {
        let mut spec = json!({"type": "team", "children": children});
        if let Some(p) = parent {
            spec["parent"] = json!(p);
        }
        json!({"kind": "Group", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    }

    fn user(name: &str, groups: &[&str]) -> Value {
        json!({"kind": "User", "metadata": {"name": name}, "spec": {"memberOf": groups}})
    }

    fn component(name: &str, owner: &str) -> Value {
        json!({"kind": "Component", "metadata": {"name": name, "namespace": "default"}, "spec": {"owner": owner, "type": "service"}})
    }

    fn sample() -> Index {
        Index::from_items(vec![
            group("org", None, &["platform"]),
            group("platform", Some("org"), &[]),
            group("payments", Some("platform"), &[]),
            user("alice", &["payments"]),
            user("bob", &["platform"]),
            user("carol", &["org"]),
            user("dave", &[]),
            component("checkout", "payments"),
            component("billing", "group:default/platform"),
            component("solo", "user:dave"),
        ])
    }

    #[test]
    fn owners_and_members_through_the_hierarchy() {
        let i = sample();
        let owns = |u: &str, c: &str| {
            i.owns(
                &format!("user:default/{u}"),
                &format!("component:default/{c}"),
            )
        };
        assert!(owns("alice", "checkout"));
        assert!(
            !owns("bob", "checkout"),
            "a parent's member does not own a child's service"
        );
        assert!(
            owns("alice", "billing"),
            "a child group's member is a member of its parent"
        );
        assert!(owns("bob", "billing"));
        assert!(!owns("carol", "billing"));
        assert!(owns("dave", "solo"));
        assert!(!owns("alice", "solo"));
        assert!(!owns("alice", "nowhere"));
        assert!(!owns("nobody", "checkout"));
        assert!(i.is_member("user:default/alice", "group:default/org"));
        assert!(!i.is_member("user:default/carol", "group:default/payments"));
        assert_eq!(
            i.owners("component:default/checkout"),
            ["group:default/payments"]
        );
        assert_eq!(
            i.owning_users("component:default/billing"),
            ["user:default/alice", "user:default/bob"]
        );
        assert_eq!(
            i.members("group:default/platform"),
            ["user:default/alice", "user:default/bob"]
        );
    }

    #[test]
    fn relations_count_like_spec_fields() {
        let i = Index::from_items(vec![
            json!({"kind": "Group", "metadata": {"name": "a"}, "relations": [
                {"type": "childOf", "targetRef": "group:default/b"},
                {"type": "hasMember", "targetRef": "user:default/u"}]}),
            json!({"kind": "Group", "metadata": {"name": "b"}}),
            json!({"kind": "User", "metadata": {"name": "u"}}),
            json!({"kind": "User", "metadata": {"name": "v"}, "relations": [
                {"type": "memberOf", "targetRef": "group:default/b"}]}),
            json!({"kind": "Component", "metadata": {"name": "c"}, "relations": [
                {"type": "ownedBy", "targetRef": "group:default/b"}]}),
        ]);
        assert!(i.owns("user:default/u", "component:default/c"));
        assert!(i.owns("user:default/v", "component:default/c"));
    }

    #[test]
    fn cycles_terminate_and_join_their_groups() {
        let i = Index::from_items(vec![
            group("a", Some("b"), &[]),
            group("b", Some("c"), &[]),
            group("c", Some("a"), &[]),
            user("u", &["a"]),
            component("x", "c"),
        ]);
        assert!(i.owns("user:default/u", "component:default/x"));
        assert!(i.is_member("user:default/u", "group:default/b"));
    }

    #[test]
    fn missing_groups_grant_nothing() {
        let i = Index::from_items(vec![
            group("a", Some("ghost-parent"), &[]),
            user("u", &["ghost", "a"]),
            component("x", "ghost"),
            component("y", "ghost-parent"),
            component("z", "a"),
        ]);
        assert!(!i.owns("user:default/u", "component:default/x"));
        assert!(!i.owns("user:default/u", "component:default/y"));
        assert!(i.owns("user:default/u", "component:default/z"));
        assert!(!i.is_member("user:default/u", "group:default/ghost"));
        assert_eq!(i.stats().dangling, 2);
    }

    #[test]
    fn namespaces_and_case_are_canonical() {
        let i = Index::from_items(vec![
            json!({"kind": "Group", "metadata": {"name": "Team-A", "namespace": "Ops"}}),
            json!({"kind": "User", "metadata": {"name": "Alice", "namespace": "ops"}, "spec": {"memberOf": ["team-a"]}}),
            json!({"kind": "Component", "metadata": {"name": "Svc", "namespace": "ops"}, "spec": {"owner": "Team-A"}}),
        ]);
        assert!(i.owns("user:ops/alice", "component:ops/svc"));
        assert!(!i.owns("user:default/alice", "component:ops/svc"));
    }

    #[test]
    fn the_digest_follows_content_not_order() {
        let mut items = vec![
            group("a", None, &[]),
            user("u", &["a"]),
            component("x", "a"),
        ];
        let one = Index::from_items(items.clone()).digest();
        items.reverse();
        assert_eq!(one, Index::from_items(items.clone()).digest());
        items.push(component("y", "a"));
        assert_ne!(one, Index::from_items(items).digest());
    }

    proptest::proptest! {
        /// Membership through the hierarchy agrees with a plain graph
        /// search, whatever the edges (cycles and missing groups included).
        #[test]
        fn membership_agrees_with_reachability(
            edges in proptest::collection::vec((0usize..8, 0usize..10), 0..20),
            memberships in proptest::collection::vec((0usize..4, 0usize..10), 0..8),
            spelling in 0usize..3,
        ) {
            // Groups g0..g7 exist; g8, g9 are referenced but missing.
            let spell = |g: usize| match spelling {
                0 => format!("g{g}"),
                1 => format!("group:G{g}"),
                _ => format!("Group:default/g{g}"),
            };
            let mut items: Vec<Value> = (0..8).map(|g| {
                let parents: Vec<String> = edges.iter().filter(|(c, _)| *c == g).map(|(_, p)| spell(*p)).collect();
                json!({"kind": "Group", "metadata": {"name": format!("g{g}")}, "relations":
                    parents.iter().map(|p| json!({"type": "childOf", "targetRef": p})).collect::<Vec<_>>()})
            }).collect();
            for u in 0..4 {
                let gs: Vec<String> = memberships.iter().filter(|(x, _)| *x == u).map(|(_, g)| spell(*g)).collect();
                items.push(json!({"kind": "User", "metadata": {"name": format!("u{u}")}, "spec": {"memberOf": gs}}));
            }
            let index = Index::from_items(items);
            for u in 0..4 {
                for target in 0..10 {
                    // Reference: BFS from the user's existing direct groups.
                    let mut seen: HashSet<usize> = memberships.iter().filter(|(x, g)| *x == u && *g < 8).map(|(_, g)| *g).collect();
                    let mut queue: Vec<usize> = seen.iter().copied().collect();
                    while let Some(at) = queue.pop() {
                        for (c, p) in &edges {
                            if *c == at && *p < 8 && seen.insert(*p) {
                                queue.push(*p);
                            }
                        }
                    }
                    let want = target < 8 && seen.contains(&target);
                    let got = index.is_member(&format!("user:default/u{u}"), &format!("group:default/g{target}"));
                    proptest::prop_assert_eq!(got, want, "u{} g{}", u, target);
                }
            }
        }
    }
}
