//! `ordo backup` and `ordo restore` against a real `ordo serve` under a
//! transfer load: the backup is consistent at one position, the restored
//! node has that position and state hash and conserves the money, and
//! damaged or misused backups are refused with the file named.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{ADMIN, Server, admin_client, fails_with_all, run_ordo, runtime, stdout};

const ACCOUNTS: u64 = 200;
const BALANCE: i64 = 1_000;

/// Snapshots every 64 sequence numbers, so the backup holds a snapshot
/// and the log after it.
const SERVE_FLAGS: &[&str] = &["--snapshot-every", "64", "--snapshot-log-bytes-min", "0"];

fn position_of(output: &str) -> u64 {
    let after = output.split("position ").nth(1).expect("a position");
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn backup(server: &Server, dir: &Path) -> std::process::Output {
    run_ordo(
        Some(server),
        &[
            "backup",
            "--admin-token",
            ADMIN,
            dir.to_str().expect("a UTF-8 path"),
        ],
    )
}

/// The snapshot bytes and log records `ordo backup` printed.
fn snapshot_bytes_and_records(printed: &str) -> (u64, u64) {
    let number_before = |what: &str| -> u64 {
        let before = printed.split(what).next().expect("the summary line");
        before
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|word| !word.is_empty())
            .expect("a number")
            .parse()
            .unwrap()
    };
    (
        number_before(" snapshot bytes"),
        number_before(" log records"),
    )
}

/// A backup with a snapshot also holds the batch that snapshot was taken
/// before: without it, a restore could execute nothing but a batch that
/// opens the snapshot's epoch (`Node::begin_backup`).
fn assert_holds_the_batch_after_its_snapshot(printed: &str) {
    let (snapshot_bytes, records) = snapshot_bytes_and_records(printed);
    assert!(snapshot_bytes == 0 || records > 0, "{printed}");
}

#[test]
fn a_backup_under_load_restores_to_its_position_with_the_money_conserved() {
    let server = Server::start(SERVE_FLAGS);
    let rt = runtime();
    let client = rt.block_on(async {
        let client = admin_client(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client
            .call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
            .await
            .unwrap();
        client
    });
    let client = Arc::new(client);

    // Transfers keep committing while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..32u64)
        .map(|worker| {
            let (client, stop, committed) = (client.clone(), stop.clone(), committed.clone());
            rt.spawn(async move {
                let mut n = worker;
                while !stop.load(Ordering::Relaxed) {
                    let (from, to) = (n % ACCOUNTS, (n * 7 + 1) % ACCOUNTS);
                    client
                        .call::<_, ()>("transfer", &(from, to, 1i64))
                        .await
                        .unwrap();
                    committed.fetch_add(1, Ordering::Relaxed);
                    n += 32;
                }
            })
        })
        .collect();
    while committed.load(Ordering::Relaxed) < 2_000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let backups = tempfile::tempdir().unwrap();
    // Snapshots come every two batches or so under this load: backups
    // begun at random moments meet one being written.
    for attempt in 0..10 {
        let output = backup(&server, &backups.path().join(format!("early-{attempt}")));
        assert_holds_the_batch_after_its_snapshot(&stdout(&output));
    }
    let dir = backups.path().join("backup");
    let output = backup(&server, &dir);
    let printed = stdout(&output);
    assert_holds_the_batch_after_its_snapshot(&printed);
    let during = committed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for worker in load {
        rt.block_on(worker).unwrap();
    }
    let backed_up = position_of(&printed);
    // At least the transfers acknowledged before it began, and not all
    // of those that went on during it (the load ran on).
    assert!(backed_up >= 2_000, "{printed}");
    assert!(
        dir.join("snapshot.bin").exists(),
        "the backup holds a snapshot: {printed}"
    );
    let after = rt.block_on(client.status()).unwrap().position;
    assert!(
        after > backed_up,
        "the load went on past the backup ({after} vs {backed_up}; {during} acknowledged during)"
    );

    let restored = backups.path().join("restored");
    let output = run_ordo(
        None,
        &[
            "restore",
            dir.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
    );
    let printed_restore = stdout(&output);
    assert_eq!(
        position_of(&printed_restore),
        backed_up,
        "{printed_restore}"
    );
    let hash = |text: &str| {
        text.split("state hash ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(hash(&printed_restore), hash(&printed));

    // A node served from the restored directory has the money, and takes
    // new transfers.
    drop(server);
    let restored_dir = tempfile::TempDir::new_in(backups.path()).unwrap();
    std::fs::remove_dir(restored_dir.path()).unwrap();
    std::fs::rename(&restored, restored_dir.path()).unwrap();
    let served = Server::start_in(restored_dir, SERVE_FLAGS);
    rt.block_on(async {
        let client = admin_client(&served).await;
        assert_eq!(client.status().await.unwrap().position, backed_up);
        let total = client.call::<_, i64>("total", &()).await.unwrap().value;
        assert_eq!(total, ACCOUNTS as i64 * BALANCE);
        client
            .call::<_, ()>("transfer", &(1u64, 2u64, 1i64))
            .await
            .unwrap();
    });
}

#[test]
fn damaged_and_misused_backups_are_refused_naming_the_problem() {
    let server = Server::start(SERVE_FLAGS);
    let rt = runtime();
    rt.block_on(async {
        let client = admin_client(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client
            .call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
            .await
            .unwrap();
        for i in 0..100u64 {
            client
                .call::<_, ()>("transfer", &(i, i + 1, 1i64))
                .await
                .unwrap();
        }
    });
    let backups = tempfile::tempdir().unwrap();

    // Without the admin token.
    let dir = backups.path().join("no-token");
    let output = run_ordo(Some(&server), &["backup", dir.to_str().unwrap()]);
    fails_with_all(&output, &["refused the credentials"]);

    // Into a directory that holds something.
    let full = backups.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    fails_with_all(&backup(&server, &full), &["not empty", "full"]);

    let good = backups.path().join("good");
    stdout(&backup(&server, &good));
    let restore = |from: &Path, into: &Path| {
        run_ordo(
            None,
            &[
                "restore",
                from.to_str().unwrap(),
                "--data",
                into.to_str().unwrap(),
            ],
        )
    };

    // Restoring over a data directory that holds something.
    fails_with_all(&restore(&good, &full), &["not empty"]);

    // A standalone node's backup seeds no cluster member: a standalone
    // node is no member to ask, and without members to ask the backup is
    // refused for what it is (no Raft membership in its snapshot).
    let seed = |peers: &str| {
        run_ordo(
            None,
            &[
                "restore",
                good.to_str().unwrap(),
                "--data",
                backups.path().join("member").to_str().unwrap(),
                "--member",
                "1",
                "--peers",
                peers,
            ],
        )
    };
    fails_with_all(
        &seed(&server.addr.to_string()),
        &["is a standalone node, not a cluster member"],
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    let output = seed(&nobody);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{nobody} did not answer")),
        "{stderr}"
    );
    assert!(
        stderr.contains("backup of a standalone node: restore it without --member")
            || stderr.contains("a member is seeded from a backup of a cluster member"),
        "{stderr}"
    );
    assert!(!backups.path().join("member").exists());

    // A flipped byte in the records.
    let flipped = backups.path().join("flipped");
    copy_dir(&good, &flipped);
    let records = flipped.join("records.bin");
    let mut bytes = std::fs::read(&records).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&records, bytes).unwrap();
    fails_with_all(
        &restore(&flipped, &backups.path().join("r1")),
        &["records.bin", "damaged"],
    );

    // A missing snapshot.
    let missing = backups.path().join("missing");
    copy_dir(&good, &missing);
    std::fs::remove_file(missing.join("snapshot.bin")).unwrap();
    fails_with_all(
        &restore(&missing, &backups.path().join("r2")),
        &["snapshot.bin", "missing"],
    );

    // An incomplete backup (no manifest).
    let incomplete = backups.path().join("incomplete");
    copy_dir(&good, &incomplete);
    std::fs::remove_file(incomplete.join("BACKUP.json")).unwrap();
    fails_with_all(
        &restore(&incomplete, &backups.path().join("r3")),
        &["BACKUP.json", "not a complete backup"],
    );

    // The intact one restores.
    stdout(&restore(&good, &backups.path().join("r4")));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
