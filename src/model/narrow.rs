//! `__name__` filters narrow a query's scope: a collection-group or
//! kindless query whose document names are bounded to one prefix (the
//! Node client's `recursiveDelete` bounds a collection so) is judged on
//! that prefix, not on the whole parent.

use super::data::{Filter, NameBound};
use super::path::validate_id;
use super::{Scope, Segments};

/// The smallest document id (Firestore orders numeric ids first): a bound
/// `coll\0/MIN_ID` is the first name past every document of `coll`.
const MIN_ID: &str = "__id-9223372036854775808__";

/// The scopes that together cover every document `scope` can return under
/// `filter`; `scope` itself when the filter does not bound the names.
pub fn narrow(scope: Scope, filter: Option<&Filter>) -> Vec<Scope> {
    let Some(prefix) = filter.and_then(name_prefix) else {
        return vec![scope];
    };
    let under = |parent: &Segments| {
        prefix.len() > parent.len() && parent.iter().zip(&prefix).all(|(a, b)| a == b)
    };
    let even = prefix.len().is_multiple_of(2);
    match scope {
        Scope::Descendants { parent } if under(&parent) => {
            if even {
                // The document itself, and everything below it.
                let prefix = Segments::from(prefix);
                vec![
                    Scope::Document {
                        path: prefix.clone(),
                    },
                    Scope::Descendants { parent: prefix },
                ]
            } else {
                let (collection, parent) = split_last(prefix);
                vec![Scope::Subtree {
                    parent: parent.into(),
                    collection,
                }]
            }
        }
        Scope::CollectionGroup { parent, collection } if under(&parent) => {
            let doc = if even { prefix } else { split_last(prefix).1 };
            if doc.len() <= parent.len() {
                return vec![Scope::CollectionGroup { parent, collection }];
            }
            let doc = Segments::from(doc);
            let mut scopes = Vec::new();
            // The bounding document may itself be one of the group's.
            if doc.len() >= 2 && doc.get(doc.len() - 2) == Some(collection.as_str()) {
                scopes.push(Scope::Document { path: doc.clone() });
            }
            scopes.push(Scope::CollectionGroup {
                parent: doc,
                collection,
            });
            scopes
        }
        other => vec![other],
    }
}

fn split_last(mut path: Vec<String>) -> (String, Vec<String>) {
    let last = path.pop().unwrap_or_default();
    (last, path)
}

/// The segments every name the filter admits starts with, when its
/// top-level conjunction bounds `__name__` (an equality, or a lower and an
/// upper bound): the longest common prefix of two bounds, plus the
/// collection a `c/MIN_ID` … `c\0/MIN_ID` pair encloses. Names compare
/// segment by segment, so every name between two bounds shares their
/// common prefix. Only valid ids are kept.
fn name_prefix(filter: &Filter) -> Option<Vec<String>> {
    let mut lower = Vec::new();
    let mut upper: Vec<(Vec<String>, bool)> = Vec::new();
    let mut best: Option<Vec<String>> = None;
    bounds(filter, &mut lower, &mut upper, &mut best);
    for lo in &lower {
        for (hi, inclusive) in &upper {
            let p = common(lo, hi, *inclusive);
            if best.as_ref().is_none_or(|b| p.len() > b.len()) {
                best = Some(p);
            }
        }
    }
    let best = best?;
    let valid = best.iter().take_while(|s| validate_id(s).is_ok()).count();
    (valid > 0).then(|| best[..valid].to_vec())
}

fn bounds(
    filter: &Filter,
    lower: &mut Vec<Vec<String>>,
    upper: &mut Vec<(Vec<String>, bool)>,
    equal: &mut Option<Vec<String>>,
) {
    match filter {
        Filter::And(parts) => parts.iter().for_each(|p| bounds(p, lower, upper, equal)),
        Filter::Name(NameBound::Equal, path) => *equal = Some(path.clone()),
        Filter::Name(NameBound::Above { .. }, path) => lower.push(path.clone()),
        Filter::Name(NameBound::Below { inclusive }, path) => {
            upper.push((path.clone(), *inclusive))
        }
        Filter::Equal(..) | Filter::Other => {}
    }
}

fn common(lo: &[String], hi: &[String], hi_inclusive: bool) -> Vec<String> {
    let k = lo.iter().zip(hi).take_while(|(a, b)| a == b).count();
    let mut prefix = lo[..k].to_vec();
    // `c` ≤ s ≤ `c\0` holds for s ∈ {c, c\0} only, and a name starting with
    // `c\0` is below `c\0/MIN_ID` only if it has no next segment (then it
    // is no document): so every document between starts with `c`.
    if !hi_inclusive
        && let (Some(l), Some(h), Some(next)) = (lo.get(k), hi.get(k), hi.get(k + 1))
        && *h == format!("{l}\0")
        && next == MIN_ID
    {
        prefix.push(l.clone());
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/').map(String::from).collect()
    }

    fn range(lo: &str, hi: &str) -> Filter {
        Filter::And(vec![
            Filter::Name(NameBound::Above { inclusive: true }, segs(lo)),
            Filter::Name(NameBound::Below { inclusive: false }, segs(hi)),
        ])
    }

    #[test]
    fn a_recursive_delete_of_a_root_collection_is_judged_on_that_collection() {
        let f = range(&format!("notes/{MIN_ID}"), &format!("notes\0/{MIN_ID}"));
        let scopes = narrow(
            Scope::Descendants {
                parent: Segments::default(),
            },
            Some(&f),
        );
        assert_eq!(
            scopes,
            [Scope::Subtree {
                parent: Segments::default(),
                collection: "notes".into()
            }]
        );
    }

    #[test]
    fn a_collection_group_bounded_below_a_document_stays_below_it() {
        let f = range("teams/a/logs/x", "teams/a/logs/y");
        let group = Scope::CollectionGroup {
            parent: Segments::default(),
            collection: "logs".into(),
        };
        assert_eq!(
            narrow(group, Some(&f)),
            [Scope::CollectionGroup {
                parent: segs("teams/a").into(),
                collection: "logs".into()
            }]
        );
    }

    #[test]
    fn without_both_bounds_nothing_narrows() {
        let lower_only = Filter::Name(NameBound::Above { inclusive: true }, segs("notes/a"));
        let scope = Scope::Descendants {
            parent: Segments::default(),
        };
        assert_eq!(
            narrow(scope.clone(), Some(&lower_only)),
            vec![scope.clone()]
        );
        // `notes` … `notez` spans other collections: only the root is common.
        let wide = range("notes/a", "notez/a");
        assert_eq!(narrow(scope.clone(), Some(&wide)), vec![scope.clone()]);
        // An OR proves nothing.
        let or = Filter::Other;
        assert_eq!(narrow(scope.clone(), Some(&or)), [scope]);
    }

    #[test]
    fn a_successor_bound_without_the_minimum_id_does_not_narrow() {
        let f = range("notes/a", "notes\0/b");
        let scope = Scope::Descendants {
            parent: Segments::default(),
        };
        assert_eq!(narrow(scope.clone(), Some(&f)), [scope]);
    }
}
