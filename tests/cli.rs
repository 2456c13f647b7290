//! The `ordo` CLI and the async Rust SDK against a real `ordo serve`
//! process: the happy path, every CLI error case (one line, non-zero
//! exit), many pipelined SDK clients against the bank invariant, and a
//! SIGKILL mid-load after which every answered transfer is still there.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use common::{ADMIN, Server, runtime};
use ordo_client::{Client, ClientConfig, ClientError};

fn bank_wasm() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("bank.wasm");
    std::fs::write(&path, ordo::modules::BANK).unwrap();
    path
}

fn ordo(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("ORDO_SERVER", server.addr.to_string())
        .env_remove("ORDO_CLIENT_TOKEN")
        .env_remove("ORDO_ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Asserts a CLI failure: non-zero exit, one line on stderr containing
/// `expected`.
#[track_caller]
fn fails_with(output: &Output, expected: &str) {
    assert!(!output.status.success(), "should have failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
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
