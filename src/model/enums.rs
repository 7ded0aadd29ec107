//! The Firestore v1 enums a classification reads — filter operators, order
//! directions, server values — from their proto name or number. proto3 JSON
//! spells an enum either way (the Node client in REST mode sends numbers)
//! and gRPC sends the number; both wires read them here, through the protos'
//! own tables, so that no spelling means what another does not.

use googleapis_tonic_google_firestore_v1::google::firestore::v1::{
    document_transform::field_transform, structured_query,
};

/// A model enum read from its proto twin. An unknown value is `None`, and
/// so is an `*_UNSPECIFIED` one Firestore refuses: the caller refuses the
/// request, as it does an unknown name.
pub trait ProtoEnum: Sized {
    /// The generated proto enum, whose `TryFrom<i32>` knows the numbers.
    type Proto: TryFrom<i32>;

    /// The proto enum by its name in the `.proto` file.
    fn proto_named(name: &str) -> Option<Self::Proto>;

    fn from_proto(proto: Self::Proto) -> Option<Self>;

    /// By number: gRPC, and proto3 JSON with `enum-encoding=int`.
    fn from_proto_number(number: i32) -> Option<Self> {
        Self::Proto::try_from(number)
            .ok()
            .and_then(Self::from_proto)
    }

    /// By name: proto3 JSON.
    fn from_proto_name(name: &str) -> Option<Self> {
        Self::proto_named(name).and_then(Self::from_proto)
    }
}

/// `StructuredQuery.FieldFilter.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    LessThan,
    LessThanOrEqual,
    GreaterThan,
    GreaterThanOrEqual,
    Equal,
    NotEqual,
    ArrayContains,
    In,
    ArrayContainsAny,
    NotIn,
}

impl ProtoEnum for FieldOp {
    type Proto = structured_query::field_filter::Operator;

    fn proto_named(name: &str) -> Option<Self::Proto> {
        Self::Proto::from_str_name(name)
    }

    fn from_proto(proto: Self::Proto) -> Option<Self> {
        use structured_query::field_filter::Operator as P;
        Some(match proto {
            P::Unspecified => return None,
            P::LessThan => FieldOp::LessThan,
            P::LessThanOrEqual => FieldOp::LessThanOrEqual,
            P::GreaterThan => FieldOp::GreaterThan,
            P::GreaterThanOrEqual => FieldOp::GreaterThanOrEqual,
            P::Equal => FieldOp::Equal,
            P::NotEqual => FieldOp::NotEqual,
            P::ArrayContains => FieldOp::ArrayContains,
            P::In => FieldOp::In,
            P::ArrayContainsAny => FieldOp::ArrayContainsAny,
            P::NotIn => FieldOp::NotIn,
        })
    }
}

/// `StructuredQuery.CompositeFilter.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompositeOp {
    And,
    Or,
}

impl ProtoEnum for CompositeOp {
    type Proto = structured_query::composite_filter::Operator;

    fn proto_named(name: &str) -> Option<Self::Proto> {
        Self::Proto::from_str_name(name)
    }

    fn from_proto(proto: Self::Proto) -> Option<Self> {
        use structured_query::composite_filter::Operator as P;
        match proto {
            P::Unspecified => None,
            P::And => Some(CompositeOp::And),
            P::Or => Some(CompositeOp::Or),
        }
    }
}

/// `StructuredQuery.UnaryFilter.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    IsNan,
    IsNull,
    IsNotNan,
    IsNotNull,
}

impl ProtoEnum for UnaryOp {
    type Proto = structured_query::unary_filter::Operator;

    fn proto_named(name: &str) -> Option<Self::Proto> {
        Self::Proto::from_str_name(name)
    }

    fn from_proto(proto: Self::Proto) -> Option<Self> {
        use structured_query::unary_filter::Operator as P;
        match proto {
            P::Unspecified => None,
            P::IsNan => Some(UnaryOp::IsNan),
            P::IsNull => Some(UnaryOp::IsNull),
            P::IsNotNan => Some(UnaryOp::IsNotNan),
            P::IsNotNull => Some(UnaryOp::IsNotNull),
        }
    }
}

/// `StructuredQuery.Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

impl ProtoEnum for Direction {
    type Proto = structured_query::Direction;

    fn proto_named(name: &str) -> Option<Self::Proto> {
        Self::Proto::from_str_name(name)
    }

    fn from_proto(proto: Self::Proto) -> Option<Self> {
        use structured_query::Direction as P;
        match proto {
            // An order without a direction is ascending (query.proto), and
            // proto3 gives an unset direction this value.
            P::Unspecified | P::Ascending => Some(Direction::Ascending),
            P::Descending => Some(Direction::Descending),
        }
    }
}

/// `DocumentTransform.FieldTransform.ServerValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerValue {
    RequestTime,
}

impl ProtoEnum for ServerValue {
    type Proto = field_transform::ServerValue;

    fn proto_named(name: &str) -> Option<Self::Proto> {
        Self::Proto::from_str_name(name)
    }

    fn from_proto(proto: Self::Proto) -> Option<Self> {
        match proto {
            field_transform::ServerValue::Unspecified => None,
            field_transform::ServerValue::RequestTime => Some(ServerValue::RequestTime),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name and its number read as the same model value.
    fn alike<E: ProtoEnum + PartialEq + std::fmt::Debug>(pairs: &[(&str, i32, E)]) {
        for (name, number, value) in pairs {
            assert_eq!(E::from_proto_name(name).as_ref(), Some(value), "{name}");
            assert_eq!(
                E::from_proto_number(*number).as_ref(),
                Some(value),
                "{number}"
            );
        }
    }

    #[test]
    fn names_and_numbers_read_alike() {
        use FieldOp as F;
        alike(&[
            ("LESS_THAN", 1, F::LessThan),
            ("LESS_THAN_OR_EQUAL", 2, F::LessThanOrEqual),
            ("GREATER_THAN", 3, F::GreaterThan),
            ("GREATER_THAN_OR_EQUAL", 4, F::GreaterThanOrEqual),
            ("EQUAL", 5, F::Equal),
            ("NOT_EQUAL", 6, F::NotEqual),
            ("ARRAY_CONTAINS", 7, F::ArrayContains),
            ("IN", 8, F::In),
            ("ARRAY_CONTAINS_ANY", 9, F::ArrayContainsAny),
            ("NOT_IN", 10, F::NotIn),
        ]);
        alike(&[("AND", 1, CompositeOp::And), ("OR", 2, CompositeOp::Or)]);
        alike(&[
            ("IS_NAN", 2, UnaryOp::IsNan),
            ("IS_NULL", 3, UnaryOp::IsNull),
            ("IS_NOT_NAN", 4, UnaryOp::IsNotNan),
            ("IS_NOT_NULL", 5, UnaryOp::IsNotNull),
        ]);
        alike(&[
            ("DIRECTION_UNSPECIFIED", 0, Direction::Ascending),
            ("ASCENDING", 1, Direction::Ascending),
            ("DESCENDING", 2, Direction::Descending),
        ]);
        alike(&[("REQUEST_TIME", 1, ServerValue::RequestTime)]);
    }

    #[test]
    fn unknown_and_unspecified_values_are_refused() {
        for number in [0, 11, -1, i32::MAX] {
            assert_eq!(FieldOp::from_proto_number(number), None, "{number}");
        }
        for name in ["OPERATOR_UNSPECIFIED", "equal", "EQ", "5", ""] {
            assert_eq!(FieldOp::from_proto_name(name), None, "{name}");
        }
        assert_eq!(CompositeOp::from_proto_number(0), None);
        assert_eq!(CompositeOp::from_proto_number(3), None);
        assert_eq!(UnaryOp::from_proto_number(1), None, "a gap in the proto");
        assert_eq!(UnaryOp::from_proto_number(6), None);
        assert_eq!(Direction::from_proto_number(3), None);
        assert_eq!(Direction::from_proto_name("DESC"), None);
        assert_eq!(ServerValue::from_proto_number(0), None);
        assert_eq!(ServerValue::from_proto_number(2), None);
        assert_eq!(
            ServerValue::from_proto_name("SERVER_VALUE_UNSPECIFIED"),
            None
        );
    }
}
