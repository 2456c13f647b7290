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

/// Misbehaving procedures for the engine's tests
/// (`procedures/examples/hostile`): `spin {}` (runs out of fuel), `bomb {}`
/// (allocates until memory runs out), `recurse {depth: u64} -> u64`
/// (overflows the stack for a large depth), `panic {}`, `trap {}`,
/// `huge_result {bytes: u32} -> Vec<u8>`, `huge_value {bytes: u32}` (one raw
/// value of exactly `bytes` bytes under `hostile/huge`), `many_writes {n:
/// u32}` (raw keys `hostile/w/<i as u32 BE>`), `write_then_abort {key:
/// String}` and `write_then_panic {key: String}` (raw key = the UTF-8
/// bytes), `nan {a: f64, b: f64} -> u64` (NaN bit patterns; all of them are
/// stored under `hostile/nan`), `context {} -> (u64, u64, u64)`
/// (sequence, now_ms, random_u64) and `echo {data: Vec<u8>} -> Vec<u8>`.
pub const HOSTILE: &[u8] =
    include_bytes!(concat!(env!("ORDO_WASM_DIR"), "/ordo_example_hostile.wasm"));
