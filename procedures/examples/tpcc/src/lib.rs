//! A subset of TPC-C (TPC Benchmark C, revision 5.11) as ordo procedures:
//! the NewOrder and Payment transactions over the nine TPC-C tables, a
//! scaled-down, deterministic loader, and a read-only check of consistency
//! conditions 1 and 2.
//!
//! # Key layout
//!
//! **Every key starts with the id of the warehouse its row belongs to**, so
//! that the data is partitioned by warehouse: every table's key is a tuple
//! whose first element is a `u32` warehouse id, and the raw store key is
//! `<table name> 0x00 0x04 <w_id: u32 big-endian> ...` (a table name never
//! contains `0x00`; the class byte `0x04` after it says that the key's
//! first component, its partition key, is the next four bytes). So all the
//! rows of warehouse `w`, in every table, are in the partition of `w`.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `tpcc_warehouse` | `w_id` | [`Warehouse`] |
//! | `tpcc_district` | `(w_id, d_id)` | [`District`] |
//! | `tpcc_customer` | `(w_id, d_id, c_id)` | [`Customer`] |
//! | `tpcc_item` | `(w_id, i_id)` | [`Item`] |
//! | `tpcc_stock` | `(w_id, i_id)` | [`Stock`] |
//! | `tpcc_order` | `(w_id, d_id, o_id)` | [`Order`] |
//! | `tpcc_new_order` | `(w_id, d_id, o_id)` | `()` (empty) |
//! | `tpcc_order_line` | `(w_id, d_id, o_id, ol_number)` | [`OrderLine`] |
//! | `tpcc_history` | `(w_id, sequence)` | [`History`] |
//!
//! ITEM is read-only in TPC-C and has no warehouse, so it is **replicated
//! into every warehouse** at load (as H-Store does): `tpcc_load_items`
//! writes the same item rows under each warehouse id, and NewOrder reads
//! items from its home warehouse. Only the stock of a remote supply
//! warehouse makes a transaction touch a second warehouse.
//!
//! A history row has no key in TPC-C; here it is keyed by the paying
//! (home) warehouse and the Payment transaction's sequence number, which
//! is unique.
//!
//! # Partitions
//!
//! Each transaction declares the warehouses it touches
//! (`#[procedure(partitions(...))]`), so transactions on different
//! warehouses run in parallel: NewOrder declares its home warehouse and
//! every line's supply warehouse, Payment the paying warehouse and the
//! customer's, the loaders and the point reads their one warehouse.
//! `tpcc_check` and `tpcc_order` scan ranges of keys, so they declare
//! nothing and run over all partitions.
//!
//! # Ids, money, time
//!
//! Ids are 1-based as in the specification: warehouses from 1, districts
//! 1 to 10, customers, items and orders from 1. Money is `i64` cents;
//! tax and discount rates are basis points (1/10,000, so a tax of 8.25% is
//! 825). There are no floats anywhere. Dates are the log entry's
//! timestamp, [`now_ms`].
//!
//! # Loading
//!
//! The contents are derived from the ids by arithmetic (no randomness), so
//! a load is reproducible and the order of the load calls does not matter.
//! The loaders are chunked so that a specification-sized warehouse (100,000
//! items, 10 districts of 3,000 customers) fits the per-transaction limits:
//! `tpcc_load_warehouse` writes the warehouse and its districts,
//! `tpcc_load_items` a range of items and their stock, and
//! `tpcc_load_customers` a range of one district's customers. Each aborts,
//! writing nothing, if a row it would write exists.
//!
//! Scaled down from the specification: no initial orders (so every
//! district's next order id starts at 1) and no initial history rows;
//! columns that no implemented transaction reads (addresses, phone numbers)
//! are left out; customer last names are derived from the customer id for
//! every customer, not only the first 1,000.
//!
//! # Not implemented
//!
//! Delivery, Order-Status and Stock-Level, Payment by customer last name,
//! and NewOrder's per-line output (brand/generic, item names).

use ordo_sdk::{Table, abort, now_ms, procedure, sequence};
use serde::{Deserialize, Serialize};

/// One warehouse.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct Warehouse {
    pub name: String,
    /// Sales tax in basis points, 0 to 2,000.
    pub tax_bp: i64,
    /// Year-to-date payments, cents.
    pub ytd: i64,
}

/// One district of a warehouse.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct District {
    pub name: String,
    /// Sales tax in basis points, 0 to 2,000.
    pub tax_bp: i64,
    /// Year-to-date payments, cents.
    pub ytd: i64,
    /// The id the district's next order gets.
    pub next_o_id: u32,
}

/// One customer of a district.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct Customer {
    pub first: String,
    pub middle: String,
    pub last: String,
    /// `"GC"` (good credit) or `"BC"` (bad credit).
    pub credit: String,
    /// Credit limit, cents.
    pub credit_lim: i64,
    /// Discount in basis points, 0 to 5,000.
    pub discount_bp: i64,
    /// Balance, cents; Payment decreases it.
    pub balance: i64,
    pub ytd_payment: i64,
    pub payment_cnt: u32,
    pub delivery_cnt: u32,
    /// When the customer was loaded (ms since the Unix epoch).
    pub since_ms: u64,
    /// 300 to 500 characters; Payment prepends to it for bad-credit
    /// customers.
    pub data: String,
}

/// One item (replicated into every warehouse, identical in each).
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct Item {
    pub im_id: u32,
    pub name: String,
    /// Price, cents: 100 to 10,000.
    pub price: i64,
    pub data: String,
}

/// One item's stock in one warehouse.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct Stock {
    pub quantity: i32,
    /// `S_DIST_01` to `S_DIST_10`, 24 characters each, concatenated:
    /// characters `24 * (d_id - 1) ..` are copied into the order lines of
    /// district `d_id`.
    pub dist: String,
    /// Quantity ordered year-to-date.
    pub ytd: i64,
    pub order_cnt: u32,
    /// Order lines supplied from here for another (home) warehouse.
    pub remote_cnt: u32,
    pub data: String,
}

/// One order.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct Order {
    pub c_id: u32,
    pub entry_ms: u64,
    /// Set by Delivery (not implemented): always `None` here.
    pub carrier_id: Option<u32>,
    pub ol_cnt: u32,
    /// Whether every line is supplied by the home warehouse.
    pub all_local: bool,
}

/// One line of an order.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct OrderLine {
    pub i_id: u32,
    pub supply_w_id: u32,
    /// Set by Delivery (not implemented): always `None` here.
    pub delivery_ms: Option<u64>,
    pub quantity: u32,
    /// `quantity * price`, cents.
    pub amount: i64,
    pub dist_info: String,
}

/// One payment, under the paying warehouse's id.
#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
pub struct History {
    pub c_id: u32,
    pub c_d_id: u32,
    pub c_w_id: u32,
    pub d_id: u32,
    pub date_ms: u64,
    pub amount: i64,
    /// The warehouse's and the district's names, four spaces apart.
    pub data: String,
}

#[ordo_sdk::table]
const WAREHOUSES: Table<u32, Warehouse> = Table::new("tpcc_warehouse");
#[ordo_sdk::table]
const DISTRICTS: Table<(u32, u32), District> = Table::new("tpcc_district");
#[ordo_sdk::table]
const CUSTOMERS: Table<(u32, u32, u32), Customer> = Table::new("tpcc_customer");
#[ordo_sdk::table]
const ITEMS: Table<(u32, u32), Item> = Table::new("tpcc_item");
#[ordo_sdk::table]
const STOCK: Table<(u32, u32), Stock> = Table::new("tpcc_stock");
#[ordo_sdk::table]
const ORDERS: Table<(u32, u32, u32), Order> = Table::new("tpcc_order");
#[ordo_sdk::table]
const NEW_ORDERS: Table<(u32, u32, u32), ()> = Table::new("tpcc_new_order");
#[ordo_sdk::table]
const ORDER_LINES: Table<(u32, u32, u32, u32), OrderLine> = Table::new("tpcc_order_line");
#[ordo_sdk::table]
const HISTORY: Table<(u32, u64), History> = Table::new("tpcc_history");

/// Districts per warehouse at most (the specification has exactly 10, and
/// a stock row carries one `S_DIST_xx` per district).
const DISTRICTS_MAX: u32 = 10;
/// Lines per order at most (the specification draws 5 to 15).
const LINES_MAX: usize = 15;
/// Quantity per order line at most (the specification draws 1 to 10;
/// the stock replenishing rule keeps stock positive only up to this).
const QUANTITY_MAX: u32 = 10;
/// A district's year-to-date payments at load, cents (30,000.00).
const DISTRICT_YTD_START: i64 = 3_000_000;
/// `C_DATA` is truncated to this length.
const CUSTOMER_DATA_MAX: usize = 500;
/// Characters of each `S_DIST_xx` (and so of `OL_DIST_INFO`).
const DIST_INFO_LEN: usize = 24;
/// One in basis points.
const BP: i64 = 10_000;

// ---------------------------------------------------------------------------
// Loading

/// Loads warehouse `w_id` and its districts `1..=districts` (at most 10).
/// Warehouse YTD is `districts` x 30,000.00 and each district's is
/// 30,000.00 (so consistency condition 1 holds); every district's next
/// order id is 1.
#[procedure(partitions(w_id))]
fn tpcc_load_warehouse(w_id: u32, districts: u32) -> Result<(), String> {
    if w_id == 0 {
        return Err("warehouse ids start at 1".to_string());
    }
    if !(1..=DISTRICTS_MAX).contains(&districts) {
        return Err(format!(
            "a warehouse has 1 to {DISTRICTS_MAX} districts, not {districts}"
        ));
    }
    if WAREHOUSES.contains(&w_id) {
        return Err(format!("warehouse {w_id} already exists"));
    }
    let seed = hash(&[1, w_id as u64]);
    WAREHOUSES.put(
        &w_id,
        &Warehouse {
            name: text(seed, between(seed >> 20, 6, 10)).to_string(),
            tax_bp: (seed % 2001) as i64,
            ytd: DISTRICT_YTD_START * districts as i64,
        },
    );
    for d_id in 1..=districts {
        let seed = hash(&[2, w_id as u64, d_id as u64]);
        DISTRICTS.put(
            &(w_id, d_id),
            &District {
                name: text(seed, between(seed >> 20, 6, 10)).to_string(),
                tax_bp: (seed % 2001) as i64,
                ytd: DISTRICT_YTD_START,
                next_o_id: 1,
            },
        );
    }
    Ok(())
}

/// Loads items `first .. first + count` into warehouse `w_id` (the item
/// rows, identical in every warehouse, and the warehouse's stock of them):
/// two writes per item.
#[procedure(partitions(w_id))]
fn tpcc_load_items(w_id: u32, first: u32, count: u32) -> Result<(), String> {
    let ids = id_range(w_id, "item", first, count)?;
    for i_id in ids {
        if ITEMS.contains(&(w_id, i_id)) {
            return Err(format!("item {i_id} of warehouse {w_id} already exists"));
        }
        ITEMS.put(&(w_id, i_id), &item_row(i_id));
        STOCK.put(&(w_id, i_id), &stock_row(w_id, i_id));
    }
    Ok(())
}

/// Loads customers `first .. first + count` of district `d_id` (1 to 10)
/// of warehouse `w_id`: one write per customer. Every tenth customer
/// (`c_id % 10 == 0`) has bad credit.
#[procedure(partitions(w_id))]
fn tpcc_load_customers(w_id: u32, d_id: u32, first: u32, count: u32) -> Result<(), String> {
    if !(1..=DISTRICTS_MAX).contains(&d_id) {
        return Err(format!("district ids are 1 to {DISTRICTS_MAX}, not {d_id}"));
    }
    let ids = id_range(w_id, "customer", first, count)?;
    let since_ms = now_ms();
    for c_id in ids {
        let key = (w_id, d_id, c_id);
        if CUSTOMERS.contains(&key) {
            return Err(format!(
                "customer {c_id} of district {d_id} of warehouse {w_id} already exists"
            ));
        }
        CUSTOMERS.put(&key, &customer_row(w_id, d_id, c_id, since_ms));
    }
    Ok(())
}

/// Checks a loader's ids: `first .. first + count` within `u32`, from 1.
fn id_range(
    w_id: u32,
    what: &str,
    first: u32,
    count: u32,
) -> Result<core::ops::Range<u32>, String> {
    if w_id == 0 {
        return Err("warehouse ids start at 1".to_string());
    }
    if first == 0 {
        return Err(format!("{what} ids start at 1"));
    }
    let end = first
        .checked_add(count)
        .ok_or_else(|| format!("{what} ids overflow u32"))?;
    Ok(first..end)
}

fn item_row(i_id: u32) -> Item {
    let seed = hash(&[3, i_id as u64]);
    Item {
        im_id: 1 + (seed % 10_000) as u32,
        name: text(seed >> 3, between(seed >> 13, 14, 24)).to_string(),
        price: 100 + ((seed >> 23) % 9_901) as i64,
        data: data_text(seed >> 33, 26, 50),
    }
}

fn stock_row(w_id: u32, i_id: u32) -> Stock {
    let seed = hash(&[4, w_id as u64, i_id as u64]);
    Stock {
        quantity: 10 + (seed % 91) as i32,
        dist: text(seed >> 7, DIST_INFO_LEN * DISTRICTS_MAX as usize).to_string(),
        ytd: 0,
        order_cnt: 0,
        remote_cnt: 0,
        data: data_text(seed >> 29, 26, 50),
    }
}

fn customer_row(w_id: u32, d_id: u32, c_id: u32, since_ms: u64) -> Customer {
    let seed = hash(&[5, w_id as u64, d_id as u64, c_id as u64]);
    Customer {
        first: text(seed, between(seed >> 11, 8, 16)).to_string(),
        middle: "OE".to_string(),
        last: last_name((c_id - 1) % 1000),
        credit: if c_id.is_multiple_of(10) { "BC" } else { "GC" }.to_string(),
        credit_lim: 5_000_000,
        discount_bp: ((seed >> 21) % 5_001) as i64,
        balance: -1_000,
        ytd_payment: 1_000,
        payment_cnt: 1,
        delivery_cnt: 0,
        since_ms,
        data: text(seed >> 35, between(seed >> 45, 300, 500)).to_string(),
    }
}

/// `C_LAST`: the syllables of the three digits of `number` (0 to 999).
fn last_name(number: u32) -> String {
    const SYLLABLES: [&str; 10] = [
        "BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING",
    ];
    let mut name = String::with_capacity(15);
    for digit in [number / 100 % 10, number / 10 % 10, number % 10] {
        name.push_str(SYLLABLES[digit as usize]);
    }
    name
}

/// `I_DATA` / `S_DATA`: `lo` to `hi` characters; one in ten contains
/// `ORIGINAL`.
fn data_text(seed: u64, lo: usize, hi: usize) -> String {
    let len = between(seed, lo, hi);
    if !seed.is_multiple_of(10) {
        return text(seed >> 8, len).to_string();
    }
    const MARK: &str = "ORIGINAL";
    let before = between(seed >> 8, 0, len - MARK.len());
    let mut data = String::with_capacity(len);
    data.push_str(text(seed >> 16, before));
    data.push_str(MARK);
    data.push_str(text(seed >> 24, len - MARK.len() - before));
    data
}

/// Filler text: pseudo-random letters and digits, computed at compile
/// time. Strings are slices of it, so loading costs a copy per string
/// rather than arithmetic per character.
const TEXT_LEN: usize = 1024;
const TEXT_BYTES: [u8; TEXT_LEN] = {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = [0u8; TEXT_LEN];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut i = 0;
    while i < TEXT_LEN {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out[i] = ALPHABET[(state % 62) as usize];
        i += 1;
    }
    out
};
const TEXT: &str = match core::str::from_utf8(&TEXT_BYTES) {
    Ok(text) => text,
    Err(_) => panic!("the filler text is ASCII"),
};

/// `len` (at most 1,024) characters of filler text, starting at a place
/// chosen by `seed`.
fn text(seed: u64, len: usize) -> &'static str {
    let start = (seed % (TEXT_LEN - len + 1) as u64) as usize;
    &TEXT[start..start + len]
}

/// A number from `lo` to `hi` (inclusive) chosen by `seed`.
fn between(seed: u64, lo: usize, hi: usize) -> usize {
    lo + (seed % (hi - lo + 1) as u64) as usize
}

/// Mixes ids into a seed for the arithmetic above (SplitMix64's finaliser
/// over each part in turn).
fn hash(parts: &[u64]) -> u64 {
    let mut h: u64 = 0;
    for &part in parts {
        h = (h ^ part).wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

// ---------------------------------------------------------------------------
// Transactions

/// What NewOrder returns.
#[derive(Serialize, ordo_sdk::Schema)]
struct NewOrderDone {
    o_id: u32,
    /// `sum(amount) * (1 - discount) * (1 + w_tax + d_tax)`, cents,
    /// rounded to the nearest cent (halves up).
    total: i64,
}

/// NewOrder (TPC-C 2.4): customer `c_id` of district `d_id` of warehouse
/// `w_id` orders `items`, each `(i_id, supply_w_id, quantity)` with a
/// quantity of 1 to 10 and 1 to 15 lines. Returns the new order's id and
/// the total amount.
///
/// Takes the district's next order id (and increments it), inserts the
/// order and its new-order row, and for each line reads the item (from the
/// home warehouse, where it is replicated), updates the **supply**
/// warehouse's stock and inserts the order line. An unknown item id aborts
/// the whole transaction (the specification's 1% of rolled-back
/// NewOrders), after the writes of the lines before it: the engine drops
/// them all.
///
/// Declares the home warehouse and every line's supply warehouse.
#[procedure(partitions(w_id, supply_warehouses(&items)))]
fn tpcc_new_order(w_id: u32, d_id: u32, c_id: u32, items: Vec<(u32, u32, u32)>) -> NewOrderDone {
    if items.is_empty() || items.len() > LINES_MAX {
        abort(format_args!(
            "an order has 1 to {LINES_MAX} lines, not {}",
            items.len()
        ));
    }
    for (index, &(i_id, _, quantity)) in items.iter().enumerate() {
        if !(1..=QUANTITY_MAX).contains(&quantity) {
            abort(format_args!(
                "line {} (item {i_id}): quantity {quantity} is not 1 to {QUANTITY_MAX}",
                index + 1
            ));
        }
    }

    let warehouse = warehouse(w_id);
    let mut district = district(w_id, d_id);
    let customer = customer(w_id, d_id, c_id);

    let o_id = district.next_o_id;
    district.next_o_id = o_id
        .checked_add(1)
        .unwrap_or_else(|| abort(format_args!("district {d_id}'s order ids overflow u32")));
    DISTRICTS.put(&(w_id, d_id), &district);

    let all_local = items.iter().all(|&(_, supply_w_id, _)| supply_w_id == w_id);
    ORDERS.put(
        &(w_id, d_id, o_id),
        &Order {
            c_id,
            entry_ms: now_ms(),
            carrier_id: None,
            ol_cnt: items.len() as u32,
            all_local,
        },
    );
    NEW_ORDERS.put(&(w_id, d_id, o_id), &());

    let mut sum: i64 = 0;
    for (index, &(i_id, supply_w_id, quantity)) in items.iter().enumerate() {
        let ol_number = index as u32 + 1;
        let Some(item) = ITEMS.get(&(w_id, i_id)) else {
            abort(format_args!(
                "Item number is not valid: item {i_id} (line {ol_number}) does not exist; \
                 the order is rolled back"
            ))
        };
        let mut stock = STOCK.get(&(supply_w_id, i_id)).unwrap_or_else(|| {
            abort(format_args!(
                "no stock of item {i_id} in supply warehouse {supply_w_id} (line {ol_number})"
            ))
        });
        let quantity_i32 = quantity as i32;
        stock.quantity = if stock.quantity >= quantity_i32 + 10 {
            stock.quantity - quantity_i32
        } else {
            stock.quantity - quantity_i32 + 91
        };
        stock.ytd = add(stock.ytd, quantity as i64);
        stock.order_cnt = stock.order_cnt.wrapping_add(1);
        if supply_w_id != w_id {
            stock.remote_cnt = stock.remote_cnt.wrapping_add(1);
        }
        let at = (d_id as usize - 1) * DIST_INFO_LEN;
        let dist_info = stock
            .dist
            .get(at..at + DIST_INFO_LEN)
            .unwrap_or_else(|| abort(format_args!("district {d_id} has no S_DIST column")))
            .to_string();
        STOCK.put(&(supply_w_id, i_id), &stock);

        let amount = mul(item.price, quantity as i64);
        sum = add(sum, amount);
        ORDER_LINES.put(
            &(w_id, d_id, o_id, ol_number),
            &OrderLine {
                i_id,
                supply_w_id,
                delivery_ms: None,
                quantity,
                amount,
                dist_info,
            },
        );
    }

    let total = sum as i128
        * (BP - customer.discount_bp) as i128
        * (BP + warehouse.tax_bp + district.tax_bp) as i128;
    let scale = (BP * BP) as i128;
    let total = i64::try_from((total + scale / 2).div_euclid(scale))
        .unwrap_or_else(|_| abort("the order total overflows i64"));
    NewOrderDone { o_id, total }
}

/// Payment (TPC-C 2.5), customer selected by id: customer `c_id` of
/// district `c_d_id` of warehouse `c_w_id` pays `amount` cents (more than
/// 0) through district `d_id` of warehouse `w_id` (the customer's
/// warehouse is remote in 15% of the standard mix). Adds `amount` to the
/// warehouse's and the district's YTD, subtracts it from the customer's
/// balance, counts the payment, prepends it to a bad-credit customer's
/// data, and inserts a history row keyed by `(w_id, this transaction's
/// sequence number)`. Returns the customer's new balance.
///
/// Declares the paying warehouse `w_id` and the customer's `c_w_id`.
#[procedure(partitions(w_id, c_w_id))]
fn tpcc_payment(
    w_id: u32,
    d_id: u32,
    c_w_id: u32,
    c_d_id: u32,
    c_id: u32,
    amount: i64,
) -> Result<i64, String> {
    if amount <= 0 {
        return Err(format!("payment amount {amount} is not positive"));
    }
    let mut warehouse = warehouse(w_id);
    warehouse.ytd = add(warehouse.ytd, amount);
    WAREHOUSES.put(&w_id, &warehouse);

    let mut district = district(w_id, d_id);
    district.ytd = add(district.ytd, amount);
    DISTRICTS.put(&(w_id, d_id), &district);

    let mut customer = customer(c_w_id, c_d_id, c_id);
    customer.balance = sub(customer.balance, amount);
    customer.ytd_payment = add(customer.ytd_payment, amount);
    customer.payment_cnt = customer.payment_cnt.wrapping_add(1);
    if customer.credit == "BC" {
        let mut data = format!(
            "{c_id} {c_d_id} {c_w_id} {d_id} {w_id} {amount}|{}",
            customer.data
        );
        truncate(&mut data, CUSTOMER_DATA_MAX);
        customer.data = data;
    }
    CUSTOMERS.put(&(c_w_id, c_d_id, c_id), &customer);

    let mut data = String::with_capacity(warehouse.name.len() + 4 + district.name.len());
    data.push_str(&warehouse.name);
    data.push_str("    ");
    data.push_str(&district.name);
    HISTORY.put(
        &(w_id, sequence()),
        &History {
            c_id,
            c_d_id,
            c_w_id,
            d_id,
            date_ms: now_ms(),
            amount,
            data,
        },
    );
    Ok(customer.balance)
}

/// Checks TPC-C consistency conditions 1 and 2 (clause 3.3.2) for
/// warehouse `w_id`, and aborts naming the first that fails:
///
/// 1. `W_YTD = sum(D_YTD)` over the warehouse's districts;
/// 2. in each district, `D_NEXT_O_ID - 1 = max(O_ID) = max(NO_O_ID)` (with
///    no orders, as loaded here, `D_NEXT_O_ID` is 1 and there are neither
///    orders nor new-orders).
///
/// Returns the number of orders in the warehouse. Reads the districts, and
/// two orders and two new-orders per district: condition 2 is checked by
/// looking up order `D_NEXT_O_ID - 1` and making sure none lies above it.
///
/// It scans, so it declares no partitions and runs over all of them.
#[procedure(read_only)]
fn tpcc_check(w_id: u32) -> Result<u64, String> {
    let warehouse = warehouse(w_id);
    let mut ytd_sum: i64 = 0;
    let mut orders: u64 = 0;
    let mut districts = 0;
    for ((_, d_id), district) in DISTRICTS.scan_prefix(&w_id) {
        districts += 1;
        ytd_sum = add(ytd_sum, district.ytd);
        let last = district
            .next_o_id
            .checked_sub(1)
            .ok_or_else(|| format!("district {d_id} of warehouse {w_id} has next order id 0"))?;
        let condition_2 = |table: &str, max: Option<u32>| {
            if max == (last > 0).then_some(last) {
                Ok(())
            } else {
                let max = match max {
                    Some(max) => format!("{max}"),
                    None => "none".to_string(),
                };
                Err(format!(
                    "consistency condition 2 fails for district {d_id} of warehouse {w_id}: \
                     D_NEXT_O_ID - 1 = {last} but the largest id in {table} is {max}"
                ))
            }
        };
        condition_2("ORDER", max_id(ORDERS, w_id, d_id, last))?;
        condition_2("NEW-ORDER", max_id(NEW_ORDERS, w_id, d_id, last))?;
        orders += last as u64;
    }
    if districts == 0 {
        return Err(format!("warehouse {w_id} has no districts"));
    }
    if warehouse.ytd != ytd_sum {
        return Err(format!(
            "consistency condition 1 fails for warehouse {w_id}: \
             W_YTD = {} but the sum of D_YTD is {ytd_sum}",
            warehouse.ytd
        ));
    }
    Ok(orders)
}

/// The largest order id of district `(w_id, d_id)` in `table`, given that
/// it is expected to be `expected` (0: none). Looks up `expected` and
/// whether anything lies above it, so costs two reads, not a scan; if
/// there is something above, scans up to it to name it.
fn max_id<V: Serialize + serde::de::DeserializeOwned>(
    table: Table<(u32, u32, u32), V>,
    w_id: u32,
    d_id: u32,
    expected: u32,
) -> Option<u32> {
    let above = (w_id, d_id, expected.saturating_add(1))..=(w_id, d_id, u32::MAX);
    if let Some(((_, _, highest), _)) = table.scan(above).last() {
        return Some(highest);
    }
    if expected > 0 && table.contains(&(w_id, d_id, expected)) {
        return Some(expected);
    }
    // Nothing at or above `expected`: the largest below it, if any.
    table
        .scan((w_id, d_id, 0)..(w_id, d_id, expected))
        .last()
        .map(|((_, _, o_id), _)| o_id)
}

// ---------------------------------------------------------------------------
// Reading rows, for clients and tests

/// Warehouse `w_id`.
#[procedure(read_only, partitions(w_id))]
fn tpcc_warehouse(w_id: u32) -> Warehouse {
    warehouse(w_id)
}

/// District `d_id` of warehouse `w_id`.
#[procedure(read_only, partitions(w_id))]
fn tpcc_district(w_id: u32, d_id: u32) -> District {
    district(w_id, d_id)
}

/// Customer `c_id` of district `d_id` of warehouse `w_id`.
#[procedure(read_only, partitions(w_id))]
fn tpcc_customer(w_id: u32, d_id: u32, c_id: u32) -> Customer {
    customer(w_id, d_id, c_id)
}

/// Item `i_id` as replicated in warehouse `w_id`.
#[procedure(read_only, partitions(w_id))]
fn tpcc_item(w_id: u32, i_id: u32) -> Item {
    ITEMS
        .get(&(w_id, i_id))
        .unwrap_or_else(|| abort(format_args!("no item {i_id} in warehouse {w_id}")))
}

/// Warehouse `w_id`'s stock of item `i_id`.
#[procedure(read_only, partitions(w_id))]
fn tpcc_stock(w_id: u32, i_id: u32) -> Stock {
    STOCK
        .get(&(w_id, i_id))
        .unwrap_or_else(|| abort(format_args!("no stock of item {i_id} in warehouse {w_id}")))
}

/// An order with its lines, and whether it is still in NEW-ORDER.
#[derive(Serialize, ordo_sdk::Schema)]
struct OrderView {
    order: Order,
    new_order: bool,
    lines: Vec<OrderLine>,
}

/// Order `o_id` of district `d_id` of warehouse `w_id`, with its lines.
/// It scans the order's lines, so it declares no partitions.
#[procedure(read_only)]
fn tpcc_order(w_id: u32, d_id: u32, o_id: u32) -> OrderView {
    let key = (w_id, d_id, o_id);
    let order = ORDERS.get(&key).unwrap_or_else(|| {
        abort(format_args!(
            "no order {o_id} in district {d_id} of warehouse {w_id}"
        ))
    });
    OrderView {
        order,
        new_order: NEW_ORDERS.contains(&key),
        lines: ORDER_LINES
            .scan_prefix(&key)
            .map(|(_, line)| line)
            .collect(),
    }
}

/// The history row of the Payment with sequence number `seq` through
/// warehouse `w_id`.
#[procedure(read_only, partitions(w_id))]
fn tpcc_history(w_id: u32, seq: u64) -> History {
    HISTORY.get(&(w_id, seq)).unwrap_or_else(|| {
        abort(format_args!(
            "no history row for sequence number {seq} in warehouse {w_id}"
        ))
    })
}

// ---------------------------------------------------------------------------
// Helpers

/// The supply warehouses of NewOrder's lines `(i_id, supply_w_id,
/// quantity)`, for its partition declaration (duplicates are fine: the set
/// removes them). Empty if there are more lines than an order may have:
/// NewOrder then aborts before touching anything, and a declaration of
/// thousands of warehouses would only cost the scheduler.
fn supply_warehouses(items: &[(u32, u32, u32)]) -> Vec<u32> {
    if items.len() > LINES_MAX {
        return Vec::new();
    }
    items
        .iter()
        .map(|&(_, supply_w_id, _)| supply_w_id)
        .collect()
}

fn warehouse(w_id: u32) -> Warehouse {
    WAREHOUSES
        .get(&w_id)
        .unwrap_or_else(|| abort(format_args!("no such warehouse: {w_id}")))
}

fn district(w_id: u32, d_id: u32) -> District {
    DISTRICTS
        .get(&(w_id, d_id))
        .unwrap_or_else(|| abort(format_args!("no such district: {d_id} of warehouse {w_id}")))
}

fn customer(w_id: u32, d_id: u32, c_id: u32) -> Customer {
    CUSTOMERS.get(&(w_id, d_id, c_id)).unwrap_or_else(|| {
        abort(format_args!(
            "no such customer: {c_id} of district {d_id} of warehouse {w_id}"
        ))
    })
}

fn add(a: i64, b: i64) -> i64 {
    a.checked_add(b)
        .unwrap_or_else(|| abort("money arithmetic overflows i64"))
}

fn sub(a: i64, b: i64) -> i64 {
    a.checked_sub(b)
        .unwrap_or_else(|| abort("money arithmetic overflows i64"))
}

fn mul(a: i64, b: i64) -> i64 {
    a.checked_mul(b)
        .unwrap_or_else(|| abort("money arithmetic overflows i64"))
}

/// Shortens `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}
