// The types both versions of the inventory module share (version 2 adds
// a field to `Item`, not to these).

use ordo_sdk::Schema;
use serde::{Deserialize, Serialize};

/// Where an item is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Location {
    /// Aisle number, from 1.
    pub aisle: u32,
    /// The bin's label, e.g. `A-9`.
    pub bin: String,
}

/// What kind of thing an item is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum Kind {
    Tool,
    /// A part of a given quality grade.
    Part {
        grade: u8,
    },
    /// A kit of other items, by SKU.
    Kit(Vec<String>),
}
