//! `ordo modules` against a real `ordo serve`: each deployed module's
//! name, SHA-256, deploy position, size and procedures; a redeploy moves
//! the position; the positions survive a kill -9 and a restart from a
//! snapshot (format version 3 records them).

use crate::common;

use common::{Server, run_ordo, runtime, stdout};

fn modules(server: &Server) -> Vec<serde_json::Value> {
    stdout(&run_ordo(Some(server), &["modules", "--json"]))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn modules_lists_deploy_positions_that_survive_a_restart_from_a_snapshot() {
    // A snapshot at every instance epoch of 8 sequence numbers.
    let flags = ["--snapshot-every", "8", "--snapshot-log-bytes-min", "0"];
    let server = Server::start(&flags);
    let (bank_v1, hostile, bank_v2) = runtime().block_on(async {
        let client = common::admin_client(&server).await;
        let bank_v1 = client.deploy("bank", ordo::modules::BANK).await.unwrap();
        let hostile = client
            .deploy("hostile", ordo::modules::HOSTILE)
            .await
            .unwrap();
        for id in 0..20u64 {
            client.call::<_, ()>("open", &(id, 10i64)).await.unwrap();
        }
        // The same name again: a new version, at a new position.
        let bank_v2 = client.deploy("bank", ordo::modules::BANK).await.unwrap();
        (bank_v1, hostile, bank_v2)
    });
    assert!(bank_v2.seq > bank_v1.seq);

    let listed = modules(&server);
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert_eq!(listed[0]["name"], "bank");
    assert_eq!(listed[0]["deployed_at"], bank_v2.seq);
    assert_eq!(listed[0]["sha256"], bank_v2.sha256);
    assert_eq!(listed[0]["wasm_bytes"], ordo::modules::BANK.len() as u64);
    assert!(
        listed[0]["procedures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "transfer")
    );
    assert_eq!(listed[1]["name"], "hostile");
    assert_eq!(listed[1]["deployed_at"], hostile.seq);
    assert_eq!(listed[1]["wasm_bytes"], ordo::modules::HOSTILE.len() as u64);
    let text = stdout(&run_ordo(Some(&server), &["modules"]));
    assert!(
        text.starts_with(&format!(
            "bank sha256 {} deployed at seq {}, {} bytes: ",
            bank_v2.sha256,
            bank_v2.seq,
            ordo::modules::BANK.len()
        )),
        "{text}"
    );

    // Past a snapshot point, then kill -9: the restart loads a snapshot
    // taken after both deploys, and still knows where they were.
    runtime().block_on(async {
        let client = common::admin_client(&server).await;
        for id in 100..120u64 {
            client.call::<_, ()>("open", &(id, 10i64)).await.unwrap();
        }
    });
    common::wait_for_snapshot_after(server.dir.path(), bank_v2.seq);
    let dir = server.kill();
    let server = Server::start_in(dir, &flags);
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&run_ordo(Some(&server), &["status", "--json"]))).unwrap();
    assert!(
        status["snapshot_position"].as_u64().unwrap() >= bank_v2.seq,
        "{status}"
    );
    assert_eq!(modules(&server), listed);
}

#[test]
fn undeploy_removes_the_procedures_through_the_log_and_keeps_the_rows() {
    let server = Server::start(&[]);
    runtime().block_on(async {
        let client = common::admin_client(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client.deploy("kv", ordo::modules::KV).await.unwrap();
        client.call::<_, ()>("open", &(1u64, 70i64)).await.unwrap();
    });
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--admin-token", common::ADMIN]);
        run_ordo(Some(&server), &all)
    };

    // Without the admin token nothing is removed.
    common::fails_with_all(
        &run_ordo(Some(&server), &["undeploy", "bank"]),
        &["admin token"],
    );
    let undeployed = stdout(&admin(&["undeploy", "bank"]));
    assert!(
        undeployed.starts_with("undeployed module `bank` at seq "),
        "{undeployed}"
    );
    common::fails_with_all(
        &run_ordo(Some(&server), &["call", "balance", r#"{"id": 1}"#]),
        &["balance"],
    );
    let names: Vec<_> = modules(&server)
        .iter()
        .map(|module| module["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["kv"]);
    // Twice: there is nothing left to remove.
    common::fails_with_all(
        &admin(&["undeploy", "bank"]),
        &["deploy_rejected", "no module named `bank` is deployed"],
    );

    // The rows stayed (shown as bytes: no deployed module declares the
    // table now), and a new deploy of the module sees them.
    let raw = stdout(&admin(&["scan", "acct"]));
    assert_eq!(raw.lines().count(), 1, "{raw}");
    assert!(raw.starts_with("acct\\x00"), "{raw}");
    runtime().block_on(async {
        let client = common::admin_client(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
    });
    assert_eq!(
        stdout(&run_ordo(
            Some(&server),
            &["call", "balance", r#"{"id": 1}"#]
        )),
        "70\n"
    );

    // A restart replays the undeploy and the deploy to the same modules.
    let before = modules(&server);
    let dir = server.kill();
    let server = Server::start_in(dir, &[]);
    assert_eq!(modules(&server), before);
}
