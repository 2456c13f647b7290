//! The executor against hand-written modules: the host ABI, deploy-time
//! validation, hostile procedures and atomicity. Modules built with the
//! Rust SDK are exercised by the root package's tests.

use ordo_engine::{AbortKind, EngineConfig, Executor, Outcome, TxOutcome};
use ordo_entry::{ArgsEncoding, Batch, Deploy, Entry, Invocation};

/// A minimal ABI-conforming module written by hand, so these tests pin
/// the ABI itself rather than the SDK's use of it.
const PROBE_WAT: &str = r#"
(module
  (import "ordo" "put" (func $put (param i32 i32 i32 i32)))
  (import "ordo" "get" (func $get (param i32 i32 i32 i32) (result i64)))
  (import "ordo" "set_result" (func $set_result (param i32 i32)))
  (import "ordo" "sequence" (func $sequence (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "key")
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 1024)
  (func (export "ordo_proc_set") (param $len i32) (param i32) (result i32)
    (call $put (i32.const 0) (i32.const 3) (i32.const 1024) (local.get $len))
    i32.const 0)
  (func (export "ordo_proc_read") (param i32 i32) (result i32)
    (local $n i64)
    (local.set $n (call $get (i32.const 0) (i32.const 3) (i32.const 4096) (i32.const 1024)))
    (if (i64.ge_s (local.get $n) (i64.const 0))
      (then (call $set_result (i32.const 4096) (i32.wrap_i64 (local.get $n)))))
    i32.const 0)
  (func (export "ordo_proc_spin") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    i32.const 0)
  (func (export "ordo_proc_grow") (param i32 i32) (result i32)
    (loop $forever (drop (memory.grow (i32.const 16))) (br $forever))
    i32.const 0)
  (func $deeper (param i32) (result i32)
    (i32.add (call $deeper (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "ordo_proc_recurse") (param i32 i32) (result i32)
    (call $deeper (i32.const 0)))
  (func (export "ordo_proc_set_then_trap") (param $len i32) (param i32) (result i32)
    (call $put (i32.const 0) (i32.const 3) (i32.const 1024) (local.get $len))
    unreachable)
  (func (export "ordo_proc_set_then_abort") (param $len i32) (param i32) (result i32)
    (call $put (i32.const 0) (i32.const 3) (i32.const 1024) (local.get $len))
    (call $set_result (i32.const 0) (i32.const 3))
    i32.const 1)
  (func (export "ordo_proc_bad_pointer") (param i32 i32) (result i32)
    (call $put (i32.const 65530) (i32.const 100) (i32.const 0) (i32.const 1))
    i32.const 0)
  (func (export "ordo_proc_divide_by_zero") (param i32 i32) (result i32)
    (i32.div_u (i32.const 1) (i32.const 0)))
  (func (export "ordo_proc_huge_result") (param i32 i32) (result i32)
    (drop (memory.grow (i32.const 40)))
    (call $set_result (i32.const 0) (i32.const 2000000))
    i32.const 0)
  (func (export "ordo_proc_seq") (param i32 i32) (result i32)
    (i64.store (i32.const 8192) (call $sequence))
    (call $set_result (i32.const 8192) (i32.const 8))
    i32.const 0)
  (func (export "ordo_proc_bad_status") (param i32 i32) (result i32)
    i32.const 7)
)
"#;

struct Harness {
    executor: Executor,
    next_request: u64,
}

impl Harness {
    fn new() -> Harness {
        let config = EngineConfig::default();
        Harness {
            executor: Executor::new(Executor::compiler(&config), config),
            next_request: 1,
        }
    }

    fn run(&mut self, entries: Vec<Entry>) -> Vec<TxOutcome> {
        let batch = Batch {
            first_seq: self.executor.status().position + 1,
            timestamp_ms: 1_700_000_000_000,
            entries,
        };
        self.executor.execute(&batch)
    }

    fn deploy(&mut self, name: &str, wasm: Vec<u8>) -> Outcome {
        let request_id = self.next_request;
        self.next_request += 1;
        self.run(vec![Entry::Deploy(Deploy {
            client_id: 1,
            request_id,
            name: name.to_string(),
            wasm,
        })])
        .remove(0)
        .outcome
    }

    fn invocation(&mut self, procedure: &str, args: &[u8]) -> Entry {
        let request_id = self.next_request;
        self.next_request += 1;
        Entry::Invoke(Invocation {
            client_id: 1,
            request_id,
            acked_below: 0,
            procedure: procedure.to_string(),
            encoding: ArgsEncoding::Postcard,
            args: args.to_vec(),
        })
    }

    fn call(&mut self, procedure: &str, args: &[u8]) -> Outcome {
        let entry = self.invocation(procedure, args);
        self.run(vec![entry]).remove(0).outcome
    }
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test module parses")
}

fn probe() -> Harness {
    let mut harness = Harness::new();
    let outcome = harness.deploy("probe", wat(PROBE_WAT));
    assert!(matches!(outcome, Outcome::Deployed(_)), "{outcome:?}");
    harness
}

fn abort_kind(outcome: &Outcome) -> AbortKind {
    outcome
        .abort()
        .unwrap_or_else(|| panic!("expected an abort, got {outcome:?}"))
        .kind
}

#[test]
fn put_then_get_round_trips_through_the_abi() {
    let mut harness = probe();
    assert!(harness.call("set", b"hello").is_committed());
    assert_eq!(
        harness.call("read", b""),
        Outcome::Committed {
            result: b"hello".to_vec()
        }
    );
}

#[test]
fn sequence_number_reaches_the_guest() {
    let mut harness = probe();
    let first = harness.invocation("seq", b"");
    let second = harness.invocation("seq", b"");
    let outcomes = harness.run(vec![first, second]);
    let seqs: Vec<u64> = outcomes
        .iter()
        .map(|tx| match &tx.outcome {
            Outcome::Committed { result } => u64::from_le_bytes(result[..8].try_into().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![outcomes[0].seq, outcomes[1].seq]);
    assert_eq!(outcomes[1].seq, outcomes[0].seq + 1);
}

#[test]
fn hostile_procedures_abort_cleanly_and_leave_no_writes() {
    let mut harness = probe();
    assert!(harness.call("set", b"before").is_committed());
    let clean = harness.executor.status().state_hash;

    let cases = [
        ("spin", AbortKind::OutOfFuel),
        ("grow", AbortKind::MemoryLimit),
        ("recurse", AbortKind::StackOverflow),
        ("set_then_trap", AbortKind::Trap),
        ("set_then_abort", AbortKind::User),
        ("bad_pointer", AbortKind::Trap),
        ("divide_by_zero", AbortKind::Trap),
        ("huge_result", AbortKind::LimitExceeded),
        ("bad_status", AbortKind::Trap),
    ];
    for (procedure, expected) in cases {
        let outcome = harness.call(procedure, b"changed");
        assert_eq!(abort_kind(&outcome), expected, "{procedure}: {outcome:?}");
        assert!(!outcome.abort().unwrap().message.is_empty());
        assert_eq!(
            harness.executor.status().state_hash,
            clean,
            "{procedure} left a write behind"
        );
        // The engine keeps serving, and the state is what it was.
        assert_eq!(
            harness.call("read", b""),
            Outcome::Committed {
                result: b"before".to_vec()
            },
            "after {procedure}"
        );
    }
}

#[test]
fn hostile_outcomes_are_identical_on_a_second_engine() {
    let run = || {
        let mut harness = probe();
        let mut outcomes = Vec::new();
        for procedure in ["set", "spin", "grow", "recurse", "set_then_trap", "read"] {
            let entries = vec![
                harness.invocation(procedure, b"x"),
                harness.invocation("read", b""),
            ];
            outcomes.extend(harness.run(entries));
        }
        (outcomes, harness.executor.status())
    };
    let (first_outcomes, first_status) = run();
    let (second_outcomes, second_status) = run();
    assert_eq!(first_outcomes, second_outcomes);
    assert_eq!(first_status, second_status);
}

#[test]
fn unknown_procedure_is_a_clear_abort() {
    let mut harness = probe();
    let outcome = harness.call("nope", b"");
    assert_eq!(abort_kind(&outcome), AbortKind::UnknownProcedure);
    assert!(outcome.abort().unwrap().message.contains("`nope`"));
}

fn deploy_error(module: &str) -> String {
    let mut harness = Harness::new();
    match harness.deploy("bad", wat(module)) {
        Outcome::Aborted(abort) => {
            assert_eq!(abort.kind, AbortKind::DeployRejected);
            abort.message
        }
        other => panic!("expected a rejected deploy, got {other:?}"),
    }
}

const GOOD_TAIL: &str = r#"
  (memory (export "memory") 1)
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 0)
  (func (export "ordo_proc_ok") (param i32 i32) (result i32) i32.const 0)
"#;

#[test]
fn deploy_rejects_foreign_imports_naming_them() {
    let message = deploy_error(&format!(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {GOOD_TAIL})"#
    ));
    assert!(
        message.contains("wasi_snapshot_preview1::fd_write"),
        "{message}"
    );

    let message = deploy_error(&format!(
        r#"(module (import "ordo" "launch_missiles" (func)) {GOOD_TAIL})"#
    ));
    assert!(message.contains("ordo::launch_missiles"), "{message}");

    let message = deploy_error(&format!(
        r#"(module (import "ordo" "get" (func (param i32) (result i32))) {GOOD_TAIL})"#
    ));
    assert!(
        message.contains("ordo::get") && message.contains("expected"),
        "{message}"
    );
}

#[test]
fn deploy_rejects_wrong_export_signatures_naming_them() {
    let message = deploy_error(
        r#"(module
          (memory (export "memory") 1)
          (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 0)
          (func (export "ordo_proc_wrong") (param i64) (result i64) i64.const 0))"#,
    );
    assert!(message.contains("ordo_proc_wrong"), "{message}");

    let message = deploy_error(
        r#"(module
          (memory (export "memory") 1)
          (func (export "ordo_args_buffer") (result i32) i32.const 0)
          (func (export "ordo_proc_ok") (param i32 i32) (result i32) i32.const 0))"#,
    );
    assert!(message.contains("ordo_args_buffer"), "{message}");

    let message = deploy_error(&format!(
        r#"(module {GOOD_TAIL} (func (export "helper") (result i32) i32.const 0))"#
    ));
    assert!(message.contains("`helper`"), "{message}");
}

#[test]
fn deploy_rejects_start_functions_missing_exports_and_garbage() {
    let message = deploy_error(&format!(
        r#"(module {GOOD_TAIL} (func $init) (start $init))"#
    ));
    assert!(message.contains("start function"), "{message}");

    let message = deploy_error(
        r#"(module (memory (export "memory") 1)
          (func (export "ordo_proc_ok") (param i32 i32) (result i32) i32.const 0))"#,
    );
    assert!(message.contains("ordo_args_buffer"), "{message}");

    let message = deploy_error(
        r#"(module (memory (export "memory") 2000)
          (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 0)
          (func (export "ordo_proc_ok") (param i32 i32) (result i32) i32.const 0))"#,
    );
    assert!(message.contains("memory"), "{message}");

    let mut harness = Harness::new();
    let outcome = harness.deploy("garbage", b"\0asm\x01\0\0\0\xff\xff".to_vec());
    assert_eq!(abort_kind(&outcome), AbortKind::DeployRejected);
}

#[test]
fn procedure_names_may_not_clash_across_modules() {
    let mut harness = Harness::new();
    let module = wat(&format!("(module {GOOD_TAIL})"));
    assert!(matches!(
        harness.deploy("first", module.clone()),
        Outcome::Deployed(_)
    ));
    // Redeploying under the same name is an upgrade, not a clash.
    assert!(matches!(
        harness.deploy("first", module.clone()),
        Outcome::Deployed(_)
    ));
    let outcome = harness.deploy("second", module);
    let message = &outcome.abort().expect("clash rejected").message;
    assert!(
        message.contains("`ok`") && message.contains("`first`"),
        "{message}"
    );
}

#[test]
fn redeploy_switches_code_at_its_log_position() {
    let mut harness = Harness::new();
    let version = |n: u8| {
        wat(&format!(
            r#"(module
              (import "ordo" "set_result" (func $set_result (param i32 i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "{n}")
              (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 64)
              (func (export "ordo_proc_version") (param i32 i32) (result i32)
                (call $set_result (i32.const 0) (i32.const 1)) i32.const 0))"#
        ))
    };
    harness.deploy("versioned", version(1));
    // One batch: call, upgrade, call. The upgrade takes effect exactly
    // between the two calls.
    let before = harness.invocation("version", b"");
    let upgrade = Entry::Deploy(Deploy {
        client_id: 2,
        request_id: 1,
        name: "versioned".to_string(),
        wasm: version(2),
    });
    let after = harness.invocation("version", b"");
    let outcomes = harness.run(vec![before, upgrade, after]);
    assert_eq!(
        outcomes[0].outcome,
        Outcome::Committed {
            result: b"1".to_vec()
        }
    );
    assert!(matches!(outcomes[1].outcome, Outcome::Deployed(_)));
    assert_eq!(
        outcomes[2].outcome,
        Outcome::Committed {
            result: b"2".to_vec()
        }
    );
}

#[test]
fn duplicate_request_returns_the_original_without_running() {
    let mut harness = probe();
    let entry = harness.invocation("set", b"first");
    let first = harness.run(vec![entry.clone()]).remove(0);
    assert!(!first.duplicate);
    let hash = harness.executor.status().state_hash;
    // The same (client, request id) again, even with other arguments.
    let Entry::Invoke(mut retry) = entry else {
        unreachable!()
    };
    retry.args = b"second".to_vec();
    let again = harness.run(vec![Entry::Invoke(retry)]).remove(0);
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(harness.executor.status().state_hash, hash);
}
