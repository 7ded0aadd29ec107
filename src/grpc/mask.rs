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
