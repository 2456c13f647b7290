//! The example modules (`ordo::modules`) exercised through the public
//! embedded `Node` API, against a real node with a real fsync'd log in a
//! temporary directory.
//!
//! Module compilation costs about a second per module in a debug build, so
//! each test opens one node and makes many assertions against it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ordo::modules::{BANK, HOSTILE, KV, LOCK, SMALLBANK, TPCC, YCSB};
use ordo::workload::{KeyChooser, Request, Tpcc, Workload, Ycsb, YcsbMix};
use ordo::{
    Abort, AbortKind, ArgsEncoding, CallError, Called, Node, NodeConfig, NodeError, Outcome,
    TxOutcome,
};
use ordo_client::schema::Schema;
use ordo_engine::{DeployError, ParamInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long any single wait for a completion may take before the test
/// fails instead of hanging.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

fn open_node(dir: &tempfile::TempDir) -> Node {
    Node::open(NodeConfig::new(dir.path())).expect("open node")
}

#[track_caller]
fn call<A: Serialize + Schema, R: DeserializeOwned>(
    node: &Node,
    procedure: &str,
    args: &A,
) -> Called<R> {
    match node.call::<A, R>(procedure, args) {
        Ok(called) => called,
        Err(err) => panic!("{procedure} failed: {err}"),
    }
}

#[track_caller]
fn value<A: Serialize + Schema, R: DeserializeOwned>(node: &Node, procedure: &str, args: &A) -> R {
    call(node, procedure, args).value
}

/// Calls `procedure` and asserts that it aborts with `kind` and a message
/// containing every one of `needles`; returns the abort's sequence number
/// and message.
#[track_caller]
fn expect_abort<A: Serialize + Schema>(
    node: &Node,
    procedure: &str,
    args: &A,
    kind: AbortKind,
    needles: &[&str],
) -> (u64, String) {
    // The result type is irrelevant: an abort never decodes one.
    match node.call::<A, serde::de::IgnoredAny>(procedure, args) {
        Err(CallError::Aborted { seq, abort }) => {
            check_abort(&abort, kind, needles);
            (seq, abort.message)
        }
        Ok(called) => panic!(
            "{procedure} committed at {} but should have aborted with {kind:?}",
            called.seq
        ),
        Err(other) => panic!("{procedure} failed with {other} instead of aborting with {kind:?}"),
    }
}

#[track_caller]
fn check_abort(abort: &Abort, kind: AbortKind, needles: &[&str]) {
    assert_eq!(abort.kind, kind, "wrong abort kind: {abort}");
    for needle in needles {
        assert!(
            abort.message.contains(needle),
            "abort message {:?} does not mention {needle:?}",
            abort.message
        );
    }
}

#[track_caller]
fn raw_abort(tx: &TxOutcome) -> &Abort {
    match &tx.outcome {
        Outcome::Aborted(abort) => abort,
        other => panic!("expected an abort, got {other:?}"),
    }
}

#[track_caller]
fn raw_json(tx: &TxOutcome) -> serde_json::Value {
    match &tx.outcome {
        Outcome::Committed { result } => serde_json::from_slice(result)
            .unwrap_or_else(|err| panic!("result {result:?} is not JSON: {err}")),
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn call_json(node: &Node, procedure: &str, args: &str) -> TxOutcome {
    node.call_raw(procedure, ArgsEncoding::Json, args.as_bytes().to_vec())
        .unwrap_or_else(|err| panic!("{procedure} {args} was not sequenced: {err}"))
}

fn state_hash(node: &Node) -> u128 {
    node.status().engine.state_hash
}

fn position(node: &Node) -> u64 {
    node.status().engine.position
}

/// Asserts the call aborted without changing state: the state hash is the
/// same and the position moved by exactly one (the abort was sequenced).
#[track_caller]
fn expect_abort_unchanged<A: Serialize + Schema>(
    node: &Node,
    procedure: &str,
    args: &A,
    kind: AbortKind,
    needles: &[&str],
) -> String {
    let before = node.status().engine;
    let (seq, message) = expect_abort(node, procedure, args, kind, needles);
    let after = node.status().engine;
    assert_eq!(
        seq,
        before.position + 1,
        "the abort took the next sequence number"
    );
    assert_eq!(after.position, seq);
    assert_eq!(
        after.state_hash, before.state_hash,
        "{procedure} changed state"
    );
    assert_eq!(after.keys, before.keys, "{procedure} changed the key count");
    message
}

fn params(list: &[(&str, &str)]) -> Option<Vec<ParamInfo>> {
    Some(
        list.iter()
            .map(|(name, ty)| ParamInfo {
                name: name.to_string(),
                ty: ty.to_string(),
            })
            .collect(),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

// ---------------------------------------------------------------------------
// bank

#[test]
fn bank_open_deposit_transfer_and_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    let summary = node.deploy("bank", BANK).expect("deploy bank");
    assert_eq!(summary.name, "bank");
    assert_eq!(
        summary.procedures,
        [
            "balance",
            "deposit",
            "open",
            "open_many",
            "total",
            "total_range",
            "transfer"
        ]
    );
    assert_eq!(summary.sha256.len(), 64);

    let opened = call::<_, ()>(&node, "open", &(1u64, 100i64));
    assert_eq!(opened.seq, position(&node));
    call::<_, ()>(&node, "open", &(2u64, 0i64));
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 100);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 0);

    call::<_, ()>(&node, "deposit", &(1u64, 50i64));
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 150);

    let moved = call::<_, ()>(&node, "transfer", &(1u64, 2u64, 30i64));
    assert!(moved.seq > opened.seq, "sequence numbers grow");
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 120);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 30);
    assert_eq!(value::<_, i64>(&node, "total", &()), 150);
    // The same sum in pages: accounts 1 and 2, then 2 alone, then none.
    assert_eq!(
        value::<_, (i64, u64)>(&node, "total_range", &(0u64, 3u64)),
        (150, 2)
    );
    assert_eq!(
        value::<_, (i64, u64)>(&node, "total_range", &(2u64, 10u64)),
        (30, 1)
    );
    assert_eq!(
        value::<_, (i64, u64)>(&node, "total_range", &(3u64, 10u64)),
        (0, 0)
    );

    // Insufficient funds: nothing moves, the state hash is unchanged.
    expect_abort_unchanged(
        &node,
        "transfer",
        &(2u64, 1u64, 31i64),
        AbortKind::User,
        &["insufficient funds", "account 2", "30", "31"],
    );
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 120);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 30);
    // Exactly the whole balance is allowed.
    call::<_, ()>(&node, "transfer", &(2u64, 1u64, 30i64));
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 0);
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 150);

    // Unknown accounts, on either side and for every procedure that reads one.
    let hash = state_hash(&node);
    for (procedure, args) in [
        (
            "transfer",
            postcard::to_stdvec(&(1u64, 99u64, 5i64)).unwrap(),
        ),
        (
            "transfer",
            postcard::to_stdvec(&(99u64, 1u64, 5i64)).unwrap(),
        ),
        ("deposit", postcard::to_stdvec(&(99u64, 5i64)).unwrap()),
        ("balance", postcard::to_stdvec(&(99u64,)).unwrap()),
    ] {
        let tx = node
            .call_raw(procedure, ArgsEncoding::Postcard, args)
            .unwrap();
        check_abort(raw_abort(&tx), AbortKind::User, &["no such account: 99"]);
    }
    assert_eq!(state_hash(&node), hash);
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 150);

    // Duplicate open keeps the existing balance.
    expect_abort_unchanged(
        &node,
        "open",
        &(1u64, 7i64),
        AbortKind::User,
        &["account 1 already exists"],
    );
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 150);

    // Negative amounts.
    expect_abort_unchanged(
        &node,
        "open",
        &(3u64, -1i64),
        AbortKind::User,
        &["initial balance -1 is negative"],
    );
    expect_abort(
        &node,
        "balance",
        &(3u64,),
        AbortKind::User,
        &["no such account: 3"],
    );
    expect_abort_unchanged(
        &node,
        "deposit",
        &(1u64, -5i64),
        AbortKind::User,
        &["deposit amount -5 is negative"],
    );
    expect_abort_unchanged(
        &node,
        "transfer",
        &(1u64, 2u64, -5i64),
        AbortKind::User,
        &["transfer amount -5 is not positive"],
    );
    expect_abort_unchanged(
        &node,
        "transfer",
        &(1u64, 2u64, 0i64),
        AbortKind::User,
        &["not positive"],
    );

    // Self-transfer.
    expect_abort_unchanged(
        &node,
        "transfer",
        &(1u64, 1u64, 10i64),
        AbortKind::User,
        &["cannot transfer from account 1 to itself"],
    );
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 150);

    // Overflow is refused, not wrapped.
    call::<_, ()>(&node, "open", &(4u64, i64::MAX));
    expect_abort_unchanged(
        &node,
        "deposit",
        &(4u64, 1i64),
        AbortKind::User,
        &["account 4's balance would overflow"],
    );
    expect_abort(&node, "total", &(), AbortKind::User, &["overflows i64"]);
    expect_abort_unchanged(
        &node,
        "transfer",
        &(1u64, 4u64, 1i64),
        AbortKind::User,
        &["would overflow"],
    );
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 150);

    // open_many, then total. (A fresh node so the overflowing account 4
    // does not poison `total`.)
    drop(node);
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("bank", BANK).unwrap();
    assert_eq!(value::<_, i64>(&node, "total", &()), 0);
    call::<_, ()>(&node, "open", &(5u64, 1_000i64));
    let keys = node.status().engine.keys;
    call::<_, ()>(&node, "open_many", &(100u64, 50u64, 10i64));
    assert_eq!(node.status().engine.keys, keys + 50);
    assert_eq!(value::<_, i64>(&node, "total", &()), 1_000 + 50 * 10);
    assert_eq!(value::<_, i64>(&node, "balance", &(100u64,)), 10);
    assert_eq!(value::<_, i64>(&node, "balance", &(149u64,)), 10);
    expect_abort(
        &node,
        "balance",
        &(150u64,),
        AbortKind::User,
        &["no such account: 150"],
    );
    // Overlapping an existing account opens none of them.
    expect_abort_unchanged(
        &node,
        "open_many",
        &(140u64, 20u64, 1i64),
        AbortKind::User,
        &["account 140 already exists"],
    );
    expect_abort(
        &node,
        "balance",
        &(155u64,),
        AbortKind::User,
        &["no such account"],
    );
    expect_abort_unchanged(
        &node,
        "open_many",
        &(u64::MAX, 2u64, 1i64),
        AbortKind::User,
        &["overflow"],
    );
    expect_abort_unchanged(
        &node,
        "open_many",
        &(1_000u64, 2u64, -1i64),
        AbortKind::User,
        &["negative"],
    );
    assert_eq!(value::<_, i64>(&node, "total", &()), 1_500);
    call::<_, ()>(&node, "transfer", &(5u64, 120u64, 250i64));
    assert_eq!(value::<_, i64>(&node, "balance", &(120u64,)), 260);
    assert_eq!(
        value::<_, i64>(&node, "total", &()),
        1_500,
        "transfers conserve money"
    );
}

#[test]
fn procedure_listing_upgrade_and_clashes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    assert!(node.procedures().is_empty());
    node.deploy("bank", BANK).unwrap();

    let listed: Vec<_> = node
        .procedures()
        .into_iter()
        .map(|p| (p.name, p.module, p.params, p.read_only))
        .collect();
    let bank = |name: &str, ps: &[(&str, &str)], read_only: bool| {
        (name.to_string(), "bank".to_string(), params(ps), read_only)
    };
    assert_eq!(
        listed,
        vec![
            bank("balance", &[("id", "u64")], true),
            bank("deposit", &[("id", "u64"), ("amount", "i64")], false),
            bank("open", &[("id", "u64"), ("balance", "i64")], false),
            bank(
                "open_many",
                &[("first_id", "u64"), ("count", "u64"), ("balance", "i64")],
                false
            ),
            bank("total", &[], true),
            bank(
                "total_range",
                &[("first_id", "u64"), ("count", "u64")],
                true
            ),
            bank(
                "transfer",
                &[("from", "u64"), ("to", "u64"), ("amount", "i64")],
                false
            ),
        ]
    );

    call::<_, ()>(&node, "open", &(1u64, 100i64));
    call::<_, ()>(&node, "open", &(2u64, 5i64));
    call::<_, ()>(&node, "transfer", &(1u64, 2u64, 40i64));
    let before = node.status().engine;

    // Redeploying the same module under the same name is an upgrade: the
    // state is untouched and the procedures still work.
    let upgraded = node.deploy("bank", BANK).expect("redeploy bank");
    assert_eq!(upgraded.name, "bank");
    let after = node.status().engine;
    assert_eq!(after.state_hash, before.state_hash);
    assert_eq!(after.position, before.position + 1);
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 60);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 45);
    assert_eq!(node.procedures().len(), 7);

    // The same procedures under another module name clash.
    let hash = state_hash(&node);
    match node.deploy("bank2", BANK) {
        Err(CallError::Aborted { abort, .. }) => check_abort(
            &abort,
            AbortKind::DeployRejected,
            &["procedure `balance` is already provided by module `bank`"],
        ),
        other => panic!("deploying bank twice under two names: {other:?}"),
    }
    assert_eq!(state_hash(&node), hash);
    assert!(node.procedures().iter().all(|p| p.module == "bank"));

    // Replacing the module with a different one under the same name drops
    // the old procedures but keeps the data; bringing the bank back finds
    // the balances where they were.
    let replaced = node.deploy("bank", KV).expect("replace bank with kv");
    assert_eq!(replaced.procedures, ["cas", "delete", "get", "incr", "put"]);
    assert_eq!(state_hash(&node), hash);
    let names: Vec<_> = node.procedures().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["cas", "delete", "get", "incr", "put"]);
    assert!(node.procedures().iter().all(|p| p.module == "bank"));
    expect_abort(
        &node,
        "balance",
        &(1u64,),
        AbortKind::UnknownProcedure,
        &["no deployed module provides procedure `balance`"],
    );
    assert_eq!(value::<_, i64>(&node, "incr", &("c", 2i64)), 2);

    node.deploy("bank", BANK).expect("bring bank back");
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 60);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 45);
    assert_eq!(value::<_, i64>(&node, "total", &()), 105);
    expect_abort(
        &node,
        "incr",
        &("c", 2i64),
        AbortKind::UnknownProcedure,
        &["`incr`"],
    );

    // And it all survives a restart: the log replays to the same state.
    let status = node.status();
    drop(node);
    let node = open_node(&dir);
    assert_eq!(node.status().engine, status.engine);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 45);
    assert_eq!(node.procedures().len(), 7);
}

#[test]
fn deploy_rejections_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    let before = node.status();

    match node.deploy("bank", b"this is not wasm") {
        Err(CallError::Node(NodeError::Deploy(DeployError::Invalid(reason)))) => {
            assert!(!reason.is_empty());
        }
        other => panic!("garbage bytes: {other:?}"),
    }
    match node.deploy("my bank", BANK) {
        Err(CallError::Node(NodeError::Deploy(DeployError::BadModuleName(name)))) => {
            assert_eq!(name, "my bank");
        }
        other => panic!("module name with a space: {other:?}"),
    }
    match node.deploy("", BANK) {
        Err(CallError::Node(NodeError::Deploy(DeployError::BadModuleName(_)))) => {}
        other => panic!("empty module name: {other:?}"),
    }
    // A valid but empty wasm module is not an ordo module.
    match node.deploy("empty", b"\0asm\x01\0\0\0") {
        Err(CallError::Node(NodeError::Deploy(err))) => {
            let message = err.to_string();
            assert!(
                message.contains("memory") || message.contains("procedures"),
                "{message}"
            );
        }
        other => panic!("empty module: {other:?}"),
    }
    // Truncated module.
    match node.deploy("bank", &BANK[..BANK.len() / 2]) {
        Err(CallError::Node(NodeError::Deploy(DeployError::Invalid(_)))) => {}
        other => panic!("truncated module: {other:?}"),
    }

    assert_eq!(node.status(), before, "a refused deploy takes no log entry");
    assert!(node.procedures().is_empty());
    expect_abort(
        &node,
        "balance",
        &(1u64,),
        AbortKind::UnknownProcedure,
        &["`balance`"],
    );
}

// ---------------------------------------------------------------------------
// kv

#[test]
fn kv_get_put_cas_incr_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("kv", KV).unwrap();

    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), None);
    call::<_, ()>(&node, "put", &("a", 5i64));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), Some(5));
    call::<_, ()>(&node, "put", &("a", -7i64));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), Some(-7));
    // Keys are distinct, including prefixes and embedded NULs.
    call::<_, ()>(&node, "put", &("ab", 1i64));
    call::<_, ()>(&node, "put", &("a\0", 2i64));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), Some(-7));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("ab",)), Some(1));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a\0",)), Some(2));

    // cas: wrong expectation fails and changes nothing.
    let hash = state_hash(&node);
    assert!(!value::<_, bool>(&node, "cas", &("a", Some(5i64), 9i64)));
    assert!(!value::<_, bool>(&node, "cas", &("a", None::<i64>, 9i64)));
    assert_eq!(state_hash(&node), hash);
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), Some(-7));
    // Right expectation succeeds.
    assert!(value::<_, bool>(&node, "cas", &("a", Some(-7i64), 9i64)));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), Some(9));
    // `None` means "absent": creates a key, and fails once it exists.
    assert!(value::<_, bool>(
        &node,
        "cas",
        &("fresh", None::<i64>, 1i64)
    ));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("fresh",)), Some(1));
    assert!(!value::<_, bool>(
        &node,
        "cas",
        &("fresh", None::<i64>, 2i64)
    ));
    assert!(!value::<_, bool>(
        &node,
        "cas",
        &("absent", Some(0i64), 2i64)
    ));
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("absent",)), None);

    // incr returns the new value; an absent key counts as 0.
    assert_eq!(value::<_, i64>(&node, "incr", &("n", 5i64)), 5);
    assert_eq!(value::<_, i64>(&node, "incr", &("n", 5i64)), 10);
    assert_eq!(value::<_, i64>(&node, "incr", &("n", -12i64)), -2);
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("n",)), Some(-2));
    call::<_, ()>(&node, "put", &("big", i64::MAX - 1));
    assert_eq!(value::<_, i64>(&node, "incr", &("big", 1i64)), i64::MAX);
    expect_abort_unchanged(
        &node,
        "incr",
        &("big", 1i64),
        AbortKind::User,
        &["incrementing \"big\" by 1 overflows i64"],
    );
    assert_eq!(
        value::<_, Option<i64>>(&node, "get", &("big",)),
        Some(i64::MAX)
    );

    // The metadata spells parameter types as written in the source.
    let cas = node
        .procedures()
        .into_iter()
        .find(|p| p.name == "cas")
        .unwrap();
    assert_eq!(
        cas.params,
        params(&[
            ("key", "String"),
            ("expected", "Option<i64>"),
            ("new", "i64")
        ])
    );
    assert!(!cas.read_only);

    // delete returns whether the key existed.
    let keys = node.status().engine.keys;
    assert!(value::<_, bool>(&node, "delete", &("a",)));
    assert_eq!(node.status().engine.keys, keys - 1);
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("a",)), None);
    assert!(!value::<_, bool>(&node, "delete", &("a",)));
    assert_eq!(node.status().engine.keys, keys - 1);
    assert_eq!(value::<_, Option<i64>>(&node, "get", &("ab",)), Some(1));
    // A deleted key is absent for cas and incr too.
    assert!(value::<_, bool>(&node, "cas", &("a", None::<i64>, 3i64)));
    assert!(value::<_, bool>(&node, "delete", &("a",)));
    assert_eq!(value::<_, i64>(&node, "incr", &("a", 4i64)), 4);

    // Deleting then re-creating the same content restores the state hash
    // (the hash is of the contents, not of the history).
    let hash = state_hash(&node);
    assert!(value::<_, bool>(&node, "delete", &("ab",)));
    assert_ne!(state_hash(&node), hash);
    call::<_, ()>(&node, "put", &("ab", 1i64));
    assert_eq!(state_hash(&node), hash);
}

// ---------------------------------------------------------------------------
// lock

#[test]
fn lock_tokens_leases_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("lock", LOCK).unwrap();
    const HOUR: u64 = 3_600_000;

    // The token is the granting transaction's sequence number.
    let first = call::<_, u64>(&node, "acquire", &("L", "alice", HOUR));
    assert_eq!(first.value, first.seq);

    // Another owner is refused while the lease is valid.
    let message = expect_abort_unchanged(
        &node,
        "acquire",
        &("L", "bob", HOUR),
        AbortKind::User,
        &["lock \"L\" is held by \"alice\""],
    );
    assert!(message.contains("ms from now"), "{message}");
    // Other locks are independent.
    let other = call::<_, u64>(&node, "acquire", &("M", "bob", HOUR));
    assert_eq!(other.value, other.seq);

    // The holder writes with its token.
    call::<_, ()>(&node, "write_with_token", &("L", first.value, "k", "v1"));
    assert_eq!(
        value::<_, Option<String>>(&node, "read", &("k",)),
        Some("v1".to_string())
    );
    assert_eq!(
        value::<_, Option<String>>(&node, "read", &("nothing",)),
        None
    );

    // Renewal by the holder issues a newer token; the old one is now stale.
    let second = call::<_, u64>(&node, "acquire", &("L", "alice", HOUR));
    assert_eq!(second.value, second.seq);
    assert!(second.value > first.value);
    let stale = format!(
        "stale fencing token {} for lock \"L\": the newest is {}",
        first.value, second.value
    );
    expect_abort_unchanged(
        &node,
        "write_with_token",
        &("L", first.value, "k", "stale write"),
        AbortKind::User,
        &[&stale],
    );
    expect_abort_unchanged(
        &node,
        "write_with_token",
        &("L", second.value + 1000, "k", "forged"),
        AbortKind::User,
        &["was never granted"],
    );
    // M's token does not fence L.
    expect_abort_unchanged(
        &node,
        "write_with_token",
        &("L", other.value, "k", "wrong lock"),
        AbortKind::User,
        &["stale fencing token"],
    );
    expect_abort_unchanged(
        &node,
        "write_with_token",
        &("nope", 1u64, "k", "x"),
        AbortKind::User,
        &["no such lock: \"nope\""],
    );
    assert_eq!(
        value::<_, Option<String>>(&node, "read", &("k",)),
        Some("v1".to_string())
    );
    call::<_, ()>(&node, "write_with_token", &("L", second.value, "k", "v2"));
    assert_eq!(
        value::<_, Option<String>>(&node, "read", &("k",)),
        Some("v2".to_string())
    );

    // Release: only by the holder.
    expect_abort_unchanged(
        &node,
        "release",
        &("L", "bob"),
        AbortKind::User,
        &["lock \"L\" is held by \"alice\", not \"bob\""],
    );
    expect_abort_unchanged(
        &node,
        "release",
        &("nope", "alice"),
        AbortKind::User,
        &["no such lock"],
    );
    call::<_, ()>(&node, "release", &("L", "alice"));
    expect_abort_unchanged(
        &node,
        "release",
        &("L", "alice"),
        AbortKind::User,
        &["lock \"L\" is not held"],
    );
    // Released, so bob may take it; alice's token is superseded.
    let third = call::<_, u64>(&node, "acquire", &("L", "bob", HOUR));
    assert_eq!(third.value, third.seq);
    expect_abort(
        &node,
        "write_with_token",
        &("L", second.value, "k", "late alice"),
        AbortKind::User,
        &["stale fencing token"],
    );
    call::<_, ()>(&node, "write_with_token", &("L", third.value, "k", "v3"));
    assert_eq!(
        value::<_, Option<String>>(&node, "read", &("k",)),
        Some("v3".to_string())
    );

    // A zero-length lease has expired by the next transaction (log time
    // never goes backwards), so another owner may take the lock without
    // any waiting.
    let short = call::<_, u64>(&node, "acquire", &("Z", "carol", 0u64));
    let taken = call::<_, u64>(&node, "acquire", &("Z", "dave", HOUR));
    assert_eq!(taken.value, taken.seq);
    assert!(taken.value > short.value);
    // The expired holder can no longer release it.
    expect_abort(
        &node,
        "release",
        &("Z", "carol"),
        AbortKind::User,
        &["held by \"dave\", not \"carol\""],
    );
}

// ---------------------------------------------------------------------------
// smallbank

#[test]
fn smallbank_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("smallbank", SMALLBANK).unwrap();

    let balance = |id: u64| value::<_, i64>(&node, "balance", &(id,));

    call::<_, ()>(&node, "create_account", &(1u64, 100i64, 50i64));
    call::<_, ()>(&node, "create_account", &(2u64, 10i64, 0i64));
    assert_eq!(balance(1), 150);
    assert_eq!(balance(2), 10);
    expect_abort_unchanged(
        &node,
        "create_account",
        &(1u64, 1i64, 1i64),
        AbortKind::User,
        &["customer 1 already exists"],
    );
    expect_abort(
        &node,
        "balance",
        &(9u64,),
        AbortKind::User,
        &["no such customer: 9"],
    );

    // DepositChecking.
    call::<_, ()>(&node, "deposit_checking", &(1u64, 25i64)); // checking 125
    assert_eq!(balance(1), 175);
    expect_abort_unchanged(
        &node,
        "deposit_checking",
        &(1u64, -1i64),
        AbortKind::User,
        &["deposit amount -1 is negative"],
    );
    expect_abort_unchanged(
        &node,
        "deposit_checking",
        &(9u64, 1i64),
        AbortKind::User,
        &["no such customer: 9"],
    );

    // TransactSavings: may be negative, but savings may not go below 0.
    call::<_, ()>(&node, "transact_savings", &(1u64, -30i64)); // savings 20
    assert_eq!(balance(1), 145);
    call::<_, ()>(&node, "transact_savings", &(1u64, -20i64)); // savings 0
    assert_eq!(balance(1), 125);
    expect_abort_unchanged(
        &node,
        "transact_savings",
        &(1u64, -1i64),
        AbortKind::User,
        &["savings of customer 1 would become negative (-1)"],
    );
    call::<_, ()>(&node, "transact_savings", &(1u64, 40i64)); // savings 40
    assert_eq!(balance(1), 165);

    // SendPayment: 1 (checking 125) pays 2 (checking 10).
    call::<_, ()>(&node, "send_payment", &(1u64, 2u64, 100i64));
    assert_eq!(balance(1), 65); // checking 25, savings 40
    assert_eq!(balance(2), 110); // checking 110, savings 0
    // Savings do not count for send_payment: 1 has 65 in total but 25 in
    // checking.
    expect_abort_unchanged(
        &node,
        "send_payment",
        &(1u64, 2u64, 26i64),
        AbortKind::User,
        &["insufficient funds: customer 1 has 25 in checking, needs 26"],
    );
    expect_abort_unchanged(
        &node,
        "send_payment",
        &(1u64, 9u64, 1i64),
        AbortKind::User,
        &["no such customer: 9"],
    );
    expect_abort_unchanged(
        &node,
        "send_payment",
        &(9u64, 1u64, 1i64),
        AbortKind::User,
        &["no such customer: 9"],
    );
    assert_eq!(balance(1), 65);
    assert_eq!(balance(2), 110);
    // Paying oneself changes nothing.
    call::<_, ()>(&node, "send_payment", &(1u64, 1u64, 25i64));
    assert_eq!(balance(1), 65);

    // WriteCheck: no penalty when checking + savings covers the amount,
    // even if checking goes negative.
    call::<_, ()>(&node, "create_account", &(3u64, 10i64, 5i64));
    call::<_, ()>(&node, "write_check", &(3u64, 15i64)); // checking -5
    assert_eq!(balance(3), 0);
    // Now the total (0) is below the amount (1): debit 1 plus a penalty of 1.
    call::<_, ()>(&node, "write_check", &(3u64, 1i64)); // checking -7
    assert_eq!(balance(3), -2);
    // Savings are untouched by write_check: moving 5 out of savings leaves
    // checking at -7.
    call::<_, ()>(&node, "transact_savings", &(3u64, -5i64));
    assert_eq!(balance(3), -7);
    expect_abort_unchanged(
        &node,
        "write_check",
        &(9u64, 1i64),
        AbortKind::User,
        &["no such customer: 9"],
    );

    // Amalgamate: all of 1's funds go to 2's checking; 1 ends with zero.
    call::<_, ()>(&node, "amalgamate", &(1u64, 2u64));
    assert_eq!(balance(1), 0);
    assert_eq!(balance(2), 175);
    // The funds landed in checking: 2 can now pay 175 from checking.
    call::<_, ()>(&node, "send_payment", &(2u64, 3u64, 175i64));
    assert_eq!(balance(2), 0);
    assert_eq!(balance(3), 168);
    // Amalgamating a customer into itself neither doubles nor loses money.
    call::<_, ()>(&node, "transact_savings", &(3u64, 2i64)); // checking 168, savings 2
    call::<_, ()>(&node, "amalgamate", &(3u64, 3u64));
    assert_eq!(balance(3), 170);
    expect_abort_unchanged(
        &node,
        "amalgamate",
        &(3u64, 9u64),
        AbortKind::User,
        &["no such customer: 9"],
    );
    assert_eq!(balance(3), 170);

    // create_many: all or nothing.
    let keys = node.status().engine.keys;
    call::<_, ()>(&node, "create_many", &(100u64, 10u64, 7i64, 3i64));
    assert_eq!(node.status().engine.keys, keys + 20, "two tables");
    assert_eq!(balance(100), 10);
    assert_eq!(balance(109), 10);
    expect_abort_unchanged(
        &node,
        "create_many",
        &(105u64, 10u64, 1i64, 1i64),
        AbortKind::User,
        &["customer 105 already exists"],
    );
    expect_abort(
        &node,
        "balance",
        &(110u64,),
        AbortKind::User,
        &["no such customer: 110"],
    );

    // The bank module exports `balance` too: deploying it next to
    // smallbank is a procedure-name clash, and changes nothing.
    let before = node.status().engine;
    match node.deploy("bank", BANK) {
        Err(CallError::Aborted { seq, abort }) => {
            assert_eq!(
                seq,
                before.position + 1,
                "the rejected deploy was sequenced"
            );
            check_abort(
                &abort,
                AbortKind::DeployRejected,
                &["procedure `balance` is already provided by module `smallbank`"],
            );
        }
        other => panic!("deploying bank next to smallbank: {other:?}"),
    }
    assert_eq!(node.status().engine.state_hash, before.state_hash);
    assert!(node.procedures().iter().all(|p| p.module == "smallbank"));
    assert_eq!(balance(3), 170, "smallbank still serves `balance`");
    expect_abort(
        &node,
        "open",
        &(1u64, 1i64),
        AbortKind::UnknownProcedure,
        &["`open`"],
    );
}

// ---------------------------------------------------------------------------
// argument encodings and limits

#[test]
fn json_arguments_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("bank", BANK).unwrap();

    // JSON in, JSON out.
    let opened = call_json(&node, "open", r#"{"id":1,"balance":5}"#);
    assert_eq!(raw_json(&opened), serde_json::Value::Null);
    assert!(!opened.duplicate);
    let tx = call_json(&node, "balance", r#"{"id":1}"#);
    assert_eq!(raw_json(&tx), serde_json::json!(5));
    assert_eq!(
        tx.outcome,
        Outcome::Committed {
            result: b"5".to_vec()
        }
    );
    // Field order does not matter; whitespace is fine.
    call_json(&node, "open", r#" { "balance" : 7 , "id" : 2 } "#);
    assert_eq!(value::<_, i64>(&node, "balance", &(2u64,)), 7);
    assert_eq!(
        raw_json(&call_json(&node, "total", "{}")),
        serde_json::json!(12)
    );
    // The postcard and JSON encodings reach the same state.
    assert_eq!(value::<_, i64>(&node, "balance", &(1u64,)), 5);
    // A user abort in JSON carries the procedure's reason.
    let tx = call_json(&node, "transfer", r#"{"from":1,"to":2,"amount":6}"#);
    check_abort(raw_abort(&tx), AbortKind::User, &["insufficient funds"]);

    let hash = state_hash(&node);
    let before = node.status();
    // Arguments that do not match the schema are refused before they are
    // logged, naming the procedure's signature and what is wrong.
    let refused =
        |procedure: &str, encoding: ArgsEncoding, args: Vec<u8>, needles: &[&str]| match node
            .call_raw(procedure, encoding, args.clone())
        {
            Err(NodeError::BadArguments {
                procedure: named,
                signature,
                reason,
            }) => {
                assert_eq!(named, procedure);
                let message = format!("{signature}: {reason}");
                for needle in needles {
                    assert!(
                        message.contains(needle),
                        "{procedure} {:?}: `{message}` lacks `{needle}`",
                        String::from_utf8_lossy(&args)
                    );
                }
            }
            other => panic!(
                "{procedure} {:?} was not refused: {other:?}",
                String::from_utf8_lossy(&args)
            ),
        };
    let json = |procedure: &str, args: &str, needles: &[&str]| {
        refused(
            procedure,
            ArgsEncoding::Json,
            args.as_bytes().to_vec(),
            needles,
        )
    };
    // Malformed JSON.
    for malformed in [r#"{"id":1,"balance":5"#, "", "not json", r#"{"id":1,}"#] {
        json(
            "open",
            malformed,
            &["open(id: u64, balance: i64)", "not JSON"],
        );
    }
    // A missing field, an unknown field, a wrong type, out of range: named.
    json("open", r#"{"id":3}"#, &["balance"]);
    json("open", r#"{"id":3,"balance":5,"color":"red"}"#, &["color"]);
    json("open", r#"{"id":"three","balance":5}"#, &["`id`", "u64"]);
    json("open", r#"{"id":-3,"balance":5}"#, &["`id`", "u64"]);
    json("open", r#"{"id":3,"balance":1.5}"#, &["`balance`", "i64"]);
    // Not an object at all (arrays too: see `json_array_arguments_are_refused`).
    for not_an_object in ["null", "5", r#""id""#] {
        json(
            "balance",
            not_an_object,
            &["object keyed by parameter name"],
        );
    }
    json("total", r#"{"x":1}"#, &["x"]);

    // Postcard: trailing garbage, truncation, nothing at all.
    let mut args = postcard::to_stdvec(&(1u64,)).unwrap();
    args.extend_from_slice(&[0xde, 0xad]);
    refused(
        "balance",
        ArgsEncoding::Postcard,
        args,
        &["2 bytes after the last argument"],
    );
    refused(
        "balance",
        ArgsEncoding::Postcard,
        Vec::new(),
        &["balance(id: u64)"],
    );
    refused(
        "balance",
        ArgsEncoding::Postcard,
        vec![0x80],
        &["balance(id: u64)"],
    );
    refused(
        "total",
        ArgsEncoding::Postcard,
        vec![0],
        &["takes no arguments"],
    );
    // A typed call with other argument types than the parameters' is
    // refused by its signature, naming the first parameter that differs.
    match node.call::<_, ()>("transfer", &(1u64,)) {
        Err(CallError::Node(NodeError::SignatureMismatch { contract })) => {
            assert_eq!(
                contract.signature(),
                "transfer(from: u64, to: u64, amount: i64) -> ()"
            );
        }
        other => panic!("transfer(1) was not refused: {other:?}"),
    }
    match node.call::<_, ()>("transfer", &(1u64, 2u64, 10u64)) {
        Err(CallError::Node(NodeError::SignatureMismatch { .. })) => {}
        other => panic!("transfer with a u64 amount was not refused: {other:?}"),
    }
    assert_eq!(node.status(), before, "refused calls are never logged");
    assert_eq!(state_hash(&node), hash, "bad arguments never write");

    // An unknown procedure, in either encoding.
    let tx = call_json(&node, "withdraw", r#"{"id":1}"#);
    check_abort(
        raw_abort(&tx),
        AbortKind::UnknownProcedure,
        &["no deployed module provides procedure `withdraw`"],
    );
    expect_abort(
        &node,
        "withdraw",
        &(1u64,),
        AbortKind::UnknownProcedure,
        &["`withdraw`"],
    );

    // A typed call whose result type does not match is a decode error
    // after the commit, not an abort.
    match node.call::<_, String>("balance", &(1u64,)) {
        Err(CallError::Decode(_)) => {}
        other => panic!("decoding an i64 as a String: {other:?}"),
    }
    assert_eq!(state_hash(&node), hash);
}

#[test]
fn args_over_the_limit_are_refused_before_sequencing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("bank", BANK).unwrap();
    call::<_, ()>(&node, "open", &(0u64, 1i64));
    let max = ordo::EngineConfig::default().args_bytes_max;
    let before = node.status();

    match node.call_raw("balance", ArgsEncoding::Postcard, vec![0; max + 1]) {
        Err(NodeError::ArgsTooLarge { bytes, max: limit }) => {
            assert_eq!(bytes, max + 1);
            assert_eq!(limit, max);
        }
        other => panic!("args over the limit: {other:?}"),
    }
    match node.call_raw("balance", ArgsEncoding::Json, vec![b' '; max + 1]) {
        Err(NodeError::ArgsTooLarge { .. }) => {}
        other => panic!("JSON args over the limit: {other:?}"),
    }
    // The typed API: a `Vec<u8>` of `max` bytes encodes to more than `max`.
    match node.call::<_, ()>("balance", &(vec![0u8; max],)) {
        Err(CallError::Node(NodeError::ArgsTooLarge { bytes, .. })) => assert!(bytes > max),
        other => panic!("typed args over the limit: {other:?}"),
    }
    let session = node.session();
    match session.submit("balance", ArgsEncoding::Postcard, vec![0; max + 1]) {
        Err(NodeError::ArgsTooLarge { .. }) => {}
        other => panic!("submitted args over the limit: {other:?}"),
    }
    assert_eq!(node.status(), before, "nothing was sequenced or logged");

    // Exactly at the limit passes the size check and reaches the schema
    // check, which refuses it too (postcard reads `0u64` from the first
    // byte and the rest trails): still nothing logged.
    match node.call_raw("balance", ArgsEncoding::Postcard, vec![0; max]) {
        Err(NodeError::BadArguments { reason, .. }) => assert!(
            reason.contains(&format!("{} bytes after the last argument", max - 1)),
            "{reason}"
        ),
        other => panic!("args at the limit: {other:?}"),
    }
    assert_eq!(node.status(), before, "nothing was sequenced or logged");
    // And the node still serves.
    assert_eq!(value::<_, i64>(&node, "balance", &(0u64,)), 1);
}

// ---------------------------------------------------------------------------
// hostile

/// The key the kv module uses for `"victim"` (docs/ABI.md: table name,
/// 0x00, the class byte 0x80 of a string key, then the string with 0x00
/// escaped, then 0x00 0x00), so hostile's `write_then_*` can target it. A
/// leaked write of hostile's value `b"x"` would read back through kv's
/// `get("victim")` as `Some(60)` (postcard zigzag 0x78).
const VICTIM_RAW_KEY: &[u8] = b"kv\0\x80victim\0\0";

#[track_caller]
fn still_serving(node: &Node) {
    let echoed = call::<_, Vec<u8>>(node, "echo", &(vec![1u8, 2, 3],));
    assert_eq!(echoed.value, [1, 2, 3]);
    assert_eq!(value::<_, Option<i64>>(node, "get", &("victim",)), None);
}

#[test]
fn hostile_procedures_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("hostile", HOSTILE).unwrap();
    node.deploy("kv", KV).unwrap();
    still_serving(&node);

    // Control for VICTIM_RAW_KEY: by the documented key layout, kv's own
    // `put("victim", 60)` stores the very bytes a leaked hostile write
    // would (that key, the value b"x"). That state is visible through
    // `get` and has its own hash, so both checks below would see a leak.
    let clean = state_hash(&node);
    call::<_, ()>(&node, "put", &("victim", 60i64));
    let leaked_hash = state_hash(&node);
    assert!(value::<_, bool>(&node, "delete", &("victim",)));
    assert_eq!(state_hash(&node), clean);
    assert_ne!(leaked_hash, clean);

    expect_abort_unchanged(&node, "spin", &(), AbortKind::OutOfFuel, &["out of fuel"]);
    still_serving(&node);

    expect_abort_unchanged(&node, "bomb", &(), AbortKind::MemoryLimit, &["limit"]);
    still_serving(&node);

    expect_abort_unchanged(
        &node,
        "recurse",
        &(1_000_000u64,),
        AbortKind::StackOverflow,
        &["stack"],
    );
    still_serving(&node);
    // A shallow recursion is fine.
    let shallow = value::<_, u64>(&node, "recurse", &(100u64,));
    assert_eq!(shallow, value::<_, u64>(&node, "recurse", &(100u64,)));

    // A panic's place and message reach the caller (the SDK's hook).
    let message = expect_abort_unchanged(
        &node,
        "panic",
        &(),
        AbortKind::Trap,
        &[
            "procedure panicked at ",
            "src/lib.rs:",
            "hostile: deliberate panic",
        ],
    );
    assert!(!message.contains("unreachable"), "{message}");
    still_serving(&node);
    expect_abort_unchanged(&node, "trap", &(), AbortKind::Trap, &["unreachable"]);
    still_serving(&node);

    const TWO_MIB: u32 = 2 << 20;
    expect_abort_unchanged(
        &node,
        "huge_result",
        &(TWO_MIB,),
        AbortKind::LimitExceeded,
        &["limit"],
    );
    still_serving(&node);
    let small = value::<_, Vec<u8>>(&node, "huge_result", &(1000u32,));
    assert_eq!(small.len(), 1000);
    assert_eq!((small[0], small[250], small[251]), (0, 250, 0));

    expect_abort_unchanged(
        &node,
        "huge_value",
        &(TWO_MIB,),
        AbortKind::LimitExceeded,
        &["value of 2097152 bytes is over the 1048576-byte limit"],
    );
    still_serving(&node);
    // Exactly at the limit is allowed.
    let keys = node.status().engine.keys;
    call::<_, ()>(&node, "huge_value", &(1u32 << 20,));
    assert_eq!(node.status().engine.keys, keys + 1);

    let keys = node.status().engine.keys;
    expect_abort_unchanged(
        &node,
        "many_writes",
        &(200_000u32,),
        AbortKind::LimitExceeded,
        &["more than 100000 writes"],
    );
    still_serving(&node);
    call::<_, ()>(&node, "many_writes", &(10u32,));
    assert_eq!(node.status().engine.keys, keys + 10);

    // Writes before an abort or a panic are dropped.
    expect_abort_unchanged(
        &node,
        "write_then_abort",
        &(VICTIM_RAW_KEY.to_vec(),),
        AbortKind::User,
        &["hostile: aborting after writing"],
    );
    still_serving(&node);
    expect_abort_unchanged(
        &node,
        "write_then_panic",
        &(VICTIM_RAW_KEY.to_vec(),),
        AbortKind::Trap,
        &["hostile: panicking after writing"],
    );
    still_serving(&node);

    // The transaction context.
    let wall_before = now_ms();
    let first = call::<_, (u64, u64, u64)>(&node, "context", &());
    let second = call::<_, (u64, u64, u64)>(&node, "context", &());
    let wall_after = now_ms();
    let (seq1, now1, random1) = first.value;
    let (seq2, now2, random2) = second.value;
    assert_eq!(seq1, first.seq);
    assert_eq!(seq2, second.seq);
    assert!(seq2 > seq1);
    const DAY_MS: u64 = 24 * 3_600_000;
    for now in [now1, now2] {
        assert!(
            now + DAY_MS >= wall_before && now <= wall_after + DAY_MS,
            "now_ms {now} is not within a day of the wall clock ({wall_before}..{wall_after})"
        );
    }
    assert!(now2 >= now1, "log time never goes backwards");
    assert_ne!(
        random1, random2,
        "different transactions see different random numbers"
    );
    // In JSON the tuple is an array.
    let tx = call_json(&node, "context", "{}");
    let json = raw_json(&tx);
    assert_eq!(json[0], serde_json::json!(tx.seq));
    assert!(json[1].as_u64().unwrap() >= now2);
    assert!(json[2].is_u64());

    // Everything above replays to the same state after a restart.
    let status = node.status();
    drop(node);
    let node = open_node(&dir);
    assert_eq!(node.status().engine, status.engine);
    still_serving(&node);
}

// ---------------------------------------------------------------------------
// overload

/// Calls, retrying while the node reports `Overloaded` (what its error
/// message asks clients to do). No sleeping: `Overloaded` clears once the
/// executor has finished the batches in flight, which the loop merely
/// waits for.
fn call_retrying<R: DeserializeOwned>(
    node: &Node,
    procedure: &str,
    args: &(impl Serialize + Schema),
) -> R {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match node.call::<_, R>(procedure, args) {
            Ok(called) => return called.value,
            Err(CallError::Node(NodeError::Overloaded { .. })) if Instant::now() < deadline => {
                std::thread::yield_now();
            }
            Err(other) => panic!("{procedure}: {other}"),
        }
    }
}

#[test]
fn overload_refuses_the_excess_and_completes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(dir.path());
    config.inflight_max = 4;
    let node = Node::open(config).unwrap();
    node.deploy("hostile", HOSTILE).unwrap();
    node.deploy("kv", KV).unwrap();

    let session = node.session();
    // `spin` burns the whole fuel budget, so the executor is busy for far
    // longer than the loop below takes to enqueue 64 requests: at most a
    // few of them fit under the limit, the rest must be refused. (Retried
    // because the deploys' answers may still count as in flight.)
    let spin = retry_submit(&session, "spin", Vec::new());
    let incr = postcard::to_stdvec(&("n", 1i64)).unwrap();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        match session.submit("incr", ArgsEncoding::Postcard, incr.clone()) {
            Ok(request_id) => accepted.push(request_id),
            Err(NodeError::Overloaded { inflight_max }) => {
                assert_eq!(inflight_max, 4);
                refused += 1;
            }
            Err(other) => panic!("submit: {other}"),
        }
    }
    assert!(
        refused > 0,
        "64 submits past a limit of 4 were all accepted"
    );
    assert!(!accepted.is_empty(), "nothing was accepted");
    assert_eq!(accepted.len() + refused, 64);

    // Every accepted request completes, in execution order.
    let mut results = Vec::new();
    let mut spin_done = false;
    for _ in 0..accepted.len() + 1 {
        let completion = session
            .recv_timeout(ANSWER_TIMEOUT)
            .expect("an accepted request was never answered");
        session.acknowledge(completion.request_id);
        let tx = completion.result.expect("accepted request failed");
        if completion.request_id == spin {
            check_abort(raw_abort(&tx), AbortKind::OutOfFuel, &[]);
            spin_done = true;
        } else {
            assert!(accepted.contains(&completion.request_id));
            match tx.outcome {
                Outcome::Committed { result } => {
                    results.push(postcard::from_bytes::<i64>(&result).unwrap());
                }
                other => panic!("incr did not commit: {other:?}"),
            }
        }
    }
    assert!(spin_done);
    let expected: Vec<i64> = (1..=accepted.len() as i64).collect();
    assert_eq!(
        results, expected,
        "each accepted incr ran exactly once, in order"
    );
    assert!(session.try_recv().is_none(), "no extra completions");

    // Refused requests left no trace, and the node takes requests again.
    assert_eq!(
        call_retrying::<Option<i64>>(&node, "get", &("n",)),
        Some(accepted.len() as i64)
    );
}

fn retry_submit(session: &ordo::Session, procedure: &str, args: Vec<u8>) -> u64 {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match session.submit(procedure, ArgsEncoding::Postcard, args.clone()) {
            Ok(request_id) => return request_id,
            Err(NodeError::Overloaded { .. }) if Instant::now() < deadline => {
                std::thread::yield_now();
            }
            Err(other) => panic!("{procedure}: {other}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions of bugs found by this suite.

/// JSON arguments are an object keyed by parameter name; serde's derived
/// `Deserialize` would also map an array positionally (`open [3, 5]`).
#[test]
fn json_array_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("bank", BANK).unwrap();
    let before = node.status();
    for (procedure, args) in [("open", "[3,5]"), ("total", "[]")] {
        match node.call_raw(procedure, ArgsEncoding::Json, args.as_bytes().to_vec()) {
            Err(NodeError::BadArguments { reason, .. }) => {
                assert!(
                    reason.contains("object keyed by parameter name"),
                    "{reason}"
                )
            }
            other => panic!("{procedure} {args} was not refused: {other:?}"),
        }
    }
    assert_eq!(node.status(), before, "refused calls are never logged");
}

/// A caller that has its answer is no longer counted as in flight: with
/// `inflight_max = 1`, a strictly sequential client is never refused.
#[test]
fn sequential_calls_are_never_refused_as_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(dir.path());
    config.inflight_max = 1;
    let node = Node::open(config).unwrap();
    node.deploy("kv", KV).unwrap();
    let mut refused = 0;
    for _ in 0..200 {
        match node.call::<_, Option<i64>>("get", &("k",)) {
            Ok(_) => {}
            Err(CallError::Node(NodeError::Overloaded { .. })) => refused += 1,
            Err(other) => panic!("get: {other}"),
        }
    }
    assert_eq!(
        refused, 0,
        "{refused} of 200 sequential calls were refused as overloaded with nothing in flight"
    );
}

// ---------------------------------------------------------------------------
// scans through the host ABI

type Listing = Vec<(String, u32)>;

fn scan_merge(node: &Node, puts: &[(&str, u32)], deletes: &[&str]) -> Listing {
    let puts: Vec<(String, u32)> = puts.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let deletes: Vec<String> = deletes.iter().map(|k| k.to_string()).collect();
    call::<_, Listing>(node, "scan_merge", &(puts, deletes)).value
}

#[test]
fn scans_merge_own_writes_in_key_order_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("hostile", HOSTILE).unwrap();

    // Twenty keys, written out of order, some values far larger than the
    // SDK's first scan buffer (so the host's "entry does not fit" answer
    // and the chunked continuation are both exercised).
    let mut puts: Vec<(String, u32)> = (0..20u32)
        .rev()
        .map(|i| (format!("k{i:02}"), if i % 5 == 0 { 100_000 } else { i }))
        .collect();
    puts.push(("a".to_string(), 1));
    let borrowed: Vec<(&str, u32)> = puts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let listed = scan_merge(&node, &borrowed, &[]);
    let mut expected: Listing = puts.clone();
    expected.sort();
    assert_eq!(
        listed, expected,
        "a transaction's scan sees its own writes, sorted"
    );

    // Committed now. In one transaction: delete two, overwrite one, add
    // one before and one after everything; the scan shows the merge.
    let listed = scan_merge(
        &node,
        &[("k03", 7), ("0first", 2), ("zz", 3)],
        &["k01", "k10", "missing"],
    );
    let mut expected: Listing = expected
        .into_iter()
        .filter(|(k, _)| k != "k01" && k != "k10")
        .map(|(k, n)| if k == "k03" { (k, 7) } else { (k, n) })
        .collect();
    expected.push(("0first".to_string(), 2));
    expected.push(("zz".to_string(), 3));
    expected.sort();
    assert_eq!(listed, expected);

    // The committed state matches what that transaction saw.
    assert_eq!(scan_merge(&node, &[], &[]), expected);
}

// ---------------------------------------------------------------------------
// workloads through a node

/// Submits `requests` through one session, all in flight at once, and
/// returns their outcomes in request order.
fn run_pipelined(node: &Node, requests: &[Request]) -> Vec<TxOutcome> {
    let session = node.session();
    let ids: Vec<u64> = requests
        .iter()
        .map(|request| retry_submit(&session, request.procedure, request.args.clone()))
        .collect();
    let mut outcomes = BTreeMap::new();
    for _ in 0..ids.len() {
        let completion = session
            .recv_timeout(ANSWER_TIMEOUT)
            .expect("a submitted request was never answered");
        session.acknowledge(completion.request_id);
        let tx = completion.result.expect("a submitted request failed");
        outcomes.insert(completion.request_id, tx);
    }
    ids.iter()
        .map(|id| outcomes.remove(id).expect("one outcome per request"))
        .collect()
}

#[track_caller]
fn assert_all_commit(what: &str, requests: &[Request], outcomes: &[TxOutcome]) {
    for (request, tx) in requests.iter().zip(outcomes) {
        assert!(
            matches!(tx.outcome, Outcome::Committed { .. }),
            "{what}: {} did not commit: {:?}",
            request.procedure,
            tx.outcome
        );
    }
}

/// A row read through a read-only procedure with JSON arguments, so the
/// test names the fields it checks.
#[track_caller]
fn json_row(node: &Node, procedure: &str, args: serde_json::Value) -> serde_json::Value {
    raw_json(&call_json(node, procedure, &args.to_string()))
}

#[track_caller]
fn int(row: &serde_json::Value, field: &str) -> i64 {
    row[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} is not an integer in {row}"))
}

// ---------------------------------------------------------------------------
// tpcc

type NewOrderArgs = (u32, u32, u32, Vec<(u32, u32, u32)>);
type PaymentArgs = (u32, u32, u32, u32, u32, i64);

/// The stock row after a NewOrder line of `quantity` (TPC-C 2.4.2.2).
fn stock_after(stock: &serde_json::Value, quantity: i64, remote: bool) -> (i64, i64, i64, i64) {
    let before = int(stock, "quantity");
    let after = if before >= quantity + 10 {
        before - quantity
    } else {
        before - quantity + 91
    };
    (
        after,
        int(stock, "ytd") + quantity,
        int(stock, "order_cnt") + 1,
        int(stock, "remote_cnt") + remote as i64,
    )
}

fn stock_fields(stock: &serde_json::Value) -> (i64, i64, i64, i64) {
    (
        int(stock, "quantity"),
        int(stock, "ytd"),
        int(stock, "order_cnt"),
        int(stock, "remote_cnt"),
    )
}

/// NewOrder's total: `sum * (1 - discount) * (1 + w_tax + d_tax)` in
/// basis points, rounded to the nearest cent.
fn order_total(sum: i64, discount_bp: i64, w_tax_bp: i64, d_tax_bp: i64) -> i64 {
    let exact =
        sum as i128 * (10_000 - discount_bp) as i128 * (10_000 + w_tax_bp + d_tax_bp) as i128;
    ((exact + 50_000_000) / 100_000_000) as i64
}

#[test]
fn tpcc_new_order_payment_rollback_and_consistency() {
    let dir = tempfile::tempdir().unwrap();
    // Half the default fuel budget: the workload's full-size load chunks
    // (exercised at the end) must fit with a margin of two.
    let mut config = NodeConfig::new(dir.path());
    config.engine.tx_fuel_max = ordo::EngineConfig::default().tx_fuel_max / 2;
    let node = Node::open(config).unwrap();
    node.deploy("tpcc", TPCC).expect("deploy tpcc");
    let procedures: Vec<String> = node.procedures().into_iter().map(|p| p.name).collect();
    for name in [
        "tpcc_load_warehouse",
        "tpcc_load_items",
        "tpcc_load_customers",
        "tpcc_new_order",
        "tpcc_payment",
        "tpcc_check",
    ] {
        assert!(
            procedures.iter().any(|p| p == name),
            "{name} missing: {procedures:?}"
        );
    }

    // Load: 2 warehouses of 10 districts of 30 customers, 100 items.
    let tpcc = Tpcc::scaled(2, 10, 30, 100);
    let keys_before = node.status().engine.keys;
    let load = tpcc.load();
    assert_all_commit("load", &load, &run_pipelined(&node, &load));
    // Per warehouse: itself, 10 districts, 100 items and 100 stock rows,
    // 300 customers.
    assert_eq!(
        node.status().engine.keys,
        keys_before + 2 * (1 + 10 + 200 + 300)
    );
    for w_id in 1..=2u32 {
        assert_eq!(value::<_, u64>(&node, "tpcc_check", &w_id), 0);
    }
    // The item table is replicated: the same in both warehouses.
    assert_eq!(
        json_row(
            &node,
            "tpcc_item",
            serde_json::json!({"w_id": 1, "i_id": 42})
        ),
        json_row(
            &node,
            "tpcc_item",
            serde_json::json!({"w_id": 2, "i_id": 42})
        )
    );
    // Loading again is refused and writes nothing.
    expect_abort_unchanged(
        &node,
        "tpcc_load_items",
        &(2u32, 90u32, 20u32),
        AbortKind::User,
        &["item 90 of warehouse 2 already exists"],
    );
    expect_abort_unchanged(
        &node,
        "tpcc_load_warehouse",
        &(1u32, 10u32),
        AbortKind::User,
        &["warehouse 1 already exists"],
    );

    // --- A hand-checked NewOrder: three lines, the second supplied by
    // warehouse 2, the third ordering item 7 again.
    let warehouse = json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": 1}));
    let district = json_row(
        &node,
        "tpcc_district",
        serde_json::json!({"w_id": 1, "d_id": 3}),
    );
    let customer = json_row(
        &node,
        "tpcc_customer",
        serde_json::json!({"w_id": 1, "d_id": 3, "c_id": 7}),
    );
    assert_eq!(int(&district, "next_o_id"), 1);
    let lines: Vec<(u32, u32, u32)> = vec![(5, 1, 3), (6, 2, 10), (7, 1, 8), (7, 1, 4)];
    let price = |i_id: u32| {
        int(
            &json_row(
                &node,
                "tpcc_item",
                serde_json::json!({"w_id": 1, "i_id": i_id}),
            ),
            "price",
        )
    };
    let stock = |w_id: u32, i_id: u32| {
        json_row(
            &node,
            "tpcc_stock",
            serde_json::json!({"w_id": w_id, "i_id": i_id}),
        )
    };
    let stock_1_5 = stock(1, 5);
    let stock_2_6 = stock(2, 6);
    let stock_1_6 = stock(1, 6);
    let stock_1_7 = stock(1, 7);
    let sum = 3 * price(5) + 10 * price(6) + 12 * price(7);
    let expected_total = order_total(
        sum,
        int(&customer, "discount_bp"),
        int(&warehouse, "tax_bp"),
        int(&district, "tax_bp"),
    );
    let keys = node.status().engine.keys;
    let (o_id, total) = value::<_, (u32, i64)>(&node, "tpcc_new_order", &(1u32, 3u32, 7u32, lines));
    assert_eq!((o_id, total), (1, expected_total));
    // The order, its new-order row and four lines.
    assert_eq!(node.status().engine.keys, keys + 6);
    let district_after = json_row(
        &node,
        "tpcc_district",
        serde_json::json!({"w_id": 1, "d_id": 3}),
    );
    assert_eq!(int(&district_after, "next_o_id"), 2);
    assert_eq!(
        stock_fields(&stock(1, 5)),
        stock_after(&stock_1_5, 3, false)
    );
    assert_eq!(
        stock_fields(&stock(2, 6)),
        stock_after(&stock_2_6, 10, true)
    );
    assert_eq!(
        stock(1, 6),
        stock_1_6,
        "the home warehouse's stock of the remote line is untouched"
    );
    // Item 7 twice: the second line sees the first line's update.
    let (q, ytd, orders, remote) = stock_after(&stock_1_7, 8, false);
    let once =
        serde_json::json!({"quantity": q, "ytd": ytd, "order_cnt": orders, "remote_cnt": remote});
    assert_eq!(stock_fields(&stock(1, 7)), stock_after(&once, 4, false));

    let order = json_row(
        &node,
        "tpcc_order",
        serde_json::json!({"w_id": 1, "d_id": 3, "o_id": 1}),
    );
    assert_eq!(order["new_order"], serde_json::json!(true));
    assert_eq!(int(&order["order"], "c_id"), 7);
    assert_eq!(int(&order["order"], "ol_cnt"), 4);
    assert_eq!(order["order"]["all_local"], serde_json::json!(false));
    let order_lines = order["lines"].as_array().unwrap();
    assert_eq!(order_lines.len(), 4);
    assert_eq!(int(&order_lines[1], "i_id"), 6);
    assert_eq!(int(&order_lines[1], "supply_w_id"), 2);
    assert_eq!(int(&order_lines[1], "amount"), 10 * price(6));
    // OL_DIST_INFO is the supply stock's S_DIST_03 (characters 48..72).
    let dist = stock_2_6["dist"].as_str().unwrap();
    assert_eq!(
        order_lines[1]["dist_info"],
        serde_json::json!(&dist[48..72])
    );
    assert_eq!(
        order_lines
            .iter()
            .map(|line| int(line, "amount"))
            .sum::<i64>(),
        sum
    );
    assert_eq!(value::<_, u64>(&node, "tpcc_check", &1u32), 1);

    // --- The 1% rollback: an unknown item in the last line, after the
    // earlier lines' writes. Nothing is left: the state hash, the key
    // count, the district's next order id and the stock are unchanged.
    let stock_1_5 = stock(1, 5);
    let bad: Vec<(u32, u32, u32)> = vec![(5, 1, 2), (6, 2, 1), (101, 1, 1)];
    expect_abort_unchanged(
        &node,
        "tpcc_new_order",
        &(1u32, 3u32, 7u32, bad),
        AbortKind::User,
        &["Item number is not valid", "item 101", "line 3"],
    );
    let district_now = json_row(
        &node,
        "tpcc_district",
        serde_json::json!({"w_id": 1, "d_id": 3}),
    );
    assert_eq!(int(&district_now, "next_o_id"), 2);
    assert_eq!(stock(1, 5), stock_1_5);
    // Other refusals.
    for (args, needle) in [
        (
            (1u32, 3u32, 31u32, vec![(5u32, 1u32, 1u32)]),
            "no such customer: 31",
        ),
        ((1, 11, 1, vec![(5, 1, 1)]), "no such district: 11"),
        ((3, 1, 1, vec![(5, 1, 1)]), "no such warehouse: 3"),
        (
            (1, 1, 1, vec![(5, 3, 1)]),
            "no stock of item 5 in supply warehouse 3",
        ),
        ((1, 1, 1, vec![(5, 1, 11)]), "quantity 11 is not 1 to 10"),
        ((1, 1, 1, vec![]), "1 to 15 lines, not 0"),
        ((1, 1, 1, vec![(5, 1, 1); 16]), "1 to 15 lines, not 16"),
    ] {
        expect_abort_unchanged(&node, "tpcc_new_order", &args, AbortKind::User, &[needle]);
    }

    // --- A hand-checked Payment through warehouse 1, district 2 for a
    // remote customer with bad credit (every tenth customer).
    let w1 = int(
        &json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": 1})),
        "ytd",
    );
    let w2 = int(
        &json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": 2})),
        "ytd",
    );
    let d12 = int(
        &json_row(
            &node,
            "tpcc_district",
            serde_json::json!({"w_id": 1, "d_id": 2}),
        ),
        "ytd",
    );
    let customer_key = serde_json::json!({"w_id": 2, "d_id": 4, "c_id": 10});
    let before = json_row(&node, "tpcc_customer", customer_key.clone());
    assert_eq!(before["credit"], serde_json::json!("BC"));
    let keys = node.status().engine.keys;
    let paid = call::<_, i64>(
        &node,
        "tpcc_payment",
        &(1u32, 2u32, 2u32, 4u32, 10u32, 12_345i64),
    );
    assert_eq!(paid.value, int(&before, "balance") - 12_345);
    assert_eq!(node.status().engine.keys, keys + 1, "one history row");
    let after = json_row(&node, "tpcc_customer", customer_key.clone());
    assert_eq!(int(&after, "balance"), int(&before, "balance") - 12_345);
    assert_eq!(
        int(&after, "ytd_payment"),
        int(&before, "ytd_payment") + 12_345
    );
    assert_eq!(int(&after, "payment_cnt"), int(&before, "payment_cnt") + 1);
    let data = after["data"].as_str().unwrap();
    let old_data = before["data"].as_str().unwrap();
    let prefix = "10 4 2 2 1 12345|";
    assert_eq!(data.len(), 500.min(prefix.len() + old_data.len()));
    assert!(data.starts_with(prefix), "{data}");
    assert!(old_data.starts_with(&data[prefix.len()..]));
    let w_row = json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": 1}));
    assert_eq!(int(&w_row, "ytd"), w1 + 12_345);
    let d_row = json_row(
        &node,
        "tpcc_district",
        serde_json::json!({"w_id": 1, "d_id": 2}),
    );
    assert_eq!(int(&d_row, "ytd"), d12 + 12_345);
    assert_eq!(
        int(
            &json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": 2})),
            "ytd"
        ),
        w2,
        "the customer's warehouse is not paid"
    );
    let history = json_row(
        &node,
        "tpcc_history",
        serde_json::json!({"w_id": 1, "seq": paid.seq}),
    );
    assert_eq!(int(&history, "amount"), 12_345);
    assert_eq!(
        (
            int(&history, "c_id"),
            int(&history, "c_d_id"),
            int(&history, "c_w_id"),
            int(&history, "d_id")
        ),
        (10, 4, 2, 2)
    );
    let names = format!(
        "{}    {}",
        w_row["name"].as_str().unwrap(),
        d_row["name"].as_str().unwrap()
    );
    assert_eq!(history["data"], serde_json::json!(names));
    // A good-credit customer's data is left alone.
    let good = serde_json::json!({"w_id": 1, "d_id": 2, "c_id": 7});
    let before = json_row(&node, "tpcc_customer", good.clone());
    call::<_, i64>(
        &node,
        "tpcc_payment",
        &(1u32, 2u32, 1u32, 2u32, 7u32, 100i64),
    );
    let after = json_row(&node, "tpcc_customer", good);
    assert_eq!(after["data"], before["data"]);
    assert_eq!(int(&after, "balance"), int(&before, "balance") - 100);
    expect_abort_unchanged(
        &node,
        "tpcc_payment",
        &(1u32, 2u32, 1u32, 2u32, 7u32, 0i64),
        AbortKind::User,
        &["payment amount 0 is not positive"],
    );
    expect_abort_unchanged(
        &node,
        "tpcc_payment",
        &(1u32, 2u32, 2u32, 2u32, 31u32, 5i64),
        AbortKind::User,
        &["no such customer: 31 of district 2 of warehouse 2"],
    );
    for w_id in 1..=2u32 {
        value::<_, u64>(&node, "tpcc_check", &w_id);
    }

    // --- The generated mix: every NewOrder commits unless its last item
    // is the unused id 101; every Payment commits.
    let ytd_before: Vec<i64> = (1..=2u32)
        .map(|w_id| {
            int(
                &json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": w_id})),
                "ytd",
            )
        })
        .collect();
    let mut generator = tpcc.generator(7);
    let requests: Vec<Request> = (0..400).map(|_| generator.next_request()).collect();
    let outcomes = run_pipelined(&node, &requests);
    let mut committed_orders = 1; // the hand-checked one
    let mut rollbacks = 0;
    let mut remote_orders = 0;
    let mut paid = [0i64; 2];
    for (request, tx) in requests.iter().zip(&outcomes) {
        match request.procedure {
            "tpcc_new_order" => {
                let (w_id, _, _, items): NewOrderArgs =
                    postcard::from_bytes(&request.args).unwrap();
                if items.last().unwrap().0 == 101 {
                    check_abort(
                        raw_abort(tx),
                        AbortKind::User,
                        &["Item number is not valid"],
                    );
                    rollbacks += 1;
                } else {
                    assert!(
                        matches!(tx.outcome, Outcome::Committed { .. }),
                        "NewOrder {items:?} did not commit: {:?}",
                        tx.outcome
                    );
                    committed_orders += 1;
                    if items.iter().any(|&(_, supply_w_id, _)| supply_w_id != w_id) {
                        remote_orders += 1;
                    }
                }
            }
            "tpcc_payment" => {
                let (w_id, ..): PaymentArgs = postcard::from_bytes(&request.args).unwrap();
                let amount = postcard::from_bytes::<PaymentArgs>(&request.args)
                    .unwrap()
                    .5;
                assert!(
                    matches!(tx.outcome, Outcome::Committed { .. }),
                    "Payment did not commit: {:?}",
                    tx.outcome
                );
                paid[w_id as usize - 1] += amount;
            }
            other => panic!("unexpected procedure {other}"),
        }
    }
    assert!(
        committed_orders > 150,
        "{committed_orders} NewOrders committed"
    );
    assert!(remote_orders > 0, "no NewOrder touched a remote warehouse");
    for w_id in 1..=2u32 {
        let ytd = int(
            &json_row(&node, "tpcc_warehouse", serde_json::json!({"w_id": w_id})),
            "ytd",
        );
        assert_eq!(ytd, ytd_before[w_id as usize - 1] + paid[w_id as usize - 1]);
    }
    // The workload's own checks, and the order count they report.
    let mut orders = 0;
    for check in tpcc.checks() {
        let [request] = &check.requests[..] else {
            panic!("{}: one call", check.what)
        };
        let tx = node
            .call_raw(
                request.procedure,
                ArgsEncoding::Postcard,
                request.args.clone(),
            )
            .unwrap();
        match tx.outcome {
            Outcome::Committed { result } => {
                orders += postcard::from_bytes::<u64>(&result).unwrap()
            }
            other => panic!("{}: {other:?}", check.what),
        }
    }
    assert_eq!(orders, committed_orders, "({rollbacks} rolled back)");

    // --- The workload's full-size load chunks fit (in half the fuel
    // budget), into a third warehouse.
    let keys = node.status().engine.keys;
    call::<_, ()>(&node, "tpcc_load_warehouse", &(3u32, 10u32));
    call::<_, ()>(
        &node,
        "tpcc_load_items",
        &(3u32, 1u32, Tpcc::ITEMS_PER_LOAD),
    );
    call::<_, ()>(
        &node,
        "tpcc_load_customers",
        &(3u32, 1u32, 1u32, Tpcc::CUSTOMERS_PER_LOAD),
    );
    assert_eq!(
        node.status().engine.keys,
        keys + 11 + 2 * Tpcc::ITEMS_PER_LOAD as u64 + Tpcc::CUSTOMERS_PER_LOAD as u64
    );
    assert_eq!(value::<_, u64>(&node, "tpcc_check", &3u32), 0);
}

// ---------------------------------------------------------------------------
// ycsb

type Record = Vec<Vec<u8>>;

/// Record `key` as `ycsb_load` writes it: field `f` is `bytes` letters
/// cycling through the alphabet from letter `(key + f) mod 26`.
fn loaded_record(key: u64, fields: u32, bytes: usize) -> Record {
    (0..fields as u64)
        .map(|field| {
            (0..bytes as u64)
                .map(|j| b'a' + ((key + field + j) % 26) as u8)
                .collect()
        })
        .collect()
}

#[test]
fn ycsb_load_read_update_rmw_scan_insert() {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(&dir);
    node.deploy("ycsb", YCSB).expect("deploy ycsb");

    let ycsb = Ycsb::new(KeyChooser::uniform(300), YcsbMix::A);
    let keys = node.status().engine.keys;
    let load = ycsb.load();
    assert_all_commit("load", &load, &run_pipelined(&node, &load));
    assert_eq!(node.status().engine.keys, keys + 300);
    for key in [0u64, 1, 25, 26, 299] {
        assert_eq!(
            value::<_, Record>(&node, "ycsb_read", &key),
            loaded_record(key, 10, 100)
        );
    }
    expect_abort_unchanged(
        &node,
        "ycsb_load",
        &(299u64, 2u64, 10u32, 100u32),
        AbortKind::User,
        &["record 299 already exists"],
    );

    // Update one field; the others stay.
    call::<_, ()>(&node, "ycsb_update", &(5u64, 3u32, b"new".to_vec()));
    let mut expected = loaded_record(5, 10, 100);
    expected[3] = b"new".to_vec();
    assert_eq!(value::<_, Record>(&node, "ycsb_read", &5u64), expected);

    // Read-modify-write returns the record as read, then writes.
    let read = value::<_, Record>(
        &node,
        "ycsb_read_modify_write",
        &(6u64, 9u32, vec![0u8, 255]),
    );
    assert_eq!(read, loaded_record(6, 10, 100));
    let mut expected = loaded_record(6, 10, 100);
    expected[9] = vec![0, 255];
    assert_eq!(value::<_, Record>(&node, "ycsb_read", &6u64), expected);

    // Insert a new record past the loaded ones, and scan across it.
    call::<_, ()>(&node, "ycsb_insert", &(1_000u64, vec![b"only".to_vec()]));
    let scanned = value::<_, Vec<(u64, Record)>>(&node, "ycsb_scan", &(298u64, 3u32));
    assert_eq!(
        scanned,
        vec![
            (298, loaded_record(298, 10, 100)),
            (299, loaded_record(299, 10, 100)),
            (1_000, vec![b"only".to_vec()]),
        ]
    );
    let scanned = value::<_, Vec<(u64, Record)>>(&node, "ycsb_scan", &(4u64, 3u32));
    assert_eq!(
        scanned.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
        [4, 5, 6]
    );
    assert_eq!(scanned[1].1[3], b"new");
    assert!(value::<_, Vec<(u64, Record)>>(&node, "ycsb_scan", &(1_001u64, 10u32)).is_empty());
    assert!(value::<_, Vec<(u64, Record)>>(&node, "ycsb_scan", &(0u64, 0u32)).is_empty());

    // Refusals leave no trace.
    expect_abort_unchanged(
        &node,
        "ycsb_insert",
        &(5u64, vec![b"x".to_vec()]),
        AbortKind::User,
        &["record 5 already exists"],
    );
    expect_abort(
        &node,
        "ycsb_read",
        &5_000u64,
        AbortKind::User,
        &["no such record: 5000"],
    );
    expect_abort_unchanged(
        &node,
        "ycsb_update",
        &(5_000u64, 0u32, b"x".to_vec()),
        AbortKind::User,
        &["no such record: 5000"],
    );
    expect_abort_unchanged(
        &node,
        "ycsb_read_modify_write",
        &(5_000u64, 0u32, b"x".to_vec()),
        AbortKind::User,
        &["no such record: 5000"],
    );
    expect_abort_unchanged(
        &node,
        "ycsb_update",
        &(5u64, 10u32, b"x".to_vec()),
        AbortKind::User,
        &["record 5 has 10 fields, so there is no field 10"],
    );
    expect_abort_unchanged(
        &node,
        "ycsb_read_modify_write",
        &(1_000u64, 1u32, b"x".to_vec()),
        AbortKind::User,
        &["record 1000 has 1 fields, so there is no field 1"],
    );

    // The generated mixes all commit, and the checks pass.
    for mix in [YcsbMix::A, YcsbMix::B, YcsbMix::C, YcsbMix::F] {
        let workload = Ycsb::new(KeyChooser::zipf(300, 0.99), mix);
        let mut generator = workload.generator(3);
        let requests: Vec<Request> = (0..100).map(|_| generator.next_request()).collect();
        assert_all_commit(workload.name(), &requests, &run_pipelined(&node, &requests));
        for check in workload.checks() {
            for request in check.requests {
                let tx = node
                    .call_raw(request.procedure, ArgsEncoding::Postcard, request.args)
                    .unwrap();
                assert!(
                    matches!(tx.outcome, Outcome::Committed { .. }),
                    "{}: {:?}",
                    check.what,
                    tx.outcome
                );
            }
        }
    }
    assert_eq!(node.status().engine.keys, keys + 301);
}

/// The procedure contract (issue 14): `#[procedure(read_only)]` is held on
/// logged calls, and `Err` through an alias of `Result` aborts, on one
/// partition and on four.
#[test]
fn read_only_and_aliased_results_are_enforced_on_every_partition_count() {
    let mut hashes = Vec::new();
    for partitions in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::open(NodeConfig {
            partitions,
            ..NodeConfig::new(dir.path())
        })
        .unwrap();
        node.deploy("hostile", HOSTILE).unwrap();
        for id in [1u64, 2, 3] {
            value::<_, ()>(&node, "contract_set", &(id, 10 * id));
        }

        // `Res<()>` returning `Err` after a write: a user abort, nothing kept.
        let message = expect_abort_unchanged(
            &node,
            "alias_err",
            &(1u64, 99u64),
            AbortKind::User,
            &["should abort", "alias_err wrote 99 to 1"],
        );
        assert!(
            !message.contains("Err"),
            "the reason, not a serialised Err: {message}"
        );
        // The same in JSON: an abort, not a committed `{"Err": ..}`.
        let json = call_json(&node, "alias_err", r#"{"id": 2, "value": 99}"#);
        check_abort(raw_abort(&json), AbortKind::User, &["should abort"]);
        // `Ok` through the alias commits the plain value.
        assert_eq!(value::<_, u64>(&node, "alias_ok", &(3u64, 33u64)), 33);
        let json = call_json(&node, "alias_ok", r#"{"id": 3, "value": 30}"#);
        assert_eq!(raw_json(&json), serde_json::json!(30));

        // A read-only procedure that writes or deletes: `read_only`,
        // naming the procedure, nothing kept; declared or over all
        // partitions.
        expect_abort_unchanged(
            &node,
            "sneaky_put",
            &(1u64, 77u64),
            AbortKind::ReadOnly,
            &["`sneaky_put`", "ordo.put", "read_only"],
        );
        expect_abort_unchanged(
            &node,
            "sneaky_delete",
            &(2u64,),
            AbortKind::ReadOnly,
            &["`sneaky_delete`", "ordo.delete"],
        );
        let json = call_json(&node, "sneaky_put", r#"{"id": 2, "value": 77}"#);
        check_abort(raw_abort(&json), AbortKind::ReadOnly, &["`sneaky_put`"]);

        // Read back through calls: only the honest writes are there.
        for (id, expected) in [(1u64, 10u64), (2, 20), (3, 30)] {
            assert_eq!(
                value::<_, Option<u64>>(&node, "contract_get", &(id,)),
                Some(expected),
                "hostile_c[{id}] on {partitions} partitions"
            );
        }
        hashes.push(state_hash(&node));
    }
    assert_eq!(hashes[0], hashes[1], "the same state on 1 and 4 partitions");
}
