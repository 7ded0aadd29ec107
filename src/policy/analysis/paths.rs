//! Sets of document paths written as patterns: intersection, membership and
//! a search for a path one set has and others lack, the geometry the access
//! analyses are built on.

use std::collections::HashMap;
use std::fmt;

use crate::policy::pattern::{Pattern, Segment};

/// One segment of a [`PathSet`]; wildcards keep a name for display and for
/// binding a rule's `path.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Lit(String),
    One(String),
    Many(String),
}

/// The document paths a segment sequence matches (at most one `Many`).
/// Unlike a [`Pattern`] it may be a fixed odd length during construction;
/// [`PathSet::has_documents`] says whether any document path remains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathSet {
    pub segs: Vec<Seg>,
}

/// An id no policy writes (it cannot be typed into YAML by accident): the
/// stand-in for "any other id" in witnesses.
pub const FRESH: &str = "\u{0}other";

impl PathSet {
    pub fn of(pattern: &Pattern) -> PathSet {
        PathSet {
            segs: pattern
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => Seg::Lit(l.clone()),
                    Segment::Wildcard(n) => Seg::One(n.clone()),
                    Segment::Recursive(n) => Seg::Many(n.clone()),
                })
                .collect(),
        }
    }

    /// Every document path.
    pub fn everything() -> PathSet {
        PathSet {
            segs: vec![Seg::Many("path".into())],
        }
    }

    fn split(&self) -> (&[Seg], Option<&[Seg]>) {
        match self.segs.iter().position(|s| matches!(s, Seg::Many(_))) {
            Some(i) => (&self.segs[..i], Some(&self.segs[i + 1..])),
            None => (&self.segs, None),
        }
    }

    fn many(&self) -> Option<&Seg> {
        self.segs.iter().find(|s| matches!(s, Seg::Many(_)))
    }

    /// Whether some even-length (document) path is in the set.
    pub fn has_documents(&self) -> bool {
        self.many().is_some() || (!self.segs.is_empty() && self.segs.len().is_multiple_of(2))
    }

    /// Does the set hold this concrete path (any parity)?
    pub fn matches(&self, path: &[String]) -> bool {
        match self.split() {
            (fixed, None) => {
                fixed.len() == path.len() && fixed.iter().zip(path).all(|(s, id)| accepts(s, id))
            }
            (prefix, Some(suffix)) => {
                path.len() >= prefix.len() + suffix.len()
                    && prefix.iter().zip(path).all(|(s, id)| accepts(s, id))
                    && suffix
                        .iter()
                        .rev()
                        .zip(path.iter().rev())
                        .all(|(s, id)| accepts(s, id))
            }
        }
    }

    /// A cheap, allocation-free test that the sets share no path: literals
    /// that differ at the same distance from the start (or, for two
    /// unbounded sets, from the end), or two different fixed lengths.
    /// `false` means "maybe"; [`PathSet::intersect`] decides.
    pub fn surely_disjoint(&self, other: &PathSet) -> bool {
        let (p1, s1) = self.split();
        let (p2, s2) = other.split();
        let clash = |a: &Seg, b: &Seg| matches!((a, b), (Seg::Lit(x), Seg::Lit(y)) if x != y);
        let from_start = p1.iter().zip(p2).any(|(a, b)| clash(a, b));
        let from_end = match (s1, s2) {
            (Some(s1), Some(s2)) => s1
                .iter()
                .rev()
                .zip(s2.iter().rev())
                .any(|(a, b)| clash(a, b)),
            (None, None) => p1.len() != p2.len(),
            _ => false,
        };
        from_start || from_end
    }

    /// The paths in both sets, as a union of sets with documents. Names
    /// come from `self` where it has a wildcard.
    pub fn intersect(&self, other: &PathSet) -> Vec<PathSet> {
        let mut out = Vec::new();
        if self.surely_disjoint(other) {
            return out;
        }
        let (p1, s1) = self.split();
        let (p2, s2) = other.split();
        match (s1, s2) {
            (None, None) => {
                if p1.len() == p2.len() {
                    push_unified(&mut out, self.fixed_at(p1.len()), other.fixed_at(p1.len()));
                }
            }
            (None, Some(_)) => {
                let n = p1.len();
                push_unified(&mut out, self.fixed_at(n), other.fixed_at(n));
            }
            (Some(_), None) => {
                let n = p2.len();
                push_unified(&mut out, self.fixed_at(n), other.fixed_at(n));
            }
            (Some(s1), Some(s2)) => {
                let plen = p1.len().max(p2.len());
                let slen = s1.len().max(s2.len());
                // Paths at least `plen + slen` long: one prefix, one suffix.
                let prefix = unify_all((0..plen).map(|k| {
                    (
                        p1.get(k).cloned().unwrap_or_else(|| wild(self)),
                        p2.get(k).cloned().unwrap_or_else(|| wild(other)),
                    )
                }));
                let suffix = unify_all((0..slen).map(|k| {
                    let from_end = |s: &[Seg], owner: &PathSet| {
                        (k + s.len())
                            .checked_sub(slen)
                            .and_then(|i| s.get(i).cloned())
                            .unwrap_or_else(|| wild(owner))
                    };
                    (from_end(s1, self), from_end(s2, other))
                }));
                if let (Some(mut segs), Some(suffix)) = (prefix, suffix) {
                    segs.extend(self.many().cloned());
                    segs.extend(suffix);
                    out.push(PathSet { segs });
                }
                // Shorter paths, where one set's prefix meets the other's suffix.
                let shortest = (p1.len() + s1.len()).max(p2.len() + s2.len());
                for n in shortest..plen + slen {
                    push_unified(&mut out, self.fixed_at(n), other.fixed_at(n));
                }
            }
        }
        out.retain(PathSet::has_documents);
        for set in &mut out {
            for seg in &mut set.segs {
                if let Seg::One(n) = seg
                    && let Some(plain) = n.strip_prefix(SPREAD)
                {
                    *n = plain.to_string();
                }
            }
        }
        out.dedup();
        out
    }

    /// The segments this set imposes on a path of length `n` (a `Many`
    /// spread into wildcards), or `None` if it has no path that long.
    fn fixed_at(&self, n: usize) -> Option<Vec<Seg>> {
        match self.split() {
            (fixed, None) => (fixed.len() == n).then(|| fixed.to_vec()),
            (prefix, Some(suffix)) => {
                let middle = n.checked_sub(prefix.len() + suffix.len())?;
                let mut segs = prefix.to_vec();
                segs.extend(std::iter::repeat_n(wild(self), middle));
                segs.extend(suffix.iter().cloned());
                Some(segs)
            }
        }
    }

    /// The id each wildcard of `rule` (the set this one was intersected
    /// from, as `self`) is pinned to by a literal in `self`, where `self`
    /// is a fixed-length narrowing of it; a recursive one is bound when
    /// everything it spans is literal.
    pub fn bindings_of(&self, rule: &PathSet) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let (rule_p, rule_s) = rule.split();
        let rule_s = rule_s.unwrap_or(&[]);
        match self.split() {
            (mine_p, Some(mine_s)) => {
                // Both unbounded: the prefixes line up from the start and
                // the suffixes from the end; the recursive part stays open.
                bind_aligned(&mut out, rule_p, mine_p);
                let skip = mine_s.len().saturating_sub(rule_s.len());
                bind_aligned(&mut out, rule_s, &mine_s[skip..]);
            }
            (segs, None) => {
                let n = segs.len();
                if rule_p.len() + rule_s.len() > n {
                    return out;
                }
                bind_aligned(&mut out, rule_p, &segs[..rule_p.len()]);
                bind_aligned(&mut out, rule_s, &segs[n - rule_s.len()..]);
                if let Some(Seg::Many(name)) = rule.many() {
                    let spanned = &segs[rule_p.len()..n - rule_s.len()];
                    let ids: Option<Vec<&str>> = spanned
                        .iter()
                        .map(|s| match s {
                            Seg::Lit(l) => Some(l.as_str()),
                            _ => None,
                        })
                        .collect();
                    if let Some(ids) = ids {
                        out.insert(name.clone(), ids.join("/"));
                    }
                }
            }
        }
        out
    }

    /// A document path in this set that none of `others` holds, if any.
    /// Exact: a path outside every other set stays outside when its
    /// wildcard segments become fresh ids, and lengths past the longest
    /// other set behave alike, so only those need trying.
    pub fn witness(&self, others: &[&PathSet]) -> Option<Vec<String>> {
        let longest = others.iter().map(|o| o.segs.len()).max().unwrap_or(0);
        let (prefix, suffix) = self.split();
        let lengths: Vec<usize> = match suffix {
            None => vec![prefix.len()],
            Some(suffix) => {
                let min = prefix.len() + suffix.len();
                (min..=min + longest + 2).collect()
            }
        };
        lengths
            .into_iter()
            .filter(|n| *n > 0 && n.is_multiple_of(2))
            .filter_map(|n| self.fixed_at(n))
            .map(|segs| {
                segs.iter()
                    .map(|s| match s {
                        Seg::Lit(l) => l.clone(),
                        _ => FRESH.to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .find(|path| !others.iter().any(|o| o.matches(path)))
    }

    /// Does every document path of `self` lie in `other`?
    pub fn within(&self, other: &PathSet) -> bool {
        self.witness(&[other]).is_none()
    }
}

fn accepts(seg: &Seg, id: &str) -> bool {
    match seg {
        Seg::Lit(l) => l == id,
        Seg::One(_) | Seg::Many(_) => true,
    }
}

/// Marks a wildcard spread from a recursive one, so that a wildcard
/// written at that position in the other set gives the name.
const SPREAD: char = '\u{0}';

/// A single-id wildcard standing for part of `owner`'s recursive one.
fn wild(owner: &PathSet) -> Seg {
    match owner.many() {
        Some(Seg::Many(n)) => Seg::One(format!("{SPREAD}{n}")),
        _ => Seg::One(format!("{SPREAD}x")),
    }
}

fn spread(seg: &Seg) -> bool {
    matches!(seg, Seg::One(n) if n.starts_with(SPREAD))
}

fn unify(a: Seg, b: Seg) -> Option<Seg> {
    match (a, b) {
        (Seg::Lit(x), Seg::Lit(y)) => (x == y).then_some(Seg::Lit(x)),
        (Seg::Lit(x), _) | (_, Seg::Lit(x)) => Some(Seg::Lit(x)),
        (a, b) if spread(&a) && !spread(&b) => Some(b),
        (a, _) => Some(a),
    }
}

fn unify_all(pairs: impl Iterator<Item = (Seg, Seg)>) -> Option<Vec<Seg>> {
    pairs.map(|(a, b)| unify(a, b)).collect()
}

fn push_unified(out: &mut Vec<PathSet>, a: Option<Vec<Seg>>, b: Option<Vec<Seg>>) {
    if let (Some(a), Some(b)) = (a, b)
        && a.len() == b.len()
        && let Some(segs) = unify_all(a.into_iter().zip(b))
    {
        out.push(PathSet { segs });
    }
}

fn bind_aligned(out: &mut HashMap<String, String>, rule: &[Seg], mine: &[Seg]) {
    for (r, m) in rule.iter().zip(mine) {
        if let (Seg::One(name), Seg::Lit(id)) = (r, m) {
            out.insert(name.clone(), id.clone());
        }
    }
}

impl fmt::Display for PathSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Wildcard names may repeat after an intersection; number repeats
        // so the text stays a valid pattern.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for s in &self.segs {
            let name = match s {
                Seg::Lit(l) => {
                    write!(f, "/{l}")?;
                    continue;
                }
                Seg::One(n) | Seg::Many(n) => n.as_str(),
            };
            let count = seen.entry(name).or_insert(0);
            *count += 1;
            let name = if *count == 1 {
                name.to_string()
            } else {
                format!("{name}{count}")
            };
            match s {
                Seg::Many(_) => write!(f, "/{{{name}=**}}")?,
                _ => write!(f, "/{{{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> PathSet {
        PathSet::of(&Pattern::parse(text).unwrap())
    }

    fn texts(sets: &[PathSet]) -> Vec<String> {
        sets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn intersects_fixed_and_recursive_patterns() {
        assert_eq!(
            texts(&set("/teams/{t}/{r=**}").intersect(&set("/{p=**}/logs/{l}"))),
            ["/teams/{t}/{r=**}/logs/{l}"]
        );
        assert_eq!(
            texts(&set("/{p=**}/logs/{l}").intersect(&set("/logs/{x}/{r=**}"))),
            ["/logs/{x}/{p=**}/logs/{l}", "/logs/{l}"]
        );
        assert_eq!(
            texts(&set("/secrets/{x=**}").intersect(&set("/{path=**}"))),
            ["/secrets/{x=**}"]
        );
        assert!(set("/a/{b}").intersect(&set("/c/{d}")).is_empty());
        assert_eq!(texts(&set("/a/{b}").intersect(&set("/{x}/c"))), ["/a/c"]);
    }

    #[test]
    fn binds_wildcards_pinned_by_the_query() {
        let rule = set("/teams/{team}/{rest=**}");
        let narrowed = &rule.intersect(&set("/teams/payments/deploys/d1"))[0];
        let b = narrowed.bindings_of(&rule);
        assert_eq!(b.get("team").map(String::as_str), Some("payments"));
        assert_eq!(b.get("rest").map(String::as_str), Some("deploys/d1"));
        let subtree = &rule.intersect(&set("/teams/payments/{x=**}"))[0];
        let b = subtree.bindings_of(&rule);
        assert_eq!(b.get("team").map(String::as_str), Some("payments"));
        assert!(!b.contains_key("rest"));
    }

    #[test]
    fn witness_finds_uncovered_paths_or_none() {
        let all = set("/teams/{t}/{r=**}");
        assert_eq!(all.witness(&[&set("/teams/{t}")]).map(|p| p.len()), Some(4));
        assert_eq!(all.witness(&[&set("/{p=**}")]), None);
        assert!(set("/a/b").within(&set("/a/{x}")));
        assert!(!set("/a/{x}").within(&set("/a/b")));
        assert!(set("/a/{x}/{y=**}").within(&set("/{p=**}")));
    }

    /// Reference semantics: a path is in the intersection iff in both.
    fn brute(a: &PathSet, b: &PathSet, path: &[String]) -> bool {
        a.matches(path) && b.matches(path)
    }

    proptest::proptest! {
        #[test]
        fn intersection_agrees_with_membership(
            a in proptest::collection::vec(0usize..4, 1..5),
            b in proptest::collection::vec(0usize..4, 1..5),
            path in proptest::collection::vec(0usize..3, 1..7),
        ) {
            let build = |p: &[usize], tag: &str| {
                let mut recursive = false;
                let segs = p.iter().enumerate().map(|(i, &k)| match k {
                    0 => Seg::Lit("a".into()),
                    1 => Seg::Lit("b".into()),
                    3 if !recursive => { recursive = true; Seg::Many(format!("{tag}{i}")) }
                    _ => Seg::One(format!("{tag}{i}")),
                }).collect();
                PathSet { segs }
            };
            let (a, b) = (build(&a, "a"), build(&b, "b"));
            let names = ["a", "b", "c"];
            let path: Vec<String> = path.iter().map(|&k| names[k].to_string()).collect();
            let inter = a.intersect(&b);
            if a.surely_disjoint(&b) {
                proptest::prop_assert!(!(a.matches(&path) && b.matches(&path)));
            }
            let got = inter.iter().any(|s| s.matches(&path));
            let want = brute(&a, &b, &path) && path.len().is_multiple_of(2);
            if path.len().is_multiple_of(2) {
                proptest::prop_assert_eq!(got, want, "{} ∩ {} at {:?}: {:?}", a, b, path, inter);
            }
            if let Some(w) = a.witness(&[&b]) {
                proptest::prop_assert!(a.matches(&w) && !b.matches(&w));
            } else if path.len().is_multiple_of(2) && a.matches(&path) {
                proptest::prop_assert!(b.matches(&path), "no witness, yet {:?}", path);
            }
        }
    }
}
