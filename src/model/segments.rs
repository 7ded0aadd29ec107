//! [`Segments`]: the decoded segments of a path in a [`Scope`](super::Scope).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The segments of a document path or a parent, relative to
/// `{database}/documents`, in one shared copy: a scope is cloned into an
/// operation's targets (twice for an upsert), its writes and each verdict,
/// and a clone only counts a reference (a `Vec<String>` cost one allocation
/// per segment and one more for the list, at each clone). Reads, compares,
/// hashes, prints and serializes as the slice of strings it holds.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segments(Arc<[String]>);

impl Deref for Segments {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Debug for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Segments {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0[..].serialize(serializer)
    }
}

impl From<Vec<String>> for Segments {
    fn from(segments: Vec<String>) -> Segments {
        Segments(segments.into())
    }
}

impl From<&[String]> for Segments {
    fn from(segments: &[String]) -> Segments {
        Segments(segments.into())
    }
}

impl FromIterator<String> for Segments {
    fn from_iter<I: IntoIterator<Item = String>>(segments: I) -> Segments {
        Segments(segments.into_iter().collect())
    }
}

impl PartialEq<Vec<String>> for Segments {
    fn eq(&self, other: &Vec<String>) -> bool {
        *self.0 == **other
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::Segments;

    #[test]
    fn reads_as_the_slice_it_holds() {
        let vec = vec!["teams".to_string(), "a".to_string()];
        let segments = Segments::from(vec.clone());
        assert_eq!(segments, vec);
        assert_ne!(segments, vec!["teams".to_string()]);
        assert_eq!(format!("{segments:?}"), format!("{vec:?}"));
        assert_eq!(
            serde_json::to_string(&segments).unwrap(),
            serde_json::to_string(&vec).unwrap()
        );
        let state = RandomState::new();
        assert_eq!(state.hash_one(&segments), state.hash_one(&vec));
        let before: Segments = ["team".to_string()].into_iter().collect();
        assert!(before < segments);
        assert_eq!(Segments::default().len(), 0);
        assert_eq!(serde_json::to_string(&Segments::default()).unwrap(), "[]");
        // A clone shares the one copy.
        assert!(std::ptr::eq(segments.as_ptr(), segments.clone().as_ptr()));
    }
}
