//! Shared by the snapshot and read tests: a small bank written by hand in
//! WAT (so the engine's tests need no wasm toolchain), and log builders.

#![allow(dead_code)]

use ordo_engine::{EngineConfig, Executor, Outcome, TxOutcome};
use ordo_entry::{ArgsEncoding, Batch, Deploy, Entry, Invocation};

/// A bank with accounts keyed `acct 0x00 0x08 id` (a table key whose
/// partition key is the 8-byte id). Arguments are little-endian `u64`s.
///
/// - `open(id, balance)`, `transfer(from, to, amount)`: as in the Rust
///   bank example; declare their accounts.
/// - `balance(id) -> i64 LE` (read-only, declares `id`).
/// - `dump()` (read-only, declares nothing): the raw `scan` of everything.
/// - `counter(id)` and `peek(id)` (read-only): add `version` to a counter
///   in the instance's memory and return it, so their outcomes depend on
///   the instance's history, as near-limit outcomes of real modules do.
/// - `sneaky(id, value)`: marked read-only, yet writes.
pub fn bank_wasm(version: u64) -> Vec<u8> {
    let text = BANK_WAT.replace("VERSION", &version.to_string());
    wat::parse_str(text).expect("the bank module parses")
}

const BANK_WAT: &str = r#"
(module
  (import "ordo" "get" (func $get (param i32 i32 i32 i32) (result i64)))
  (import "ordo" "put" (func $put (param i32 i32 i32 i32)))
  (import "ordo" "scan" (func $scan (param i32 i32 i32 i32 i32 i32 i32) (result i64)))
  (import "ordo" "set_result" (func $set_result (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "acct\00\08")
  (data (i32.const 16) "acct\00\08")
  (data (i32.const 512) "no such account")
  (data (i32.const 544) "insufficient funds")
  (data (i32.const 576) "account exists")
  (data (i32.const 608) "same account")
  (@custom "ordo.procedures" "{\"name\":\"balance\",\"read_only\":true}\n{\"name\":\"dump\",\"read_only\":true}\n{\"name\":\"peek\",\"read_only\":true}\n{\"name\":\"sneaky\",\"read_only\":true}\n")
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 1024)

  (func $key_a (param $offset i32)
    (i64.store (i32.const 6) (i64.load (i32.add (i32.const 1024) (local.get $offset)))))
  (func $key_b (param $offset i32)
    (i64.store (i32.const 22) (i64.load (i32.add (i32.const 1024) (local.get $offset)))))
  (func $fail (param $ptr i32) (param $len i32) (result i32)
    (call $set_result (local.get $ptr) (local.get $len))
    i32.const 1)
  (func $declare_first (result i32)
    (i32.store (i32.const 4096) (i32.const 1))
    (i32.store (i32.const 4100) (i32.const 8))
    (i64.store (i32.const 4104) (i64.load (i32.const 1024)))
    (call $set_result (i32.const 4096) (i32.const 16))
    i32.const 0)
  (func $bump (result i32)
    (i64.store (i32.const 3000) (i64.add (i64.load (i32.const 3000)) (i64.const VERSION)))
    (call $set_result (i32.const 3000) (i32.const 8))
    i32.const 0)

  (func (export "ordo_keys_open") (param i32 i32) (result i32) (call $declare_first))
  (func (export "ordo_proc_open") (param i32 i32) (result i32)
    (call $key_a (i32.const 0))
    (if (i64.ge_s (call $get (i32.const 0) (i32.const 14) (i32.const 2048) (i32.const 8)) (i64.const 0))
      (then (return (call $fail (i32.const 576) (i32.const 14)))))
    (call $put (i32.const 0) (i32.const 14) (i32.const 1032) (i32.const 8))
    i32.const 0)

  (func (export "ordo_keys_transfer") (param i32 i32) (result i32)
    (i32.store (i32.const 4096) (i32.const 2))
    (i32.store (i32.const 4100) (i32.const 8))
    (i64.store (i32.const 4104) (i64.load (i32.const 1024)))
    (i32.store (i32.const 4112) (i32.const 8))
    (i64.store (i32.const 4116) (i64.load (i32.const 1032)))
    (call $set_result (i32.const 4096) (i32.const 28))
    i32.const 0)
  (func (export "ordo_proc_transfer") (param i32 i32) (result i32)
    (local $from i64)
    (local $amount i64)
    (if (i64.eq (i64.load (i32.const 1024)) (i64.load (i32.const 1032)))
      (then (return (call $fail (i32.const 608) (i32.const 12)))))
    (call $key_a (i32.const 0))
    (call $key_b (i32.const 8))
    (if (i64.lt_s (call $get (i32.const 0) (i32.const 14) (i32.const 2048) (i32.const 8)) (i64.const 0))
      (then (return (call $fail (i32.const 512) (i32.const 15)))))
    (if (i64.lt_s (call $get (i32.const 16) (i32.const 14) (i32.const 2056) (i32.const 8)) (i64.const 0))
      (then (return (call $fail (i32.const 512) (i32.const 15)))))
    (local.set $amount (i64.load (i32.const 1040)))
    (local.set $from (i64.load (i32.const 2048)))
    (if (i64.lt_s (local.get $from) (local.get $amount))
      (then (return (call $fail (i32.const 544) (i32.const 18)))))
    (i64.store (i32.const 2048) (i64.sub (local.get $from) (local.get $amount)))
    (i64.store (i32.const 2056) (i64.add (i64.load (i32.const 2056)) (local.get $amount)))
    (call $put (i32.const 0) (i32.const 14) (i32.const 2048) (i32.const 8))
    (call $put (i32.const 16) (i32.const 14) (i32.const 2056) (i32.const 8))
    i32.const 0)

  (func (export "ordo_keys_balance") (param i32 i32) (result i32) (call $declare_first))
  (func (export "ordo_proc_balance") (param i32 i32) (result i32)
    (call $key_a (i32.const 0))
    (if (i64.lt_s (call $get (i32.const 0) (i32.const 14) (i32.const 2048) (i32.const 8)) (i64.const 0))
      (then (return (call $fail (i32.const 512) (i32.const 15)))))
    (call $set_result (i32.const 2048) (i32.const 8))
    i32.const 0)

  (func (export "ordo_proc_dump") (param i32 i32) (result i32)
    (local $n i64)
    (local.set $n (call $scan (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)
      (i32.const 4096) (i32.const 8192) (i32.const 32768)))
    (if (i64.lt_s (local.get $n) (i64.const 0)) (then (local.set $n (i64.const 0))))
    (call $set_result (i32.const 8192) (i32.wrap_i64 (local.get $n)))
    i32.const 0)

  (func (export "ordo_keys_counter") (param i32 i32) (result i32) (call $declare_first))
  (func (export "ordo_proc_counter") (param i32 i32) (result i32) (call $bump))
  (func (export "ordo_keys_peek") (param i32 i32) (result i32) (call $declare_first))
  (func (export "ordo_proc_peek") (param i32 i32) (result i32) (call $bump))

  (func (export "ordo_keys_sneaky") (param i32 i32) (result i32) (call $declare_first))
  (func (export "ordo_proc_sneaky") (param i32 i32) (result i32)
    (call $key_a (i32.const 0))
    (call $put (i32.const 0) (i32.const 14) (i32.const 1032) (i32.const 8))
    i32.const 0)
)
"#;

/// A second module: `echo` (read-only) returns its arguments.
pub fn tools_wasm() -> Vec<u8> {
    wat::parse_str(
        r#"
(module
  (import "ordo" "set_result" (func $set_result (param i32 i32)))
  (memory (export "memory") 1)
  (@custom "ordo.procedures" "{\"name\":\"echo\",\"read_only\":true}\n")
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 1024)
  (func (export "ordo_proc_echo") (param $len i32) (param i32) (result i32)
    (call $set_result (i32.const 1024) (local.get $len))
    i32.const 0)
)
"#,
    )
    .expect("the tools module parses")
}

/// Little-endian `u64` arguments.
pub fn args(values: &[u64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

pub fn invoke(client_id: u128, request_id: u64, procedure: &str, args: Vec<u8>) -> Entry {
    Entry::Invoke(Invocation {
        client_id,
        request_id,
        acked_below: 0,
        procedure: procedure.to_string(),
        encoding: ArgsEncoding::Postcard,
        args,
    })
}

pub fn deploy(client_id: u128, request_id: u64, name: &str, wasm: Vec<u8>) -> Entry {
    Entry::Deploy(Deploy {
        client_id,
        request_id,
        name: name.to_string(),
        wasm,
    })
}

/// A config whose instance epochs are 8 sequence numbers long.
pub fn small_epoch_config() -> EngineConfig {
    EngineConfig {
        instance_epoch: 8,
        ..EngineConfig::default()
    }
}

/// An executor on `partitions` threads that uses them for every batch,
/// however small, so that tests reach the threads.
pub fn executor(config: &EngineConfig, partitions: usize) -> Executor {
    let mut executor =
        Executor::with_partitions(Executor::compiler(config), config.clone(), partitions);
    executor.set_parallel_batch_entries_min(0);
    executor
}

/// Executes `entries` as the next batch.
pub fn run(executor: &mut Executor, entries: Vec<Entry>) -> Vec<TxOutcome> {
    let first_seq = executor.status().position + 1;
    executor.execute(&Batch {
        first_seq,
        timestamp_ms: 1_700_000_000_000 + first_seq,
        entries,
    })
}

pub fn committed(outcome: &Outcome) -> &[u8] {
    match outcome {
        Outcome::Committed { result } => result,
        other => panic!("expected a commit, got {other:?}"),
    }
}
