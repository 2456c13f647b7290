//! Single-node snapshots: a restart loads the newest snapshot and replays
//! only the log after it, the log records both kept snapshots cover are
//! removed, a damaged newest snapshot falls back to the previous one, and a
//! data directory whose snapshots cannot cover its log is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ordo::{Node, NodeConfig};

/// Snapshots at every instance epoch of 64 sequence numbers, in segments
/// of 4 KiB, so that a few hundred calls make several of both.
fn config(dir: &Path) -> NodeConfig {
    let mut config = NodeConfig::new(dir);
    config.engine.instance_epoch = 64;
    config.snapshot_log_bytes_min = 0;
    config.segment_bytes_max = 4 << 10;
    config
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|ext| ext == extension))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

fn snapshots(data: &Path) -> Vec<PathBuf> {
    files(&data.join("snapshots"), "bin")
}

fn segments(data: &Path) -> Vec<PathBuf> {
    files(&data.join("log"), "log")
}

fn total(node: &Node) -> i64 {
    node.call::<_, i64>("total", &()).unwrap().value
}

/// 10 accounts of 100 and `transfers` calls one at a time (a batch each).
fn bank_history(node: &Node, transfers: u64) {
    node.deploy("bank", ordo::modules::BANK).unwrap();
    node.call::<_, ()>("open_many", &(0u64, 10u64, 100i64))
        .unwrap();
    for i in 0..transfers {
        node.call::<_, ()>("transfer", &(i % 10, (i + 3) % 10, 1i64))
            .unwrap();
    }
}

/// Waits until the snapshot writer has written at least `count` files.
fn wait_for_snapshots(data: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while snapshots(data).len() < count {
        assert!(Instant::now() < deadline, "no snapshots appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_restart_loads_the_newest_snapshot_and_the_covered_log_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let node = Node::open(config(dir.path())).unwrap();
        bank_history(&node, 600);
        wait_for_snapshots(dir.path(), 2);
        node.status().engine
    };
    let kept = snapshots(dir.path());
    assert_eq!(kept.len(), 2, "two snapshots are kept: {kept:?}");
    let first_segment = segments(dir.path())[0].clone();
    assert_ne!(
        first_segment.file_name().unwrap().to_str().unwrap(),
        "00000000000000000001.log",
        "the segments both snapshots cover are removed"
    );

    let node = Node::open(config(dir.path())).unwrap();
    let after = node.status().engine;
    assert_eq!(after.position, before.position);
    assert_eq!(after.state_hash, before.state_hash);
    assert_eq!(after.chain_hash, before.chain_hash);
    assert_eq!(total(&node), 1_000);
    // The history goes on from the snapshot as from a full replay.
    node.call::<_, ()>("transfer", &(1u64, 2u64, 5i64)).unwrap();
    assert_eq!(node.call::<_, i64>("balance", &(2u64,)).unwrap().value, 105);
}

#[test]
fn a_restart_from_a_snapshot_equals_a_full_replay_on_other_partitions() {
    let dir = tempfile::tempdir().unwrap();
    // One large segment: nothing is removed, so the whole log is still
    // there to replay without the snapshots.
    let mut whole_log = config(dir.path());
    whole_log.segment_bytes_max = 64 << 20;
    {
        let node = Node::open(whole_log.clone()).unwrap();
        bank_history(&node, 300);
        wait_for_snapshots(dir.path(), 2);
    }
    let mut four = whole_log.clone();
    four.partitions = 4;
    let from_snapshot = Node::open(four).unwrap().status().engine;
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let from_log = Node::open(whole_log).unwrap().status().engine;
    assert!(from_snapshot.position > 256);
    assert_eq!(from_snapshot.position, from_log.position);
    assert_eq!(from_snapshot.state_hash, from_log.state_hash);
    assert_eq!(from_snapshot.chain_hash, from_log.chain_hash);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let node = Node::open(config(dir.path())).unwrap();
        bank_history(&node, 600);
        wait_for_snapshots(dir.path(), 2);
        node.status().engine
    };
    let newest = snapshots(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();

    let node = Node::open(config(dir.path())).unwrap();
    let after = node.status().engine;
    assert_eq!(after.position, before.position);
    assert_eq!(after.state_hash, before.state_hash);
    assert_eq!(total(&node), 1_000);
}

#[test]
fn a_log_whose_start_no_snapshot_covers_is_refused_naming_the_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(config(dir.path())).unwrap();
        bank_history(&node, 600);
        wait_for_snapshots(dir.path(), 2);
    }
    let first = segments(dir.path())[0].clone();
    for snapshot in snapshots(dir.path()) {
        std::fs::remove_file(snapshot).unwrap();
    }
    let refused = Node::open(config(dir.path())).err().expect("refused");
    let message = refused.to_string();
    let first_index: u64 = first
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        message.contains(&format!("starts at record {first_index}"))
            && message.contains("no intact snapshot"),
        "{message}"
    );
}

#[test]
fn the_default_schedule_skips_epochs_until_the_log_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    let mut sparse = config(dir.path());
    // 64 KiB of log at least, and at least the last snapshot's size.
    sparse.snapshot_log_bytes_min = 64 << 10;
    let node = Node::open(sparse).unwrap();
    bank_history(&node, 300);
    // The deploy's record (the module, about 150 KB) passes the 64 KiB at
    // once, so the first epoch snapshots; the next one waits for as much
    // log again as that snapshot's size, and 300 one-call batches are far
    // less, though four more epochs started.
    wait_for_snapshots(dir.path(), 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(snapshots(dir.path()).len(), 1);
}
