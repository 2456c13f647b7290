//! The exactly-once table under hostile and careless clients: memory
//! follows what is stored (never a request id's value), stored outcomes
//! stay within their budget, registered sessions survive floods of
//! one-call clients, expire only when the policy says so (and then say
//! `session_expired`), and every decision replays identically.
//!
//! End-to-end tests drive real `ordo serve` processes over raw TCP (the
//! only way to resend a chosen request id) and measure the server's RSS;
//! the 100,000-client and determinism tests drive the executor directly.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::entries::{deploy, invoke, postcard};
use common::{ADMIN, Server, runtime};
use ordo_client::protocol::{
    Encoding, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, Hello, Request, RequestBody, Response,
    ResponseBody, SessionRequest, StatusInfo, Welcome, decode_payload, encode_frame,
    frame_payload_bytes,
};
use ordo_client::{Client, ClientConfig, ClientError};
use ordo_engine::{EngineConfig, Executor, TxOutcome};
use ordo_sequencer::entry::{Batch, Entry, SessionChange, SessionEntry, session_client_id};

const IO_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

struct Connection {
    stream: TcpStream,
}

impl Connection {
    fn open(addr: SocketAddr, client_id: u128) -> Connection {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut connection = Connection { stream };
        connection.send(&Hello::new(client_id, None));
        let welcome: Welcome = connection.receive();
        assert!(matches!(welcome, Welcome::Accepted { .. }), "{welcome:?}");
        connection
    }

    /// A connection whose client id holds a freshly registered session.
    fn registered(addr: SocketAddr, low: u64) -> Connection {
        let mut connection = Connection::open(addr, session_client_id(low));
        let registered = connection.request(1, 1, RequestBody::Session(SessionRequest::Register));
        assert!(
            matches!(registered, ResponseBody::Committed { .. }),
            "{registered:?}"
        );
        connection
    }

    fn send<T: serde::Serialize>(&mut self, message: &T) {
        let frame = encode_frame(message, FRAME_BYTES_MAX_DEFAULT).unwrap();
        self.stream.write_all(&frame).unwrap();
    }

    fn receive<T: serde::de::DeserializeOwned>(&mut self) -> T {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        self.stream.read_exact(&mut header).unwrap();
        let bytes = frame_payload_bytes(header, FRAME_BYTES_MAX_DEFAULT).unwrap();
        let mut payload = vec![0u8; bytes];
        self.stream.read_exact(&mut payload).unwrap();
        decode_payload(&payload).unwrap()
    }

    fn request(&mut self, request_id: u64, acked_below: u64, body: RequestBody) -> ResponseBody {
        self.send(&Request {
            request_id,
            acked_below,
            body,
        });
        let response: Response = self.receive();
        assert_eq!(response.request_id, request_id);
        response.body
    }
}

fn call(procedure: &str, args: &impl serde::Serialize) -> RequestBody {
    RequestBody::Call {
        procedure: procedure.to_string(),
        encoding: Encoding::Postcard,
        args: postcard(args),
        signature: None,
    }
}

fn abort_kind(body: &ResponseBody) -> Option<&str> {
    match body {
        ResponseBody::Aborted { kind, .. } => Some(kind),
        _ => None,
    }
}

fn seq_of(body: &ResponseBody) -> u64 {
    match body {
        ResponseBody::Committed { seq, .. } | ResponseBody::Aborted { seq, .. } => *seq,
        other => panic!("expected an outcome, got {other:?}"),
    }
}

/// The server's resident set size, from `/proc/PID/status`.
fn rss_bytes(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// `(ordo_sessions, ordo_stored_result_bytes)` from the metrics endpoint.
fn session_gauges(server: &Server) -> (u64, u64) {
    let mut http = TcpStream::connect(server.metrics_addr.expect("started with metrics")).unwrap();
    http.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(http, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    let gauge = |name: &str| -> u64 {
        response
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{response}"))
            .parse()
            .unwrap()
    };
    (gauge("ordo_sessions"), gauge("ordo_stored_result_bytes"))
}

fn status(addr: SocketAddr) -> StatusInfo {
    match Connection::open(addr, 3).request(1, 1, RequestBody::Status) {
        ResponseBody::Status(status) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// One request with a sparse request id from each of many new clients
/// used to allocate a window as long as the id (10 MiB at 131,071); the
/// table now holds one slot per stored result.
#[test]
fn a_huge_request_id_from_a_new_client_costs_one_slot() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let one_call = |client: u128, request_id: u64| {
        Connection::open(server.addr, client).request(request_id, 0, call("missing", &()))
    };
    // Warm the same path up, so the baseline holds the threads and buffers.
    for client in 0..50u128 {
        one_call(client + 1_000, 1);
    }
    let before = rss_bytes(&server);
    let mut answers = Vec::new();
    for client in 0..300u128 {
        let request_id = match client {
            0 => u64::MAX,
            1 => u64::MAX - 1,
            _ => 131_071 + client as u64 * 1_000_003,
        };
        let answer = one_call(client + 10_000, request_id);
        assert_eq!(abort_kind(&answer), Some("unknown_procedure"), "{answer:?}");
        answers.push((client + 10_000, request_id, answer));
    }
    let grown = rss_bytes(&server).saturating_sub(before);
    eprintln!("300 sparse request ids: RSS grew {} KiB", grown / 1024);
    assert!(
        grown <= 8 * MIB,
        "300 sparse request ids grew the server by {} KiB",
        grown / 1024
    );
    // Every one is still answered from the table, not run again.
    for (client, request_id, answer) in answers.iter().step_by(37) {
        let retry = one_call(*client, *request_id);
        assert_eq!(&retry, answer, "client {client}");
    }
    let (sessions, stored) = session_gauges(&server);
    assert_eq!(sessions, 350);
    assert!(stored < 350 * 512, "{stored} bytes for 350 small outcomes");
}

/// Many clients with large results: the stored outcomes stay within
/// their budget (the least recently active sessions expire, outcomes over
/// the per-result limit become markers), server RSS stays bounded, and a
/// restart replays to the same table, state and chain hash.
#[test]
fn large_results_stay_within_the_budget_and_replay_alike() {
    const BUDGET: u64 = 16 * MIB;
    let flags = [
        "--metrics-listen",
        "127.0.0.1:0",
        "--stored-results-total-bytes-max",
        "16777216",
    ];
    let server = Server::start(&flags);
    let mut admin = Connection::open(server.addr, 2);
    let deployed = admin.request(
        1,
        1,
        RequestBody::Deploy {
            name: "hostile".into(),
            wasm: ordo::modules::HOSTILE.to_vec(),
            admin_token: Some(ADMIN.into()),
            reset_tables: Vec::new(),
        },
    );
    assert!(
        matches!(deployed, ResponseBody::Deployed { .. }),
        "{deployed:?}"
    );
    let one_call = |low: u64, bytes: u32| {
        let mut connection = Connection::registered(server.addr, low);
        connection.request(2, 2, call("huge_result", &bytes))
    };
    for low in 0..20 {
        one_call(1_000_000 + low, 60_000);
    }
    let before = rss_bytes(&server);
    // 3,000 clients with 60 kB results: 180 MB if all were kept.
    const CLIENTS: u64 = 3_000;
    let answers: Vec<(u64, ResponseBody)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4u64)
            .map(|worker| {
                scope.spawn(move || {
                    (0..CLIENTS / 4)
                        .map(|index| {
                            let low = index * 4 + worker;
                            // Every 100th result is over the 64 KiB limit.
                            let bytes = if low % 100 == 99 { 100_000 } else { 60_000 };
                            (low, one_call(low, bytes))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    for (low, answer) in &answers {
        assert!(
            matches!(answer, ResponseBody::Committed { result, .. } if result.len() >= 60_000),
            "client {low}: {answer:?}"
        );
    }
    let grown = rss_bytes(&server).saturating_sub(before);
    let (sessions, stored) = session_gauges(&server);
    eprintln!(
        "{CLIENTS} clients with 60 kB results: RSS grew {} MiB, {sessions} sessions, {stored} bytes stored",
        grown / MIB
    );
    assert!(
        grown <= 2 * BUDGET + 32 * MIB,
        "the server grew by {} MiB with a {} MiB budget",
        grown / MIB,
        BUDGET / MIB
    );
    assert!(
        stored <= BUDGET,
        "{stored} bytes stored over a {BUDGET} budget"
    );
    assert!(sessions < CLIENTS, "{sessions} sessions: none expired");

    // Retries after the flood, asked again after a restart: the same answers.
    // The most recent in log order (the four threads interleave).
    let latest = |large: bool| {
        answers
            .iter()
            .filter(|(low, _)| (low % 100 == 99) == large)
            .max_by_key(|(_, answer)| seq_of(answer))
            .unwrap()
    };
    let (last, large) = (latest(false), latest(true));
    let first = answers
        .iter()
        .min_by_key(|(_, answer)| seq_of(answer))
        .unwrap();
    let retries = |addr: SocketAddr| -> Vec<ResponseBody> {
        [last, large, first]
            .iter()
            .map(|(low, _)| {
                Connection::open(addr, session_client_id(*low)).request(
                    2,
                    2,
                    call("huge_result", &0u32),
                )
            })
            .collect()
    };
    let before_restart = retries(server.addr);
    // The same answer, except that a retry answered from the exactly-once
    // table ran nothing: it used no fuel.
    let mut original = last.1.clone();
    if let ResponseBody::Committed { fuel_used, .. } = &mut original {
        assert!(*fuel_used > 0);
        *fuel_used = 0;
    }
    assert_eq!(
        before_restart[0], original,
        "a recent session replays its result"
    );
    assert_eq!(abort_kind(&before_restart[1]), Some("result_not_retained"));
    assert_eq!(seq_of(&before_restart[1]), seq_of(&large.1));
    assert_eq!(abort_kind(&before_restart[2]), Some("session_expired"));
    let hashes = |status: StatusInfo| (status.position, status.state_hash, status.chain_hash);
    let status_before = hashes(status(server.addr));
    let gauges_before = session_gauges(&server);

    let (clean, dir) = server.terminate();
    assert!(clean, "ordo serve did not exit cleanly");
    let server = Server::start_in(dir, &flags);
    assert_eq!(hashes(status(server.addr)), status_before);
    assert_eq!(session_gauges(&server), gauges_before);
    let after_restart = retries(server.addr);
    assert_eq!(abort_kind(&after_restart[1]), Some("result_not_retained"));
    assert_eq!(after_restart[0], before_restart[0]);
    assert_eq!(abort_kind(&after_restart[2]), Some("session_expired"));
}

/// Floods of one-call clients: unregistered ones never push out a
/// registered session; registered ones expire only the idle session, and
/// an SDK client whose session expired gets `SessionExpired`, for that
/// request and every later one.
#[test]
fn one_call_clients_expire_only_idle_sessions() {
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--sessions-max",
        "1000",
        "--registered-sessions-max",
        "1000",
    ]);
    let addr = server.addr;
    let mut busy = Connection::registered(addr, 1);
    let mut idle = Connection::registered(addr, 2);
    let busy_answer = busy.request(2, 2, call("missing", &1u8));
    let idle_answer = idle.request(2, 2, call("missing", &2u8));
    let rt = runtime();
    let sdk = rt.block_on(async {
        Client::connect_with(ClientConfig::new(addr.to_string()))
            .await
            .unwrap()
    });
    rt.block_on(sdk.call_json("missing", "{}")).unwrap_err();

    for client in 0..3_000u128 {
        Connection::open(addr, 100_000 + client).request(1, 0, call("missing", &()));
    }
    let (sessions, _) = session_gauges(&server);
    assert!(sessions <= 1_000 + 3, "{sessions} sessions");
    for (connection, answer) in [(&mut busy, &busy_answer), (&mut idle, &idle_answer)] {
        assert_eq!(&connection.request(2, 2, call("missing", &0u8)), answer);
    }

    // 1,200 registered one-call clients; `busy` keeps making calls.
    let mut busy_request = 3;
    for low in 0..1_200u64 {
        let mut one = Connection::registered(addr, 1_000_000 + low);
        one.request(2, 2, call("missing", &()));
        if low % 100 == 0 {
            busy.request(busy_request, 2, call("missing", &3u8));
            busy_request += 1;
        }
    }
    assert_eq!(busy.request(2, 2, call("missing", &0u8)), busy_answer);
    let expired = idle.request(2, 2, call("missing", &0u8));
    assert_eq!(abort_kind(&expired), Some("session_expired"), "{expired:?}");
    let new_request = idle.request(3, 3, call("missing", &0u8));
    assert_eq!(abort_kind(&new_request), Some("session_expired"));

    rt.block_on(async {
        let err = sdk.call_json("missing", "{}").await.unwrap_err();
        assert!(matches!(err, ClientError::SessionExpired { .. }), "{err}");
        let err = sdk.call_json("missing", "{}").await.unwrap_err();
        assert!(matches!(err, ClientError::SessionExpired { .. }), "{err}");
        // A new client registers a new session and is served.
        let fresh = Client::connect_with(ClientConfig::new(addr.to_string()))
            .await
            .unwrap();
        let err = fresh.call_json("missing", "{}").await.unwrap_err();
        assert!(matches!(err, ClientError::UnknownProcedure { .. }), "{err}");
    });
}

fn ordo(server: &Server, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .args(["--server", &server.addr.to_string()])
        // The commands that take the admin token read it from here.
        .env("ORDO_ADMIN_TOKEN", ADMIN)
        .env_remove("ORDO_CLIENT_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ordo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `ordo call` registers a session for its call and ends it, so running
/// it again and again leaves the session count where it was.
#[test]
fn ordo_call_leaves_no_session_behind() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let wasm = server.dir.path().join("kv.wasm");
    std::fs::write(&wasm, ordo::modules::KV).unwrap();
    ordo(&server, &["deploy", "kv", wasm.to_str().unwrap()]);
    assert_eq!(session_gauges(&server).0, 0);
    for expected in 1..=10 {
        let result = ordo(&server, &["call", "incr", r#"{"key": "k", "by": 1}"#]);
        assert_eq!(result.trim(), expected.to_string(), "{result}");
        assert_eq!(session_gauges(&server), (0, 0));
    }
    ordo(&server, &["status"]);
    ordo(&server, &["procedures"]);
    assert_eq!(session_gauges(&server), (0, 0));
    // Deploy, ten calls and the status above: 3 log entries per command.
    assert_eq!(status(server.addr).position, 33);
}

/// The embedded API's registered sessions: refused once ended, while an
/// unregistered session of the same node is untouched.
#[test]
fn embedded_sessions_register_and_end_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = ordo::Node::open(ordo::NodeConfig::new(dir.path())).unwrap();
    let registered = node.register_session().unwrap();
    assert_eq!(
        (registered.client_id() >> 64) as u64,
        ordo_sequencer::entry::SESSION_CLIENT_ID_TAG
    );
    let missing = || registered.call_raw("missing", ordo::ArgsEncoding::Json, b"{}".to_vec());
    let kind = |tx: TxOutcome| tx.outcome.abort().map(|abort| abort.kind.as_str());
    assert_eq!(kind(missing().unwrap()), Some("unknown_procedure"));
    assert_eq!(node.status().engine.sessions, 1);
    registered.end().unwrap();
    assert_eq!(kind(missing().unwrap()), Some("session_expired"));
    assert_eq!(node.status().engine.sessions, 0);
    let other = node.session();
    let tx = other
        .call_raw("missing", ordo::ArgsEncoding::Json, b"{}".to_vec())
        .unwrap();
    assert_eq!(kind(tx), Some("unknown_procedure"));
}

/// A budget too small for the policy is one clear line, not a node that
/// expires every session.
#[test]
fn a_budget_below_eight_outcomes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(["--stored-results-total-bytes-max", "1000"])
        .args(["--admin-token", "admin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("stored_results_total_bytes_max (1000) must be at least"),
        "{stderr}"
    );
}

fn session(client_id: u128, request_id: u64, change: SessionChange) -> Entry {
    Entry::Session(SessionEntry {
        client_id,
        request_id,
        change,
    })
}

/// Runs `entries` in batches of `batch_entries`; every outcome.
fn execute(executor: &mut Executor, entries: Vec<Entry>, batch_entries: usize) -> Vec<TxOutcome> {
    let mut outcomes = Vec::new();
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let batch = Batch {
            first_seq: executor.status().position + 1,
            timestamp_ms: 0,
            entries: entries.by_ref().take(batch_entries).collect(),
        };
        outcomes.extend(executor.execute(&batch));
    }
    outcomes
}

fn abort_of(tx: &TxOutcome) -> Option<&'static str> {
    tx.outcome.abort().map(|abort| abort.kind.as_str())
}

/// The issue's flood at full scale, against the default limits: 101,000
/// one-call clients do not make a live client's retries abort
/// `request_forgotten`; 100,000 registrations expire it only while idle.
#[test]
fn a_hundred_thousand_one_call_clients_at_the_default_limits() {
    let config = EngineConfig::default();
    let mut executor = Executor::new(Executor::compiler(&config), config);
    let live = session_client_id(1);
    let answered = execute(
        &mut executor,
        vec![
            session(live, 1, SessionChange::Register),
            invoke(live, 2, "missing", vec![]),
        ],
        2,
    );
    let original = answered[1].clone();
    let flood = (0..101_000u128).map(|client| invoke(client + 10, 1, "missing", vec![]));
    execute(&mut executor, flood.collect(), 4_096);
    let retry = &execute(&mut executor, vec![invoke(live, 2, "missing", vec![])], 1)[0];
    assert!(retry.duplicate);
    assert_eq!(
        (retry.seq, &retry.outcome),
        (original.seq, &original.outcome)
    );
    assert!(executor.status().sessions <= 100_001);

    let registrations =
        (0..100_000u64).map(|low| session(session_client_id(low + 10), 1, SessionChange::Register));
    execute(&mut executor, registrations.collect(), 4_096);
    let retry = &execute(&mut executor, vec![invoke(live, 2, "missing", vec![])], 1)[0];
    assert_eq!(abort_of(retry), Some("session_expired"), "{retry:?}");
    assert!(!retry.duplicate);
}

/// A log that exercises every policy (registrations, ends, expiry, the
/// per-result limit, the budget) under small limits.
fn busy_log() -> (EngineConfig, Vec<Vec<Entry>>) {
    let config = EngineConfig {
        sessions_max: 16,
        registered_sessions_max: 8,
        session_results_max: 8,
        stored_result_bytes_max: 3_000,
        stored_results_total_bytes_max: 40_000,
        instance_epoch: 8,
        ..EngineConfig::default()
    };
    let mut batches = vec![vec![deploy(1, 1, "hostile", ordo::modules::HOSTILE)]];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut request_ids = [1u64; 24];
    for _ in 0..60 {
        let entries = (0..1 + next(12))
            .map(|_| {
                let client = next(24) as usize;
                let id = if client.is_multiple_of(2) {
                    session_client_id(client as u64)
                } else {
                    client as u128
                };
                match next(10) {
                    0 => session(id, 0, SessionChange::Register),
                    1 if client.is_multiple_of(4) => session(id, 0, SessionChange::End),
                    2 => {
                        // A retry of an earlier request.
                        let retried = next(request_ids[client]) + 1;
                        invoke(id, retried, "huge_result", postcard(&0u32))
                    }
                    _ => {
                        request_ids[client] += 1;
                        let bytes = next(4_000) as u32;
                        invoke(id, request_ids[client], "huge_result", postcard(&bytes))
                    }
                }
            })
            .collect();
        batches.push(entries);
    }
    (config, batches)
}

/// The same log gives the same outcomes, table and hashes on any number
/// of partitions and after restoring a snapshot, budget decisions and
/// expiries included.
#[test]
fn the_same_log_gives_the_same_table() {
    let (config, batches) = busy_log();
    let run = |partitions: usize, restore_at: Option<usize>| {
        let compiler = Executor::compiler(&config);
        let mut executor = Executor::with_partitions(compiler.clone(), config.clone(), partitions);
        executor.set_parallel_batch_entries_min(0);
        let mut outcomes = Vec::new();
        for (index, entries) in batches.iter().enumerate() {
            let batch = Batch {
                first_seq: executor.status().position + 1,
                timestamp_ms: index as u64,
                entries: entries.clone(),
            };
            if restore_at.is_some_and(|at| index >= at)
                && config.opens_instance_epoch(batch.first_seq, batch.last_seq())
            {
                let image = executor.snapshot();
                executor = Executor::restore(compiler.clone(), config.clone(), partitions, &image)
                    .unwrap();
            }
            outcomes.extend(executor.execute(&batch));
        }
        (outcomes, executor.status(), executor.snapshot())
    };
    let (outcomes, status, image) = run(1, None);
    let kinds: std::collections::BTreeSet<_> = outcomes.iter().filter_map(abort_of).collect();
    for expected in ["session_expired", "result_not_retained"] {
        assert!(
            kinds.contains(expected),
            "the log never hit {expected}: {kinds:?}"
        );
    }
    assert!(
        outcomes.iter().any(|tx| tx.duplicate),
        "no retry was answered"
    );
    assert!(status.stored_result_bytes <= config.stored_results_total_bytes_max);
    for (partitions, restore_at) in [(4, None), (1, Some(20)), (3, Some(40))] {
        let (other_outcomes, other_status, other_image) = run(partitions, restore_at);
        assert_eq!(other_outcomes, outcomes, "partitions {partitions}");
        assert_eq!(other_status, status, "partitions {partitions}");
        assert_eq!(other_image, image, "partitions {partitions}");
    }
}
