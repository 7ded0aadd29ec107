//! Vector values: the one reserved map shape Firestore accepts
//! (`{"__type__": "__vector__", "value": [doubles…]}`), its order, and the
//! three distance measures of vector search.

use std::cmp::Ordering;

use super::EmulatorError;
use super::values::{Fields, Value};

/// The reserved key that marks a map as a special value.
pub const TYPE_KEY: &str = "__type__";
const VECTOR_TYPE: &str = "__vector__";
const VALUE_KEY: &str = "value";

/// A map's fields as a vector, when they carry the reserved `__type__` key;
/// `None` for an ordinary map. Any other use of `__type__` is refused: it is
/// the only shape of a reserved map Firestore stores.
pub fn from_fields(fields: &Fields) -> Result<Option<Vec<f64>>, EmulatorError> {
    let Some(kind) = fields.get(TYPE_KEY) else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        EmulatorError::InvalidArgument(format!("invalid reserved map (__type__): {why}"))
    };
    if !matches!(kind, Value::String(s) if s == VECTOR_TYPE) {
        return Err(refuse("the only reserved type is \"__vector__\""));
    }
    if fields.len() != 2 {
        return Err(refuse("a vector has exactly the keys __type__ and value"));
    }
    let Some(Value::Array(items)) = fields.get(VALUE_KEY) else {
        return Err(refuse("a vector's value must be an array"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Double(d) => Ok(*d),
            _ => Err(refuse("a vector holds only doubles")),
        })
        .collect::<Result<Vec<f64>, _>>()
        .map(Some)
}

/// The map a vector travels as.
pub fn to_fields(values: &[f64]) -> Fields {
    let mut fields = Fields::new();
    fields.insert(TYPE_KEY.into(), Value::String(VECTOR_TYPE.into()));
    fields.insert(
        VALUE_KEY.into(),
        Value::Array(values.iter().copied().map(Value::Double).collect()),
    );
    fields
}

/// Firestore orders vectors by dimension first, then element by element.
pub fn compare(a: &[f64], b: &[f64], doubles: impl Fn(f64, f64) -> Ordering) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        a.iter()
            .zip(b)
            .map(|(x, y)| doubles(*x, *y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    })
}

/// How vector search measures distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Euclidean,
    Cosine,
    DotProduct,
}

impl Measure {
    /// The distance between two vectors of one dimension; `None` where the
    /// measure is undefined (cosine of a zero vector).
    pub fn distance(self, a: &[f64], b: &[f64]) -> Option<f64> {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        match self {
            Measure::Euclidean => Some(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f64>()
                    .sqrt(),
            ),
            Measure::DotProduct => Some(dot),
            Measure::Cosine => {
                let norms = norm(a) * norm(b);
                (norms > 0.0).then(|| 1.0 - dot / norms)
            }
        }
    }

    /// Dot product is a similarity: larger is nearer. The others are
    /// distances: smaller is nearer.
    pub fn larger_is_nearer(self) -> bool {
        self == Measure::DotProduct
    }

    /// Whether `distance` passes a `distanceThreshold`.
    pub fn within(self, distance: f64, threshold: f64) -> bool {
        if self.larger_is_nearer() {
            distance >= threshold
        } else {
            distance <= threshold
        }
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_vector_shape_is_a_reserved_map() {
        let vector = to_fields(&[1.0, 2.5]);
        assert_eq!(from_fields(&vector).unwrap(), Some(vec![1.0, 2.5]));
        assert_eq!(from_fields(&Fields::new()).unwrap(), None);
        let mut extra = vector.clone();
        extra.insert("x".into(), Value::Null);
        assert!(from_fields(&extra).is_err());
        let mut ints = vector.clone();
        ints.insert(VALUE_KEY.into(), Value::Array(vec![Value::Integer(1)]));
        assert!(from_fields(&ints).is_err());
        let mut other = vector;
        other.insert(TYPE_KEY.into(), Value::String("__int__".into()));
        assert!(from_fields(&other).is_err());
    }

    #[test]
    fn distances_follow_their_definitions() {
        let (a, b) = ([1.0, 0.0], [0.0, 2.0]);
        assert_eq!(Measure::Euclidean.distance(&a, &b), Some(5.0_f64.sqrt()));
        assert_eq!(Measure::DotProduct.distance(&a, &[3.0, 1.0]), Some(3.0));
        assert_eq!(Measure::Cosine.distance(&a, &b), Some(1.0));
        assert_eq!(Measure::Cosine.distance(&a, &[2.0, 0.0]), Some(0.0));
        assert_eq!(Measure::Cosine.distance(&a, &[0.0, 0.0]), None);
        assert!(Measure::DotProduct.within(3.0, 2.0) && !Measure::DotProduct.within(1.0, 2.0));
        assert!(Measure::Cosine.within(0.5, 0.5) && !Measure::Euclidean.within(2.1, 2.0));
    }
}
