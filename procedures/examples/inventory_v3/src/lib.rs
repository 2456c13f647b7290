//! Version 2 of `examples/inventory` (see `examples/inventory_v2`) with a
//! migration: deployed over version 1's data, it rewrites every stored
//! item with the new `price` field, at the deploy's position, atomically.

include!("../../inventory_v2/src/body.rs");

/// An item as version 1 stored it.
#[derive(Serialize, Deserialize)]
struct ItemV1 {
    sku: String,
    count: u32,
    reserved: u32,
    location: Option<Location>,
    kind: Kind,
}

/// The `items` table read with version 1's value type (not declared: it
/// is the same table as `ITEMS`, seen the old way).
const ITEMS_V1: Table<String, ItemV1> = Table::new("items");

/// Prices every version 1 item at 100 cents per unit counted. Reads all
/// of them first, then writes: a scan sees the transaction's own writes,
/// which are already version 2 items. An item whose SKU starts with
/// `POISON` cannot be priced: the migration fails, and with it the deploy
/// (the tests' failure path).
#[ordo_sdk::migration]
fn price_items() -> Result<(), String> {
    let old: Vec<(String, ItemV1)> = ITEMS_V1.iter().collect();
    for (sku, item) in old {
        if sku.starts_with("POISON") {
            return Err(format!("item {sku} cannot be priced"));
        }
        let new = Item {
            sku: item.sku,
            count: item.count,
            reserved: item.reserved,
            location: item.location,
            kind: item.kind,
            price: 100 * u64::from(item.count),
        };
        ITEMS.put(&sku, &new);
    }
    Ok(())
}
