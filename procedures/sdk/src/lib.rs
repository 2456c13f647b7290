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
//! `E: Display`, where `Err(e)` aborts the transaction with `e.to_string()`
//! as the reason (the macro recognises `Result` by name: `Result<T, E>`,
//! `std::result::Result<T, E>` or an alias such as `io::Result<T>`; an alias
//! with another name would be encoded as a value). [`abort`] does the same
//! from anywhere. A panic, or a trap
//! such as an out-of-bounds access, also aborts the transaction, but the
//! client only learns that it trapped, not the panic message.
//!
//! `#[procedure(read_only)]` marks a procedure that does not write. It is
//! a description for clients (`ordo procedures`), listed with the parameter
//! names and types in the module's `ordo.procedures` custom section.
//!
//! # The store
//!
//! One ordered key-value store is shared by every module of the engine.
//! [`Table`] gives a typed view of part of it: keys are encoded so their
//! byte order is their natural order ([`OrderedKey`]), values are postcard.
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
mod private;
mod raw;
mod table;

pub use bytes::Bytes;
pub use context::{abort, now_ms, random_u64, sequence};
pub use key::{EncodeKey, KeyPrefix, OrderedKey};
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
pub use ordo_sdk_macros::procedure;

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
        assert_eq!(A.raw_key(&1u64), b"acct\0\0\0\0\0\0\0\0\x01");
        assert_eq!(B.raw_key("t"), b"acc\0t\0\0");
        assert!(!A.raw_key(&0u64).starts_with(&B.prefix()));
    }
}
