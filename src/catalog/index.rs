//! The ownership index: built once per sync from the catalog's entities,
//! then only read. Every ref is interned to a dense `u32` id, and what a
//! decision needs is kept per id in plain vectors: a decision is one hash
//! lookup of the entity ref, a few vector reads and a binary search,
//! whatever the catalog's size.
//!
//! - entity → its owners (`spec.owner` and `ownedBy` relations);
//! - user → every group it is a member of, directly (`spec.memberOf`,
//!   `memberOf` relations, a group's `hasMember` relations) or through the
//!   hierarchy (`spec.parent`, `spec.children`, `childOf` / `parentOf`
//!   relations: a member of a child group is a member of its parents),
//!   closed at build time; a cycle just makes its groups ancestors of one
//!   another.
//!
//! Refs to groups that are not in the catalog are dropped from the
//! hierarchy and from memberships (counted as `dangling`): a membership
//! in a group nobody defined grants nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::refs::{kind_of, normalize};

/// The hasher of the index's tables: foldhash, randomly seeded per process
/// (a catalog's names cannot be chosen to collide), and several times
/// faster than SipHash on the short refs a decision looks up.
type Fast = foldhash::fast::RandomState;
type Map<K, V> = HashMap<K, V, Fast>;
type Set<K> = HashSet<K, Fast>;

/// Most groups one group may have as ancestors, and one user be a member
/// of; past it the closure stops (and a membership through the rest is not
/// seen: fail closed, counted in [`Stats::truncated`]).
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
    /// Groups whose ancestors, or users whose groups, were cut at
    /// [`MAX_ANCESTORS`].
    pub truncated: usize,
}

#[derive(Default)]
struct Interner {
    ids: Map<Arc<str>, u32>,
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

/// What an interned ref names in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Only referenced (an owner, a parent, a member) by some entity.
    Missing,
    Group,
    User,
    Other,
}

/// A caller resolved against one index (and kept on its principal per
/// view): the interned id of its user ref (`None` when the catalog never
/// names it: it owns nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(Option<u32>);

impl Caller {
    /// A caller the catalog does not know (no user ref): owns nothing.
    pub const NOBODY: Caller = Caller(None);

    /// As kept in a principal's memo: the id, or `u32::MAX` for nobody
    /// (`None`: an id that cannot be told from nobody, not kept).
    pub(super) fn to_memo(self) -> Option<u32> {
        match self.0 {
            Some(u32::MAX) => None,
            Some(id) => Some(id),
            None => Some(u32::MAX),
        }
    }

    pub(super) fn from_memo(word: u32) -> Caller {
        Caller((word != u32::MAX).then_some(word))
    }
}

/// The index itself. Immutable; a sync builds a new one.
pub struct Index {
    interner: Interner,
    /// Per id: what it names.
    kinds: Vec<Kind>,
    /// Per id: its owners, sorted (empty: none).
    owners: Vec<Box<[u32]>>,
    /// Per user id: every group it is a member of, directly or through the
    /// hierarchy, sorted (empty for every other id).
    groups_of: Vec<Box<[u32]>>,
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
    owners: Map<u32, Vec<u32>>,
    groups: Set<u32>,
    users: Set<u32>,
    /// Every other entity.
    others: Set<u32>,
    /// child group → parent groups (unchecked refs).
    parents: Map<u32, Vec<u32>>,
    /// user → groups (unchecked refs).
    memberships: Map<u32, Vec<u32>>,
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
            _ => {
                self.others.insert(me);
            }
        }
    }

    /// Close the hierarchy and freeze.
    pub fn build(mut self) -> Index {
        let groups = &self.groups;
        let mut dangling = 0;
        let mut parents: Map<u32, Vec<u32>> = Map::default();
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
        // Every group → its ancestors and itself.
        let mut truncated = 0;
        let mut ancestors: Map<u32, Box<[u32]>> = Map::default();
        ancestors.reserve(groups.len());
        let mut seen = Set::default();
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
            ancestors.insert(g, seen.iter().copied().collect());
        }
        let ids = self.interner.names.len();
        let mut kinds = vec![Kind::Missing; ids];
        for (set, kind) in [
            (&self.groups, Kind::Group),
            (&self.users, Kind::User),
            (&self.others, Kind::Other),
        ] {
            for &id in set {
                kinds[id as usize] = kind;
            }
        }
        // Every user → the ancestors of its direct groups, closed once here
        // so a decision is one binary search.
        let mut groups_of: Vec<Box<[u32]>> = vec![Box::default(); ids];
        for (user, gs) in std::mem::take(&mut self.memberships) {
            if !self.users.contains(&user) {
                // `hasMember` naming a user the catalog lacks: nobody can
                // be identified as it, so it grants nothing.
                continue;
            }
            let mut all: Vec<u32> = Vec::new();
            for g in gs {
                match ancestors.get(&g) {
                    Some(a) => all.extend_from_slice(a),
                    None => dangling += 1,
                }
            }
            all.sort_unstable();
            all.dedup();
            if all.len() > MAX_ANCESTORS {
                all.truncate(MAX_ANCESTORS);
                truncated += 1;
            }
            groups_of[user as usize] = all.into_boxed_slice();
        }
        let mut owners: Vec<Box<[u32]>> = vec![Box::default(); ids];
        for (e, mut o) in self.owners {
            o.sort_unstable();
            o.dedup();
            owners[e as usize] = o.into_boxed_slice();
        }
        let stats = Stats {
            groups: groups.len(),
            users: self.users.len(),
            dangling,
            truncated,
            ..self.stats
        };
        let mut index = Index {
            interner: self.interner,
            kinds,
            owners,
            groups_of,
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

    fn kind(&self, id: u32) -> Kind {
        self.kinds
            .get(id as usize)
            .copied()
            .unwrap_or(Kind::Missing)
    }

    fn ids_of(&self, kind: Kind) -> impl Iterator<Item = u32> + '_ {
        (0..self.kinds.len() as u32).filter(move |&id| self.kind(id) == kind)
    }

    fn owners_of(&self, id: u32) -> &[u32] {
        self.owners.get(id as usize).map_or(&[], |o| o)
    }

    fn groups_of(&self, user: u32) -> &[u32] {
        self.groups_of.get(user as usize).map_or(&[], |g| g)
    }

    /// The caller whose canonical user ref is `user`, resolved once and
    /// then used for every rule and target of a request.
    pub fn caller(&self, user: &str) -> Caller {
        Caller(self.id(user))
    }

    /// Whether the catalog holds this entity (canonical ref).
    pub fn contains(&self, canonical: &str) -> bool {
        self.id(canonical)
            .is_some_and(|id| self.kind(id) != Kind::Missing)
    }

    /// The owners of an entity (canonical refs), empty when unknown.
    pub fn owners(&self, canonical: &str) -> Vec<&str> {
        self.id(canonical)
            .map(|id| self.owners_of(id).iter().map(|&o| self.name(o)).collect())
            .unwrap_or_default()
    }

    /// Whether the caller is a member of `group`, directly or through the
    /// hierarchy (only groups of the catalog are in a user's list).
    fn member(&self, user: u32, group: u32) -> bool {
        self.groups_of(user).binary_search(&group).is_ok()
    }

    /// Whether the caller is an owner of the entity (id), or a member of
    /// an owning group.
    fn owns_id(&self, user: u32, entity: u32) -> bool {
        self.owners_of(entity)
            .iter()
            .any(|&o| o == user || self.member(user, o))
    }

    /// Whether `caller` owns `entity` (canonical): it is an owner, or a
    /// member of an owning group. An entity the catalog lacks is owned by
    /// nobody.
    pub fn caller_owns(&self, caller: Caller, entity: &str) -> bool {
        match (caller.0, self.id(entity)) {
            (Some(u), Some(e)) => self.owns_id(u, e),
            _ => false,
        }
    }

    /// Whether `caller` is a member of `group` (canonical), directly or
    /// through the hierarchy. A group the catalog lacks has no members.
    pub fn caller_is_member(&self, caller: Caller, group: &str) -> bool {
        match (caller.0, self.id(group)) {
            (Some(u), Some(g)) => self.member(u, g),
            _ => false,
        }
    }

    /// Whether `user` (canonical) owns `entity` (canonical).
    pub fn owns(&self, user: &str, entity: &str) -> bool {
        self.caller_owns(self.caller(user), entity)
    }

    /// Whether `user` is a member of `group` (both canonical).
    pub fn is_member(&self, user: &str, group: &str) -> bool {
        self.caller_is_member(self.caller(user), group)
    }

    /// Every entity that has an owner (canonical refs), for expanding
    /// catalog-bound rules against a snapshot.
    pub fn owned_entities(&self) -> impl Iterator<Item = &str> {
        (0..self.owners.len() as u32)
            .filter(|&id| !self.owners_of(id).is_empty())
            .map(|id| self.name(id))
    }

    /// Every group of the catalog (canonical refs).
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.ids_of(Kind::Group).map(|g| self.name(g))
    }

    /// Every user that owns `entity` (for `policy who-can`), sorted.
    pub fn owning_users(&self, entity: &str) -> Vec<&str> {
        let Some(e) = self.id(entity) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self
            .ids_of(Kind::User)
            .filter(|&u| self.owns_id(u, e))
            .map(|u| self.name(u))
            .collect();
        for &o in self.owners_of(e) {
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
            .ids_of(Kind::User)
            .filter(|&u| self.member(u, g))
            .map(|u| self.name(u))
            .collect();
        out.sort_unstable();
        out
    }

    /// Roughly the heap bytes the index holds (hash table at capacity,
    /// vectors, slices, interned strings), for the memory bench.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket; buckets ≥ capacity·8/7.
        let table = self.interner.ids.capacity() * 8 / 7 * (size_of::<(Arc<str>, u32)>() + 1);
        let slices = |v: &Vec<Box<[u32]>>| -> usize {
            v.capacity() * size_of::<Box<[u32]>>()
                + v.iter().map(|s| s.len() * size_of::<u32>()).sum::<usize>()
        };
        let strings: usize = self
            .interner
            .names
            .iter()
            .map(|s| s.len() + 2 * size_of::<usize>())
            .sum();
        table
            + self.interner.names.capacity() * size_of::<Arc<str>>()
            + strings
            + self.kinds.capacity() * size_of::<Kind>()
            + slices(&self.owners)
            + slices(&self.groups_of)
    }

    /// Order-independent digest of the content (ids are not: they follow
    /// the order entities came in).
    fn compute_digest(&self) -> u64 {
        // Fixed keys: equal content gives equal digests across indexes.
        let state = foldhash::fast::FixedState::with_seed(0x29c);
        let mut total: u64 = 0;
        for id in 0..self.kinds.len() as u32 {
            let (kind, owners, groups) = (self.kind(id), self.owners_of(id), self.groups_of(id));
            if kind == Kind::Missing && owners.is_empty() {
                continue;
            }
            let mut h = state.build_hasher();
            kind.hash(&mut h);
            self.name(id).hash(&mut h);
            for list in [owners, groups] {
                let mut names: Vec<&str> = list.iter().map(|&v| self.name(v)).collect();
                names.sort_unstable();
                names.hash(&mut h);
            }
            total = total.wrapping_add(h.finish());
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
