//! `ordo serve` as a real process on loopback, driven over raw TCP with
//! the wire protocol: handshake, deploy authorisation, pipelining,
//! exactly-once across reconnects, and hostile bytes that must close only
//! the offending connection.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ADMIN, Server, run_ordo, stdout};

use ordo_client::protocol::{
    Encoding, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, Hello, RefusalReason, Request,
    RequestBody, RequestRefusal, Response, ResponseBody, Welcome, decode_payload, encode_frame,
    frame_payload_bytes,
};

const IO_TIMEOUT: Duration = Duration::from_secs(60);

struct Connection {
    stream: TcpStream,
}

impl Connection {
    fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Connection { stream }
    }

    fn handshake(addr: SocketAddr, client_id: u128, token: Option<&str>) -> (Connection, Welcome) {
        let mut connection = Connection::open(addr);
        connection.send(&Hello::new(client_id, token.map(str::to_string)));
        let welcome = connection.receive::<Welcome>().expect("a welcome frame");
        (connection, welcome)
    }

    fn accepted(addr: SocketAddr, client_id: u128) -> Connection {
        let (connection, welcome) = Connection::handshake(addr, client_id, None);
        assert!(matches!(welcome, Welcome::Accepted { .. }), "{welcome:?}");
        connection
    }

    fn send<T: serde::Serialize>(&mut self, message: &T) {
        let frame = encode_frame(message, FRAME_BYTES_MAX_DEFAULT).unwrap();
        self.stream.write_all(&frame).unwrap();
    }

    /// The next frame, or `None` if the server closed the connection.
    fn receive<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        self.stream.read_exact(&mut header).ok()?;
        let bytes = frame_payload_bytes(header, FRAME_BYTES_MAX_DEFAULT).unwrap();
        let mut payload = vec![0u8; bytes];
        self.stream.read_exact(&mut payload).unwrap();
        Some(decode_payload(&payload).unwrap())
    }

    fn request(&mut self, request_id: u64, body: RequestBody) -> ResponseBody {
        self.send(&Request {
            request_id,
            acked_below: request_id,
            body,
        });
        let response: Response = self.receive().expect("a response");
        assert_eq!(response.request_id, request_id);
        response.body
    }

    /// True once the server has closed this connection.
    /// Whether the server closed the connection (a clean end or a reset),
    /// as opposed to leaving it open until our read timed out.
    fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => !matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

fn call(procedure: &str, args: &impl serde::Serialize) -> RequestBody {
    RequestBody::Call {
        procedure: procedure.to_string(),
        encoding: Encoding::Postcard,
        args: postcard::to_stdvec(args).unwrap(),
        signature: None,
    }
}

fn deploy(token: Option<&str>) -> RequestBody {
    RequestBody::Deploy {
        name: "bank".to_string(),
        wasm: ordo::modules::BANK.to_vec(),
        admin_token: token.map(str::to_string),
        reset_tables: Vec::new(),
    }
}

fn committed(body: ResponseBody) -> (u64, Vec<u8>) {
    match body {
        ResponseBody::Committed { seq, result, .. } => (seq, result),
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn deploy_needs_the_admin_token_and_calls_pipeline() {
    let server = Server::start(&[]);
    let mut connection = Connection::accepted(server.addr, 1);

    match connection.request(1, deploy(None)) {
        ResponseBody::Refused { reason, .. } => assert_eq!(reason, RequestRefusal::Unauthorized),
        other => panic!("deploy without a token: {other:?}"),
    }
    match connection.request(2, deploy(Some("wrong"))) {
        ResponseBody::Refused { reason, .. } => assert_eq!(reason, RequestRefusal::Unauthorized),
        other => panic!("deploy with a wrong token: {other:?}"),
    }
    match connection.request(3, deploy(Some(ADMIN))) {
        ResponseBody::Deployed {
            procedures, seq, ..
        } => {
            assert!(procedures.contains(&"transfer".to_string()));
            assert!(seq > 0);
        }
        other => panic!("deploy: {other:?}"),
    }
    committed(connection.request(4, call("open_many", &(0u64, 100u64, 10i64))));

    // 300 transfers written back to back before reading any answer.
    let first_id = 10;
    for offset in 0..300u64 {
        connection.send(&Request {
            request_id: first_id + offset,
            acked_below: first_id,
            body: call("transfer", &(offset % 100, (offset + 1) % 100, 1i64)),
        });
    }
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let response: Response = connection.receive().expect("a response");
        committed(response.body);
        assert!(answered.insert(response.request_id), "answered twice");
    }
    assert_eq!(answered.len(), 300);
    let (_, total) = committed(connection.request(400, call("total", &())));
    assert_eq!(postcard::from_bytes::<i64>(&total).unwrap(), 1_000);

    match connection.request(401, RequestBody::Status) {
        ResponseBody::Status(status) => {
            assert!(status.position >= 302);
            assert_eq!(status.state_hash.len(), 32);
        }
        other => panic!("status: {other:?}"),
    }
    match connection.request(402, RequestBody::Procedures) {
        ResponseBody::Procedures(procedures) => {
            assert!(
                procedures
                    .iter()
                    .any(|p| p.name == "transfer" && p.module == "bank")
            );
        }
        other => panic!("procedures: {other:?}"),
    }
    match connection.request(403, call("no_such_procedure", &())) {
        ResponseBody::Aborted { kind, .. } => assert_eq!(kind, "unknown_procedure"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retry_on_a_new_connection_runs_once() {
    let server = Server::start(&[]);
    let client_id = 0xABCD;
    let mut first = Connection::accepted(server.addr, client_id);
    first.request(1, deploy(Some(ADMIN)));
    committed(first.request(2, call("open_many", &(0u64, 2u64, 100i64))));
    let (seq, _) = committed(first.request(3, call("transfer", &(0u64, 1u64, 30i64))));
    drop(first);

    // The connection is gone; the client resends request 3 on a new one.
    let mut second = Connection::accepted(server.addr, client_id);
    let (retried_seq, _) = committed(second.request(3, call("transfer", &(0u64, 1u64, 30i64))));
    assert_eq!(retried_seq, seq, "the retry returned the original outcome");
    let (_, balance) = committed(second.request(4, call("balance", &(1u64,))));
    assert_eq!(
        postcard::from_bytes::<i64>(&balance).unwrap(),
        130,
        "ran once"
    );
}

#[test]
fn hostile_bytes_close_only_their_connection() {
    let server = Server::start(&[]);
    let mut healthy = Connection::accepted(server.addr, 7);
    healthy.request(1, deploy(Some(ADMIN)));

    // Garbage instead of a handshake.
    let mut garbage = Connection::open(server.addr);
    garbage
        .stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read as a hello's length it is over the handshake's frame limit:
    // refused with a reason, then closed.
    match garbage.receive::<Welcome>() {
        Some(Welcome::Refused { reason, .. }) => assert_eq!(reason, RefusalReason::BadHandshake),
        other => panic!("{other:?}"),
    }
    assert!(garbage.closed_by_server());

    // A wrong protocol version is refused with a reason.
    let mut newer = Hello::new(8, None);
    newer.version = 99;
    let mut versioned = Connection::open(server.addr);
    versioned.send(&newer);
    match versioned.receive::<Welcome>() {
        Some(Welcome::Refused { reason, message }) => {
            assert_eq!(reason, RefusalReason::BadHandshake);
            assert!(message.contains("version"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // An oversized frame length after a good handshake.
    let mut oversized = Connection::accepted(server.addr, 9);
    oversized.stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(oversized.closed_by_server());

    // A truncated frame: a header promising more than is sent, then EOF.
    let mut truncated = Connection::accepted(server.addr, 10);
    truncated.stream.write_all(&100u32.to_le_bytes()).unwrap();
    truncated.stream.write_all(&[1, 2, 3]).unwrap();
    truncated
        .stream
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert!(truncated.closed_by_server());

    // A well-framed payload that is not a request.
    let mut malformed = Connection::accepted(server.addr, 11);
    malformed.stream.write_all(&3u32.to_le_bytes()).unwrap();
    malformed.stream.write_all(&[0xff, 0xff, 0xff]).unwrap();
    assert!(malformed.closed_by_server());

    // Through all of that, the first client is served as before.
    committed(healthy.request(2, call("open", &(1u64, 5i64))));
    let (_, balance) = committed(healthy.request(3, call("balance", &(1u64,))));
    assert_eq!(postcard::from_bytes::<i64>(&balance).unwrap(), 5);
}

#[test]
fn a_client_token_is_required_when_configured() {
    let server = Server::start(&["--client-token", "let-me-in"]);
    let (mut refused, welcome) = Connection::handshake(server.addr, 1, Some("wrong"));
    match welcome {
        Welcome::Refused { reason, .. } => assert_eq!(reason, RefusalReason::Unauthorized),
        other => panic!("{other:?}"),
    }
    assert!(refused.closed_by_server());
    let (_, welcome) = Connection::handshake(server.addr, 1, None);
    assert!(matches!(welcome, Welcome::Refused { .. }));
    let (mut accepted, welcome) = Connection::handshake(server.addr, 1, Some("let-me-in"));
    assert!(matches!(welcome, Welcome::Accepted { .. }));
    assert!(matches!(
        accepted.request(1, RequestBody::Status),
        ResponseBody::Status(_)
    ));
}

#[test]
fn metrics_endpoint_reports_requests_aborts_and_position() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let mut connection = Connection::accepted(server.addr, 1);
    connection.request(1, deploy(Some(ADMIN)));
    committed(connection.request(2, call("open", &(1u64, 5i64))));
    connection.request(3, call("open", &(1u64, 5i64))); // aborts: exists

    let scrape = |path: &str| {
        let mut http = TcpStream::connect(server.metrics_addr.expect("metrics address")).unwrap();
        http.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        write!(http, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        response
    };
    let metrics = scrape("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for expected in [
        "ordo_requests_total 3",
        "ordo_committed_total 2",
        "ordo_aborts_total{reason=\"user\"} 1",
        "ordo_log_position 3",
        "ordo_batch_entries_count",
        "ordo_fsync_seconds_total",
        "ordo_executor_seconds_total",
    ] {
        assert!(metrics.contains(expected), "missing {expected}:\n{metrics}");
    }
    assert!(scrape("/other").starts_with("HTTP/1.1 404"));
}

/// A stale read of account 1's balance that must run at `min_position` or
/// later.
fn read_balance_at_least(min_position: u64) -> RequestBody {
    RequestBody::Read {
        procedure: "balance".to_string(),
        encoding: Encoding::Postcard,
        args: postcard::to_stdvec(&1u64).unwrap(),
        min_position,
    }
}

fn read_done(body: ResponseBody) -> (u64, i64) {
    match body {
        ResponseBody::ReadDone { position, result } => {
            (position, postcard::from_bytes(&result).unwrap())
        }
        other => panic!("expected a read, got {other:?}"),
    }
}

/// A stale read that asks for a position the node has not executed yet
/// waits for it and then answers at or after it; one the node does not
/// reach within the wait bound is refused with `Behind` (retryable, it did
/// not run), never answered from the older state. `ordo call --stale
/// --min-position` asks the same.
#[test]
fn a_read_ahead_of_the_node_waits_for_its_position_or_is_refused_as_behind() {
    let server = Server::start(&[]);
    let mut writer = Connection::accepted(server.addr, 1);
    writer.request(1, deploy(Some(ADMIN)));
    let (opened, _) = committed(writer.request(2, call("open_many", &(0u64, 2u64, 100i64))));
    let mut reader = Connection::accepted(server.addr, 2);
    assert_eq!(
        read_done(reader.request(1, read_balance_at_least(opened))),
        (opened, 100)
    );

    // One ahead: held until a transfer gets the node there.
    reader.send(&Request {
        request_id: 2,
        acked_below: 2,
        body: read_balance_at_least(opened + 1),
    });
    let held = Duration::from_millis(200);
    std::thread::sleep(held);
    let (transferred, _) = committed(writer.request(3, call("transfer", &(0u64, 1u64, 30i64))));
    assert!(transferred > opened);
    let response: Response = reader.receive().expect("the held read's answer");
    assert_eq!(response.request_id, 2);
    let (position, balance) = read_done(response.body);
    assert!(position >= transferred, "read at {position}");
    assert_eq!(balance, 130);

    // Far ahead: refused once the wait bound has passed.
    let started = Instant::now();
    let wanted = transferred + 1_000;
    match reader.request(3, read_balance_at_least(wanted)) {
        ResponseBody::Behind {
            applied,
            wanted: asked,
        } => assert_eq!((applied, asked), (transferred, wanted)),
        other => panic!("expected Behind, got {other:?}"),
    }
    let waited = started.elapsed();
    let bound = Duration::from_millis(ordo::node::STALE_READ_WAIT_MS_MAX);
    assert!(
        waited >= bound && waited < bound * 3,
        "refused after {waited:?}, the bound is {bound:?}"
    );
    // The connection still serves reads at the node's position.
    assert_eq!(
        read_done(reader.request(4, read_balance_at_least(0))),
        (transferred, 130)
    );

    let min = transferred.to_string();
    let read = |args: &[&str]| {
        let mut all = vec!["call", "--stale", "--seq"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["balance", r#"{"id": 1}"#]);
        run_ordo(Some(&server), &all)
    };
    assert_eq!(
        stdout(&read(&["--min-position", &min])),
        format!("{transferred}\n130\n")
    );
    assert_eq!(stdout(&read(&[])), format!("{transferred}\n130\n"));
    let output = run_ordo(
        Some(&server),
        &["call", "--min-position", "3", "balance", r#"{"id": 1}"#],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--stale"),
        "{output:?}"
    );
}
