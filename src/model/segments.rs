//! [`Segments`]: the decoded segments of a path in a [`Scope`](super::Scope).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeSeq as _;
use serde::{Serialize, Serializer};

/// The segments of a document path or a parent, relative to
/// `{database}/documents`, as one shared spelling: `/teams/a` for the
/// segments `teams` and `a`, nothing for the root. A scope is cloned into
/// an operation's targets (twice for an upsert), its writes and each
/// verdict, and a clone only counts a reference; a path is one allocation
/// whatever its depth (a `String` per segment cost one allocation each),
/// and the audit record's spelling of a document is the path itself.
///
/// A segment never holds `/`: ids are validated so (`path::validate_id`),
/// and a list of segments given whole is spelled by joining them with
/// `/`, so a segment holding one reads as the segments it spells, as
/// Firestore reads a name. Reads, compares (segment by segment), prints
/// and serializes as the list of segments it holds.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Segments {
    /// Each segment preceded by `/` (an empty last segment, as a
    /// `__name__` bound may have, leaves a `/` at the end); `None` for no
    /// segment (no allocation for the root), never `Some("")`.
    spelled: Option<Arc<str>>,
    /// How many segments, that is how many `/` the spelling holds: kept,
    /// so that `len` is not a scan.
    len: u32,
}

impl Segments {
    /// The segments of `spelled`, each preceded by `/` (`/teams/a`); the
    /// empty string is no segment.
    pub fn from_spelled(spelled: &str) -> Segments {
        debug_assert!(
            spelled.is_empty() || spelled.starts_with('/'),
            "{spelled:?}"
        );
        let len = spelled.bytes().filter(|&b| b == b'/').count();
        Segments::counted(spelled, len)
    }

    /// [`Segments::from_spelled`], for a caller that counted the `len`
    /// segments of `spelled` while reading them.
    pub(crate) fn counted(spelled: &str, len: usize) -> Segments {
        if len == 0 {
            return Segments::default();
        }
        debug_assert!(spelled.starts_with('/'), "{spelled:?}");
        debug_assert_eq!(len, spelled.bytes().filter(|&b| b == b'/').count());
        Segments {
            spelled: Some(Arc::from(spelled)),
            len: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }

    /// Each segment preceded by `/` (`/teams/a`); empty for the root.
    pub fn spelled(&self) -> &str {
        self.spelled.as_deref().unwrap_or("")
    }

    /// [`Segments::spelled`] itself, shared (a document's spelling in an
    /// audit record is its path's); `None` for the root.
    pub fn shared_spelling(&self) -> Option<Arc<str>> {
        self.spelled.clone()
    }

    /// How many segments.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// No segment: the database root.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            rest: self.spelled(),
            left: self.len(),
        }
    }

    /// The first segment.
    pub fn first(&self) -> Option<&str> {
        self.iter().next()
    }

    /// The last segment.
    pub fn last(&self) -> Option<&str> {
        let spelled = self.spelled.as_deref()?;
        spelled.rfind('/').map(|slash| &spelled[slash + 1..])
    }

    /// The segment at `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.iter().nth(index)
    }

    /// Whether `prefix`'s segments are this path's first ones.
    pub fn starts_with(&self, prefix: &Segments) -> bool {
        let (path, prefix) = (self.spelled(), prefix.spelled());
        path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
    }

    /// The first `count` segments (all of them when there are fewer).
    pub fn prefix(&self, count: usize) -> Segments {
        if count >= self.len() {
            return self.clone();
        }
        let spelled = self.spelled();
        let end = spelled
            .match_indices('/')
            .nth(count)
            .map_or(spelled.len(), |(at, _)| at);
        Segments::from_spelled(&spelled[..end])
    }

    /// These segments, then `segments`.
    pub fn join<'s>(&self, segments: impl IntoIterator<Item = &'s str>) -> Segments {
        let mut spelled = self.spelled().to_owned();
        for segment in segments {
            spelled.push('/');
            spelled.push_str(segment);
        }
        Segments::from_spelled(&spelled)
    }

    /// The segments as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// The segments of a [`Segments`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    /// What is left, each segment preceded by `/`.
    rest: &'a str,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // A byte loop: segments are short, and `str::find` sets up a
        // search for each.
        let text = self.rest.get(1..).unwrap_or("");
        match text.bytes().position(|b| b == b'/') {
            Some(slash) => {
                self.rest = &text[slash..];
                Some(&text[..slash])
            }
            None => {
                self.rest = "";
                Some(text)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Segments {
    type Item = &'a str;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialOrd for Segments {
    fn partial_cmp(&self, other: &Segments) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Segments {
    /// Segment by segment, as the list of segments orders.
    fn cmp(&self, other: &Segments) -> Ordering {
        self.iter().cmp(other.iter())
    }
}

impl fmt::Debug for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Segments {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for segment in self {
            seq.serialize_element(segment)?;
        }
        seq.end()
    }
}

impl<S: AsRef<str>> From<&[S]> for Segments {
    fn from(segments: &[S]) -> Segments {
        Segments::default().join(segments.iter().map(AsRef::as_ref))
    }
}

impl From<Vec<String>> for Segments {
    fn from(segments: Vec<String>) -> Segments {
        Segments::from(&segments[..])
    }
}

impl<'s> FromIterator<&'s str> for Segments {
    fn from_iter<I: IntoIterator<Item = &'s str>>(segments: I) -> Segments {
        Segments::default().join(segments)
    }
}

impl FromIterator<String> for Segments {
    fn from_iter<I: IntoIterator<Item = String>>(segments: I) -> Segments {
        let segments: Vec<String> = segments.into_iter().collect();
        Segments::from(&segments[..])
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for Segments {
    fn eq(&self, other: &[S]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

impl<S: AsRef<str>> PartialEq<&[S]> for Segments {
    fn eq(&self, other: &&[S]) -> bool {
        *self == **other
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for Segments {
    fn eq(&self, other: &Vec<S>) -> bool {
        *self == other[..]
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for Segments {
    fn eq(&self, other: &[S; N]) -> bool {
        *self == other[..]
    }
}

#[cfg(test)]
mod tests {
    use super::Segments;

    #[test]
    fn reads_as_the_list_it_holds() {
        let vec = vec!["teams".to_string(), "a".to_string()];
        let segments = Segments::from(vec.clone());
        assert_eq!(segments, vec);
        assert_ne!(segments, vec!["teams".to_string()]);
        assert_eq!(segments.spelled(), "/teams/a");
        assert_eq!(segments.len(), 2);
        assert_eq!(segments.to_vec(), vec);
        assert_eq!(segments.first(), Some("teams"));
        assert_eq!(segments.last(), Some("a"));
        assert_eq!(segments.get(1), Some("a"));
        assert_eq!(segments.get(2), None);
        assert_eq!(format!("{segments:?}"), format!("{vec:?}"));
        assert_eq!(
            serde_json::to_string(&segments).unwrap(),
            serde_json::to_string(&vec).unwrap()
        );
        assert_eq!(Segments::from_spelled("/teams/a"), segments);
        assert_eq!(segments.iter().collect::<Segments>(), segments);
        assert_eq!(Segments::default().len(), 0);
        assert_eq!(Segments::default().first(), None);
        assert_eq!(Segments::default().last(), None);
        assert_eq!(Segments::from_spelled(""), Segments::default());
        assert_eq!(serde_json::to_string(&Segments::default()).unwrap(), "[]");
        // A clone shares the one copy.
        assert!(std::ptr::eq(
            segments.spelled().as_ptr(),
            segments.clone().spelled().as_ptr()
        ));
    }

    #[test]
    fn empty_segments_are_segments() {
        // A `__name__` bound may end in an empty segment (`coll\0/`).
        for list in [vec![""], vec!["a", ""], vec!["", ""], vec!["", "a"]] {
            let segments = Segments::from(&list[..]);
            assert_eq!(segments.len(), list.len(), "{list:?}");
            assert_eq!(segments.iter().collect::<Vec<_>>(), list, "{list:?}");
            assert_eq!(segments.last(), list.last().copied(), "{list:?}");
            assert_ne!(segments, Segments::default());
            assert_eq!(Segments::from_spelled(segments.spelled()), segments);
        }
        assert_ne!(Segments::from(&[""][..]), Segments::from(&["", ""][..]));
    }

    #[test]
    fn orders_and_prefixes_segment_by_segment() {
        let of = |s: &[&str]| Segments::from(s);
        // As lists order: `a` < `a-`, though `/a/b` > `/a-` as text.
        assert!(of(&["a", "b"]) < of(&["a-"]));
        assert!(of(&["team"]) < of(&["teams", "a"]));
        assert!(of(&["a"]) < of(&["a", ""]));
        let path = of(&["teams", "a", "deployments", "d1"]);
        assert!(path.starts_with(&of(&["teams", "a"])));
        assert!(path.starts_with(&Segments::default()));
        assert!(path.starts_with(&path));
        assert!(!path.starts_with(&of(&["team"])));
        assert!(!path.starts_with(&of(&["teams", "ab"])));
        assert!(!of(&["teams"]).starts_with(&path));
        assert_eq!(path.prefix(2), of(&["teams", "a"]));
        assert_eq!(path.prefix(0), Segments::default());
        assert_eq!(path.prefix(9), path);
        assert_eq!(of(&["teams", "a"]).join(["deployments", "d1"]), path);
        assert_eq!(Segments::default().join(["x"]), of(&["x"]));
        assert_eq!(Segments::default().join([]), Segments::default());
    }
}
