//! The procedure contract end to end, through a real `ordo serve`: typed
//! calls whose argument types differ from the procedure's are refused
//! before they are logged (wrong integer width and sign, swapped fields),
//! JSON is checked at every depth, a table upgrade that cannot read the
//! stored data is refused, and `ordo describe` prints the schemas.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{ADMIN, Server, fails_with_all, runtime, stdout};
use ordo_client::schema::Schema;
use ordo_client::{Client, ClientConfig, ClientError, StatusInfo};
use serde::{Deserialize, Serialize};

/// The client's mirror of the inventory module's types, in the module's
/// field order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
struct Location {
    aisle: u32,
    bin: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
enum Kind {
    Tool,
    Part { grade: u8 },
    Kit(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
struct Item {
    sku: String,
    count: u32,
    reserved: u32,
    location: Option<Location>,
    kind: Kind,
}

/// The same item with `count` and `reserved` swapped: postcard cannot
/// tell (both are u32), the signature can.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
struct SwappedItem {
    sku: String,
    reserved: u32,
    count: u32,
    location: Option<Location>,
    kind: Kind,
}

fn item(sku: &str) -> Item {
    Item {
        sku: sku.to_string(),
        count: 10,
        reserved: 3,
        location: Some(Location {
            aisle: 4,
            bin: "A-9".to_string(),
        }),
        kind: Kind::Part { grade: 2 },
    }
}

fn wasm_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn ordo(server: &Server, args: &[&str]) -> Output {
    common::run_ordo(Some(server), args)
}

async fn connect(server: &Server) -> Client {
    let mut config = ClientConfig::new(server.addr.to_string());
    config.admin_token = Some(ADMIN.to_string());
    Client::connect_with(config).await.unwrap()
}

/// The position and state hash, which a refused call must not move.
fn fixed_point(status: &StatusInfo) -> (u64, String) {
    (status.position, status.state_hash.clone())
}

#[track_caller]
fn mismatch(result: Result<impl std::fmt::Debug, ClientError>, needles: &[&str]) {
    match result {
        Err(ClientError::SignatureMismatch { detail, .. }) => {
            for needle in needles {
                assert!(detail.contains(needle), "`{detail}` lacks `{needle}`");
            }
        }
        other => panic!("expected a signature mismatch, got {other:?}"),
    }
}

#[test]
fn typed_calls_with_other_argument_types_are_refused_before_the_log() {
    let server = Server::start(&[]);
    runtime().block_on(async {
        let client = connect(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client
            .deploy("inventory", ordo::modules::INVENTORY)
            .await
            .unwrap();
        client.call::<_, ()>("open", &(1u64, 100i64)).await.unwrap();
        client.call::<_, ()>("open", &(2u64, 0i64)).await.unwrap();
        let before = fixed_point(&client.status().await.unwrap());

        // The client crate's own docs once used u64 amounts: a u64 10
        // decodes as the zig-zag i64 5. Now it is refused, naming the
        // parameter and both types.
        mismatch(
            client.call::<_, ()>("transfer", &(1u64, 2u64, 10u64)).await,
            &["amount", "i64", "u64"],
        );
        // Wrong sign and width elsewhere, too few and too many arguments.
        mismatch(
            client.call::<_, ()>("transfer", &(1i64, 2u64, 10i64)).await,
            &["from", "u64", "i64"],
        );
        mismatch(
            client.call::<_, ()>("transfer", &(1u32, 2u64, 10i64)).await,
            &["from", "u64", "u32"],
        );
        mismatch(
            client.call::<_, ()>("transfer", &(1u64, 2u64)).await,
            &["3", "2"],
        );
        mismatch(
            client
                .call::<_, ()>("transfer", &(1u64, 2u64, 10i64, 0u8))
                .await,
            &["3", "4"],
        );
        // Swapped fields of the same type inside a struct.
        mismatch(
            client
                .call::<_, ()>(
                    "add_item",
                    &SwappedItem {
                        sku: "S-1".into(),
                        reserved: 3,
                        count: 10,
                        location: None,
                        kind: Kind::Tool,
                    },
                )
                .await,
            &["item"],
        );
        assert_eq!(
            fixed_point(&client.status().await.unwrap()),
            before,
            "refused calls are never logged"
        );

        // The right types go through, and round-trip.
        client
            .call::<_, ()>("transfer", &(1u64, 2u64, 10i64))
            .await
            .unwrap();
        let balance = client.call::<_, i64>("balance", &(2u64,)).await.unwrap();
        assert_eq!(balance.value, 10);
        client
            .call::<_, ()>("add_item", &(item("S-1"),))
            .await
            .unwrap();
        let stored = client
            .call::<_, Option<Item>>("item", &("S-1",))
            .await
            .unwrap();
        assert_eq!(stored.value, Some(item("S-1")));
        // An `Err` from the procedure is an abort, not a value.
        let mut greedy = item("S-2");
        greedy.reserved = 11;
        match client.call::<_, ()>("add_item", &(greedy,)).await {
            Err(ClientError::Aborted { kind, message, .. }) => {
                assert_eq!(kind, "user");
                assert!(message.contains("reserves 11 of 10"), "{message}");
            }
            other => panic!("expected an abort, got {other:?}"),
        }

        // The raw path is unchecked by signature but still exact: trailing
        // bytes never reach the log.
        let position = client.status().await.unwrap().position;
        let mut args = postcard::to_stdvec(&(1u64, 2u64, 1i64)).unwrap();
        args.push(0);
        match client
            .call_raw("transfer", ordo_client::Encoding::Postcard, args)
            .await
        {
            Err(ClientError::BadArguments { message, seq: None }) => {
                assert!(message.contains("after the last argument"), "{message}")
            }
            other => panic!("expected bad arguments, got {other:?}"),
        }
        assert_eq!(client.status().await.unwrap().position, position);
    });
}

#[test]
fn json_arguments_are_checked_at_every_depth() {
    let server = Server::start(&[]);
    let wasm = wasm_file("inventory", ordo::modules::INVENTORY);
    stdout(&ordo(
        &server,
        &[
            "deploy",
            "--admin-token",
            ADMIN,
            "inventory",
            wasm.to_str().unwrap(),
        ],
    ));
    let good = r#"{"item":{"sku":"S-1","count":10,"reserved":3,"location":{"aisle":4,"bin":"A-9"},"kind":{"Part":{"grade":2}}}}"#;
    let cases = [
        // The typo of the report: `bn` for `bin`, one level down.
        (
            good.replace(r#""bin""#, r#""bn""#),
            &["item.location", "bn"][..],
        ),
        // Missing fields at every depth.
        (good.replace(r#""count":10,"#, ""), &["item", "count"]),
        (
            good.replace(r#","bin":"A-9""#, ""),
            &["item.location", "bin"],
        ),
        (good.replace(r#"{"grade":2}"#, "{}"), &["grade"]),
        // Extra fields at every depth.
        (
            good.replace(r#"{"item":"#, r#"{"extra":1,"item":"#),
            &["extra"],
        ),
        (
            good.replace(r#""count":10,"#, r#""count":10,"colour":"red","#),
            &["colour"],
        ),
        (
            good.replace(r#""aisle":4"#, r#""aisle":4,"shelf":2"#),
            &["shelf"],
        ),
        // Wrong types and out-of-range numbers.
        (
            good.replace(r#""count":10"#, r#""count":"ten""#),
            &["item.count", "u32"],
        ),
        (
            good.replace(r#""count":10"#, r#""count":-1"#),
            &["item.count", "u32"],
        ),
        (
            good.replace(r#""count":10"#, r#""count":4294967296"#),
            &["item.count", "u32"],
        ),
        (
            good.replace(r#""grade":2"#, r#""grade":256"#),
            &["grade", "u8"],
        ),
        (
            good.replace(r#""count":10"#, r#""count":1.5"#),
            &["item.count"],
        ),
        // Unknown enum variants.
        (good.replace(r#""Part""#, r#""Gadget""#), &["Gadget"]),
        // A field twice: JSON values keep the last, the procedure's
        // decoding refuses it (found by the json_args fuzzer).
        (
            good.replace(r#""count":10,"#, r#""count":10,"count":11,"#),
            &["`count`", "twice"],
        ),
    ];
    runtime().block_on(async {
        let mut config = ClientConfig::new(server.addr.to_string());
        // No session registration, so the position counts calls only.
        config.register_session = false;
        let client = Client::connect_with(config).await.unwrap();
        let before = fixed_point(&client.status().await.unwrap());
        for (args, needles) in &cases {
            match client.call_json("add_item", args).await {
                Err(ClientError::BadArguments { message, seq: None }) => {
                    for needle in *needles {
                        assert!(
                            message.contains(needle),
                            "{args}: `{message}` lacks `{needle}`"
                        );
                    }
                }
                other => panic!("{args} was not refused: {other:?}"),
            }
        }
        assert_eq!(
            fixed_point(&client.status().await.unwrap()),
            before,
            "refused calls are never logged"
        );
    });
    // The CLI says the same in one line.
    let (args, needles) = &cases[0];
    fails_with_all(&ordo(&server, &["call", "add_item", args]), needles);
    // The correct call commits, and reads back through JSON.
    stdout(&ordo(&server, &["call", "add_item", good]));
    let read = stdout(&ordo(&server, &["call", "item", r#"{"sku":"S-1"}"#]));
    assert!(read.contains(r#""bin":"A-9""#), "{read}");
}

#[test]
fn an_upgrade_that_cannot_read_the_stored_table_is_refused() {
    let server = Server::start(&[]);
    runtime().block_on(async {
        let client = connect(&server).await;
        // While `items` is empty, the table may change type freely.
        client
            .deploy("inventory", ordo::modules::INVENTORY)
            .await
            .unwrap();
        client
            .deploy("inventory", ordo::modules::INVENTORY_V2)
            .await
            .unwrap();
        client
            .deploy("inventory", ordo::modules::INVENTORY)
            .await
            .unwrap();
        client
            .call::<_, ()>("add_item", &(item("S-1"),))
            .await
            .unwrap();
        let before = fixed_point(&client.status().await.unwrap());

        // Now version 2 would read version 1's items as garbage. Whether a
        // table holds data is known only at the deploy's position in the
        // log, so the refusal is the deploy's logged outcome there: it
        // aborts, and changes nothing.
        match client
            .deploy("inventory", ordo::modules::INVENTORY_V2)
            .await
        {
            Err(ClientError::Aborted { kind, message, .. }) => {
                assert_eq!(kind, "deploy_rejected");
                for needle in ["table `items`", "price", "added"] {
                    assert!(message.contains(needle), "`{message}` lacks `{needle}`");
                }
            }
            other => panic!("expected the upgrade to be refused, got {other:?}"),
        }
        assert_eq!(
            client.status().await.unwrap().state_hash,
            before.1,
            "the refused deploy changed nothing"
        );
        // Version 1 still serves its data.
        let stored = client
            .call::<_, Option<Item>>("item", &("S-1",))
            .await
            .unwrap();
        assert_eq!(stored.value, Some(item("S-1")));
    });
}

#[test]
fn describe_prints_the_contract_from_a_server_and_from_a_file() {
    let server = Server::start(&[]);
    let wasm = wasm_file("inventory", ordo::modules::INVENTORY);
    let wasm = wasm.to_str().unwrap();
    stdout(&ordo(
        &server,
        &["deploy", "--admin-token", ADMIN, "inventory", wasm],
    ));

    let text = stdout(&ordo(&server, &["describe"]));
    for needle in [
        "module inventory",
        "procedure add_item(item: Item) -> ()",
        "procedure item(sku: String) -> Option<Item>  [read-only]",
        "procedure release(sku: String, amount: u32) -> u32",
        "table items: Table<String, Item>",
        "/// Units on hand.",
        "struct Item {",
        "count: u32,",
        "location: Option<Location>,",
        "enum Kind {",
        "Part {",
        "grade: u8,",
        "Kit(Vec<String>)",
    ] {
        assert!(text.contains(needle), "describe lacks {needle:?}:\n{text}");
    }
    // From the file, without a server: the same contract.
    let from_file = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["describe", "--wasm", wasm])
        .output()
        .unwrap();
    assert_eq!(stdout(&from_file), text);

    // One procedure; and JSON with the schemas in full.
    let one = stdout(&ordo(&server, &["describe", "release"]));
    assert!(one.contains("procedure release("), "{one}");
    assert!(!one.contains("procedure add_item("), "{one}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ordo(&server, &["describe", "--json", "item"]))).unwrap();
    assert_eq!(json[0]["name"], "inventory");
    assert_eq!(json[0]["procedures"][0]["name"], "item");
    assert_eq!(json[0]["procedures"][0]["read_only"], true);
    let unknown = ordo(&server, &["describe", "nothing_here"]);
    fails_with_all(
        &unknown,
        &["no procedure, table or type named `nothing_here`"],
    );
}

/// Version 2's item, as the migrated table holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
struct PricedItem {
    sku: String,
    count: u32,
    reserved: u32,
    location: Option<Location>,
    kind: Kind,
    price: u64,
}

/// Deploys version 1, stores `items` items, then upgrades to version 3
/// (version 2 plus a migration) on an embedded node with `partitions`
/// partitions; returns the node's state hash after the upgrade and after
/// reopening the node (a replay of its log).
fn migrate_on(partitions: usize, items: u32) -> (u128, u128) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ordo::NodeConfig::new(dir.path());
    config.partitions = partitions;
    let node = ordo::Node::open(config.clone()).unwrap();
    node.deploy("inventory", ordo::modules::INVENTORY).unwrap();
    for n in 0..items {
        let mut it = item(&format!("S-{n:04}"));
        it.count = n;
        it.reserved = 0;
        node.call::<_, ()>("add_item", &(it,)).unwrap();
    }
    let before = node.status().engine;
    // Without a migration the upgrade is refused...
    match node.deploy("inventory", ordo::modules::INVENTORY_V2) {
        Err(ordo::CallError::Aborted { abort, .. }) => {
            assert!(abort.message.contains("table `items`"), "{}", abort.message)
        }
        other => panic!("version 2 was deployed over version 1's data: {other:?}"),
    }
    assert_eq!(node.status().engine.state_hash, before.state_hash);
    // ...and with one it runs at the deploy's position, atomically.
    node.deploy("inventory", ordo::modules::INVENTORY_V3)
        .unwrap();
    for n in [0, items / 2, items - 1] {
        let stored: Option<PricedItem> = node.call("item", &(format!("S-{n:04}"),)).unwrap().value;
        let stored = stored.unwrap_or_else(|| panic!("item {n} is gone"));
        assert_eq!((stored.count, stored.price), (n, 100 * u64::from(n)));
        assert_eq!(stored.location, item("x").location);
    }
    // The migration is not a procedure clients can call.
    match node.call::<_, ()>("price_items", &()) {
        Err(ordo::CallError::Aborted { abort, .. }) => {
            assert!(
                abort.message.contains("is a migration"),
                "{}",
                abort.message
            )
        }
        other => panic!("the migration could be called: {other:?}"),
    }
    let migrated = node.status().engine.state_hash;
    drop(node);
    let reopened = ordo::Node::open(config).unwrap();
    (migrated, reopened.status().engine.state_hash)
}

#[test]
fn a_migration_rewrites_the_table_at_the_deploy_identically_on_every_partition_count() {
    let (one, one_replayed) = migrate_on(1, 300);
    let (four, four_replayed) = migrate_on(4, 300);
    assert_eq!(one, four, "1 and 4 partitions reach the same state");
    assert_eq!(one, one_replayed, "a replay reaches the same state");
    assert_eq!(four, four_replayed, "a replay reaches the same state");
}

#[test]
fn a_failing_migration_leaves_the_old_module_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ordo::NodeConfig::new(dir.path());
    config.partitions = 2;
    let node = ordo::Node::open(config).unwrap();
    node.deploy("inventory", ordo::modules::INVENTORY).unwrap();
    // Rewritten first (in key order), then the migration fails at POISON:
    // none of its writes may survive.
    node.call::<_, ()>("add_item", &(item("A-1"),)).unwrap();
    node.call::<_, ()>("add_item", &(item("POISON-1"),))
        .unwrap();
    let before = node.status().engine;
    match node.deploy("inventory", ordo::modules::INVENTORY_V3) {
        Err(ordo::CallError::Aborted { abort, .. }) => {
            for needle in ["migration `price_items`", "POISON-1 cannot be priced"] {
                assert!(abort.message.contains(needle), "{}", abort.message);
            }
        }
        other => panic!("the failing migration deployed: {other:?}"),
    }
    assert_eq!(node.status().engine.state_hash, before.state_hash);
    // Version 1 still serves, with its own item type.
    let stored: Option<Item> = node.call("item", &("A-1",)).unwrap().value;
    assert_eq!(stored, Some(item("A-1")));
}

#[test]
fn a_development_server_may_reset_a_table_to_change_its_type() {
    // Refused by an ordinary server, whatever the token.
    let server = Server::start(&[]);
    let wasm = wasm_file("inventory", ordo::modules::INVENTORY);
    let wasm_v2 = wasm_file("inventory_v2", ordo::modules::INVENTORY_V2);
    let deploy = |server: &Server, wasm: &PathBuf, extra: &[&str]| {
        let mut args = vec!["deploy", "--admin-token", ADMIN];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["inventory", wasm.to_str().unwrap()]);
        ordo(server, &args)
    };
    fails_with_all(
        &deploy(&server, &wasm_v2, &["--reset-table", "items"]),
        &["--allow-table-reset"],
    );

    let server = Server::start(&["--allow-table-reset"]);
    stdout(&deploy(&server, &wasm, &[]));
    stdout(&ordo(
        &server,
        &[
            "call",
            "add_item",
            r#"{"item":{"sku":"S-1","count":1,"reserved":0,"location":null,"kind":"Tool"}}"#,
        ],
    ));
    // Without the reset the upgrade is still refused...
    let refused = deploy(&server, &wasm_v2, &[]);
    assert!(!refused.status.success());
    // ...with it, the table's rows are gone and version 2 serves.
    stdout(&deploy(&server, &wasm_v2, &["--reset-table", "items"]));
    let read = stdout(&ordo(
        &server,
        &["call", "--json", "item", r#"{"sku":"S-1"}"#],
    ));
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    assert!(read["seq"].is_u64(), "{read}");
    assert_eq!(read["result"], serde_json::Value::Null, "{read}");
    stdout(&ordo(
        &server,
        &[
            "call",
            "add_item",
            r#"{"item":{"sku":"S-2","count":1,"reserved":0,"location":null,"kind":"Tool","price":5}}"#,
        ],
    ));
    let read = stdout(&ordo(&server, &["call", "item", r#"{"sku":"S-2"}"#]));
    assert!(read.contains(r#""price":5"#), "{read}");
}

/// Undeploying a module keeps its tables' rows and their schemas: a later
/// deploy that would misread the rows is refused as an upgrade would be,
/// also after a kill -9 and a restart from a snapshot taken in between.
#[test]
fn an_undeployed_modules_table_schema_still_guards_its_rows() {
    let flags = ["--snapshot-every", "8", "--snapshot-log-bytes-min", "0"];
    let server = Server::start(&flags);
    let undeployed = runtime().block_on(async {
        let client = connect(&server).await;
        client
            .deploy("inventory", ordo::modules::INVENTORY)
            .await
            .unwrap();
        client
            .call::<_, ()>("add_item", &(item("S-1"),))
            .await
            .unwrap();
        let undeployed = client.undeploy("inventory").await.unwrap();
        // Past a snapshot point, so the restart below restores one.
        client.deploy("kv", ordo::modules::KV).await.unwrap();
        for by in 0..20i64 {
            client
                .call_json("incr", &format!(r#"{{"key": "k", "by": {by}}}"#))
                .await
                .unwrap();
        }
        undeployed
    });
    common::wait_for_snapshot_after(server.dir.path(), undeployed);
    let dir = server.kill();
    let server = Server::start_in(dir, &flags);
    runtime().block_on(async {
        let client = connect(&server).await;
        let status = client.status().await.unwrap();
        assert!(
            status.snapshot_position.is_some_and(|at| at > 3),
            "{status:?}"
        );
        match client
            .deploy("inventory", ordo::modules::INVENTORY_V2)
            .await
        {
            Err(ClientError::Aborted { kind, message, .. }) => {
                assert_eq!(kind, "deploy_rejected");
                for needle in ["table `items`", "inventory, undeployed"] {
                    assert!(message.contains(needle), "`{message}` lacks `{needle}`");
                }
            }
            other => panic!("expected the deploy to be refused, got {other:?}"),
        }
        // The version that wrote the rows reads them again.
        client
            .deploy("inventory", ordo::modules::INVENTORY)
            .await
            .unwrap();
        let stored = client
            .call::<_, Option<Item>>("item", &("S-1",))
            .await
            .unwrap();
        assert_eq!(stored.value, Some(item("S-1")));
    });
}
