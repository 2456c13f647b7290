//! The `ordo` CLI and the async Rust SDK against a real `ordo serve`
//! process: the happy path, every CLI error case (one line, non-zero
//! exit), many pipelined SDK clients against the bank invariant, and a
//! SIGKILL mid-load after which every answered transfer is still there.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use common::{ADMIN, Server, runtime, stdout};
use ordo_client::{Client, ClientConfig, ClientError};

fn bank_wasm() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("bank.wasm");
    std::fs::write(&path, ordo::modules::BANK).unwrap();
    path
}

fn ordo(server: &Server, args: &[&str]) -> Output {
    common::run_ordo(Some(server), args)
}

/// Asserts a CLI failure: non-zero exit, one line on stderr containing
/// `expected`.
#[track_caller]
fn fails_with(output: &Output, expected: &str) {
    common::fails_with_all(output, &[expected])
}

#[test]
fn cli_happy_path_and_every_error() {
    let server = Server::start(&[]);
    let wasm = bank_wasm();
    let wasm = wasm.to_str().unwrap();

    let deployed = stdout(&ordo(
        &server,
        &["deploy", "--admin-token", ADMIN, "bank", wasm],
    ));
    assert!(
        deployed.contains("bank") && deployed.contains("transfer"),
        "{deployed}"
    );
    let sha = sha256_hex(ordo::modules::BANK);
    assert!(
        deployed.contains(&sha),
        "prints the module hash: {deployed}"
    );

    stdout(&ordo(
        &server,
        &["call", "open", r#"{"id": 1, "balance": 70}"#],
    ));
    stdout(&ordo(
        &server,
        &["call", "open", r#"{"id": 2, "balance": 0}"#],
    ));
    stdout(&ordo(
        &server,
        &["call", "transfer", r#"{"from": 1, "to": 2, "amount": 20}"#],
    ));
    assert_eq!(
        stdout(&ordo(&server, &["call", "balance", r#"{"id": 2}"#])).trim(),
        "20"
    );
    assert_eq!(stdout(&ordo(&server, &["call", "total"])).trim(), "70");

    let procedures = stdout(&ordo(&server, &["procedures"]));
    assert!(
        procedures.contains("transfer {from: u64, to: u64, amount: i64}"),
        "{procedures}"
    );

    let status: serde_json::Value =
        serde_json::from_str(&stdout(&ordo(&server, &["status", "--json"]))).unwrap();
    assert!(status["position"].as_u64().unwrap() >= 5);
    assert_eq!(status["state_hash"].as_str().unwrap().len(), 32);
    // What the node keeps: its log holds the records so far (no snapshot
    // yet on so short a log), one partition thread by default on this
    // machine or more, the CLI's sessions ended.
    assert!(status["log_bytes"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(
        status["snapshot_position"],
        serde_json::Value::Null,
        "{status}"
    );
    assert!(status["partitions"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["sessions"].as_u64().is_some(), "{status}");
    let text = stdout(&ordo(&server, &["status"]));
    for line in [
        "log bytes",
        "snapshot    (none yet)",
        "partitions",
        "sessions",
    ] {
        assert!(text.contains(line), "{text}");
    }

    // Every error is one actionable line and a non-zero exit.
    fails_with(
        &ordo(&server, &["call", "balance", r#"{"id": "#]),
        "not valid JSON",
    );
    fails_with(&ordo(&server, &["call", "balance", "[1]"]), "JSON object");
    fails_with(&ordo(&server, &["call", "no_such", "{}"]), "no_such");
    fails_with(&ordo(&server, &["call", "balance", r#"{"idd": 1}"#]), "idd");
    fails_with(
        &ordo(
            &server,
            &["call", "transfer", r#"{"from": 2, "to": 1, "amount": 999}"#],
        ),
        "insufficient",
    );
    fails_with(&ordo(&server, &["deploy", "bank", wasm]), "token");
    let not_wasm = std::env::current_dir().unwrap().join("Cargo.toml");
    fails_with(
        &ordo(
            &server,
            &[
                "deploy",
                "--admin-token",
                ADMIN,
                "junk",
                not_wasm.to_str().unwrap(),
            ],
        ),
        "rejected",
    );
    fails_with(
        &ordo(
            &server,
            &[
                "deploy",
                "--admin-token",
                ADMIN,
                "bank",
                "/no/such/file.wasm",
            ],
        ),
        "/no/such/file.wasm",
    );
    let unreachable = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["status", "--server", "127.0.0.1:1"])
        .output()
        .unwrap();
    fails_with(&unreachable, "is `ordo serve` running");
    // `--admin-token` is offered only where it does something.
    for command in ["status", "procedures", "describe"] {
        let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([command, "--admin-token", "x"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains("unexpected argument '--admin-token'"),
            "{command}: {said}"
        );
    }
    // The OS's reason once, not twice.
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(said.matches("Connection refused").count(), 1, "{said}");
}

#[test]
fn cli_bad_client_token_is_refused() {
    let server = Server::start(&["--client-token", "sesame"]);
    fails_with(&ordo(&server, &["status", "--token", "wrong"]), "token");
    fails_with(&ordo(&server, &["status"]), "token");
    stdout(&ordo(&server, &["status", "--token", "sesame"]));
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ordo_engine::module::sha256(bytes))
}

async fn connect(server: &Server) -> Client {
    let mut config = ClientConfig::new(server.addr.to_string());
    config.admin_token = Some(ADMIN.to_string());
    Client::connect_with(config).await.unwrap()
}

const ACCOUNTS: u64 = 50;
const BALANCE: i64 = 1_000;

#[test]
fn pipelined_sdk_clients_keep_the_bank_invariant() {
    let server = Server::start(&[]);
    runtime().block_on(async {
        let admin = connect(&server).await;
        let deployed = admin.deploy("bank", ordo::modules::BANK).await.unwrap();
        assert!(deployed.procedures.contains(&"transfer".to_string()));
        admin
            .call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
            .await
            .unwrap();

        // 8 clients, each with 200 transfers in flight at once.
        let mut tasks = Vec::new();
        for client_index in 0..8u64 {
            let client = connect(&server).await;
            tasks.push(tokio::spawn(async move {
                let client = Arc::new(client);
                let calls = (0..200u64).map(|i| {
                    let client = client.clone();
                    async move {
                        let from = (client_index * 7 + i) % ACCOUNTS;
                        let to = (from + 1 + i % (ACCOUNTS - 1)) % ACCOUNTS;
                        client.call::<_, ()>("transfer", &(from, to, 3i64)).await
                    }
                });
                let mut seqs = Vec::new();
                for result in futures_join_all(calls).await {
                    match result {
                        Ok(called) => seqs.push(called.seq),
                        Err(ClientError::Aborted { kind, .. }) => assert_eq!(kind, "user"),
                        Err(other) => panic!("{other}"),
                    }
                }
                seqs
            }));
        }
        let mut all_seqs = Vec::new();
        for task in tasks {
            all_seqs.extend(task.await.unwrap());
        }
        all_seqs.sort_unstable();
        all_seqs.dedup();
        assert!(
            all_seqs.len() > 1_000,
            "distinct sequence numbers per commit"
        );
        let total = admin.call::<_, i64>("total", &()).await.unwrap();
        assert_eq!(total.value, ACCOUNTS as i64 * BALANCE);

        // Typed errors.
        match admin.call::<_, i64>("no_such", &()).await {
            Err(ClientError::UnknownProcedure { .. }) => {}
            other => panic!("{other:?}"),
        }
        match admin.call::<_, i64>("balance", &("not a number",)).await {
            Err(ClientError::SignatureMismatch { detail, .. }) => {
                assert!(detail.contains("`id`"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    });
}

/// Runs futures concurrently on the current task (a tiny `join_all`, to
/// avoid a dependency for one test).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

#[test]
fn sigkill_mid_load_keeps_every_answered_transfer() {
    let server = Server::start(&[]);
    let answered: Vec<(u64, u64, u64)> = runtime().block_on(async {
        let client = connect(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client
            .call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
            .await
            .unwrap();
        let client = Arc::new(client);
        let mut answered = Vec::new();
        let mut in_flight = tokio::task::JoinSet::new();
        for i in 0..2_000u64 {
            let client = client.clone();
            in_flight.spawn(async move {
                let from = i % ACCOUNTS;
                let to = (i + 1) % ACCOUNTS;
                (
                    from,
                    to,
                    client.call::<_, ()>("transfer", &(from, to, 1i64)).await,
                )
            });
        }
        // Collect some answers, then kill the server with the rest in
        // flight.
        while answered.len() < 500 {
            let (from, to, result) = in_flight.join_next().await.unwrap().unwrap();
            if let Ok(called) = result {
                answered.push((called.seq, from, to));
            }
        }
        answered
    });
    let dir = server.kill();

    // Restart on the same data: every answered transfer is in the log at
    // its sequence number, and money is conserved.
    let node = ordo::Node::open(ordo::NodeConfig::new(dir.path())).unwrap();
    assert!(node.status().engine.position >= answered.iter().map(|a| a.0).max().unwrap());
    assert_eq!(
        node.call::<_, i64>("total", &()).unwrap().value,
        ACCOUNTS as i64 * BALANCE
    );
    drop(node);
    let log =
        ordo_sequencer::FileLog::open(ordo_sequencer::FileLogConfig::new(dir.path().join("log")))
            .unwrap();
    let mut transfers_by_seq = std::collections::BTreeMap::new();
    for record in log.read_from(1).unwrap() {
        let batch = ordo_sequencer::entry::Batch::decode(&record.unwrap().1).unwrap();
        for (offset, entry) in batch.entries.iter().enumerate() {
            if let Some(invocation) = entry.invocation()
                && invocation.procedure == "transfer"
            {
                let (from, to, _): (u64, u64, i64) =
                    postcard::from_bytes(&invocation.args).unwrap();
                transfers_by_seq.insert(batch.first_seq + offset as u64, (from, to));
            }
        }
    }
    for (seq, from, to) in &answered {
        assert_eq!(
            transfers_by_seq.get(seq),
            Some(&(*from, *to)),
            "answered transfer at {seq} lost"
        );
    }
}

#[test]
fn build_prints_the_wasm_path_and_rejects_non_crates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Reuse build.rs's artifacts so this is quick.
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .arg("build")
        .arg(root.join("procedures/examples/kv"))
        .env("CARGO_TARGET_DIR", root.join("target/wasm-procedures"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8(output.stdout).unwrap();
    let path = std::path::Path::new(path.trim());
    assert!(path.ends_with("ordo_example_kv.wasm"), "{path:?}");
    assert_eq!(std::fs::read(path).unwrap().get(..4), Some(&b"\0asm"[..]));

    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .arg("build")
        .arg(empty.path())
        .output()
        .unwrap();
    fails_with(&output, "no Cargo.toml");
}

#[test]
fn sigterm_answers_what_is_in_flight_and_exits_cleanly() {
    let server = Server::start(&[]);
    let runtime = runtime();
    let client = runtime.block_on(async {
        let client = connect(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client
            .call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
            .await
            .unwrap();
        client
    });
    // Start a wave of transfers, and stop the server while they are in
    // flight.
    let client = Arc::new(client);
    let mut in_flight = Vec::new();
    for i in 0..1_000u64 {
        let client = client.clone();
        in_flight.push(runtime.spawn(async move {
            client
                .call::<_, ()>("transfer", &(i % ACCOUNTS, (i + 1) % ACCOUNTS, 1i64))
                .await
                .map(|called| called.seq)
        }));
    }
    let (clean, dir) = server.terminate();
    assert!(clean, "ordo serve exits 0 on SIGTERM");
    let answered: Vec<u64> = runtime.block_on(async {
        let mut answered = Vec::new();
        for call in in_flight {
            if let Ok(seq) = call.await.unwrap() {
                answered.push(seq);
            }
        }
        answered
    });
    // Everything answered is durable, and the shutdown lost no money.
    let node = ordo::Node::open(ordo::NodeConfig::new(dir.path())).unwrap();
    if let Some(max) = answered.iter().max() {
        assert!(node.status().engine.position >= *max);
    }
    assert!(
        node.recovery().is_none(),
        "a graceful stop leaves no torn tail"
    );
    assert_eq!(
        node.call::<_, i64>("total", &()).unwrap().value,
        ACCOUNTS as i64 * BALANCE
    );
}

fn module_file(name: &str, wasm: &[u8]) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

fn deploy(server: &Server, name: &str, wasm: &[u8]) {
    let file = module_file(name, wasm);
    stdout(&ordo(
        server,
        &[
            "deploy",
            "--admin-token",
            ADMIN,
            name,
            file.to_str().unwrap(),
        ],
    ));
}

fn json_line(output: &Output) -> serde_json::Value {
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{text:?} is not JSON: {err}"))
}

#[test]
fn call_prints_the_sequence_number_and_json_on_request() {
    let server = Server::start(&[]);
    deploy(&server, "bank", ordo::modules::BANK);

    // `()` prints nothing; `--seq` puts the sequence number first.
    let opened = stdout(&ordo(
        &server,
        &["call", "open", r#"{"id": 1, "balance": 70}"#],
    ));
    assert_eq!(opened, "", "a () result prints nothing, not null");
    let opened = stdout(&ordo(
        &server,
        &["call", "--seq", "open", r#"{"id": 2, "balance": 5}"#],
    ));
    let seq: u64 = opened.trim().parse().expect("only the sequence number");
    let balance = stdout(&ordo(
        &server,
        &["call", "--seq", "balance", r#"{"id": 2}"#],
    ));
    let lines: Vec<&str> = balance.lines().collect();
    assert_eq!(lines.len(), 2, "{balance:?}");
    // Every `ordo call` also logs its session's start and end, so the
    // numbers only grow.
    let mut last = seq;
    let mut later = |seq: u64| {
        assert!(seq > last, "{seq} after {last}");
        last = seq;
        seq
    };
    later(lines[0].parse::<u64>().unwrap());
    assert_eq!(lines[1], "5");

    // `--json`: one object with the seq and the result as JSON.
    let called = ordo(&server, &["call", "--json", "balance", r#"{"id": 1}"#]);
    assert!(called.status.success());
    let object = json_line(&called);
    let seq = later(object["seq"].as_u64().unwrap());
    assert_eq!(object, serde_json::json!({"seq": seq, "result": 70}));
    let unit = ordo(
        &server,
        &["call", "--json", "open", r#"{"id": 3, "balance": 0}"#],
    );
    let object = json_line(&unit);
    let seq = later(object["seq"].as_u64().unwrap());
    assert_eq!(object, serde_json::json!({"seq": seq, "result": null}));

    // An abort: the object on stdout, the usual line on stderr, exit 1.
    let refused = ordo(
        &server,
        &[
            "call",
            "--json",
            "transfer",
            r#"{"from": 2, "to": 1, "amount": 999}"#,
        ],
    );
    assert!(!refused.status.success());
    assert_eq!(refused.status.code(), Some(1));
    let object = json_line(&refused);
    later(object["seq"].as_u64().unwrap());
    assert_eq!(object["aborted"]["kind"], "user", "{object}");
    assert!(
        object["aborted"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient"),
        "{object}"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("insufficient") && stderr.trim_end().lines().count() == 1);
    // Aborts the client names apart keep their kind and seq too.
    let unknown = ordo(&server, &["call", "--json", "no_such", "{}"]);
    let object = json_line(&unknown);
    assert_eq!(object["aborted"]["kind"], "unknown_procedure", "{object}");
    later(object["seq"].as_u64().unwrap());
    // Arguments that do not match the schema are refused before the log:
    // no sequence number to print.
    let bad = ordo(&server, &["call", "--seq", "balance", r#"{"idd": 1}"#]);
    assert!(!bad.status.success());
    assert!(
        bad.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&bad.stdout)
    );
    fails_with(&bad, "idd");
    // Not sequenced: no object, just the error.
    let unreachable = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["call", "--json", "--server", "127.0.0.1:1", "balance", "{}"])
        .output()
        .unwrap();
    assert!(unreachable.stdout.is_empty());
    fails_with(&unreachable, "is `ordo serve` running");
    let both = ordo(
        &server,
        &["call", "--json", "--seq", "balance", r#"{"id": 1}"#],
    );
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}

/// `#[procedure(read_only)]` and `Err` through a `Result` alias, as a user
/// sees them: `ordo call` against a real server on 1 and 4 partitions.
#[test]
fn read_only_writes_and_aliased_errors_abort_through_a_real_server() {
    for partitions in ["1", "4"] {
        let server = Server::start(&["--partitions", partitions]);
        deploy(&server, "hostile", ordo::modules::HOSTILE);
        stdout(&ordo(
            &server,
            &["call", "contract_set", r#"{"id": 1, "value": 10}"#],
        ));
        stdout(&ordo(
            &server,
            &["call", "contract_set", r#"{"id": 2, "value": 20}"#],
        ));
        let before = stdout(&ordo(&server, &["status", "--json"]));
        let state_hash = |status: &str| {
            serde_json::from_str::<serde_json::Value>(status).unwrap()["state_hash"].clone()
        };

        // `Res<()>` returning `Err` after a write.
        let aborted = ordo(
            &server,
            &["call", "--json", "alias_err", r#"{"id": 1, "value": 99}"#],
        );
        assert!(!aborted.status.success(), "{partitions}: it must abort");
        let object = json_line(&aborted);
        assert_eq!(object["aborted"]["kind"], "user", "{object}");
        assert_eq!(
            object["aborted"]["message"], "should abort: alias_err wrote 99 to 1",
            "{object}"
        );
        fails_with(
            &ordo(&server, &["call", "alias_err", r#"{"id": 2, "value": 99}"#]),
            "(user): should abort: alias_err wrote 99 to 2",
        );
        // `Ok` through the alias is the plain value.
        assert_eq!(
            stdout(&ordo(
                &server,
                &["call", "alias_ok", r#"{"id": 3, "value": 30}"#]
            ))
            .trim(),
            "30"
        );

        // A read-only procedure that writes, or deletes.
        let sneaky = ordo(
            &server,
            &["call", "--json", "sneaky_put", r#"{"id": 1, "value": 77}"#],
        );
        assert!(!sneaky.status.success());
        let object = json_line(&sneaky);
        assert_eq!(object["aborted"]["kind"], "read_only", "{object}");
        let message = object["aborted"]["message"].as_str().unwrap();
        assert!(
            message.contains("procedure `sneaky_put`") && message.contains("ordo.put"),
            "{message}"
        );
        fails_with(
            &ordo(&server, &["call", "sneaky_delete", r#"{"id": 2}"#]),
            "(read_only): procedure `sneaky_delete` called ordo.delete",
        );

        // Read back through calls: the aborted writes are not there.
        for (id, value) in [("1", "10"), ("2", "20"), ("3", "30")] {
            let args = format!(r#"{{"id": {id}}}"#);
            assert_eq!(
                stdout(&ordo(&server, &["call", "contract_get", &args])).trim(),
                value,
                "{partitions} partitions, id {id}"
            );
        }
        // Only alias_ok changed the state.
        let after = stdout(&ordo(&server, &["status", "--json"]));
        assert_ne!(state_hash(&before), state_hash(&after));
        stdout(&ordo(
            &server,
            &["call", "contract_set", r#"{"id": 3, "value": 0}"#],
        ));
    }
}

/// `ordo init`, then `ordo build` on what it made, `cargo test` in it,
/// and the module deployed to a real server and called. Builds share
/// target/wasm-procedures with build.rs, so only the new crate compiles
/// for wasm (about a minute from cold, mostly the host-side `cargo test`).
#[test]
fn init_makes_a_crate_that_builds_tests_deploys_and_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/wasm-procedures");
    let work = tempfile::tempdir().unwrap();
    let ordo_in = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(args)
            .current_dir(work.path())
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap()
    };
    let made = ordo_in(&["init", "demo"]);
    assert!(
        stdout(&made).contains("created procedure crate `demo`"),
        "{made:?}"
    );
    let dir = work.path().join("demo");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        ".gitignore",
        "README.md",
        "src/lib.rs",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]") && manifest.contains(r#"panic = "abort""#));
    assert!(
        manifest.contains(&root.join("procedures/sdk").display().to_string()),
        "depends on this tree's SDK: {manifest}"
    );

    // Refusals: an existing non-empty directory, bad names, a missing SDK.
    fails_with(
        &ordo_in(&["init", "demo"]),
        "already exists and is not empty",
    );
    fails_with(&ordo_in(&["init", "Demo"]), "upper-case");
    fails_with(&ordo_in(&["init", "two words"]), "not a valid name");
    fails_with(&ordo_in(&["init", "a.b"]), "cargo does not allow `.`");
    fails_with(&ordo_in(&["init", "fn"]), "keyword");
    fails_with(
        &ordo_in(&["init", "other", "--sdk-path", "/no/such/sdk"]),
        "no ordo SDK at /no/such/sdk",
    );
    assert!(!work.path().join("other").exists());
    // `--path` and `--sdk-path`, into an empty directory.
    let empty = work.path().join("elsewhere");
    std::fs::create_dir(&empty).unwrap();
    stdout(&ordo_in(&[
        "init",
        "second-crate",
        "--path",
        empty.to_str().unwrap(),
        "--sdk-path",
        root.join("procedures/sdk").to_str().unwrap(),
    ]));
    assert!(
        std::fs::read_to_string(empty.join("Cargo.toml"))
            .unwrap()
            .contains(r#"name = "second-crate""#)
    );

    let built = ordo_in(&["build", "demo"]);
    let wasm = stdout(&built);
    let wasm = wasm.trim();
    assert!(wasm.ends_with("demo.wasm"), "{wasm}");

    let tested = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "cargo test in the new crate: {}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(
        String::from_utf8_lossy(&tested.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&tested.stdout)
    );

    let server = Server::start(&[]);
    let deployed = stdout(&ordo(
        &server,
        &["deploy", "--admin-token", ADMIN, "demo", wasm],
    ));
    assert!(
        deployed.contains("counter_add") && deployed.contains("counter_get"),
        "{deployed}"
    );
    let add = r#"{"key": "a", "amount": 40}"#;
    assert_eq!(
        stdout(&ordo(&server, &["call", "counter_add", add])).trim(),
        "40"
    );
    let add = r#"{"key": "a", "amount": 2}"#;
    assert_eq!(
        stdout(&ordo(&server, &["call", "counter_add", add])).trim(),
        "42"
    );
    let overflow = format!(r#"{{"key": "a", "amount": {}}}"#, i64::MAX);
    fails_with(
        &ordo(&server, &["call", "counter_add", &overflow]),
        "overflow",
    );
    assert_eq!(
        stdout(&ordo(&server, &["call", "counter_get", r#"{"key": "a"}"#])).trim(),
        "42"
    );
    let procedures = stdout(&ordo(&server, &["procedures"]));
    assert!(
        procedures.contains("counter_get {key: String}  [module demo] (read-only)"),
        "{procedures}"
    );
}
