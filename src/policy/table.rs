//! The compiled, immutable policy table: rules indexed by a trie over path
//! segments, so a lookup costs the path's depth, not the number of rules.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cel::{Env, Value};

use super::compile::{Effect, Rule, compile_rules};
use super::format::{PolicyErrors, Source, read_dir};
use super::pattern::Segment;
use super::requestable::{Requestable, compile_requestable};
use crate::model::data::FieldCapture;
use crate::model::{Scope, Segments};

/// One element of the path a target covers. A scope that covers many paths
/// is written with symbolic tokens, which only wildcards can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A concrete id.
    Id(&'a str),
    /// Every possible single id (the documents of a collection): matched
    /// only by `{x}` (left unbound) or absorbed by `{x=**}`.
    AnyId,
    /// Every possible run of segments (the depths of a collection group or
    /// of a kindless query): only `{x=**}` can absorb it.
    AnySeq,
}

/// The ids of `tokens`, when every one is a concrete id (what a `{x=**}`
/// absorbed binds `x` to, joined with `/`).
pub(super) fn ids_of<'a>(tokens: &[Token<'a>]) -> Option<Vec<&'a str>> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Id(id) => Some(*id),
            Token::AnyId | Token::AnySeq => None,
        })
        .collect()
}

/// The tokens whose every instantiation a covering pattern must match.
pub fn tokens(scope: &Scope) -> Vec<Token<'_>> {
    // Room for what the scope adds after its path (three tokens at most).
    fn ids(p: &Segments) -> Vec<Token<'_>> {
        let mut t = Vec::with_capacity(p.len() + 3);
        t.extend(p.iter().map(Token::Id));
        t
    }
    match scope {
        Scope::Document { path } => ids(path),
        Scope::Collection { parent, collection } => {
            let mut t = ids(parent);
            t.extend([Token::Id(collection), Token::AnyId]);
            t
        }
        Scope::CollectionGroup { parent, collection } => {
            let mut t = ids(parent);
            t.extend([Token::AnySeq, Token::Id(collection), Token::AnyId]);
            t
        }
        // At least one collection and document below the parent, then any depth.
        Scope::Descendants { parent } => {
            let mut t = ids(parent);
            t.extend([Token::AnyId, Token::AnyId, Token::AnySeq]);
            t
        }
        // The collection's documents, then any depth below them.
        Scope::Subtree { parent, collection } => {
            let mut t = ids(parent);
            t.extend([Token::Id(collection), Token::AnyId, Token::AnySeq]);
            t
        }
        // "list on the parent": a pattern that matches the parent document.
        Scope::CollectionIds { parent } => ids(parent),
    }
}

/// A rule whose pattern covers the tokens; `span` is what its recursive
/// wildcard absorbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub rule: usize,
    pub span: Option<(usize, usize)>,
}

#[derive(Default)]
struct Node {
    /// Keyed by the policy's ids and probed with each request's: foldhash
    /// (seeded per process) rather than SipHash, as the memo is; what the
    /// caller sends can only probe this map, never grow it.
    literal: HashMap<String, Node, foldhash::fast::RandomState>,
    wildcard: Option<Box<Node>>,
    /// The sub-trie of what follows a `{x=**}` segment.
    recursive: Option<Box<Node>>,
    /// Rules whose pattern ends here.
    rules: Vec<usize>,
}

impl Node {
    fn insert(&mut self, segments: &[Segment], rule: usize) {
        let Some((first, rest)) = segments.split_first() else {
            self.rules.push(rule);
            return;
        };
        let child = match first {
            Segment::Literal(id) => self.literal.entry(id.clone()).or_default(),
            Segment::Wildcard(_) => self.wildcard.get_or_insert_with(Default::default),
            Segment::Recursive(_) => self.recursive.get_or_insert_with(Default::default),
        };
        child.insert(rest, rule);
    }

    fn walk(
        &self,
        tokens: &[Token],
        pos: usize,
        span: Option<(usize, usize)>,
        out: &mut Vec<Match>,
    ) {
        match tokens.get(pos) {
            None => out.extend(self.rules.iter().map(|&rule| Match { rule, span })),
            Some(Token::Id(id)) => {
                if let Some(next) = self.literal.get(*id) {
                    next.walk(tokens, pos + 1, span, out);
                }
                if let Some(next) = &self.wildcard {
                    next.walk(tokens, pos + 1, span, out);
                }
            }
            Some(Token::AnyId) => {
                if let Some(next) = &self.wildcard {
                    next.walk(tokens, pos + 1, span, out);
                }
            }
            Some(Token::AnySeq) => {}
        }
        // A pattern has at most one recursive wildcard, so `span` is still
        // `None` here; it may absorb zero or more tokens of any kind.
        if let Some(next) = &self.recursive {
            for end in pos..=tokens.len() {
                next.walk(tokens, end, Some((pos, end)), out);
            }
        }
    }

    /// Rules whose pattern matches at least one instantiation of `tokens`
    /// (over-approximated: parity is ignored, which only widens a deny).
    fn overlap(&self, tokens: &[Token], pos: usize, out: &mut Vec<usize>) {
        let children = || self.literal.values().chain(self.wildcard.as_deref());
        match tokens.get(pos) {
            None => out.extend(&self.rules),
            Some(Token::Id(id)) => {
                if let Some(next) = self.literal.get(*id) {
                    next.overlap(tokens, pos + 1, out);
                }
                if let Some(next) = &self.wildcard {
                    next.overlap(tokens, pos + 1, out);
                }
            }
            Some(Token::AnyId) => {
                for next in children() {
                    next.overlap(tokens, pos + 1, out);
                }
            }
            Some(Token::AnySeq) => {
                self.overlap(tokens, pos + 1, out);
                for next in children() {
                    next.overlap(tokens, pos, out);
                }
            }
        }
        if let Some(next) = &self.recursive {
            for end in pos..=tokens.len() {
                next.overlap(tokens, end, out);
            }
        }
    }
}

/// The compiled table. Immutable: a reload builds a new one.
pub struct Table {
    pub(super) rules: Vec<Rule>,
    /// Every rule, for "does this pattern cover the whole scope".
    root: Node,
    /// Deny rules only, for "does this pattern touch the scope at all": a
    /// walk that may visit every deny rule for a collection-group or
    /// kindless scope, so it is kept apart from the (many) allow rules.
    deny_root: Node,
    pub(super) env: Arc<Env>,
    /// Bumped by every successful reload; part of every cache key.
    pub epoch: u64,
    /// Some rule is `mode: shadow`.
    shadowed: bool,
    /// Some rule's condition reads documents (only then are the stored
    /// documents a request needs looked for).
    pub(super) reads_documents: bool,
    /// What of the documents any rule reads: only that is built per target.
    pub(super) data_uses: super::condition::DataUse,
    /// Some rule's (or requestable entry's) `who` names the catalog: only then do decisions depend
    /// on the catalog index (its generation keys the cache).
    pub(super) uses_catalog: bool,
    /// The `requestable:` entries, in table order.
    pub requestable: Vec<Requestable>,
    requestable_index: HashMap<String, usize>,
}

impl Table {
    /// The `requestable` entry `id`.
    pub fn requestable(&self, id: &str) -> Option<&Requestable> {
        self.requestable_index
            .get(id)
            .and_then(|&i| self.requestable.get(i))
    }

    pub fn compile(sources: &[Source], epoch: u64) -> Result<Table, PolicyErrors> {
        let env = Arc::new(Env::stdlib());
        let rules = compile_rules(&env, sources);
        let mut errors = Vec::new();
        let ids: Vec<&str> = match &rules {
            Ok(rules) => rules.iter().map(|r| &*r.id).collect(),
            Err(_) => Vec::new(),
        };
        let requestable = compile_requestable(&env, sources, &ids, &mut errors);
        let rules = match rules {
            Ok(rules) if errors.is_empty() => rules,
            Ok(_) => return Err(PolicyErrors(errors)),
            Err(PolicyErrors(mut first)) => {
                first.extend(errors);
                return Err(PolicyErrors(first));
            }
        };
        let mut root = Node::default();
        let mut deny_root = Node::default();
        for (index, rule) in rules.iter().enumerate() {
            root.insert(&rule.pattern.segments, index);
            if rule.effect == Effect::Deny {
                deny_root.insert(&rule.pattern.segments, index);
            }
        }
        Ok(Table {
            shadowed: rules.iter().any(|r| r.shadow),
            // A grant's decisions recheck its entry's `who` (who may ask).
            uses_catalog: rules.iter().any(|r| r.who.catalog.is_some())
                || requestable.iter().any(|e| e.who.catalog.is_some()),
            reads_documents: rules
                .iter()
                .any(|r| r.when.as_ref().is_some_and(|c| c.data.any())),
            data_uses: rules
                .iter()
                .filter_map(|r| r.when.as_ref())
                .fold(Default::default(), |u, c| u.union(c.data)),
            rules,
            root,
            deny_root,
            env,
            epoch,
            requestable_index: requestable
                .iter()
                .enumerate()
                .map(|(i, r)| (r.id.clone(), i))
                .collect(),
            requestable,
        })
    }

    /// What classification must build of the writes for this table: their
    /// fields only when some condition reads the document written or the
    /// changed fields.
    pub fn field_capture(&self) -> FieldCapture {
        if self.data_uses.written || self.data_uses.changed {
            FieldCapture::Capture
        } else {
            FieldCapture::ValidateOnly
        }
    }

    /// Load every policy file of `dir`.
    pub fn from_dir(dir: &Path, epoch: u64) -> Result<Table, PolicyErrors> {
        Table::compile(&read_dir(dir)?, epoch)
    }

    /// Load one YAML document (tests, embedded defaults).
    pub fn from_yaml(text: &str, epoch: u64) -> Result<Table, PolicyErrors> {
        let source =
            Source::parse("<inline>", text.to_string()).map_err(|e| PolicyErrors(vec![e]))?;
        Table::compile(&[source], epoch)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether some rule's (or requestable entry's) `who` names the catalog.
    pub fn uses_catalog(&self) -> bool {
        self.uses_catalog
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is `mode: shadow` (only then is the shadow verdict
    /// computed).
    pub fn has_shadow(&self) -> bool {
        self.shadowed
    }

    pub fn is_shadow(&self, id: &str) -> bool {
        self.rules.iter().any(|r| r.shadow && *r.id == *id)
    }

    /// Every rule whose pattern covers all of `tokens`, in table order.
    pub fn lookup(&self, tokens: &[Token]) -> Vec<Match> {
        let mut out = Vec::new();
        self.root.walk(tokens, 0, None, &mut out);
        out.sort_unstable_by_key(|m| m.rule);
        out
    }

    /// Every deny rule whose pattern matches any path of the scope, in
    /// table order: a query that could return a denied document is denied.
    pub fn deny_overlaps(&self, tokens: &[Token]) -> Vec<usize> {
        let mut out = Vec::new();
        self.deny_root.overlap(tokens, 0, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The concrete id a single-segment wildcard `name` matched, if it
    /// matched one (a collection's documents leave it unbound).
    pub fn binding<'t>(&self, m: &Match, tokens: &[Token<'t>], name: &str) -> Option<&'t str> {
        let rec_end = m.span.map_or(tokens.len(), |(_, end)| end);
        let mut pos = 0;
        for segment in &self.rules[m.rule].pattern.segments {
            match segment {
                Segment::Literal(_) => pos += 1,
                Segment::Wildcard(n) => {
                    if n == name {
                        return match tokens.get(pos) {
                            Some(Token::Id(id)) => Some(*id),
                            _ => None,
                        };
                    }
                    pos += 1;
                }
                Segment::Recursive(_) => pos = rec_end,
            }
        }
        None
    }

    /// The `path` variable for a match: each wildcard bound to the concrete
    /// id it matched; a recursive one to its ids joined by `/`. Wildcards
    /// that stand for many ids (a collection's documents, a group's depths)
    /// stay unbound, so a condition reading them fails closed.
    pub fn bindings(&self, m: &Match, tokens: &[Token]) -> Value {
        let mut vars: HashMap<String, Value> = HashMap::new();
        let (rec_start, rec_end) = m.span.unwrap_or((tokens.len(), tokens.len()));
        let mut pos = 0;
        for segment in &self.rules[m.rule].pattern.segments {
            match segment {
                Segment::Literal(_) => pos += 1,
                Segment::Wildcard(name) => {
                    if let Some(Token::Id(id)) = tokens.get(pos) {
                        vars.insert(name.clone(), Value::from(*id));
                    }
                    pos += 1;
                }
                Segment::Recursive(name) => {
                    if let Some(ids) = ids_of(&tokens[rec_start..rec_end]) {
                        vars.insert(name.clone(), Value::from(ids.join("/")));
                    }
                    pos = rec_end;
                }
            }
        }
        vars.into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::pattern::Pattern;
    use super::*;
    use crate::model::Segments;

    fn table(patterns: &[&str]) -> Table {
        let mut yaml = String::from("rules:\n");
        for (i, p) in patterns.iter().enumerate() {
            yaml += &format!(
                "  - id: r{i}\n    match: {p}\n    allow: [read]\n    who: {{ any: true }}\n"
            );
        }
        Table::from_yaml(&yaml, 0).unwrap()
    }

    fn ids(path: &str) -> Segments {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    fn covering(t: &Table, scope: &Scope) -> Vec<String> {
        t.lookup(&tokens(scope))
            .iter()
            .map(|m| t.rules[m.rule].id.to_string())
            .collect()
    }

    fn doc(path: &str) -> Scope {
        Scope::Document { path: ids(path) }
    }

    #[test]
    fn literal_and_wildcard_segments() {
        let t = table(&[
            "/catalog/{e}",
            "/catalog/fixed",
            "/teams/{t}/deployments/{d}",
        ]);
        assert_eq!(covering(&t, &doc("/catalog/x")), ["r0"]);
        assert_eq!(covering(&t, &doc("/catalog/fixed")), ["r0", "r1"]);
        assert_eq!(covering(&t, &doc("/teams/a/deployments/d1")), ["r2"]);
        assert!(covering(&t, &doc("/teams/a/logs/d1")).is_empty());
        assert!(covering(&t, &doc("/catalog/x/sub/y")).is_empty());
    }

    #[test]
    fn recursive_wildcard_matches_any_depth_including_the_document_itself() {
        let t = table(&["/teams/{t}/{rest=**}"]);
        assert_eq!(covering(&t, &doc("/teams/a")), ["r0"]);
        assert_eq!(covering(&t, &doc("/teams/a/logs/1")), ["r0"]);
        assert_eq!(covering(&t, &doc("/teams/a/logs/1/x/2")), ["r0"]);
        assert!(covering(&t, &doc("/catalog/a")).is_empty());
    }

    #[test]
    fn collection_scope_needs_a_wildcard_document_segment() {
        let t = table(&["/catalog/{e}", "/catalog/fixed", "/{all=**}"]);
        let scope = Scope::Collection {
            parent: Segments::default(),
            collection: "catalog".into(),
        };
        assert_eq!(covering(&t, &scope), ["r0", "r2"]);
    }

    #[test]
    fn collection_group_needs_a_recursive_wildcard_at_or_above_parent() {
        let t = table(&[
            "/teams/{t}/logs/{l}",
            "/{p=**}/logs/{l}",
            "/teams/{t}/{rest=**}",
            "/teams/a/{rest=**}",
        ]);
        let everywhere = Scope::CollectionGroup {
            parent: Segments::default(),
            collection: "logs".into(),
        };
        assert_eq!(covering(&t, &everywhere), ["r1"]);
        let under_team = Scope::CollectionGroup {
            parent: ids("/teams/a"),
            collection: "logs".into(),
        };
        assert_eq!(covering(&t, &under_team), ["r1", "r2", "r3"]);
        let under_other = Scope::CollectionGroup {
            parent: ids("/teams/b"),
            collection: "logs".into(),
        };
        assert_eq!(covering(&t, &under_other), ["r1", "r2"]);
    }

    #[test]
    fn descendants_need_a_trailing_recursive_wildcard() {
        let t = table(&["/teams/{t}/{rest=**}", "/{p=**}/logs/{l}", "/teams/{t}"]);
        let scope = Scope::Descendants {
            parent: ids("/teams/a"),
        };
        assert_eq!(covering(&t, &scope), ["r0"]);
        let root = Scope::Descendants {
            parent: Segments::default(),
        };
        assert!(covering(&t, &root).is_empty());
    }

    #[test]
    fn collection_ids_need_the_parent_document() {
        let t = table(&["/teams/{t}", "/{all=**}"]);
        let scope = Scope::CollectionIds {
            parent: ids("/teams/a"),
        };
        assert_eq!(covering(&t, &scope), ["r0", "r1"]);
        let root = Scope::CollectionIds {
            parent: Segments::default(),
        };
        assert_eq!(covering(&t, &root), ["r1"]);
    }

    #[test]
    fn bindings_bind_concrete_ids_only() {
        let t = table(&["/teams/{team}/{rest=**}", "/teams/{team}/logs/{log}"]);
        let scope = doc("/teams/a/logs/1");
        let tokens = tokens(&scope);
        let matches = t.lookup(&tokens);
        let vars = |i: usize| match t.bindings(&matches[i], &tokens) {
            Value::Map(m) => m
                .map
                .iter()
                .map(|(k, v)| (format!("{k:?}"), format!("{v:?}")))
                .collect::<std::collections::BTreeMap<_, _>>(),
            other => panic!("{other:?}"),
        };
        let first = vars(0);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first.values().any(|v| v.contains("logs/1")), "{first:?}");
        let collection = Scope::Collection {
            parent: ids("/teams/a"),
            collection: "logs".into(),
        };
        let tokens = super::tokens(&collection);
        let matches = t.lookup(&tokens);
        assert_eq!(matches.len(), 2);
        match t.bindings(&matches[1], &tokens) {
            Value::Map(m) => assert_eq!(m.map.len(), 1, "only `team` is bound"),
            other => panic!("{other:?}"),
        }
    }

    /// Reference semantics: does `segments` match `path`, by backtracking.
    fn brute(segments: &[Segment], path: &[String]) -> bool {
        match segments.split_first() {
            None => path.is_empty(),
            Some((Segment::Recursive(_), rest)) => {
                (0..=path.len()).any(|n| brute(rest, &path[n..]))
            }
            Some((segment, rest)) => match path.split_first() {
                None => false,
                Some((id, tail)) => {
                    let ok = match segment {
                        Segment::Literal(l) => l == id,
                        _ => true,
                    };
                    ok && brute(rest, tail)
                }
            },
        }
    }

    proptest::proptest! {
        #[test]
        fn trie_lookup_agrees_with_backtracking(
            patterns in proptest::collection::vec(
                proptest::collection::vec(0usize..4, 1..6), 1..12),
            path in proptest::collection::vec(0usize..3, 1..4),
        ) {
            let names = ["a", "b", "c"];
            let mut texts = Vec::new();
            for p in &patterns {
                let mut recursive = false;
                let mut text = String::new();
                for (i, &k) in p.iter().enumerate() {
                    text += &match k {
                        0 | 1 => format!("/{}", names[k]),
                        3 if !recursive => { recursive = true; format!("/{{r{i}=**}}") }
                        _ => format!("/{{w{i}}}"),
                    };
                }
                if Pattern::parse(&text).is_ok() {
                    texts.push(text);
                }
            }
            proptest::prop_assume!(!texts.is_empty());
            let t = table(&texts.iter().map(String::as_str).collect::<Vec<_>>());
            let path: Vec<String> = path.iter().flat_map(|&k| [names[k].to_string(), "d".to_string()]).collect();
            let scope = Scope::Document { path: path.as_slice().into() };
            let got: Vec<usize> = t.lookup(&tokens(&scope)).iter().map(|m| m.rule).collect();
            let want: Vec<usize> = (0..t.rules.len())
                .filter(|&i| brute(&t.rules[i].pattern.segments, &path))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
