//! An inventory whose procedures take and return structs, enums, options
//! and vectors: the module the procedure contract's tests call with
//! wrong types, swapped fields and misspelt JSON.
//!
//! Version 2 (`examples/inventory_v2`) stores items with one more field,
//! so deploying it over this version's data is refused.

use ordo_sdk::{Schema, Table, procedure};
use serde::{Deserialize, Serialize};

mod types;
pub use types::{Kind, Location};

/// A stock item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Item {
    /// Stock keeping unit: the item's key.
    pub sku: String,
    /// Units on hand.
    pub count: u32,
    /// Units promised to orders, at most `count`.
    pub reserved: u32,
    pub location: Option<Location>,
    pub kind: Kind,
}

/// Items by SKU.
#[ordo_sdk::table]
const ITEMS: Table<String, Item> = Table::new("items");

/// Adds an item, or replaces the item with its SKU. Refuses an item that
/// reserves more than it has.
#[procedure(partitions(item.sku.clone()))]
fn add_item(item: Item) -> Result<(), String> {
    if item.reserved > item.count {
        return Err(format!(
            "item {} reserves {} of {} units",
            item.sku, item.reserved, item.count
        ));
    }
    ITEMS.put(&item.sku, &item);
    Ok(())
}

/// The item with this SKU, if there is one.
#[procedure(read_only, partitions(sku))]
fn item(sku: String) -> Option<Item> {
    ITEMS.get(&sku)
}

/// Moves `amount` units from reserved back to free stock.
#[procedure(partitions(sku))]
fn release(sku: String, amount: u32) -> Result<u32, String> {
    let mut item = ITEMS.get(&sku).ok_or_else(|| format!("no item {sku}"))?;
    item.reserved = item
        .reserved
        .checked_sub(amount)
        .ok_or_else(|| format!("item {sku} has only {} reserved", item.reserved))?;
    ITEMS.put(&sku, &item);
    Ok(item.reserved)
}

/// Every SKU, in order.
#[procedure(read_only)]
fn skus() -> Vec<String> {
    ITEMS.iter().map(|(sku, _)| sku).collect()
}
