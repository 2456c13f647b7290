//! The example procedure modules, compiled from `procedures/examples/` to
//! wasm32-unknown-unknown by `build.rs` and embedded in the binary, so that
//! tests, benchmarks and `ordo` itself can deploy them without a toolchain.
//!
//! Each is a complete module as described in `docs/ABI.md`: it imports only
//! from `"ordo"`, exports `memory`, `ordo_args_buffer` and one
//! `ordo_proc_<name>` per procedure, and lists its procedures in the
//! `ordo.procedures` custom section. The procedure names and argument names
//! below are what clients pass (arguments as a JSON object keyed by name, or
//! postcard in the listed order).

/// Bank accounts (`procedures/examples/bank`), balances `i64`, never negative:
/// `open {id: u64, balance: i64}`, `open_many {first_id: u64, count: u64,
/// balance: i64}`, `deposit {id: u64, amount: i64}`, `transfer {from: u64,
/// to: u64, amount: i64}`, and the read-only `balance {id: u64} -> i64` and
/// `total {} -> i64`.
pub const BANK: &[u8] = include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_bank.wasm"));

/// A string-keyed `i64` store (`procedures/examples/kv`):
/// `get {key: String} -> Option<i64>` (read-only), `put {key, value: i64}`,
/// `delete {key} -> bool`, `cas {key, expected: Option<i64>, new: i64} ->
/// bool`, and `incr {key, by: i64} -> i64` (an absent key counts as 0).
pub const KV: &[u8] = include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_kv.wasm"));

/// Append-only lists of `u64` (`procedures/examples/lists`), the
/// list-append workload of consistency checkers: `append {key: u64, value:
/// u64} -> Vec<u64>` (the list after the append; at most 4,096 values)
/// and the read-only `read {key: u64} -> Vec<u64>`.
pub const LISTS: &[u8] = include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_lists.wasm"));

/// Lease locks with fencing tokens (`procedures/examples/lock`):
/// `acquire {name: String, owner: String, lease_ms: u64} -> u64` (the token
/// is the transaction's sequence number), `release {name, owner}`,
/// `write_with_token {name, token: u64, key: String, value: String}` (aborts
/// on a token older than the lock's newest), and the read-only
/// `read {key: String} -> Option<String>`.
pub const LOCK: &[u8] = include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_lock.wasm"));

/// The SmallBank benchmark (`procedures/examples/smallbank`):
/// `create_account {id: u64, checking: i64, savings: i64}`,
/// `create_many {first_id: u64, count: u64, checking: i64, savings: i64}`,
/// `balance {id} -> i64` (read-only), `deposit_checking {id, amount: i64}`,
/// `transact_savings {id, amount: i64}`, `amalgamate {from: u64, to: u64}`,
/// `write_check {id, amount: i64}` and `send_payment {from, to, amount: i64}`.
pub const SMALLBANK: &[u8] = include_bytes!(concat!(
    env!("ORDO_WASM_DIR"),
    "/ordo_example_smallbank.wasm"
));

/// A TPC-C subset (`procedures/examples/tpcc`): NewOrder and Payment over
/// the nine TPC-C tables, every key starting with its warehouse id, the
/// read-only ITEM table replicated into every warehouse. Ids are `u32` and
/// 1-based, money is `i64` cents, tax and discount rates are basis points.
/// Loading (each aborts if a row it would write exists):
/// `tpcc_load_warehouse {w_id: u32, districts: u32}` (the warehouse and
/// districts `1..=districts`, at most 10), `tpcc_load_items {w_id, first:
/// u32, count: u32}` (items and their stock: 2 writes each) and
/// `tpcc_load_customers {w_id, d_id: u32, first: u32, count: u32}`.
/// Transactions: `tpcc_new_order {w_id, d_id, c_id: u32, items: Vec<(u32,
/// u32, u32)>} -> {o_id: u32, total: i64}` (lines are `(i_id, supply_w_id,
/// quantity)`; an unknown item id aborts the whole order) and
/// `tpcc_payment {w_id, d_id, c_w_id: u32, c_d_id: u32, c_id: u32, amount:
/// i64} -> i64` (the customer's new balance). Read-only: `tpcc_check
/// {w_id} -> u64` (the number of orders; aborts naming the TPC-C
/// consistency condition, 1 or 2, that fails), and row readers
/// `tpcc_warehouse {w_id}`, `tpcc_district {w_id, d_id}`, `tpcc_customer
/// {w_id, d_id, c_id}`, `tpcc_item {w_id, i_id: u32}`, `tpcc_stock {w_id,
/// i_id}`, `tpcc_order {w_id, d_id, o_id: u32}` (with its lines) and
/// `tpcc_history {w_id, seq: u64}`.
pub const TPCC: &[u8] = include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_tpcc.wasm"));

/// The YCSB core workloads' operations (`procedures/examples/ycsb`) over
/// `usertable`: `u64` keys, each record a list of byte-string fields kept
/// as one value. `ycsb_load {first: u64, count: u64, field_count: u32,
/// field_bytes: u32}` (field `f` of record `k` is `field_bytes` letters
/// cycling through the alphabet from letter `(k + f) mod 26`),
/// `ycsb_read {key: u64} -> Vec<Vec<u8>>` (read-only), `ycsb_update {key,
/// field: u32, value: Vec<u8>}`, `ycsb_insert {key, fields: Vec<Vec<u8>>}`
/// (aborts if the key exists), `ycsb_scan {start: u64, count: u32} ->
/// Vec<(u64, Vec<Vec<u8>>)>` (read-only) and `ycsb_read_modify_write {key,
/// field, value} -> Vec<Vec<u8>>` (the record as read). An unknown key or
/// field aborts.
pub const YCSB: &[u8] = include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_ycsb.wasm"));

/// Misbehaving procedures for the engine's tests
/// (`procedures/examples/hostile`): `spin {}` (runs out of fuel), `bomb {}`
/// (allocates until memory runs out), `recurse {depth: u64} -> u64`
/// (overflows the stack for a large depth), `panic {}`, `trap {}`,
/// `huge_result {bytes: u32} -> Vec<u8>`, `huge_value {bytes: u32}` (one raw
/// value of exactly `bytes` bytes under `hostile/huge`), `many_writes {n:
/// u32}` (raw keys `hostile/w/<i as u32 BE>`), `write_then_abort {key:
/// Vec<u8>}` and `write_then_panic {key: Vec<u8>}` (a raw key), `nan {a:
/// f64, b: f64} -> u64` (NaN bit patterns; all of them are stored under
/// `hostile/nan`), `context {} -> (u64, u64, u64)` (sequence, now_ms,
/// random_u64) and `echo {data: Vec<u8>} -> Vec<u8>`. For partitions, over
/// the table `hostile_p: u64 -> u64`: `undeclared_write {declared: u64,
/// other: u64}` (declares `declared`, writes both), `keys_read_store {id}`
/// (its declaration reads the store), `keys_panic {id}` (its declaration
/// panics) and `declared_nothing {id}` (declares no partition, writes `id`).
/// For the procedure contract, over the table `hostile_c: u64 -> u64`:
/// `contract_set {id, value}`, `contract_get {id} -> Option<u64>`
/// (read-only), `alias_ok {id, value} -> u64` and `alias_err {id, value}`
/// (write, then return `Ok` / `Err` through `type Res<T> = Result<T,
/// String>`), `sneaky_put {id, value}` and `sneaky_delete {id}` (marked
/// read-only, yet write).
pub const HOSTILE: &[u8] =
    include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_hostile.wasm"));

/// An inventory with struct, enum and optional arguments and a table of
/// structs: what the procedure contract's tests call with wrong types.
pub const INVENTORY: &[u8] = include_bytes!(concat!(
    env!("ORDO_WASM_DIR"),
    "/ordo_example_inventory.wasm"
));

/// Version 2 of [`INVENTORY`]: its stored `Item` gained a field, so
/// deploying it over version 1's data is refused.
pub const INVENTORY_V2: &[u8] = include_bytes!(concat!(
    env!("ORDO_WASM_DIR"),
    "/ordo_example_inventory_v2.wasm"
));

/// [`INVENTORY_V2`] with a migration that rewrites version 1's items, so
/// deploying it over version 1's data succeeds.
pub const INVENTORY_V3: &[u8] = include_bytes!(concat!(
    env!("ORDO_WASM_DIR"),
    "/ordo_example_inventory_v3.wasm"
));
