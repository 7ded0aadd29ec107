//! Field masks on the gRPC wire: a `Document` message's masked fields
//! removed, recursively through map values.

use std::collections::HashMap;

use super::proto::{self, Value, value::ValueType};
use crate::model::mask::{DocumentMasks, FieldMask, Hidden};

/// Remove from `doc` the fields its mask hides; returns how many.
pub fn mask_document(doc: &mut proto::Document, masks: &DocumentMasks) -> u64 {
    match masks.for_name(&doc.name) {
        Some(mask) => mask_fields(&mut doc.fields, mask),
        None => 0,
    }
}

/// Remove what `mask` hides from a fields map.
pub fn mask_fields(fields: &mut HashMap<String, Value>, mask: &FieldMask) -> u64 {
    if mask.hides_everything() {
        let count = fields.len() as u64;
        fields.clear();
        return count;
    }
    let mut count = 0;
    for (name, hidden) in mask.names() {
        match hidden {
            Hidden::All => count += u64::from(fields.remove(name).is_some()),
            Hidden::Below(below) => {
                if let Some(Value {
                    value_type: Some(ValueType::MapValue(map)),
                }) = fields.get_mut(name)
                {
                    count += mask_fields(&mut map.fields, below);
                }
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::model::data::FieldPath;
    use proto::MapValue;

    #[derive(Debug, Clone)]
    enum Tree {
        Leaf(i64),
        Map(BTreeMap<String, Tree>),
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c.d", "`e`", "ü"]).prop_map(String::from)
    }

    fn tree() -> impl Strategy<Value = BTreeMap<String, Tree>> {
        let leaf = any::<i64>().prop_map(Tree::Leaf);
        let t = leaf.prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map(name(), inner, 0..4).prop_map(Tree::Map)
        });
        prop::collection::btree_map(name(), t, 0..5)
    }

    fn to_proto(fields: &BTreeMap<String, Tree>) -> HashMap<String, Value> {
        fields
            .iter()
            .map(|(k, v)| {
                let value_type = match v {
                    Tree::Leaf(n) => ValueType::IntegerValue(*n),
                    Tree::Map(m) => ValueType::MapValue(MapValue {
                        fields: to_proto(m),
                    }),
                };
                (
                    k.clone(),
                    Value {
                        value_type: Some(value_type),
                    },
                )
            })
            .collect()
    }

    fn remove(fields: &mut HashMap<String, Value>, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            fields.remove(first);
        } else if let Some(Value {
            value_type: Some(ValueType::MapValue(m)),
        }) = fields.get_mut(first)
        {
            remove(&mut m.fields, rest);
        }
    }

    proptest! {
        #[test]
        fn masked_is_the_original_minus_exactly_the_masked_paths(
            fields in tree(),
            paths in prop::collection::vec(prop::collection::vec(name(), 1..4), 1..4),
        ) {
            let paths: Vec<FieldPath> = paths;
            let mut masks = DocumentMasks::default();
            masks.query(&std::sync::Arc::new(FieldMask::new(paths.clone())));
            let mut doc = proto::Document {
                name: "projects/p/databases/d/documents/c/x".into(),
                fields: to_proto(&fields),
                ..Default::default()
            };
            let mut want = doc.fields.clone();
            for p in &paths {
                remove(&mut want, p);
            }
            mask_document(&mut doc, &masks);
            prop_assert_eq!(doc.fields, want);
        }
    }
}
