//! Crashes and damaged logs: SIGKILL during load, torn tails, corruption in
//! the middle of the log, and exactly-once across restarts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ordo::{AbortKind, ArgsEncoding, Node, NodeConfig, NodeError, Outcome};
use ordo_sequencer::entry::Batch;
use ordo_sequencer::{FileLog, FileLogConfig};

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    paths
}

fn total(node: &Node) -> i64 {
    node.call::<_, i64>("total", &()).unwrap().value
}

/// Opens a node with 10 accounts of 100 and runs `transfers` calls one at
/// a time, so each is its own batch (its own log record).
fn bank_node_with_history(dir: &Path, transfers: u64) -> Node {
    bank_node_with_history_in(NodeConfig::new(dir), transfers)
}

fn bank_node_with_history_in(config: NodeConfig, transfers: u64) -> Node {
    let node = Node::open(config).unwrap();
    node.deploy("bank", ordo::modules::BANK).unwrap();
    node.call::<_, ()>("open_many", &(0u64, 10u64, 100i64))
        .unwrap();
    for i in 0..transfers {
        node.call::<_, ()>("transfer", &(i % 10, (i + 3) % 10, 1i64))
            .unwrap();
    }
    node
}

#[test]
fn sigkill_during_transfers_loses_no_acknowledged_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = 1_000u64;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["quickstart", "--data"])
        .arg(dir.path())
        .args([
            "--accounts",
            &accounts.to_string(),
            "--transfers",
            "100000000",
            "--inflight",
            "512",
            // Four executor threads, restarted below with two: neither the
            // crash nor the repartitioning may lose or change anything.
            "--partitions",
            "4",
            "--print-acks",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut client = None;
    let mut acks: BTreeMap<u64, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in stdout.lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["client", id] => client = Some(u128::from_str_radix(id, 16).unwrap()),
            ["ack", request, seq] => {
                acks.insert(request.parse().unwrap(), seq.parse().unwrap());
            }
            _ => panic!("unexpected output line: {line}"),
        }
        if acks.len() >= 5_000 || Instant::now() > deadline {
            break;
        }
    }
    // SIGKILL, mid-load: thousands more requests are in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    let client = client.expect("the load printed its client id");
    assert!(
        acks.len() >= 5_000,
        "only {} acks before the deadline",
        acks.len()
    );

    // Every acknowledged transfer is in the durable log, at its sequence
    // number, under its client and request id.
    let mut logged = BTreeMap::new();
    {
        let log = FileLog::open(FileLogConfig::new(dir.path().join("log"))).unwrap();
        for record in log.read_from(1).unwrap() {
            let batch = Batch::decode(&record.unwrap().1).unwrap();
            for (offset, entry) in batch.entries.iter().enumerate() {
                if let Some(invocation) = entry.invocation()
                    && invocation.client_id == client
                {
                    logged.insert(invocation.request_id, batch.first_seq + offset as u64);
                }
            }
        }
    }
    for (request, seq) in &acks {
        assert_eq!(
            logged.get(request),
            Some(seq),
            "acknowledged request {request} (seq {seq}) missing from the log"
        );
    }

    // The restarted node replays to a state where money is conserved, and
    // retrying an acknowledged transfer does not run it again.
    let node = Node::open(NodeConfig {
        partitions: 2,
        ..NodeConfig::new(dir.path())
    })
    .unwrap();
    let max_acked_seq = *acks.values().max().unwrap();
    assert!(node.status().engine.position >= max_acked_seq);
    assert_eq!(total(&node), accounts as i64 * 1_000);
    let hash_before = node.status().engine.state_hash;
    let session = node.resume_session(client, u64::MAX / 2);
    let (&request, &seq) = acks.iter().next_back().unwrap();
    let retry = session
        .call_raw_with_id(
            request,
            "transfer",
            ArgsEncoding::Postcard,
            postcard::to_stdvec(&(0u64, 1u64, 1i64)).unwrap(),
        )
        .unwrap();
    match &retry.outcome {
        // Still remembered: the original answer comes back.
        _ if retry.duplicate => assert_eq!(retry.seq, seq),
        // Or forgotten because the client acknowledged it: refused.
        Outcome::Aborted(abort) => assert_eq!(abort.kind, AbortKind::RequestForgotten),
        other => panic!("a retry of an acknowledged request ran again: {other:?}"),
    }
    assert_eq!(node.status().engine.state_hash, hash_before);
}

#[test]
fn reopening_with_other_engine_limits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(bank_node_with_history(dir.path(), 1));
    let mut config = NodeConfig::new(dir.path());
    config.engine.tx_fuel_max /= 2;
    let error = match Node::open(config) {
        Ok(_) => panic!("other limits must be refused"),
        Err(error) => error,
    };
    assert!(
        matches!(error, NodeError::EngineConfigMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("engine-config.json"), "{error}");
    // The recorded limits still open.
    drop(Node::open(NodeConfig::new(dir.path())).unwrap());
}

#[test]
fn exactly_once_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = postcard::to_stdvec(&(1u64, 2u64, 10i64)).unwrap();
    let (client, first) = {
        let node = bank_node_with_history(dir.path(), 0);
        let session = node.session();
        let first = session
            .call_raw_with_id(7, "transfer", ArgsEncoding::Postcard, args.clone())
            .unwrap();
        assert!(first.outcome.is_committed() && !first.duplicate);
        // A retry before the restart.
        let again = session
            .call_raw_with_id(7, "transfer", ArgsEncoding::Postcard, args.clone())
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.seq, first.seq);
        (session.client_id(), first)
    };
    let node = Node::open(NodeConfig::new(dir.path())).unwrap();
    let hash = node.status().engine.state_hash;
    let session = node.resume_session(client, 8);
    let retried = session
        .call_raw_with_id(7, "transfer", ArgsEncoding::Postcard, args)
        .unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.seq, first.seq);
    assert_eq!(retried.outcome, first.outcome);
    assert_eq!(node.status().engine.state_hash, hash);
    assert_eq!(node.call::<_, i64>("balance", &(2u64,)).unwrap().value, 110);
}

#[test]
fn torn_tail_is_truncated_and_the_node_carries_on() {
    for cut in [1u64, 7, 40, 63] {
        let dir = tempfile::tempdir().unwrap();
        let status = {
            let node = bank_node_with_history(dir.path(), 20);
            let status = node.status();
            node.shutdown();
            status
        };
        let last = segments(dir.path()).pop().unwrap();
        let length = std::fs::metadata(&last).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(length - cut).unwrap();
        drop(file);

        let node = Node::open(NodeConfig::new(dir.path())).unwrap();
        let recovery = node.recovery().expect("the torn record is reported");
        assert!(recovery.truncated_bytes > 0, "cut {cut}: {recovery}");
        // The last batch (one transfer) is gone; everything before it stays.
        assert_eq!(node.status().engine.position, status.engine.position - 1);
        assert_eq!(total(&node), 1_000);
        node.call::<_, ()>("transfer", &(4u64, 5u64, 1i64)).unwrap();
        drop(node);
        let reopened = Node::open(NodeConfig::new(dir.path())).unwrap();
        assert!(reopened.recovery().is_none(), "cut {cut}: repaired once");
        assert_eq!(
            reopened.status().engine.position,
            status.engine.position + 1
        );
    }
}

#[test]
fn garbage_after_the_last_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let status = {
        let node = bank_node_with_history(dir.path(), 5);
        let status = node.status();
        node.shutdown();
        status
    };
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0xAB; 37]);
    std::fs::write(&last, bytes).unwrap();
    let node = Node::open(NodeConfig::new(dir.path())).unwrap();
    assert!(node.recovery().is_some());
    assert_eq!(node.status().engine, status.engine);
}

#[test]
fn a_flipped_byte_mid_log_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    drop(bank_node_with_history(dir.path(), 30));
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();

    let error = match Node::open(NodeConfig::new(dir.path())) {
        Ok(_) => panic!("a corrupt log must not open"),
        Err(error) => error,
    };
    assert!(matches!(error, NodeError::Log(_)), "{error:?}");
    let message = error.to_string();
    let file_name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(message.contains(&file_name), "{message}");
    assert!(message.contains("offset"), "{message}");
}

#[test]
fn a_missing_newest_segment_is_refused_until_the_operator_accepts_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let small_segments = || NodeConfig {
        segment_bytes_max: 4 << 10,
        ..NodeConfig::new(dir.path())
    };
    let node = Node::open(small_segments()).unwrap();
    node.deploy("bank", ordo::modules::BANK).unwrap();
    node.call::<_, ()>("open_many", &(0u64, 10u64, 100i64))
        .unwrap();
    for i in 0..200u64 {
        node.call::<_, ()>("transfer", &(i % 10, (i + 3) % 10, 1i64))
            .unwrap();
    }
    let position = node.status().engine.position;
    drop(node);
    let files = segments(dir.path());
    assert!(files.len() >= 3, "{} segments", files.len());
    let newest = files.last().unwrap();
    std::fs::remove_file(newest).unwrap();

    // The node does not start with less than it acknowledged, and says
    // which file is missing and what to do.
    let refused = Node::open(small_segments()).err().expect("refused");
    let message = refused.to_string();
    let name = newest.file_name().unwrap().to_str().unwrap();
    assert!(message.contains(name), "{message}");
    assert!(message.contains("ordo repair --accept-loss"), "{message}");

    let repair = |accept: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
        command.args(["repair", "--data"]).arg(dir.path());
        if accept {
            command.arg("--accept-loss");
        }
        command.output().unwrap()
    };
    // Without --accept-loss nothing changes.
    let dry = repair(false);
    assert!(!dry.status.success());
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(
        stderr.contains(name) && stderr.contains("--accept-loss"),
        "{stderr}"
    );
    assert!(Node::open(small_segments()).is_err());
    // With it, the loss is stated and the node opens on what is left.
    let accepted = repair(true);
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(
        accepted.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        stdout.contains("accepted the loss") && stdout.contains(name),
        "{stdout}"
    );
    let node = Node::open(small_segments()).unwrap();
    let left = node.status().engine.position;
    assert!(left < position, "{left} < {position}");
    assert_eq!(total(&node), 1_000);
    node.call::<_, ()>("transfer", &(1u64, 2u64, 1i64)).unwrap();
    // Once repaired there is nothing more to repair.
    drop(node);
    let again = repair(false);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to repair"));
}

#[test]
fn deleting_any_segment_in_turn_makes_ordo_serve_refuse_naming_it() {
    let original = tempfile::tempdir().unwrap();
    drop(bank_node_with_history_in(
        NodeConfig {
            segment_bytes_max: 4 << 10,
            ..NodeConfig::new(original.path())
        },
        200,
    ));
    let files = segments(original.path());
    assert!(files.len() >= 3, "{} segments", files.len());
    for deleted in &files {
        let copy = tempfile::tempdir().unwrap();
        for entry in walk(original.path()) {
            let to = copy
                .path()
                .join(entry.strip_prefix(original.path()).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, to).unwrap();
        }
        let name = deleted.file_name().unwrap().to_str().unwrap();
        std::fs::remove_file(copy.path().join("log").join(name)).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(copy.path())
            .env_remove("ORDO_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(!output.status.success(), "served without {name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.contains("warning"))
            .collect();
        assert_eq!(errors.len(), 1, "one line: {stderr}");
        assert!(errors[0].contains(name), "{name} not named: {stderr}");
    }
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.file_name().is_some_and(|name| name != "LOCK") {
            files.push(path);
        }
    }
    files
}
