//! The guest SDK for ordo stored procedures.
//!
//! A procedure is a plain Rust function marked [`#[procedure]`](procedure).
//! A crate of procedures is built as a `cdylib` for
//! `wasm32-unknown-unknown`, deployed to the engine as one module, and run
//! one transaction at a time, in log order, on every replica. Whatever a
//! procedure does must therefore be deterministic: it sees the store, its
//! arguments, [`sequence`], [`now_ms`] and [`random_u64`], and nothing else
//! (no clock, no I/O, no threads).
//!
//! ```no_run
//! use ordo_sdk::{Table, procedure};
//!
//! /// Account id -> balance in cents.
//! const ACCOUNTS: Table<u64, i64> = Table::new("acct");
//!
//! #[procedure]
//! fn open(id: u64, balance: i64) -> Result<(), String> {
//!     if ACCOUNTS.contains(&id) {
//!         return Err(format!("account {id} already exists"));
//!     }
//!     ACCOUNTS.put(&id, &balance);
//!     Ok(())
//! }
//!
//! #[procedure]
//! fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> {
//!     if amount <= 0 || from == to {
//!         return Err("invalid transfer".to_string());
//!     }
//!     let debit = ACCOUNTS.get(&from).ok_or("no such account")? - amount;
//!     if debit < 0 {
//!         // Aborting drops every write this transaction made.
//!         ordo_sdk::abort(format_args!("account {from} has insufficient funds"));
//!     }
//!     let credit = ACCOUNTS.get(&to).ok_or("no such account")? + amount;
//!     ACCOUNTS.put(&from, &debit);
//!     ACCOUNTS.put(&to, &credit);
//!     Ok(())
//! }
//!
//! #[procedure(read_only)]
//! fn total() -> i64 {
//!     ACCOUNTS.iter().map(|(_id, balance)| balance).sum()
//! }
//! ```
//!
//! with, in `Cargo.toml`,
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! ordo-sdk = { path = "…/procedures/sdk" }
//!
//! [profile.release]
//! opt-level = 3
//! lto = true
//! codegen-units = 1
//! panic = "abort"
//! ```
//!
//! and `cargo build --release --target wasm32-unknown-unknown`.
//!
//! # Procedures
//!
//! `#[procedure]` keeps the function and exports it as
//! `ordo_proc_<name>`. Its parameters are the procedure's arguments: a
//! client sends them either postcard-encoded (as a tuple, in declaration
//! order) or as a JSON object keyed by parameter name
//! (`{"from": 1, "to": 2, "amount": 500}`). Parameter types must be owned
//! and implement `serde::Deserialize`; no procedure can be generic, `async`
//! or take `self`.
//!
//! The return value is the transaction's result, encoded like the
//! arguments. It can be `()`, any `T: Serialize`, or a `Result<T, E>` with
//! `T: Serialize` and `E: Display`, where `Err(e)` aborts the transaction
//! with `e.to_string()` as the reason and drops its writes. That is decided
//! by the type, whatever its spelling: `Result<T, E>`, `io::Result<T>` or
//! your own alias (`type Res<T> = Result<T, String>;`) all abort on `Err`.
//! Only a `Result` at the top aborts (an `Option<Result<T, E>>` is a value),
//! and a type of your own named `Result` is a compile error. [`abort`] does
//! the same from anywhere. A panic also aborts the transaction, with kind
//! `trap` and the panic's place and message (`procedure panicked at
//! src/lib.rs:12:5: ...`: the SDK installs a panic hook that hands them
//! to the host); another trap, such as an out-of-bounds access, aborts
//! it with kind `trap` and the trap's name.
//!
//! `#[procedure(read_only)]` marks a procedure that does not write. The
//! engine holds it to that: a `put` or `delete` (through a [`Table`] or the
//! raw functions) aborts the transaction with kind `read_only`, naming the
//! procedure, and drops its writes, whether it runs as a logged call or as
//! a local read. Read-only procedures can be read locally, without the log
//! (`ReadConsistency::Stale`), and `ordo procedures` lists them as such
//! (the mark is in the module's `ordo.procedures` custom section).
//!
//! # Declaring partitions
//!
//! The store is partitioned: every key belongs to a *partition key*, which
//! for a [`Table`] key is its first component (the key itself for a scalar
//! key, the first element of a tuple key; see [`partition`]). A procedure
//! can declare, as a function of its arguments alone, the partitions it
//! will touch:
//!
//! ```no_run
//! # use ordo_sdk::{Table, procedure};
//! # const ACCOUNTS: Table<u64, i64> = Table::new("acct");
//! #[procedure(partitions(from, to))]
//! fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> {
//!     # let _ = (ACCOUNTS, amount);
//!     // ... reads and writes ACCOUNTS[from] and ACCOUNTS[to] only
//!     # Ok(())
//! }
//!
//! #[procedure(read_only, partitions(id))]
//! fn balance(id: u64) -> Option<i64> {
//!     ACCOUNTS.get(&id)
//! }
//! ```
//!
//! The engine evaluates the declaration before running the transaction
//! and schedules it on those partitions only, so that transactions on
//! disjoint partitions run in parallel (in the manner of Calvin: locks are
//! taken in log order, so every replica gets the same outcome). Touching a
//! key of a partition that was not declared aborts the transaction,
//! deterministically. A procedure that declares nothing runs over all
//! partitions, serially with respect to every other transaction: always
//! correct, never parallel. A scan in a procedure that declares partitions
//! sees only the keys of those partitions, so procedures that scan across
//! partitions, such as one summing a whole table with
//! [`iter`](Table::iter), should declare nothing.
//!
//! Each expression in `partitions(...)` is evaluated with the procedure's
//! decoded arguments in scope as local variables (owned, by name) and must
//! implement [`Partitions`]: integers, `bool`, strings and [`Bytes`] name
//! the partition of a table key equal to them; `Vec`s, slices, arrays and
//! `Option`s name each element (`None`: nothing); [`Key`] wraps any key
//! type, tuples included. Tuples themselves are refused, because the
//! partition of a `(w_id, d_id)` key is `w_id`'s alone: declare the first
//! key component. Any expression over the arguments works, including calls
//! of your own functions:
//!
//! ```no_run
//! # use ordo_sdk::procedure;
//! /// Warehouse `w_id`, plus the supply warehouse of every order line.
//! #[procedure(partitions(w_id, lines.iter().map(|&(_item, supply_w_id)| supply_w_id).collect::<Vec<u32>>()))]
//! fn new_order(w_id: u32, lines: Vec<(u32, u32)>) {
//!     # let _ = (w_id, lines);
//!     // ...
//! }
//! ```
//!
//! The macro exports the declaration as `ordo_keys_<name>` next to
//! `ordo_proc_<name>` (docs/ABI.md). A declaration must not touch the store
//! (no [`Table`] method, no [`get_raw`] or [`scan_raw`]): the engine aborts
//! the transaction if it does. It can call [`sequence`], [`now_ms`] and
//! [`random_u64`], but a declaration that depends on them rather than on
//! the arguments is rarely what you want. A declaration that panics aborts
//! the transaction.
//!
//! # The store
//!
//! One ordered key-value store is shared by every module of the engine.
//! [`Table`] gives a typed view of part of it: keys are encoded so their
//! byte order is their natural order ([`OrderedKey`]), after the table's
//! name and a class byte that tells the host where the key's partition key
//! ends ([`key`](crate::key#key-classes)); values are postcard.
//! The raw functions ([`get_raw`], [`put_raw`], [`delete_raw`],
//! [`scan_raw`], [`scan_prefix_raw`]) work on bytes. Reads see the
//! transaction's own writes; writes become durable only if the procedure
//! returns successfully.
//!
//! Fuel is spent on encoding too: postcard handles a `Vec<u8>` one byte at
//! a time. For large byte strings (parameters, results or table values) use
//! [`Bytes`], which has the same encodings but is copied in one go.
//!
//! The host enforces limits (see `docs/ABI.md`): keys up to 4 KiB, values
//! up to 1 MiB, 100,000 writes and 16 MiB of writes per transaction, a fuel
//! budget of about 100 million wasm instructions, and 64 MiB of memory.
//! Breaking one aborts the transaction.
//!
//! # Outside the engine
//!
//! The crate compiles on every target so that `cargo check` and unit tests
//! of pure code work natively; but every function that talks to the host
//! panics with `unimplemented!` unless compiled for `wasm32`.

extern crate alloc;

mod bytes;
mod context;
mod host;
pub mod key;
pub mod log;
pub mod partition;
mod private;
mod raw;
mod table;

pub use bytes::Bytes;
pub use context::{abort, now_ms, random_u64, sequence};
pub use key::{EncodeKey, KeyPrefix, OrderedKey};
pub use partition::{Key, PartitionSet, Partitions, partition_of};
pub use raw::{RawScan, delete_raw, get_raw, put_raw, scan_prefix_raw, scan_raw};
pub use table::{Iter, Table};

/// Turns a plain function into an ordo stored procedure. See the
/// [crate documentation](crate#procedures).
///
/// ```no_run
/// #[ordo_sdk::procedure(read_only)]
/// fn echo(data: Vec<u8>) -> Vec<u8> {
///     data
/// }
/// ```
///
/// Unsupported signatures are compile errors:
///
/// ```compile_fail
/// #[ordo_sdk::procedure]
/// fn generic<T: serde::de::DeserializeOwned>(x: T) {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure]
/// async fn later() {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure]
/// fn borrowed(name: &str) {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure]
/// fn pattern((a, b): (u64, u64)) {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure(writes)]
/// fn unknown_option() {}
/// ```
///
/// Results: a `Result` behind an alias aborts on `Err` like any other; its
/// error must be `Display` and its value `Serialize`, and a type of one's
/// own named `Result` is refused:
///
/// ```no_run
/// type Res<T> = Result<T, String>;
///
/// #[ordo_sdk::procedure]
/// fn check(amount: i64) -> Res<()> {
///     if amount < 0 { Err("negative".into()) } else { Ok(()) }
/// }
/// ```
///
/// ```compile_fail
/// #[derive(serde::Serialize)]
/// struct NotDisplay;
/// type Res<T> = Result<T, NotDisplay>;
///
/// #[ordo_sdk::procedure]
/// fn check(amount: i64) -> Res<()> { Ok(()) }
/// ```
///
/// ```compile_fail
/// struct NotSerialize;
///
/// #[ordo_sdk::procedure]
/// fn make() -> Result<NotSerialize, String> { Ok(NotSerialize) }
/// ```
///
/// ```compile_fail
/// #[derive(serde::Serialize)]
/// enum Result<T> { Ok(T), Err(String) }
///
/// #[ordo_sdk::procedure]
/// fn mine() -> Result<u64> { Result::Ok(1) }
/// ```
///
/// ```compile_fail
/// #[derive(serde::Serialize)]
/// struct Result { ok: bool }
///
/// #[ordo_sdk::procedure]
/// fn mine() -> Result { Result { ok: false } }
/// ```
///
/// Partition declarations: `partitions(...)` needs at least one
/// expression, may appear once, and a tuple is not a declaration (declare
/// its first element):
///
/// ```no_run
/// #[ordo_sdk::procedure(read_only, partitions(a, b))]
/// fn both(a: u64, b: u64) {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure(partitions())]
/// fn empty_partitions() {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure(partitions((a, b)))]
/// fn tuple_partitions(a: u64, b: u64) {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure(partitions(a), partitions(a))]
/// fn twice(a: u64) {}
/// ```
///
/// ```compile_fail
/// #[ordo_sdk::procedure(partitions(missing))]
/// fn unknown_variable(a: u64) {}
/// ```
///
/// So is a name the engine would refuse (`ordo_schema::abi::is_valid_name`,
/// checked when the generated code compiles):
///
/// ```compile_fail
/// #[ordo_sdk::procedure]
/// #[allow(non_snake_case)]
/// fn Transfer() {}
/// ```
pub use ordo_sdk_macros::{migration, procedure, table};

/// The schema model (docs/PROCEDURES.md, "The procedure contract"):
/// every parameter, result, table key and table value type implements
/// [`Schema`], so the module can tell the host its full signature.
pub use ordo_schema as schema;
/// The trait, and its derive: `#[derive(Serialize, Deserialize, Schema)]`
/// on your own structs and enums.
pub use ordo_schema::Schema;

/// The serde version the SDK uses, for deriving `Serialize` and
/// `Deserialize` on your own types without depending on serde yourself:
/// `#[derive(ordo_sdk::serde::Serialize)] #[serde(crate = "ordo_sdk::serde")]`.
pub use serde;

#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference() {
        // Reference values of SplitMix64 seeded with 1234567.
        let mut state = 1234567;
        let mut out = [0u64; 3];
        for o in &mut out {
            let (s, v) = context::splitmix64(state);
            state = s;
            *o = v;
        }
        assert_eq!(
            out,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn seeds_a_splitmix_step_apart_do_not_share_a_stream() {
        let stream = |seed: u64| {
            let mut state = context::seed_state(seed);
            (0..8)
                .map(|_| {
                    let (s, v) = context::splitmix64(state);
                    state = s;
                    v
                })
                .collect::<Vec<_>>()
        };
        let a = stream(42u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let b = stream(43u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        assert!(a.iter().all(|x| !b.contains(x)));
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(raw::prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(raw::prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(raw::prefix_end(b"\xff"), None);
        assert_eq!(raw::prefix_end(b""), None);
    }

    #[test]
    fn table_keys_are_prefixed_and_disjoint() {
        const A: Table<u64, i64> = Table::new("acct");
        const B: Table<String, i64> = Table::new("acc");
        // name, 0x00, the key type's class byte, the encoded key.
        assert_eq!(A.prefix(), b"acct\0\x08");
        assert_eq!(B.prefix(), b"acc\0\x80");
        assert_eq!(A.raw_key(&1u64), b"acct\0\x08\0\0\0\0\0\0\0\x01");
        assert_eq!(B.raw_key("t"), b"acc\0\x80t\0\0");
        assert!(!A.raw_key(&0u64).starts_with(&B.prefix()));
        assert!(!B.raw_key("t").starts_with(&A.prefix()));
        const C: Table<(u32, String), ()> = Table::new("c");
        assert_eq!(
            C.raw_key(&(2u32, "x".to_string())),
            b"c\0\x04\0\0\0\x02x\0\0"
        );
        const D: Table<((), u8), ()> = Table::new("d");
        assert_eq!(D.raw_key(&((), 1u8)), b"d\0\0\x01");
    }
}
