//! Field masks: the fields a read rule hides from the principals it
//! matches, as a trie of field paths (`address.street`, `` `tax.id` ``), and
//! which mask applies to each document of an answer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use super::data::{FieldPath, parse_field_path};

/// A set of hidden field paths, as a trie: each level is the mask of
/// what lies below one field. A hidden path hides everything below it;
/// kept minimal (no hidden path lies below another).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldMask {
    hidden: bool,
    children: BTreeMap<String, FieldMask>,
}

/// What the trie says of one field name at one level.
#[derive(Debug, Clone, Copy)]
pub enum Hidden<'m> {
    /// The whole field is hidden.
    All,
    /// Only some paths below it are: descend.
    Below(&'m FieldMask),
}

impl FieldMask {
    /// The mask hiding `paths`.
    pub fn new(paths: impl IntoIterator<Item = FieldPath>) -> FieldMask {
        let mut mask = FieldMask::default();
        for path in paths {
            mask.hide(&path);
        }
        mask
    }

    /// Parse field paths as a policy writes them; the malformed ones are
    /// returned as errors.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<FieldMask, Vec<String>> {
        let mut errors = Vec::new();
        let mut paths = Vec::new();
        for text in texts {
            match parse_field_path(text) {
                Some(path) => paths.push(path),
                None => errors.push(format!(
                    "`{text}` is not a field path (write `a.b`, or backquote a name holding dots: \"`a.b`\")"
                )),
            }
        }
        if errors.is_empty() {
            Ok(FieldMask::new(paths))
        } else {
            Err(errors)
        }
    }

    fn hide(&mut self, path: &[String]) {
        let mut node = self;
        for segment in path {
            if node.hidden {
                return;
            }
            node = node.children.entry(segment.clone()).or_default();
        }
        node.hidden = true;
        node.children.clear();
    }

    /// The mask hiding every field (what a caller who may not read a
    /// document sees of it).
    pub fn everything() -> FieldMask {
        FieldMask {
            hidden: true,
            children: BTreeMap::new(),
        }
    }

    /// Whether every field is hidden.
    pub fn hides_everything(&self) -> bool {
        self.hidden
    }

    pub fn is_empty(&self) -> bool {
        !self.hidden && self.children.is_empty()
    }

    /// The hidden paths, in order.
    pub fn paths(&self) -> Vec<FieldPath> {
        fn walk(node: &FieldMask, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
            if node.hidden {
                out.push(prefix.clone());
                return;
            }
            for (name, child) in &node.children {
                prefix.push(name.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// Whether `path` (or a field above it) is hidden.
    pub fn hides(&self, path: &[String]) -> bool {
        let mut node = self;
        for segment in path {
            if node.hidden {
                return true;
            }
            match node.children.get(segment) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.hidden
    }

    /// Whether reading or writing `path` involves a hidden field: the path
    /// is hidden, or a hidden field lies below it (a filter on `address`
    /// compares `address.street` too).
    pub fn touches(&self, path: &[String]) -> bool {
        let mut node = self;
        for segment in path {
            if node.hidden {
                return true;
            }
            match node.children.get(segment) {
                Some(child) => node = child,
                None => return false,
            }
        }
        true
    }

    /// The fields both masks hide.
    pub fn intersect(&self, other: &FieldMask) -> FieldMask {
        let mut paths: Vec<FieldPath> = self
            .paths()
            .into_iter()
            .filter(|p| other.hides(p))
            .collect();
        paths.extend(other.paths().into_iter().filter(|p| self.hides(p)));
        FieldMask::new(paths)
    }

    /// The fields either mask hides.
    pub fn union(&self, other: &FieldMask) -> FieldMask {
        FieldMask::new(self.paths().into_iter().chain(other.paths()))
    }

    /// The mask's verdict on one field name at the top of this mask.
    pub fn field(&self, name: &str) -> Option<Hidden<'_>> {
        let node = self.children.get(name)?;
        Some(if node.hidden {
            Hidden::All
        } else {
            Hidden::Below(node)
        })
    }

    /// The top-level names the mask has anything to say about.
    pub fn names(&self) -> impl Iterator<Item = (&str, Hidden<'_>)> {
        self.children.iter().map(|(name, node)| {
            let hidden = if node.hidden {
                Hidden::All
            } else {
                Hidden::Below(node)
            };
            (name.as_str(), hidden)
        })
    }
}

impl fmt::Display for FieldMask {
    /// `salary, address.street, `tax.id``: paths as a policy writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, path) in self.paths().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&format_field_path(path))?;
        }
        Ok(())
    }
}

/// A field path as Firestore writes one: simple names bare, others in
/// backquotes.
pub fn format_field_path(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            let simple = s
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if simple {
                s.clone()
            } else {
                format!("`{}`", s.replace('\\', "\\\\").replace('`', "\\`"))
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Which mask applies to each document of one answer: a named document's
/// own, and for any other (a query's results) the union of every mask of
/// the request, so a document never matched to its target is hidden the
/// most (fail closed).
#[derive(Debug, Clone, Default)]
pub struct DocumentMasks {
    /// Document path (relative to `{database}/documents`) → its mask.
    by_path: HashMap<Vec<String>, Option<Arc<FieldMask>>>,
    others: Option<Arc<FieldMask>>,
}

impl DocumentMasks {
    /// Add one named document's mask (`None`: shown whole).
    /// A document named twice (an upsert's create and update) is under
    /// both masks.
    pub fn document(&mut self, path: Vec<String>, mask: Option<Arc<FieldMask>>) {
        if let Some(mask) = &mask {
            self.widen(mask);
        }
        let mask = match (self.by_path.remove(&path).flatten(), mask) {
            (Some(a), Some(b)) => Some(Arc::new(a.union(&b))),
            (a, b) => a.or(b),
        };
        self.by_path.insert(path, mask);
    }

    /// Add the mask of a target that is not one named document.
    pub fn query(&mut self, mask: &Arc<FieldMask>) {
        self.widen(mask);
    }

    fn widen(&mut self, mask: &Arc<FieldMask>) {
        self.others = Some(match self.others.take() {
            None => Arc::clone(mask),
            Some(o) => Arc::new(o.union(mask)),
        });
    }

    /// Whether any document is masked at all.
    pub fn any(&self) -> bool {
        self.others.is_some()
    }

    /// The mask of every document, when no document has one of its own
    /// (a query's answer): documents' names need not be read.
    pub fn single(&self) -> Option<Option<&FieldMask>> {
        self.by_path.is_empty().then_some(self.others.as_deref())
    }

    /// The mask of the document named `name` (a full resource name).
    pub fn for_name(&self, name: &str) -> Option<&FieldMask> {
        let path = name
            .split_once("/documents/")
            .map(|(_, rest)| rest.split('/').map(String::from).collect::<Vec<_>>());
        if let Some(found) = path.and_then(|p| self.by_path.get(&p)) {
            return found.as_deref();
        }
        self.others.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> FieldMask {
        FieldMask::parse(paths.iter().copied()).unwrap()
    }

    fn path(text: &str) -> FieldPath {
        parse_field_path(text).unwrap()
    }

    #[test]
    fn a_hidden_path_hides_what_lies_below_it_and_touches_what_lies_above() {
        let m = mask(&["salary", "address.street", "`tax.id`"]);
        assert!(m.hides(&path("salary")));
        assert!(m.hides(&path("salary.bonus")));
        assert!(m.hides(&path("address.street")));
        assert!(!m.hides(&path("address")));
        assert!(
            m.touches(&path("address")),
            "a filter on the map compares the street"
        );
        assert!(!m.touches(&path("address.city")));
        assert!(m.hides(&path("`tax.id`")));
        assert!(!m.hides(&path("tax")), "`tax.id` is one name, not tax → id");
        assert!(!m.touches(&path("name")));
    }

    #[test]
    fn intersection_keeps_what_both_hide_and_union_what_either_does() {
        let a = mask(&["salary", "ssn", "address.street"]);
        let b = mask(&["salary.bonus", "ssn", "address", "phone"]);
        assert_eq!(
            a.intersect(&b).to_string(),
            "address.street, salary.bonus, ssn"
        );
        assert_eq!(b.intersect(&a), a.intersect(&b));
        assert_eq!(a.union(&b).to_string(), "address, phone, salary, ssn");
        assert!(a.intersect(&mask(&["x"])).is_empty());
    }

    #[test]
    fn a_name_is_matched_to_its_own_mask_and_anything_else_gets_the_widest() {
        let mut masks = DocumentMasks::default();
        masks.document(vec!["people".into(), "a".into()], None);
        masks.document(
            vec!["people".into(), "b".into()],
            Some(Arc::new(mask(&["salary"]))),
        );
        masks.query(&Arc::new(mask(&["ssn"])));
        let db = "projects/p/databases/d/documents/";
        assert!(masks.for_name(&format!("{db}people/a")).is_none());
        assert_eq!(
            masks
                .for_name(&format!("{db}people/b"))
                .unwrap()
                .to_string(),
            "salary"
        );
        assert_eq!(
            masks
                .for_name(&format!("{db}people/c"))
                .unwrap()
                .to_string(),
            "salary, ssn"
        );
        assert!(DocumentMasks::default().for_name("x").is_none());
    }
}
