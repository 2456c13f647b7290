//! `ordo replay` on the data directory a real `ordo serve` left behind:
//! the trace of a committed and of an aborted transfer, ranges, the same
//! trace on 1 and 4 partitions and from a snapshot or from the log's
//! start, the check against the original run, a planted divergence, and
//! positions outside the history.

use crate::common;

use std::path::Path;

use common::entries::postcard;
use common::{ADMIN, Server, fails_with_all, run_ordo, runtime, stdout};
use ordo::replay::render_bytes;
use ordo_client::{Client, ClientError, ReadConsistency};

/// Snapshots every 64 sequence numbers (each one taken), so histories
/// hold snapshots before and after the transactions replayed.
const SERVE_FLAGS: &[&str] = &["--snapshot-every", "64", "--snapshot-log-bytes-min", "0"];

struct History {
    dir: tempfile::TempDir,
    /// A committed transfer of 5 from account 1 (1,000) to account 2 (1,000).
    committed: u64,
    /// A transfer of 5,000 from account 3, which has 1,000.
    aborted: u64,
    /// The last sequence number in the history.
    last: u64,
}

/// A bank of 10 accounts of 1,000, the two transfers, then `more`
/// transfers so that later snapshots exist; the node is stopped after.
fn history(env: &[(&str, &str)], more: u64) -> History {
    let server = Server::start_with_env(tempfile::tempdir().unwrap(), SERVE_FLAGS, env);
    let (committed, aborted, last) = runtime().block_on(async {
        let client = bank_of_ten(&server).await;
        let committed = client
            .call::<_, ()>("transfer", &(1u64, 2u64, 5i64))
            .await
            .unwrap()
            .seq;
        let aborted = match client
            .call::<_, ()>("transfer", &(3u64, 4u64, 5_000i64))
            .await
        {
            Err(ClientError::Aborted { seq, .. }) => seq,
            other => panic!("the overdraft must abort, not {other:?}"),
        };
        let mut last = aborted;
        for n in 0..more {
            let (from, to) = (5 + n % 5, 5 + (n + 1) % 5);
            last = match client.call::<_, ()>("transfer", &(from, to, 1i64)).await {
                Ok(called) => called.seq,
                // Only where a test hook plants a divergence: the
                // garbled transaction fails.
                Err(_) if !env.is_empty() => last,
                Err(err) => panic!("transfer {n}: {err}"),
            };
        }
        (committed, aborted, last)
    });
    let (_, dir) = server.terminate();
    History {
        dir,
        committed,
        aborted,
        last,
    }
}

/// An admin client of `server` with the bank deployed and accounts 0 to
/// 9 opened with 1,000 each.
async fn bank_of_ten(server: &Server) -> Client {
    let client = common::admin_client(server).await;
    client.deploy("bank", ordo::modules::BANK).await.unwrap();
    client
        .call::<_, ()>("open_many", &(0u64, 10u64, 1_000i64))
        .await
        .unwrap();
    client
}

fn replay(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["replay", "--data", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run_ordo(None, &all)
}

/// The JSON lines of a successful `--json` replay: the transactions, then
/// the verification.
fn replay_json(dir: &Path, args: &[&str]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let output = replay(dir, &all);
    let text = stdout(&output);
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let verification = lines.pop().expect("a verification line")["verification"].clone();
    (lines, verification)
}

/// `ordo call --admin-token .. --at AT ARGS..` against `server`.
fn call_at(server: &Server, at: u64, args: &[&str]) -> std::process::Output {
    let at = at.to_string();
    let mut all = vec!["call", "--admin-token", ADMIN, "--at", &at];
    all.extend_from_slice(args);
    run_ordo(Some(server), &all)
}

/// The number that follows `prefix` in `text`.
#[track_caller]
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in {text}"))
}

fn balance(value: i64) -> String {
    render_bytes(&postcard(&value))
}

#[test]
fn a_replayed_transfer_shows_its_reads_and_writes_and_matches_the_original_run() {
    let history = history(&[], 200);
    let seq = history.committed.to_string();
    let (txs, verification) = replay_json(history.dir.path(), &["--seq", &seq, "--trace"]);
    assert_eq!(txs.len(), 1);
    let tx = &txs[0];
    assert_eq!(tx["seq"], history.committed);
    assert_eq!(tx["kind"], "call");
    assert_eq!(tx["name"], "transfer");
    assert_eq!(tx["module"], "bank");
    assert_eq!(tx["outcome"], "committed", "{tx}");
    // The postcard arguments, decoded with the procedure's schema.
    assert_eq!(tx["args_encoding"], "postcard");
    assert_eq!(
        tx["args"],
        serde_json::json!({"from": 1, "to": 2, "amount": 5}),
        "{tx}"
    );
    let calls = tx["calls"].as_array().unwrap();
    let kinds: Vec<&str> = calls.iter().map(|c| c["call"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["get", "get", "put", "put"], "{tx}");
    // The writes go to the keys read: from 1,000 to 995, to 1,000 to
    // 1,005; keys and values decoded with the `acct` table's schema, the
    // bytes beside them.
    let rows: Vec<(&str, u64, i64)> = calls
        .iter()
        .map(|c| {
            assert_eq!(c["key_decoded"], true, "{c}");
            assert_eq!(c["value_decoded"], true, "{c}");
            let (key, value) = (c["key"].as_u64().unwrap(), c["value"].as_i64().unwrap());
            (c["table"].as_str().unwrap(), key, value)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("acct", 1, 1_000),
            ("acct", 2, 1_000),
            ("acct", 1, 995),
            ("acct", 2, 1_005)
        ]
    );
    assert_eq!(calls[0]["raw_value"], balance(1_000));
    assert_eq!(calls[2]["raw_value"], balance(995));
    assert_eq!(calls[0]["raw_key"], calls[2]["raw_key"]);
    assert_ne!(calls[0]["raw_key"], calls[1]["raw_key"]);
    assert!(tx["fuel_used"].as_u64().unwrap() > 0, "{tx}");
    assert_eq!(verification["matches"], true, "{verification}");
    assert!(verification["checked_at"].as_u64().unwrap() >= history.committed);
    // The chain journal confirms the transaction's own batch.
    assert_eq!(tx["matches"], true, "{tx}");

    // The same in text: tables, keys and values decoded.
    let text = stdout(&replay(history.dir.path(), &["--seq", &seq, "--trace"]));
    for line in [
        "get acct[1] -> 1000",
        "get acct[2] -> 1000",
        "put acct[1] = 995",
        "put acct[2] = 1005",
        "\"from\":1",
        "\"amount\":5",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }

    // The aborted one: its two reads, no write, the procedure's reason.
    let seq = history.aborted.to_string();
    let (txs, verification) = replay_json(history.dir.path(), &["--seq", &seq, "--trace"]);
    let tx = &txs[0];
    assert_eq!(tx["outcome"], "aborted", "{tx}");
    assert_eq!(tx["result"]["kind"], "user");
    assert!(
        tx["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient funds: account 3 has 1000, needs 5000"),
        "{tx}"
    );
    let kinds: Vec<&str> = tx["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["get", "get"], "{tx}");
    assert_eq!(verification["matches"], true);

    // The same trace on 4 partitions as on 1.
    let args = ["--seq", &seq, "--trace", "--json"];
    let one = stdout(&replay(history.dir.path(), &args));
    let four = stdout(&replay(
        history.dir.path(),
        &[&args[..], &["--partitions", "4"]].concat(),
    ));
    assert_eq!(one, four);

    // A range: one summary line per transaction, in order.
    let range = format!("{}..{}", history.committed, history.committed + 9);
    let text = stdout(&replay(history.dir.path(), &["--seq", &range]));
    let seqs: Vec<u64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("seq "))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (history.committed..history.committed + 10).collect::<Vec<_>>()
    );
    assert!(
        text.contains("matches: the replayed history equals"),
        "{text}"
    );
    assert!(text.contains("(as in the original run)"), "{text}");

    // Past the end of the history, and nonsense.
    let beyond = (history.last + 1).to_string();
    fails_with_all(
        &replay(history.dir.path(), &["--seq", &beyond]),
        &[&format!("the history ends at sequence {}", history.last)],
    );
    fails_with_all(&replay(history.dir.path(), &["--seq", "9..3"]), &["A <= B"]);
    fails_with_all(
        &replay(history.dir.path(), &["--seq", "ten"]),
        &["--seq takes a sequence number N or a range A..B"],
    );
}

#[test]
fn replay_from_a_snapshot_gives_the_trace_replay_from_the_start_gives() {
    // Few enough transactions that the log still starts at record 1 while
    // snapshots exist: the replay of an early transaction starts at the
    // log's beginning, the replay of a late one at a snapshot.
    let history = history(&[], 150);
    let late = history.last - 3;
    let late_arg = late.to_string();
    let (from_snapshot, verification) =
        replay_json(history.dir.path(), &["--seq", &late_arg, "--trace"]);
    assert_eq!(from_snapshot[0]["outcome"], "committed");
    // The last snapshot lies before `late`; the chain journal confirms it.
    assert_eq!(verification["matches"], true, "{verification}");
    assert_eq!(verification["checked_at"], late);

    // Without the journal there is nothing after it to check against,
    // and the replay says so rather than claiming a match.
    let journal = history.dir.path().join("chain");
    let journal_moved = history.dir.path().join("chain-moved");
    std::fs::rename(&journal, &journal_moved).unwrap();
    let (without_journal, verification) =
        replay_json(history.dir.path(), &["--seq", &late_arg, "--trace"]);
    assert_eq!(
        verification["matches"],
        serde_json::Value::Null,
        "{verification}"
    );
    assert_eq!(without_journal[0]["matches"], serde_json::Value::Null);
    std::fs::rename(&journal_moved, &journal).unwrap();

    // Without the snapshots, the same transaction replays from the log's
    // start and gives the same trace.
    let snapshots = history.dir.path().join("snapshots");
    let moved = history.dir.path().join("snapshots-moved");
    std::fs::rename(&snapshots, &moved).unwrap();
    let (from_start, _) = replay_json(history.dir.path(), &["--seq", &late_arg, "--trace"]);
    assert_eq!(from_snapshot, from_start);
}

#[test]
fn a_planted_divergence_is_reported_between_snapshots() {
    // The node runs the transfer after the committed one with garbage
    // arguments (a test hook): its outcome is not what the log says.
    let planted = history(&[("ORDO_TEST_DIVERGE_AT_SEQ", "14")], 150);
    assert!(planted.committed < 14 && planted.last > 64);
    let output = replay(planted.dir.path(), &["--seq", "14"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{text}");
    // Calls one at a time make one batch each: the chain journal names
    // the transaction.
    assert!(text.contains("DIVERGED at sequence 14"), "{text}");

    // Without the journal, the snapshot after it still catches it, with
    // the positions it lies between.
    std::fs::remove_dir_all(planted.dir.path().join("chain")).unwrap();
    let output = replay(planted.dir.path(), &["--seq", "14"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("DIVERGED"), "{text}");
    assert!(text.contains("at or before 64"), "{text}");
}

#[test]
fn a_running_nodes_directory_and_a_stranger_are_refused() {
    let server = Server::start(SERVE_FLAGS);
    fails_with_all(
        &replay(server.dir.path(), &["--seq", "1"]),
        &["a node is serving this data directory", "ordo backup"],
    );
    let stranger = tempfile::tempdir().unwrap();
    fails_with_all(
        &replay(stranger.path(), &["--seq", "1"]),
        &["is not an ordo data directory"],
    );
}

#[test]
fn a_read_at_a_past_position_sees_the_balance_of_that_time() {
    let history = history(&[], 150);
    let dir = history.dir.path();
    let read_at = |at: u64, id: u64| {
        let at = at.to_string();
        let args = format!("{{\"id\":{id}}}");
        let output = replay(dir, &["--at", &at, "--read", "balance", &args, "--json"]);
        let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
        assert_eq!(line["position"], at.parse::<u64>().unwrap());
        line["result"].as_i64().unwrap()
    };
    // Account 1 had 1,000 before the committed transfer, 995 after it,
    // and still 995 long after (the later transfers move money between
    // accounts 5 to 9 only), read from the log's start and from the
    // snapshots taken after it.
    assert_eq!(read_at(history.committed - 1, 1), 1_000);
    assert_eq!(read_at(history.committed, 1), 995);
    assert_eq!(read_at(history.committed, 2), 1_005);
    assert_eq!(read_at(history.last, 1), 995);
    // Account 5 moves with every later transfer; a read inside the range
    // sees the state after exactly that many.
    let total_of_5_to_9: i64 = (5..10).map(|id| read_at(history.last - 40, id)).sum();
    assert_eq!(
        total_of_5_to_9, 5_000,
        "money is conserved at every position"
    );

    fails_with_all(
        &replay(dir, &["--at", "3", "--read", "transfer", "{}"]),
        &["not marked read-only"],
    );
    let beyond = (history.last + 1).to_string();
    fails_with_all(
        &replay(dir, &["--at", &beyond, "--read", "balance", "{\"id\":1}"]),
        &[&format!("the history ends at sequence {}", history.last)],
    );
}

/// The oldest sequence number `ordo replay` can replay after 600
/// transfers on an embedded node with 4 KiB segments, a snapshot every 64
/// sequence numbers, `kept` snapshots kept and `retain_positions`
/// positions retained.
fn oldest_replayable(kept: usize, retain_positions: u64) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut config = ordo::NodeConfig::new(dir.path());
        config.engine.instance_epoch = 64;
        config.snapshot_log_bytes_min = 0;
        config.segment_bytes_max = 4 << 10;
        config.snapshots_kept = kept;
        config.retain_positions = retain_positions;
        let node = ordo::Node::open(config).unwrap();
        node.deploy("bank", ordo::modules::BANK).unwrap();
        node.call::<_, ()>("open_many", &(0u64, 10u64, 100i64))
            .unwrap();
        for i in 0..600u64 {
            node.call::<_, ()>("transfer", &(i % 10, (i + 3) % 10, 1i64))
                .unwrap();
        }
        // Wait for the writer thread's snapshots; the second removes the
        // segments the oldest kept covers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .count()
            < kept
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no snapshots appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }

        // The running node's own time-travel reads: refused before its
        // kept history, naming the oldest position it can read, which
        // does read.
        let json = ordo_sequencer::entry::ArgsEncoding::Json;
        let refused = node
            .read_at(5, "balance", json, br#"{"id":1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("position 5 is older than this node's retained history"),
            "{refused}"
        );
        let oldest = number_after(&refused, "the oldest position that can be read is ");
        let read = node
            .read_at(oldest, "balance", json, br#"{"id":1}"#)
            .unwrap();
        assert_eq!(read.position, oldest);
        assert!(read.outcome.is_committed(), "{:?}", read.outcome);
    }
    let output = replay(dir.path(), &["--seq", "5"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("sequence 5 is older than the retained history"),
        "{stderr}"
    );
    let oldest = number_after(&stderr, "the oldest sequence that can be replayed is ");
    assert!(oldest > 5, "{stderr}");
    (dir, oldest)
}

#[test]
fn a_sequence_older_than_the_kept_history_is_refused_naming_the_oldest() {
    let (dir, oldest) = oldest_replayable(2, 0);
    // The oldest one it names does replay.
    let (txs, _) = replay_json(dir.path(), &["--seq", &oldest.to_string()]);
    assert_eq!(txs[0]["seq"], oldest);
    // Keeping 5 snapshots keeps 3 more epochs of history.
    let (dir, oldest_of_five) = oldest_replayable(5, 0);
    assert_eq!(oldest_of_five, oldest - 3 * 64);
    let snapshots = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 5);
    // Retaining 300 positions from the newest snapshot (at 64k) keeps
    // the one at 64(k - 5), the newest at or before 64k - 300: four
    // epochs more than two snapshots reach, six snapshots in all.
    let (dir, oldest_retained) = oldest_replayable(2, 300);
    assert_eq!(oldest_retained, oldest - 4 * 64);
    let snapshots = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 6);
    let (txs, _) = replay_json(dir.path(), &["--seq", &oldest_retained.to_string()]);
    assert_eq!(txs[0]["seq"], oldest_retained);
}

#[test]
fn a_running_server_is_replayed_through_a_hot_backup() {
    let server = Server::start(SERVE_FLAGS);
    let (seq, last) = runtime().block_on(async {
        let client = bank_of_ten(&server).await;
        let mut last = 0;
        for n in 0..80u64 {
            last = client
                .call::<_, ()>("transfer", &(n % 10, (n + 1) % 10, 1i64))
                .await
                .unwrap()
                .seq;
        }
        // After the snapshot at position 64: within what a backup holds.
        let seq = client
            .call::<_, ()>("transfer", &(1u64, 2u64, 7i64))
            .await
            .unwrap()
            .seq;
        (seq, last)
    });
    assert!(seq > last);
    let seq_arg = seq.to_string();
    let output = run_ordo(
        Some(&server),
        &[
            "replay",
            "--from-server",
            "--admin-token",
            ADMIN,
            "--seq",
            &seq_arg,
            "--trace",
            "--json",
        ],
    );
    let text = stdout(&output);
    let tx: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(tx["seq"], seq);
    assert_eq!(tx["outcome"], "committed");
    assert_eq!(tx["calls"].as_array().unwrap().len(), 4, "{tx}");
    // And a time-travel read of the same moment, without the admin token
    // refused.
    let output = run_ordo(
        Some(&server),
        &[
            "replay",
            "--from-server",
            "--admin-token",
            ADMIN,
            "--at",
            &seq_arg,
            "--read",
            "balance",
            "{\"id\":1}",
            "--json",
        ],
    );
    let read: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(read["position"], seq);
    assert!(read["result"].as_i64().is_some());
    let output = run_ordo(
        Some(&server),
        &["replay", "--from-server", "--seq", &seq_arg],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin"), "{stderr}");
}

#[test]
fn ordo_call_at_reads_a_past_position_of_a_running_server() {
    let server = Server::start(SERVE_FLAGS);
    let seqs: Vec<u64> = runtime().block_on(async {
        let client = bank_of_ten(&server).await;
        let mut seqs = Vec::new();
        for _ in 0..3 {
            let called = client
                .call::<_, ()>("transfer", &(1u64, 2u64, 100i64))
                .await
                .unwrap();
            seqs.push(called.seq);
        }
        seqs
    });
    // After each transfer, account 1 had 100 less.
    for (n, seq) in seqs.iter().enumerate() {
        let output = call_at(&server, *seq, &["--json", "balance", "{\"id\":1}"]);
        let answer: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
        assert_eq!(answer["seq"], *seq, "{answer}");
        assert_eq!(answer["result"], 1_000 - 100 * (n as i64 + 1), "{answer}");
    }
    // A procedure that writes is refused like a stale read of it.
    let output = call_at(
        &server,
        seqs[0],
        &["transfer", "{\"from\":1,\"to\":2,\"amount\":1}"],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not_read_only"));

    // The Rust client's time-travel read, postcard-typed; without the
    // admin token refused; a position ahead of the node refused.
    runtime().block_on(async {
        let admin = common::admin_client(&server).await;
        let then = admin
            .read::<_, i64>("balance", &1u64, ReadConsistency::AsOf(seqs[1]))
            .await
            .unwrap();
        assert_eq!((then.value, then.position), (800, seqs[1]));
        let anyone = Client::connect(server.addr.to_string()).await.unwrap();
        match anyone
            .read::<_, i64>("balance", &1u64, ReadConsistency::AsOf(seqs[1]))
            .await
        {
            Err(ClientError::Unauthorized) => {}
            other => panic!("a time-travel read without the admin token: {other:?}"),
        }
        let ahead = seqs[2] + 1_000;
        match admin
            .read::<_, i64>("balance", &1u64, ReadConsistency::AsOf(ahead))
            .await
        {
            Err(ClientError::BadRequest(message)) => {
                assert!(message.contains("ahead of this node"), "{message}")
            }
            other => panic!("a time-travel read ahead of the node: {other:?}"),
        }
    });
}

/// `ordo replay ... | head -1`: the reader leaves after one line; the
/// replay ends without a panic (killed by SIGPIPE, as `cat` would be).
#[test]
fn a_replay_piped_into_a_reader_that_leaves_ends_without_a_panic() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let history = history(&[], 1_000);
    let range = format!("1..{}", history.last);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["replay", "--data"])
        .arg(history.dir.path())
        .args(["--seq", &range, "--trace"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "the replay printed nothing");
    // The reader is gone (dropped above); the replay has about 1,000
    // traced transactions left to print, far more than a pipe holds.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.status.success() || output.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        output.status
    );
}
