// Version 2 of the inventory module, shared by `inventory_v2` and
// `inventory_v3` (which adds a migration) through `include!`.

use ordo_sdk::{Schema, Table, procedure};
use serde::{Deserialize, Serialize};

#[path = "../../inventory/src/types.rs"]
mod types;
pub use types::{Kind, Location};

/// A stock item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Item {
    pub sku: String,
    pub count: u32,
    pub reserved: u32,
    pub location: Option<Location>,
    pub kind: Kind,
    /// Unit price in cents (new in version 2).
    pub price: u64,
}

/// Items by SKU.
#[ordo_sdk::table]
const ITEMS: Table<String, Item> = Table::new("items");

/// Adds an item, or replaces the item with its SKU.
#[procedure(partitions(item.sku.clone()))]
fn add_item(item: Item) {
    ITEMS.put(&item.sku, &item);
}

/// The item with this SKU, if there is one.
#[procedure(read_only, partitions(sku))]
fn item(sku: String) -> Option<Item> {
    ITEMS.get(&sku)
}
