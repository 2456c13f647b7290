//! The client against a fake server, written here with tokio on
//! 127.0.0.1:0, that speaks protocol v2 and answers with canned responses,
//! and against fake clusters of such servers (leader, followers, dead
//! nodes). Every wait is on a channel or socket with a timeout; nothing
//! sleeps, except the slow fake server that paces its answers to show the
//! stall detector that it is alive.

use super::*;
use crate::protocol::{FRAME_BYTES_MAX_DEFAULT, MAGIC, encode_frame_into};
use std::collections::BTreeSet;
use std::future::Future;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Upper bound on any single wait; only reached when a test is failing.
const WAIT: Duration = Duration::from_secs(10);

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

fn config(addr: &str) -> ClientConfig {
    ClientConfig {
        connect_timeout: WAIT,
        request_timeout: WAIT,
        reconnect_attempts: 3,
        register_session: false,
        ..ClientConfig::new(addr)
    }
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting")
}

/// Waits for the fake server task and passes its panics on.
async fn join<T>(server: JoinHandle<T>) -> T {
    within(server).await.expect("fake server panicked")
}

/// Reads one message; `None` when the client has closed the connection.
async fn read_message<T: DeserializeOwned>(stream: &mut TcpStream) -> Option<T> {
    match within(read_frame(stream, FRAME_BYTES_MAX_DEFAULT)).await {
        Ok(payload) => Some(decode_payload(&payload).expect("client sent a bad frame")),
        Err(ReadFrameError::Closed) => None,
        Err(ReadFrameError::Io(err)) if err.kind() == io::ErrorKind::UnexpectedEof => None,
        Err(ReadFrameError::Io(err)) if err.kind() == io::ErrorKind::ConnectionReset => None,
        Err(ReadFrameError::Io(err)) => panic!("fake server read failed: {err}"),
        Err(ReadFrameError::TooLarge(err)) => panic!("client sent a bad frame: {err}"),
    }
}

async fn read_request(stream: &mut TcpStream) -> Request {
    read_message(stream).await.expect("a request")
}

async fn write_message<T: Serialize>(stream: &mut TcpStream, message: &T) {
    let frame = encode_frame(message, FRAME_BYTES_MAX_DEFAULT).unwrap();
    within(stream.write_all(&frame)).await.unwrap();
}

async fn answer(stream: &mut TcpStream, request_id: u64, body: ResponseBody) {
    write_message(stream, &Response { request_id, body }).await;
}

/// Accepts a connection, checks its hello and welcomes it.
async fn accept(listener: &TcpListener) -> (TcpStream, Hello) {
    let (mut stream, _) = within(listener.accept()).await.unwrap();
    let hello: Hello = read_message(&mut stream).await.expect("a hello");
    assert_eq!(hello.check(), Ok(()));
    write_message(
        &mut stream,
        &Welcome::Accepted {
            version: PROTOCOL_VERSION,
            position: 0,
            node_id: None,
        },
    )
    .await;
    (stream, hello)
}

fn status() -> StatusInfo {
    StatusInfo {
        position: 42,
        state_hash: "ab".repeat(16),
        chain_hash: "cd".repeat(16),
        keys: 7,
        log_records: 3,
        node_id: None,
        role: "standalone".into(),
        term: 0,
        leader: None,
        commit: 0,
        applied: 0,
        partitions: 1,
        sessions: 0,
        stored_result_bytes: 0,
        snapshot_position: None,
        log_bytes: 0,
    }
}

fn call_args(request: &Request) -> (&str, &[u8]) {
    match &request.body {
        RequestBody::Call {
            procedure, args, ..
        } => (procedure, args),
        other => panic!("expected a call, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_is_accepted_and_sends_id_and_token() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, hello) = accept(&listener).await;
        let request = read_request(&mut stream).await;
        assert_eq!(request.body, RequestBody::Status);
        answer(
            &mut stream,
            request.request_id,
            ResponseBody::Status(status()),
        )
        .await;
        (hello, request)
    });
    let client = Client::connect_with(ClientConfig {
        token: Some("client-secret".into()),
        ..config(&addr)
    })
    .await
    .unwrap();
    assert_eq!(client.status().await.unwrap(), status());
    let (hello, request) = join(server).await;
    assert_eq!(hello.magic, MAGIC);
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!(hello.client_id, client.client_id());
    assert_eq!(hello.token.as_deref(), Some("client-secret"));
    assert_eq!((request.request_id, request.acked_below), (1, 1));
}

#[test]
fn client_ids_differ() {
    let ids: BTreeSet<u128> = (0..100).map(|_| fresh_client_id()).collect();
    assert_eq!(ids.len(), 100);
}

#[tokio::test]
async fn refused_handshakes_map_to_errors() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        for reason in [
            RefusalReason::Unauthorized,
            RefusalReason::TooManyConnections,
        ] {
            let (mut stream, _) = within(listener.accept()).await.unwrap();
            let _: Hello = read_message(&mut stream).await.expect("a hello");
            let message = "no".to_string();
            write_message(&mut stream, &Welcome::Refused { reason, message }).await;
        }
        // A server from the future.
        let (mut stream, _) = within(listener.accept()).await.unwrap();
        let _: Hello = read_message(&mut stream).await.expect("a hello");
        let welcome = Welcome::Accepted {
            version: PROTOCOL_VERSION + 1,
            position: 0,
            node_id: None,
        };
        write_message(&mut stream, &welcome).await;
        // Not an ordo server: hangs up at once.
        let (stream, _) = within(listener.accept()).await.unwrap();
        drop(stream);
    });
    let err = Client::connect_with(config(&addr)).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized), "{err}");
    assert!(err.to_string().contains("ClientConfig::token"), "{err}");
    let err = Client::connect_with(config(&addr)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Refused {
                reason: RefusalReason::TooManyConnections,
                ..
            }
        ),
        "{err}"
    );
    let err = Client::connect_with(config(&addr)).await.unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");
    let newer = format!("version {}", PROTOCOL_VERSION + 1);
    assert!(err.to_string().contains(&newer), "{err}");
    let err = Client::connect_with(config(&addr)).await.unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");
    join(server).await;
}

/// Sixteen calls from sixteen tasks are all in flight at once (the server
/// reads every one before answering any), answered in reverse order, and
/// each caller gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_are_matched_by_request_id() {
    const CALLS: u64 = 16;
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let mut requests = Vec::new();
        for _ in 0..CALLS {
            requests.push(read_request(&mut stream).await);
        }
        for request in requests.iter().rev() {
            let (procedure, args) = call_args(request);
            assert_eq!(procedure, "double");
            let x: u64 = postcard::from_bytes(args).unwrap();
            let result = postcard::to_stdvec(&(2 * x)).unwrap();
            let body = ResponseBody::Committed {
                fuel_used: 0,
                seq: 1000 + x,
                result,
            };
            answer(&mut stream, request.request_id, body).await;
        }
        // With every answer delivered, the next request acknowledges them.
        let next = read_request(&mut stream).await;
        answer(&mut stream, next.request_id, ResponseBody::Status(status())).await;
        (requests, next)
    });
    let client = Client::connect_with(config(&addr)).await.unwrap();
    let calls: Vec<_> = (0..CALLS)
        .map(|x| {
            let client = client.clone();
            tokio::spawn(async move { (x, client.call::<u64, u64>("double", &x).await) })
        })
        .collect();
    for call in calls {
        let (x, called) = within(call).await.unwrap();
        let called = called.unwrap();
        assert_eq!((called.value, called.seq), (2 * x, 1000 + x));
    }
    client.status().await.unwrap();
    let (requests, next) = join(server).await;
    let ids: BTreeSet<u64> = requests.iter().map(|request| request.request_id).collect();
    assert_eq!(ids, (1..=CALLS).collect());
    // Request 1 was unanswered when every other request was sent.
    assert!(requests.iter().all(|request| request.acked_below == 1));
    assert_eq!((next.request_id, next.acked_below), (CALLS + 1, CALLS + 1));
}

#[tokio::test]
async fn acked_below_is_the_smallest_unanswered_request_id() {
    let (listener, addr) = listen().await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let first = read_request(&mut stream).await;
        seen_tx.send((first.request_id, first.acked_below)).unwrap();
        let second = read_request(&mut stream).await;
        seen_tx
            .send((second.request_id, second.acked_below))
            .unwrap();
        // Answer only the second; the first stays outstanding.
        let committed = |seq| ResponseBody::Committed {
            fuel_used: 0,
            seq,
            result: b"null".to_vec(),
        };
        answer(&mut stream, second.request_id, committed(2)).await;
        let third = read_request(&mut stream).await;
        seen_tx.send((third.request_id, third.acked_below)).unwrap();
        answer(&mut stream, third.request_id, committed(3)).await;
        answer(&mut stream, first.request_id, committed(1)).await;
        let fourth = read_request(&mut stream).await;
        seen_tx
            .send((fourth.request_id, fourth.acked_below))
            .unwrap();
        answer(&mut stream, fourth.request_id, committed(4)).await;
    });
    let client = Client::connect_with(config(&addr)).await.unwrap();
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.call_json("first", "null").await }
    });
    assert_eq!(within(seen_rx.recv()).await, Some((1, 1)));
    let (_, seq) = client.call_json("second", "null").await.unwrap();
    assert_eq!(seq, 2);
    assert_eq!(within(seen_rx.recv()).await, Some((2, 1)));
    client.call_json("third", "null").await.unwrap();
    assert_eq!(within(seen_rx.recv()).await, Some((3, 1)));
    assert_eq!(within(first).await.unwrap().unwrap().1, 1);
    client.call_json("fourth", "null").await.unwrap();
    assert_eq!(within(seen_rx.recv()).await, Some((4, 4)));
    join(server).await;
}

/// Answers by procedure name (or request kind) until the client hangs up.
async fn canned_server(listener: TcpListener) {
    let (mut stream, _) = accept(&listener).await;
    while let Some(request) = read_message::<Request>(&mut stream).await {
        let aborted = |kind: &str, message: &str| ResponseBody::Aborted {
            fuel_used: 0,
            seq: 9,
            kind: kind.into(),
            message: message.into(),
        };
        let refused = |reason, message: &str| ResponseBody::Refused {
            reason,
            message: message.into(),
        };
        let body = match &request.body {
            RequestBody::Call {
                procedure,
                encoding,
                args,
                ..
            } => match procedure.as_str() {
                "echo" => {
                    assert_eq!(*encoding, Encoding::Json);
                    ResponseBody::Committed {
                        fuel_used: 0,
                        seq: 5,
                        result: args.clone(),
                    }
                }
                "not_utf8" => ResponseBody::Committed {
                    fuel_used: 0,
                    seq: 6,
                    result: vec![0xff, 0xfe],
                },
                "withdraw" => aborted("user", "insufficient funds"),
                "missing" => aborted("unknown_procedure", "no procedure `missing`"),
                "picky" => aborted("bad_arguments", "expected (u64, u64)"),
                "spin" => aborted("out_of_fuel", "ran out of fuel"),
                "busy" => refused(RequestRefusal::Overloaded, "100000 in flight"),
                "stopping" => refused(RequestRefusal::Unavailable, "node is stopping"),
                "huge" => refused(RequestRefusal::BadRequest, "arguments over 1 MiB"),
                "confused" => ResponseBody::Status(status()),
                other => panic!("unexpected procedure {other}"),
            },
            RequestBody::Deploy {
                name,
                wasm,
                admin_token,
                ..
            } => {
                if admin_token.as_deref() != Some("admin-secret") {
                    refused(RequestRefusal::Unauthorized, "wrong admin token")
                } else if wasm.as_slice() != b"\0asm" {
                    refused(RequestRefusal::DeployRejected, "not a wasm module")
                } else {
                    ResponseBody::Deployed {
                        seq: 10,
                        name: name.clone(),
                        sha256: "00".repeat(32),
                        procedures: vec!["transfer".into()],
                    }
                }
            }
            RequestBody::Procedures => ResponseBody::Procedures(vec![ProcedureDescription {
                name: "transfer".into(),
                module: "bank".into(),
                params: Some(vec![("from".into(), "u64".into())]),
                read_only: false,
            }]),
            RequestBody::Status => ResponseBody::Status(status()),
            RequestBody::Read { .. } => panic!("unexpected read"),
            RequestBody::Session(_) => panic!("unexpected session request"),
            RequestBody::Describe => ResponseBody::Described(Vec::new()),
            RequestBody::Backup { admin_token, .. } => {
                if admin_token.as_deref() == Some("admin-secret") {
                    refused(RequestRefusal::BadRequest, "not a standalone node")
                } else {
                    refused(RequestRefusal::Unauthorized, "wrong admin token")
                }
            }
            RequestBody::ReadAt { .. } => panic!("unexpected time-travel read"),
            RequestBody::Scan { .. } => panic!("unexpected scan"),
            RequestBody::Logs { .. } => panic!("unexpected log read"),
            RequestBody::Undeploy { .. } => panic!("unexpected undeploy"),
        };
        answer(&mut stream, request.request_id, body).await;
    }
}

#[tokio::test]
async fn answers_and_refusals_map_to_results_and_errors() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(canned_server(listener));
    let client = Client::connect_with(ClientConfig {
        admin_token: Some("admin-secret".into()),
        ..config(&addr)
    })
    .await
    .unwrap();

    assert_eq!(
        client.call_json("echo", r#"{"id": 7}"#).await.unwrap(),
        (r#"{"id": 7}"#.to_string(), 5)
    );
    let err = client.call_json("not_utf8", "null").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Decode { procedure, seq: 6, .. } if procedure == "not_utf8"),
        "{err}"
    );
    // A typed call whose result is not the type asked for.
    let err = client.call::<_, String>("not_utf8", &()).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { seq: 6, .. }), "{err}");

    let err = client
        .call::<_, ()>("withdraw", &(1u64, 5u64))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Aborted { seq: 9, kind, message, .. }
            if kind == "user" && message == "insufficient funds"),
        "{err}"
    );
    let err = client.call::<_, ()>("spin", &()).await.unwrap_err();
    assert!(matches!(&err, ClientError::Aborted { kind, .. } if kind == "out_of_fuel"));
    let err = client.call::<_, ()>("missing", &()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::UnknownProcedure { procedure, .. } if procedure == "missing"),
        "{err}"
    );
    let err = client.call::<_, ()>("picky", &()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::BadArguments { message, .. } if message == "expected (u64, u64)"),
        "{err}"
    );
    let err = client.call::<_, ()>("busy", &()).await.unwrap_err();
    assert!(matches!(err, ClientError::Overloaded), "{err}");
    let err = client.call::<_, ()>("stopping", &()).await.unwrap_err();
    assert!(matches!(&err, ClientError::Unavailable(m) if m == "node is stopping"));
    let err = client.call::<_, ()>("huge", &()).await.unwrap_err();
    assert!(matches!(&err, ClientError::BadRequest(m) if m == "arguments over 1 MiB"));
    let err = client.call::<_, ()>("confused", &()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::UnexpectedResponse {
                expected: "call",
                ..
            }
        ),
        "{err}"
    );

    let deployed = client.deploy("bank", b"\0asm").await.unwrap();
    assert_eq!(
        deployed,
        Deployed {
            seq: 10,
            name: "bank".into(),
            sha256: "00".repeat(32),
            procedures: vec!["transfer".into()],
        }
    );
    let err = client.deploy("bank", b"junk").await.unwrap_err();
    assert!(matches!(&err, ClientError::DeployRejected(m) if m == "not a wasm module"));
    let procedures = client.procedures().await.unwrap();
    assert_eq!(procedures.len(), 1);
    assert_eq!(procedures[0].module, "bank");
    assert_eq!(client.status().await.unwrap(), status());
    let err = client
        .backup_step(crate::protocol::BackupStep::Begin)
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::BadRequest(m) if m == "not a standalone node"));
    drop(client); // The canned server stops when the client hangs up.
    join(server).await;
}

#[tokio::test]
async fn deploy_without_the_admin_token_is_unauthorized() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(canned_server(listener));
    let client = Client::connect_with(config(&addr)).await.unwrap();
    let err = client.deploy("bank", b"\0asm").await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized), "{err}");
    drop(client);
    join(server).await;
}

#[tokio::test]
async fn requests_over_the_frame_limit_are_not_sent() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(canned_server(listener));
    let client = Client::connect_with(ClientConfig {
        frame_bytes_max: 1024,
        ..config(&addr)
    })
    .await
    .unwrap();
    let err = client
        .call_raw("echo", Encoding::Json, vec![b' '; 2000])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TooLarge { max: 1024, .. }),
        "{err}"
    );
    // The connection is still good, and the refused id is not outstanding.
    assert_eq!(client.call_json("echo", "1").await.unwrap().0, "1");
    drop(client);
    join(server).await;
}

/// An answer over the client's frame limit closes the connection and fails
/// what was in flight; the next call connects afresh.
#[tokio::test]
async fn an_oversized_frame_from_the_server_closes_the_connection() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, first_hello) = accept(&listener).await;
        let request = read_request(&mut stream).await;
        // A header announcing a 1 MB payload; the client must not wait
        // for (or allocate) the payload.
        within(stream.write_all(&1_000_000u32.to_le_bytes()))
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = within(stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "the client should have closed the connection"
        );
        let (mut stream, second_hello) = accept(&listener).await;
        assert_eq!(second_hello.client_id, first_hello.client_id);
        let retry = read_request(&mut stream).await;
        assert_eq!(retry.request_id, request.request_id + 1);
        answer(
            &mut stream,
            retry.request_id,
            ResponseBody::Status(status()),
        )
        .await;
    });
    let client = Client::connect_with(ClientConfig {
        frame_bytes_max: 1024,
        ..config(&addr)
    })
    .await
    .unwrap();
    let err = client.status().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Protocol(ProtocolError::FrameTooLarge {
                bytes: 1_000_000,
                max: 1024
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("frame_bytes_max"), "{err}");
    assert_eq!(client.status().await.unwrap(), status());
    join(server).await;
}

/// The connection drops with two calls in flight, one of them answered.
/// The client reconnects with the same client id and resends only the
/// unanswered one, byte for byte (same request id), and its caller gets
/// the answer from the second connection.
#[tokio::test]
async fn a_lost_connection_is_resumed_with_the_same_ids() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, first_hello) = accept(&listener).await;
        let a = read_request(&mut stream).await;
        let b = read_request(&mut stream).await;
        let (answered, unanswered) = if a.request_id == 1 { (a, b) } else { (b, a) };
        let result = call_args(&answered).1.to_vec();
        let body = ResponseBody::Committed {
            seq: 1,
            result,
            fuel_used: 0,
        };
        answer(&mut stream, answered.request_id, body).await;
        drop(stream);

        let (mut stream, second_hello) = accept(&listener).await;
        let resent = read_request(&mut stream).await;
        let result = call_args(&resent).1.to_vec();
        let body = ResponseBody::Committed {
            seq: 2,
            result,
            fuel_used: 0,
        };
        answer(&mut stream, resent.request_id, body).await;
        // Nothing else is resent: the next request is a new one.
        let next = read_request(&mut stream).await;
        answer(&mut stream, next.request_id, ResponseBody::Status(status())).await;
        (first_hello, second_hello, unanswered, resent, next)
    });
    let client = Client::connect_with(config(&addr)).await.unwrap();
    let (one, two) = tokio::join!(
        client.call_json("echo", "\"one\""),
        client.call_json("echo", "\"two\"")
    );
    let mut results = [one.unwrap(), two.unwrap()];
    results.sort_by_key(|(_, seq)| *seq);
    assert_eq!(results.map(|(_, seq)| seq), [1, 2]);
    client.status().await.unwrap();

    let (first_hello, second_hello, unanswered, resent, next) = join(server).await;
    assert_eq!(first_hello.client_id, client.client_id());
    assert_eq!(second_hello.client_id, client.client_id());
    assert_eq!(resent, unanswered);
    assert_eq!(resent.request_id, 2);
    assert_eq!((next.request_id, next.acked_below), (3, 3));
}

#[tokio::test]
async fn a_failed_reconnect_leaves_the_outcome_unknown() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        read_request(&mut stream).await;
        // The server goes away: nothing listens any more.
        drop(listener);
        drop(stream);
    });
    let client = Client::connect_with(ClientConfig {
        reconnect_attempts: 2,
        ..config(&addr)
    })
    .await
    .unwrap();
    let err = client.status().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ConnectionLost {
                outcome_unknown: true
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("may or may not have run"), "{err}");
    join(server).await;
    // A request made while the server is down is never sent.
    let err = client.status().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ConnectionLost {
                outcome_unknown: false
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_request_without_an_answer_times_out() {
    let (listener, addr) = listen().await;
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let ignored = read_request(&mut stream).await;
        let next = read_request(&mut stream).await;
        answer(&mut stream, next.request_id, ResponseBody::Status(status())).await;
        within(done_rx).await.unwrap();
        (ignored, next)
    });
    let client = Client::connect_with(ClientConfig {
        request_timeout: Duration::from_millis(200),
        ..config(&addr)
    })
    .await
    .unwrap();
    let err = client.status().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                outcome_unknown: true,
                ..
            }
        ),
        "{err}"
    );
    client.status().await.unwrap();
    done_tx.send(()).unwrap();
    let (ignored, next) = join(server).await;
    assert_eq!(ignored.request_id, 1);
    // The caller gave up on request 1, so it no longer holds the mark back.
    assert_eq!((next.request_id, next.acked_below), (2, 2));
}

#[tokio::test]
async fn connection_refused_says_what_to_check() {
    let (listener, addr) = listen().await;
    drop(listener);
    let err = Client::connect(addr.clone()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Connect { addr: a, .. } if *a == addr),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("(is `ordo serve` running at {addr}?)")),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    // The OS's reason is the source, said once by a chain printer.
    let source = std::error::Error::source(&err)
        .expect("a source")
        .to_string();
    assert!(!message.contains(&source), "{message} repeats {source}");
}

#[test]
fn tokens_are_not_shown_in_debug_output() {
    let config = ClientConfig {
        token: Some("client-secret".into()),
        admin_token: Some("admin-secret".into()),
        register_session: false,
        ..ClientConfig::new("127.0.0.1:1")
    };
    let debug = format!("{config:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

// ---------------------------------------------------------------------
// Clusters: several fake servers, some followers, some dead.
// ---------------------------------------------------------------------

/// `n` listening fake servers and their addresses.
async fn cluster(n: usize) -> (Vec<TcpListener>, Vec<String>) {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let (listener, addr) = listen().await;
        listeners.push(listener);
        addrs.push(addr);
    }
    (listeners, addrs)
}

/// An address nothing listens on (connections to it are refused).
async fn dead_addr() -> String {
    let (listener, addr) = listen().await;
    drop(listener);
    addr
}

fn not_leader(leader: Option<&str>) -> ResponseBody {
    ResponseBody::NotLeader {
        leader: leader.map(String::from),
    }
}

/// Echoes a call's arguments back as its result, at `seq`.
fn echo(request: &Request, seq: u64) -> ResponseBody {
    ResponseBody::Committed {
        fuel_used: 0,
        seq,
        result: call_args(request).1.to_vec(),
    }
}

/// Keeps the connection open until the client hangs up, so the client
/// stays connected while the test looks at it.
async fn hold_until_hangup(mut stream: TcpStream) {
    if let Some(request) = read_message::<Request>(&mut stream).await {
        panic!("unexpected request {request:?}");
    }
}

async fn read_requests(stream: &mut TcpStream, n: usize) -> Vec<Request> {
    let mut requests = Vec::new();
    for _ in 0..n {
        requests.push(read_request(stream).await);
    }
    requests.sort_by_key(|request| request.request_id);
    requests
}

fn spawn_echo_calls(
    client: &Client,
    n: usize,
) -> Vec<JoinHandle<Result<(String, u64), ClientError>>> {
    (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call_json("echo", &i.to_string()).await })
        })
        .collect()
}

#[test]
fn server_lists_are_split_trimmed_and_filtered() {
    let servers = |addr: &str| ClientConfig::new(addr).servers();
    assert_eq!(servers("127.0.0.1:7878"), ["127.0.0.1:7878"]);
    assert_eq!(servers("a:1,b:2,c:3"), ["a:1", "b:2", "c:3"]);
    assert_eq!(servers("  a:1 , b:2,c:3 "), ["a:1", "b:2", "c:3"]);
    assert_eq!(servers("a:1,b:2,"), ["a:1", "b:2"]);
    assert_eq!(servers(",a:1,,\tb:2 ,,"), ["a:1", "b:2"]);
    assert!(servers("").is_empty());
    assert!(servers(" , ,, ").is_empty());
    let config = ClientConfig::cluster(["a:1", "b:2", "c:3"]);
    assert_eq!(config.addr, "a:1,b:2,c:3");
    assert_eq!(config.servers(), ["a:1", "b:2", "c:3"]);
    assert!(
        ClientConfig::cluster(Vec::<String>::new())
            .servers()
            .is_empty()
    );
}

#[tokio::test]
async fn an_empty_server_list_is_an_error() {
    for addr in ["", " ", ",", " , ,"] {
        let err = Client::connect(addr).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::NoServers { addr: a } if a == addr),
            "{err}"
        );
        assert!(err.to_string().contains("separated by commas"), "{err}");
    }
}

/// The first servers are down; the client connects to the first that
/// accepts. If none does, the error names every server tried and the last
/// one's error.
#[tokio::test]
async fn connect_tries_the_servers_in_order() {
    let (dead_a, dead_b) = (dead_addr().await, dead_addr().await);
    let (listener, live) = listen().await;
    let server = tokio::spawn(canned_server(listener));
    let client = Client::connect_with(config(&format!("{dead_a}, {dead_b}, {live}")))
        .await
        .unwrap();
    assert_eq!(client.connected_addr().as_deref(), Some(live.as_str()));
    assert_eq!(
        client.call_json("echo", "1").await.unwrap(),
        ("1".into(), 5)
    );
    drop(client);
    join(server).await;

    let dead_c = dead_addr().await;
    let list = format!("{dead_a},{dead_b},{dead_c}");
    let err = Client::connect_with(config(&list)).await.unwrap_err();
    match &err {
        ClientError::NoServerReachable { tried, last } => {
            assert_eq!(tried, &[dead_a.clone(), dead_b.clone(), dead_c.clone()]);
            assert!(
                matches!(&**last, ClientError::Connect { addr, .. } if *addr == dead_c),
                "{last}"
            );
        }
        other => panic!("expected NoServerReachable, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&dead_a) && message.contains(&dead_c),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    // One server: its own error, as before clusters.
    let err = Client::connect(dead_a.clone()).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

/// A follower (A) answers status itself, and answers three pipelined calls
/// with `NotLeader` naming B. The client moves to B and resends all three
/// byte for byte (same client id, same request ids); B's answers reach the
/// callers. C is never contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_redirects_every_waiting_request_to_the_leader() {
    const CALLS: usize = 3;
    let (mut listeners, addrs) = cluster(3).await;
    let c = listeners.pop().unwrap();
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let leader = addrs[1].clone();
    let follower = tokio::spawn(async move {
        let (mut stream, hello) = accept(&a).await;
        let status_request = read_request(&mut stream).await;
        assert_eq!(status_request.body, RequestBody::Status);
        let body = ResponseBody::Status(status());
        answer(&mut stream, status_request.request_id, body).await;
        let calls = read_requests(&mut stream, CALLS).await;
        // Every waiting call gets `NotLeader`, in one write: the client
        // moves at the first and may hang up before reading the others.
        let mut frames = Vec::new();
        for call in &calls {
            let response = Response {
                request_id: call.request_id,
                body: not_leader(Some(&leader)),
            };
            encode_frame_into(&mut frames, &response, FRAME_BYTES_MAX_DEFAULT).unwrap();
        }
        let _ = stream.write_all(&frames).await;
        // The client hangs up and does not come back.
        assert!(read_message::<Request>(&mut stream).await.is_none());
        (hello, calls)
    });
    let leader = tokio::spawn(async move {
        let (mut stream, hello) = accept(&b).await;
        let calls = read_requests(&mut stream, CALLS).await;
        for call in calls.iter().rev() {
            answer(
                &mut stream,
                call.request_id,
                echo(call, 100 + call.request_id),
            )
            .await;
        }
        let next = read_request(&mut stream).await;
        answer(&mut stream, next.request_id, echo(&next, 200)).await;
        hold_until_hangup(stream).await;
        (hello, calls, next)
    });
    let client = Client::connect_with(config(&addrs.join(",")))
        .await
        .unwrap();
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[0].as_str()));
    assert_eq!(client.status().await.unwrap(), status());
    for (i, call) in spawn_echo_calls(&client, CALLS).into_iter().enumerate() {
        let (json, seq) = within(call).await.unwrap().unwrap();
        assert_eq!(json, i.to_string());
        assert!((102..=104).contains(&seq), "{seq}");
    }
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[1].as_str()));
    assert_eq!(
        client.call_json("echo", "9").await.unwrap(),
        ("9".into(), 200)
    );
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[1].as_str()));

    let client_id = client.client_id();
    drop(client);
    let (a_hello, sent_to_a) = join(follower).await;
    let (b_hello, sent_to_b, next) = join(leader).await;
    assert_eq!(a_hello.client_id, client_id);
    assert_eq!(b_hello.client_id, client_id);
    // Resent unchanged: same ids, same acked_below, same arguments.
    assert_eq!(sent_to_a, sent_to_b);
    let ids: Vec<u64> = sent_to_b.iter().map(|call| call.request_id).collect();
    assert_eq!(ids, [2, 3, 4]);
    assert_eq!((next.request_id, next.acked_below), (5, 5));
    // C was never contacted.
    let unused = tokio::time::timeout(Duration::from_millis(50), c.accept()).await;
    assert!(unused.is_err(), "nobody should connect to C");
}

/// The leader a follower names need not be in the configured list.
#[tokio::test]
async fn a_named_leader_outside_the_list_is_followed() {
    let (follower_listener, follower_addr) = listen().await;
    let (leader_listener, leader_addr) = listen().await;
    let named = leader_addr.clone();
    let follower = tokio::spawn(async move {
        let (mut stream, _) = accept(&follower_listener).await;
        let call = read_request(&mut stream).await;
        answer(&mut stream, call.request_id, not_leader(Some(&named))).await;
        call
    });
    let leader = tokio::spawn(async move {
        let (mut stream, _) = accept(&leader_listener).await;
        let call = read_request(&mut stream).await;
        answer(&mut stream, call.request_id, echo(&call, 7)).await;
        hold_until_hangup(stream).await;
        call
    });
    let dead = dead_addr().await;
    let client = Client::connect_with(config(&format!("{follower_addr},{dead}")))
        .await
        .unwrap();
    assert_eq!(
        client.call_json("echo", "1").await.unwrap(),
        ("1".into(), 7)
    );
    assert_eq!(client.connected_addr(), Some(leader_addr));
    drop(client);
    assert_eq!(join(follower).await, join(leader).await);
}

/// During an election nobody knows the leader: A and then B answer
/// `NotLeader { leader: None }`; the client waits a little before each
/// move (50 ms, then 100 ms), goes round the list, and A, now the leader,
/// answers the same request.
#[tokio::test]
async fn an_election_is_waited_out_by_going_round_the_servers() {
    let (mut listeners, addrs) = cluster(2).await;
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let node_a = tokio::spawn(async move {
        let (mut stream, _) = accept(&a).await;
        let first = read_request(&mut stream).await;
        answer(&mut stream, first.request_id, not_leader(None)).await;
        // Elected meanwhile.
        let (mut stream, hello) = accept(&a).await;
        let again = read_request(&mut stream).await;
        answer(&mut stream, again.request_id, echo(&again, 11)).await;
        hold_until_hangup(stream).await;
        (first, again, hello)
    });
    let node_b = tokio::spawn(async move {
        let (mut stream, hello) = accept(&b).await;
        let request = read_request(&mut stream).await;
        answer(&mut stream, request.request_id, not_leader(None)).await;
        (request, hello)
    });
    let client = Client::connect_with(config(&addrs.join(",")))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = client.call_json("echo", "\"x\"").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answer, ("\"x\"".into(), 11));
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[0].as_str()));
    let client_id = client.client_id();
    drop(client);
    let (first, again, a_hello) = join(node_a).await;
    let (at_b, b_hello) = join(node_b).await;
    assert_eq!(first, at_b);
    assert_eq!(first, again);
    assert_eq!(first.request_id, 1);
    assert_eq!(a_hello.client_id, client_id);
    assert_eq!(b_hello.client_id, client_id);
}

/// The leader (A) drops the connection with two calls in flight, one of
/// them answered. A is gone for good; the client moves on to B (the next
/// in the list) and resends only the unanswered call, same request id.
#[tokio::test]
async fn a_lost_connection_fails_over_to_the_next_server() {
    let (mut listeners, addrs) = cluster(2).await;
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let node_a = tokio::spawn(async move {
        let (mut stream, _) = accept(&a).await;
        let calls = read_requests(&mut stream, 2).await;
        answer(&mut stream, calls[0].request_id, echo(&calls[0], 1)).await;
        // A crashes: the connection and the listener go away.
        drop(a);
        drop(stream);
        calls
    });
    let node_b = tokio::spawn(async move {
        let (mut stream, hello) = accept(&b).await;
        let resent = read_request(&mut stream).await;
        answer(&mut stream, resent.request_id, echo(&resent, 2)).await;
        let next = read_request(&mut stream).await;
        answer(&mut stream, next.request_id, ResponseBody::Status(status())).await;
        hold_until_hangup(stream).await;
        (hello, resent, next)
    });
    let client = Client::connect_with(config(&addrs.join(",")))
        .await
        .unwrap();
    let mut results: Vec<(String, u64)> = Vec::new();
    for call in spawn_echo_calls(&client, 2) {
        results.push(within(call).await.unwrap().unwrap());
    }
    results.sort_by_key(|(_, seq)| *seq);
    assert_eq!(
        results.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        [1, 2]
    );
    client.status().await.unwrap();
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[1].as_str()));
    let client_id = client.client_id();
    drop(client);
    let calls = join(node_a).await;
    let (hello, resent, next) = join(node_b).await;
    assert_eq!(hello.client_id, client_id);
    assert_eq!(resent, calls[1]);
    assert_eq!((next.request_id, next.acked_below), (3, 3));
}

/// Every server is gone and the client may retry for ever: the request
/// still fails, with a timeout, instead of hanging.
#[tokio::test]
async fn a_dead_cluster_fails_requests_after_the_timeout() {
    let (listener, addr) = listen().await;
    let others = [dead_addr().await, dead_addr().await];
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let request = read_request(&mut stream).await;
        drop(listener);
        drop(stream);
        request
    });
    let client = Client::connect_with(ClientConfig {
        request_timeout: Duration::from_millis(400),
        reconnect_attempts: u32::MAX,
        ..config(&format!("{addr},{},{}", others[0], others[1]))
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = within(client.status()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                outcome_unknown: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    join(server).await;
    // A new request is not sent anywhere, and times out too.
    let err = within(client.status()).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert_eq!(client.connected_addr(), None);
}

/// With reconnects off, a follower's `NotLeader` fails the request with
/// an error naming the leader.
#[tokio::test]
async fn not_leader_without_reconnects_is_an_error() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let call = read_request(&mut stream).await;
        answer(
            &mut stream,
            call.request_id,
            not_leader(Some("10.0.0.9:7878")),
        )
        .await;
    });
    let client = Client::connect_with(ClientConfig {
        reconnect_attempts: 0,
        ..config(&addr)
    })
    .await
    .unwrap();
    let err = client.call_json("echo", "1").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::NotLeader { leader: Some(l) } if l == "10.0.0.9:7878"),
        "{err}"
    );
    assert!(err.to_string().contains("10.0.0.9:7878"), "{err}");
    join(server).await;
}

/// A stale read goes out as `RequestBody::Read` to the connected node,
/// even a follower, and comes back with that node's position; a
/// linearizable read is a call, so it goes to the leader.
#[tokio::test]
async fn stale_reads_stay_on_the_node_and_linearizable_reads_go_through_the_log() {
    let (mut listeners, addrs) = cluster(2).await;
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let leader_addr = addrs[1].clone();
    let follower = tokio::spawn(async move {
        let (mut stream, _) = accept(&a).await;
        let mut reads = Vec::new();
        loop {
            let request = read_request(&mut stream).await;
            let body = match &request.body {
                RequestBody::Read {
                    procedure, args, ..
                } => match procedure.as_str() {
                    "balance" => ResponseBody::ReadDone {
                        position: 17,
                        result: args.clone(),
                    },
                    "withdraw" => ResponseBody::Refused {
                        reason: RequestRefusal::BadRequest,
                        message: "`withdraw` is not read-only".into(),
                    },
                    "missing" => ResponseBody::Aborted {
                        fuel_used: 0,
                        seq: 17,
                        kind: "unknown_procedure".into(),
                        message: "no procedure `missing`".into(),
                    },
                    other => panic!("unexpected read of {other}"),
                },
                RequestBody::Call { .. } => {
                    answer(
                        &mut stream,
                        request.request_id,
                        not_leader(Some(&leader_addr)),
                    )
                    .await;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            };
            answer(&mut stream, request.request_id, body).await;
            reads.push(request);
        }
        reads
    });
    let leader = tokio::spawn(async move {
        let (mut stream, _) = accept(&b).await;
        let call = read_request(&mut stream).await;
        answer(&mut stream, call.request_id, echo(&call, 30)).await;
        let read = read_request(&mut stream).await;
        let position = 31;
        let result = match &read.body {
            RequestBody::Read { args, .. } => args.clone(),
            other => panic!("expected a read, got {other:?}"),
        };
        answer(
            &mut stream,
            read.request_id,
            ResponseBody::ReadDone { position, result },
        )
        .await;
        (call, read)
    });
    let client = Client::connect_with(config(&addrs.join(",")))
        .await
        .unwrap();

    let read = client
        .read::<_, u64>("balance", &7u64, ReadConsistency::Stale)
        .await
        .unwrap();
    assert_eq!(
        read,
        ReadValue {
            value: 7,
            position: 17
        }
    );
    let (json, position) = client
        .read_json("balance", r#"{"id":7}"#, ReadConsistency::Stale)
        .await
        .unwrap();
    assert_eq!((json.as_str(), position), (r#"{"id":7}"#, 17));
    let err = client
        .read_json("withdraw", "null", ReadConsistency::Stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::BadRequest(m) if m.contains("read-only")),
        "{err}"
    );
    let err = client
        .read_raw(
            "missing",
            Encoding::Json,
            b"null".to_vec(),
            ReadConsistency::Stale,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::UnknownProcedure { .. }),
        "{err}"
    );
    // A result that is not the type asked for.
    let err = client
        .read::<_, String>("balance", &[0xffu8], ReadConsistency::Stale)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { seq: 17, .. }), "{err}");
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[0].as_str()));

    let read = client
        .read_raw(
            "echo",
            Encoding::Json,
            b"5".to_vec(),
            ReadConsistency::Linearizable,
        )
        .await
        .unwrap();
    assert_eq!(
        read,
        ReadOutcome {
            position: 30,
            result: b"5".to_vec()
        }
    );
    // Now on the leader; a stale read is answered there.
    let read = client
        .read::<_, u64>("balance", &8u64, ReadConsistency::Stale)
        .await
        .unwrap();
    assert_eq!(
        read,
        ReadValue {
            value: 8,
            position: 31
        }
    );

    let reads = join(follower).await;
    assert_eq!(reads.len(), 5);
    assert_eq!(
        reads[0].body,
        RequestBody::Read {
            procedure: "balance".into(),
            encoding: Encoding::Postcard,
            args: postcard::to_stdvec(&7u64).unwrap(),
            min_position: 0,
        }
    );
    // The first read was answered at 17: the next asks for at least that.
    assert_eq!(
        reads[1].body,
        RequestBody::Read {
            procedure: "balance".into(),
            encoding: Encoding::Json,
            args: br#"{"id":7}"#.to_vec(),
            min_position: 17,
        }
    );
    let (call, read) = join(leader).await;
    assert_eq!(call_args(&call), ("echo", &b"5"[..]));
    assert!(matches!(read.body, RequestBody::Read { .. }));
}

/// Where moves go and how long they wait, without sockets.
#[test]
fn the_route_rotates_follows_named_leaders_and_backs_off() {
    let ms = Duration::from_millis;
    let now = Instant::now();
    let servers = vec!["a".to_string(), "b".into(), "c".into()];
    let mut route = Route::new(servers, 0);
    // A lost connection that had answered: the next server, at once.
    route.lost(true);
    assert_eq!(route.next(now), ("b".into(), ms(0)));
    // A failed attempt: the next server; the failed one is avoided.
    route.failed("b", now);
    assert_eq!(route.next(now), ("c".into(), ms(50)));
    route.failed("c", now);
    assert_eq!(route.next(now), ("a".into(), ms(100)));
    // Once the avoidance has passed, they are named leaders again: one is
    // tried at once the first time, even after failures.
    let later = now + AVOID_AFTER_FAILURE;
    route.not_leader(true, Some("c".into()));
    assert_eq!(route.next(later), ("c".into(), ms(0)));
    // ... and the rotation goes on after it.
    route.failed("c", later);
    assert_eq!(route.next(later), ("a".into(), ms(100)));
    // Two nodes naming each other without answering anything: backoff.
    route.not_leader(false, Some("b".into()));
    assert_eq!(route.next(later), ("b".into(), ms(200)));
    // No leader known: wait (at most `ELECTION_POLL_MAX`), then the next
    // server that is not avoided (c failed just now).
    route.not_leader(false, None);
    assert_eq!(route.next(later), ("a".into(), ELECTION_POLL_MAX));
    for _ in 0..10 {
        route.not_leader(false, None);
        assert_eq!(route.next(later).1, ELECTION_POLL_MAX);
    }
    // An answer ends the streak: the first wait for an unknown leader is
    // short again.
    route.not_leader(true, None);
    assert_eq!(route.next(later).1, ms(50));
    // A lost connection after an election: the full backoff again.
    route.lost(false);
    route.failed("a", later);
    route.failed("b", later);
    assert_eq!(route.next(later).1, ms(400));
    // A named leader that is not listed keeps the rotation where it was.
    let mut route = Route::new(vec!["a".into(), "b".into()], 0);
    route.not_leader(true, Some("z".into()));
    assert_eq!(route.next(now), ("z".into(), ms(0)));
    route.failed("z", now);
    assert_eq!(route.next(now), ("b".into(), ms(100)));
    // One server: every move goes back to it, avoided or not.
    let mut route = Route::new(vec!["a".into()], 0);
    route.lost(true);
    assert_eq!(route.next(now), ("a".into(), ms(0)));
    route.failed("a", now);
    assert_eq!(route.next(now), ("a".into(), ms(50)));
}

/// A leader that stalled is avoided: followers that still name it are not
/// followed back to it, the client asks the other servers every 100 ms
/// at most, follows the first leader it can reach, and after
/// `AVOID_AFTER_FAILURE` trusts the old address again.
#[test]
fn the_route_does_not_follow_a_named_leader_that_just_failed() {
    let now = Instant::now();
    let servers = vec!["a".to_string(), "b".into(), "c".into()];
    let mut route = Route::new(servers, 0);
    // Connected to a; it stalls.
    route.avoid("a", now);
    route.lost(true);
    assert_eq!(route.next(now), ("b".into(), Duration::ZERO));
    // b still names a: not followed; c is asked instead, then b again.
    route.not_leader(false, Some("a".into()));
    assert_eq!(route.next(now), ("c".into(), Duration::from_millis(50)));
    route.not_leader(false, Some("a".into()));
    assert_eq!(route.next(now), ("b".into(), ELECTION_POLL_MAX));
    // Elected: b names c, which is followed at once (the hints not
    // followed were no redirects).
    route.not_leader(false, Some("c".into()));
    assert_eq!(route.next(now), ("c".into(), Duration::ZERO));
    // A connection to an address ends its avoidance.
    route.connected("a");
    route.not_leader(true, Some("a".into()));
    assert_eq!(route.next(now), ("a".into(), Duration::ZERO));
    // Avoidance ends by itself, too.
    route.avoid("b", now);
    route.not_leader(true, Some("b".into()));
    assert_eq!(route.next(now).0, "c");
    route.not_leader(true, Some("b".into()));
    assert_eq!(route.next(now + AVOID_AFTER_FAILURE).0, "b");
    // The memory is bounded.
    for n in 0..100 {
        route.avoid(&format!("x{n}"), now);
    }
    assert_eq!(route.avoided.len(), AVOIDED_ADDRS_MAX);
    assert!(route.is_avoided("x99", now) && !route.is_avoided("x0", now));
}

/// A killed leader, as the bench saw it: the connection is lost, a
/// follower still names the dead leader, which is tried once and refuses,
/// the client polls through the election, and the first server to name
/// the new leader sends it there at once. (The redirect to the dead
/// leader used to count against the new one, which then waited the
/// streak's backoff: 500 ms.)
#[test]
fn the_first_leader_named_after_an_election_is_followed_at_once() {
    let now = Instant::now();
    let servers = vec!["a".to_string(), "b".into(), "c".into()];
    let mut route = Route::new(servers, 0);
    route.lost(true);
    assert_eq!(route.next(now), ("b".into(), Duration::ZERO));
    // b still names a, the first redirect: at once; a refuses.
    route.not_leader(false, Some("a".into()));
    assert_eq!(route.next(now), ("a".into(), Duration::ZERO));
    route.failed("a", now);
    let (addr, _) = route.next(now);
    assert_eq!(addr, "b");
    // A second of polls: the followers name a (avoided) or nobody.
    for round in 0..10 {
        let leader = (round % 2 == 0).then(|| "a".to_string());
        route.not_leader(false, leader);
        let (addr, wait) = route.next(now);
        assert_ne!(addr, "a");
        assert!(wait <= ELECTION_POLL_MAX, "{wait:?}");
    }
    // c is elected and named: followed at once, though the streak is long.
    route.not_leader(false, Some("c".into()));
    assert_eq!(route.next(now), ("c".into(), Duration::ZERO));
    // But c and b naming each other back and forth still backs off.
    route.not_leader(false, Some("b".into()));
    let (addr, wait) = route.next(now);
    assert_eq!(addr, "b");
    assert!(wait > ELECTION_POLL_MAX, "{wait:?}");
}

#[test]
fn a_server_list_gets_the_short_connect_timeout() {
    assert_eq!(
        ClientConfig::new("a:1").connect_timeout,
        CONNECT_TIMEOUT_DEFAULT
    );
    assert_eq!(
        ClientConfig::new("a:1,b:2").connect_timeout,
        CLUSTER_CONNECT_TIMEOUT_DEFAULT
    );
    assert_eq!(
        ClientConfig::cluster(["a:1", "b:2", "c:3"]).connect_timeout,
        CLUSTER_CONNECT_TIMEOUT_DEFAULT
    );
}

// ---------------------------------------------------------------------
// Stalls: a server that keeps its connection open and says nothing.
// ---------------------------------------------------------------------

#[test]
fn the_stall_timeout_defaults_to_one_second_and_is_shown() {
    let config = ClientConfig::new("a:1,b:2");
    assert_eq!(config.stall_timeout, Some(STALL_TIMEOUT_DEFAULT));
    assert_eq!(STALL_TIMEOUT_DEFAULT, Duration::from_secs(1));
    let debug = format!("{config:?}");
    assert!(debug.contains("stall_timeout: Some(1s)"), "{debug}");
}

/// Whether a connection is waiting on `listener` (none is, if nothing
/// arrives within a short while).
async fn connection_pending(listener: &TcpListener) -> bool {
    tokio::time::timeout(Duration::from_millis(100), listener.accept())
        .await
        .is_ok()
}

/// The leader (A) is frozen: it took the handshake and reads the call, but
/// never answers, and its socket stays open. With a 300 ms stall timeout
/// the client leaves A long before the 20 s request timeout, moves to B
/// and resends the call with the same client id and request id; B's
/// answer reaches the caller.
#[tokio::test]
async fn a_silent_leader_is_left_for_the_next_server_after_the_stall_timeout() {
    let (mut listeners, addrs) = cluster(2).await;
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let node_a = tokio::spawn(async move {
        let (mut stream, hello) = accept(&a).await;
        let call = read_request(&mut stream).await;
        // Frozen: no answer. The client must hang up on its own.
        hold_until_hangup(stream).await;
        (hello, call)
    });
    let node_b = tokio::spawn(async move {
        let (mut stream, hello) = accept(&b).await;
        let resent = read_request(&mut stream).await;
        answer(&mut stream, resent.request_id, echo(&resent, 7)).await;
        hold_until_hangup(stream).await;
        (hello, resent)
    });
    let client = Client::connect_with(ClientConfig {
        request_timeout: Duration::from_secs(20),
        stall_timeout: Some(Duration::from_millis(300)),
        ..config(&addrs.join(","))
    })
    .await
    .unwrap();
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[0].as_str()));
    let started = std::time::Instant::now();
    let (result, seq) = within(client.call_json("echo", "\"frozen\""))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!((result.as_str(), seq), ("\"frozen\"", 7));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[1].as_str()));
    let client_id = client.client_id();
    drop(client);
    let (a_hello, call) = join(node_a).await;
    let (b_hello, resent) = join(node_b).await;
    assert_eq!(a_hello.client_id, client_id);
    assert_eq!(b_hello.client_id, client_id);
    assert_eq!(resent, call);
    assert_eq!(resent.request_id, 1);
}

/// The issue's failover: the leader (A) freezes, and the followers still
/// name it for a while (B twice, C once) before B is elected. The client
/// leaves A after the stall timeout and does not follow the hints back to
/// A (whose handshake would hang for the whole 10 s connect timeout): it
/// asks B and C until B leads, and A never sees a second connection.
#[tokio::test]
async fn followers_naming_a_frozen_leader_are_not_followed_back_to_it() {
    let (mut listeners, addrs) = cluster(3).await;
    let c = listeners.pop().unwrap();
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let frozen = addrs[0].clone();
    let node_a = tokio::spawn(async move {
        let (mut stream, _) = accept(&a).await;
        let call = read_request(&mut stream).await;
        hold_until_hangup(stream).await;
        // A second connection would be the client waiting on A again.
        let again = tokio::time::timeout(Duration::from_millis(500), a.accept()).await;
        (call, again.is_ok())
    });
    let node_b = tokio::spawn({
        let frozen = frozen.clone();
        async move {
            for _ in 0..2 {
                let (mut stream, _) = accept(&b).await;
                let request = read_request(&mut stream).await;
                answer(&mut stream, request.request_id, not_leader(Some(&frozen))).await;
            }
            // Elected.
            let (mut stream, _) = accept(&b).await;
            let request = read_request(&mut stream).await;
            answer(&mut stream, request.request_id, echo(&request, 9)).await;
            hold_until_hangup(stream).await;
            request
        }
    });
    let node_c = tokio::spawn(async move {
        let (mut stream, _) = accept(&c).await;
        let request = read_request(&mut stream).await;
        answer(&mut stream, request.request_id, not_leader(Some(&frozen))).await;
        request
    });
    let client = Client::connect_with(ClientConfig {
        request_timeout: Duration::from_secs(20),
        stall_timeout: Some(Duration::from_millis(300)),
        ..config(&addrs.join(","))
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let (result, seq) = within(client.call_json("echo", "\"x\"")).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!((result.as_str(), seq), ("\"x\"", 9));
    // 300 ms of stall, then three asks at most 100 ms apart.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[1].as_str()));
    drop(client);
    let (call, reconnected) = join(node_a).await;
    assert!(!reconnected, "the client went back to the frozen leader");
    assert_eq!(join(node_b).await, call);
    assert_eq!(join(node_c).await, call);
}

/// One server, silent: the client has nowhere to go, so it keeps its one
/// connection and the call fails with the request timeout; the server
/// never sees a second connection and the first one stays open.
#[tokio::test]
async fn a_single_silent_server_is_not_left_before_the_request_timeout() {
    let (listener, addr) = listen().await;
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let call = read_request(&mut stream).await;
        within(done_rx).await.unwrap();
        // The client did not hang up (a read finds nothing, not the end)...
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await;
        assert!(read.is_err(), "the client closed or wrote: {read:?}");
        // ... and did not open another connection.
        assert!(!connection_pending(&listener).await);
        call
    });
    let client = Client::connect_with(ClientConfig {
        request_timeout: Duration::from_millis(1500),
        stall_timeout: Some(Duration::from_millis(200)),
        ..config(&addr)
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = within(client.call_json("echo", "1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                outcome_unknown: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(client.connected_addr().as_deref(), Some(addr.as_str()));
    done_tx.send(()).unwrap();
    let call = join(server).await;
    assert_eq!(call.request_id, 1);
}

/// A slow but live leader in a two-server list: ten calls wait on it for
/// about a second in all, but it answers one every 100 ms, well within the
/// 500 ms stall timeout, so every answer restarts the clock and the client
/// never leaves it for B.
#[tokio::test]
async fn a_slow_server_that_keeps_answering_is_not_left() {
    const CALLS: usize = 10;
    let (mut listeners, addrs) = cluster(2).await;
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let node_a = tokio::spawn(async move {
        let (mut stream, _) = accept(&a).await;
        let calls = read_requests(&mut stream, CALLS).await;
        for (seq, call) in (1..).zip(&calls) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer(&mut stream, call.request_id, echo(call, seq)).await;
        }
        hold_until_hangup(stream).await;
        // Only one connection, ever.
        assert!(!connection_pending(&a).await);
    });
    let client = Client::connect_with(ClientConfig {
        request_timeout: Duration::from_secs(20),
        stall_timeout: Some(Duration::from_millis(500)),
        ..config(&addrs.join(","))
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut seqs = Vec::new();
    for call in spawn_echo_calls(&client, CALLS) {
        seqs.push(within(call).await.unwrap().unwrap().1);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=CALLS as u64).collect::<Vec<_>>());
    // Longer than the stall timeout in all: only the answers kept it alive.
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(client.connected_addr().as_deref(), Some(addrs[0].as_str()));
    drop(client);
    join(node_a).await;
    assert!(!connection_pending(&b).await, "the client moved to B");
}

/// A registering client says a session id in its hello, registers it
/// before its first call, and after `session_expired` fails every later
/// logged request without sending it.
#[tokio::test]
async fn sessions_are_registered_first_and_expiry_is_final() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, hello) = accept(&listener).await;
        let register = read_request(&mut stream).await;
        assert_eq!(
            register.body,
            RequestBody::Session(SessionRequest::Register)
        );
        answer(
            &mut stream,
            register.request_id,
            ResponseBody::Committed {
                fuel_used: 0,
                seq: 1,
                result: Vec::new(),
            },
        )
        .await;
        let call = read_request(&mut stream).await;
        assert!(call.request_id > register.request_id);
        answer(
            &mut stream,
            call.request_id,
            ResponseBody::Aborted {
                fuel_used: 0,
                seq: 9,
                kind: "session_expired".into(),
                message: "session gone".into(),
            },
        )
        .await;
        // A status needs no session: still sent and answered.
        let status_request = read_request(&mut stream).await;
        assert_eq!(status_request.body, RequestBody::Status);
        answer(
            &mut stream,
            status_request.request_id,
            ResponseBody::Status(status()),
        )
        .await;
        hold_until_hangup(stream).await;
        hello
    });
    let client = Client::connect_with(ClientConfig {
        register_session: true,
        ..config(&addr)
    })
    .await
    .unwrap();
    assert_eq!(
        (client.client_id() >> 64) as u64,
        SESSION_CLIENT_ID_TAG,
        "a session id"
    );
    let err = client.call_json("p", "{}").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::SessionExpired { message } if message == "session gone"),
        "{err}"
    );
    assert!(err.to_string().contains("create a new Client"), "{err}");
    let err = client.call_json("p", "{}").await.unwrap_err();
    assert!(matches!(err, ClientError::SessionExpired { .. }), "{err}");
    assert_eq!(client.status().await.unwrap(), status());
    drop(client);
    let hello = join(server).await;
    assert_eq!((hello.client_id >> 64) as u64, SESSION_CLIENT_ID_TAG);
}

/// A refused registration fails the call that needed it, and an
/// unregistered client's id is outside the session id space.
#[tokio::test]
async fn a_refused_registration_fails_the_call() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let register = read_request(&mut stream).await;
        assert_eq!(
            register.body,
            RequestBody::Session(SessionRequest::Register)
        );
        answer(
            &mut stream,
            register.request_id,
            ResponseBody::Refused {
                reason: RequestRefusal::Overloaded,
                message: "busy".into(),
            },
        )
        .await;
        hold_until_hangup(stream).await;
    });
    let client = Client::connect_with(ClientConfig {
        register_session: true,
        ..config(&addr)
    })
    .await
    .unwrap();
    let err = client.call_json("p", "{}").await.unwrap_err();
    assert!(matches!(err, ClientError::Overloaded), "{err}");
    drop(client);
    join(server).await;
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (stream, hello) = accept(&listener).await;
        hold_until_hangup(stream).await;
        hello
    });
    let client = Client::connect_with(config(&addr)).await.unwrap();
    assert_ne!((client.client_id() >> 64) as u64, SESSION_CLIENT_ID_TAG);
    // Nothing to end: it never registered, and nothing is sent.
    client.end_session().await.unwrap();
    drop(client);
    join(server).await;
}

/// A retry answered `result_not_retained` is a typed error naming the
/// original's seq.
#[tokio::test]
async fn results_not_retained_are_typed() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept(&listener).await;
        let call = read_request(&mut stream).await;
        answer(
            &mut stream,
            call.request_id,
            ResponseBody::Aborted {
                fuel_used: 0,
                seq: 4,
                kind: "result_not_retained".into(),
                message: "too large".into(),
            },
        )
        .await;
        hold_until_hangup(stream).await;
    });
    let client = Client::connect_with(config(&addr)).await.unwrap();
    let err = client.call_json("p", "{}").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::ResultNotRetained { seq: 4, .. }),
        "{err}"
    );
    drop(client);
    join(server).await;
}

// ---------------------------------------------------------------------
// Monotonic stale reads (protocol version 4)

/// Accepts a connection and welcomes it at `position`.
async fn accept_at(listener: &TcpListener, position: u64) -> TcpStream {
    let (mut stream, _) = within(listener.accept()).await.unwrap();
    let hello: Hello = read_message(&mut stream).await.expect("a hello");
    assert_eq!(hello.check(), Ok(()));
    write_message(
        &mut stream,
        &Welcome::Accepted {
            version: PROTOCOL_VERSION,
            position,
            node_id: Some(1),
        },
    )
    .await;
    stream
}

/// A read's `min_position`, or a panic if the request is not a read.
fn min_position(request: &Request) -> u64 {
    match &request.body {
        RequestBody::Read { min_position, .. } => *min_position,
        other => panic!("expected a read, got {other:?}"),
    }
}

fn read_done(position: u64) -> ResponseBody {
    ResponseBody::ReadDone {
        position,
        result: postcard::to_stdvec(&7u64).unwrap(),
    }
}

/// Every answer that carries a position raises what the client asks of
/// its next stale read (the welcome, a commit, a read, a status, an
/// abort, `observe_position`), an older one never lowers it, and a
/// `Behind` answer is retried on the same node (the only one listed)
/// with the same floor until a read at or above it comes back.
#[tokio::test]
async fn stale_reads_ask_for_the_highest_position_seen_and_retry_when_behind() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut stream = accept_at(&listener, 25).await;
        let mut floors = Vec::new();
        // The welcome said 25.
        let read = read_request(&mut stream).await;
        floors.push(min_position(&read));
        answer(&mut stream, read.request_id, read_done(26)).await;
        // A call commits at 40; the node then lags: twice `Behind`.
        let call = read_request(&mut stream).await;
        answer(&mut stream, call.request_id, echo(&call, 40)).await;
        for _ in 0..2 {
            let read = read_request(&mut stream).await;
            floors.push(min_position(&read));
            let behind = ResponseBody::Behind {
                applied: 30,
                wanted: 40,
            };
            answer(&mut stream, read.request_id, behind).await;
        }
        let read = read_request(&mut stream).await;
        floors.push(min_position(&read));
        answer(&mut stream, read.request_id, read_done(41)).await;
        // A status at 50, then an abort at 55 (the read's own position).
        let status_request = read_request(&mut stream).await;
        let at_50 = StatusInfo {
            position: 50,
            ..status()
        };
        answer(
            &mut stream,
            status_request.request_id,
            ResponseBody::Status(at_50),
        )
        .await;
        let read = read_request(&mut stream).await;
        floors.push(min_position(&read));
        let aborted = ResponseBody::Aborted {
            fuel_used: 0,
            seq: 55,
            kind: "user".into(),
            message: "no such account".into(),
        };
        answer(&mut stream, read.request_id, aborted).await;
        // A lower position (another client's older answer) lowers nothing.
        let read = read_request(&mut stream).await;
        floors.push(min_position(&read));
        answer(&mut stream, read.request_id, read_done(55)).await;
        let read = read_request(&mut stream).await;
        floors.push(min_position(&read));
        answer(&mut stream, read.request_id, read_done(90)).await;
        floors
    });
    let client = Client::connect_with(config(&addr)).await.unwrap();
    assert_eq!(client.observed_position(), 25);
    let stale = ReadConsistency::Stale;
    let read = client
        .read::<_, u64>("balance", &7u64, stale)
        .await
        .unwrap();
    assert_eq!((read.value, read.position), (7, 26));
    client.call_json("echo", "1").await.unwrap();
    assert_eq!(client.observed_position(), 40);
    let started = Instant::now();
    let read = client
        .read::<_, u64>("balance", &7u64, stale)
        .await
        .unwrap();
    assert_eq!(read.position, 41);
    // Two pauses: 50 ms, then 100 ms.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(client.status().await.unwrap().position, 50);
    let aborted = client.read::<_, u64>("balance", &7u64, stale).await;
    assert!(matches!(aborted, Err(ClientError::Aborted { seq: 55, .. })));
    client.observe_position(10);
    assert_eq!(
        client
            .read::<_, u64>("balance", &7u64, stale)
            .await
            .unwrap()
            .position,
        55
    );
    client.observe_position(90);
    assert_eq!(client.observed_position(), 90);
    client
        .read::<_, u64>("balance", &7u64, stale)
        .await
        .unwrap();
    assert_eq!(join(server).await, [25, 40, 40, 40, 50, 55, 90]);
}

/// A node that stays behind fails the read with `Behind` once the request
/// timeout leaves no room for another pause; nothing is read below the
/// floor.
#[tokio::test]
async fn a_node_that_stays_behind_fails_the_read_within_the_request_timeout() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut stream = accept_at(&listener, 100).await;
        let mut asked = 0;
        while let Some(request) = read_message::<Request>(&mut stream).await {
            assert_eq!(min_position(&request), 100);
            asked += 1;
            let behind = ResponseBody::Behind {
                applied: 60,
                wanted: 100,
            };
            answer(&mut stream, request.request_id, behind).await;
        }
        asked
    });
    let timeout = Duration::from_millis(600);
    let client = Client::connect_with(ClientConfig {
        request_timeout: timeout,
        ..config(&addr)
    })
    .await
    .unwrap();
    let started = Instant::now();
    let err = client
        .read::<_, u64>("balance", &7u64, ReadConsistency::Stale)
        .await
        .unwrap_err();
    assert!(started.elapsed() < timeout + Duration::from_millis(200));
    assert!(
        matches!(
            err,
            ClientError::Behind {
                applied: 60,
                wanted: 100,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("position 100") && message.contains("up to 60"),
        "{message}"
    );
    drop(client);
    // 50 + 100 + 200 ms of pauses fit in 600 ms; the fourth pause does not.
    assert_eq!(join(server).await, 4);
}

/// With several servers listed, a `Behind` answer moves the client to the
/// next one, where the read is asked again with the same floor.
#[tokio::test]
async fn a_behind_node_is_left_for_the_next_server() {
    let (mut listeners, addrs) = cluster(2).await;
    let b = listeners.pop().unwrap();
    let a = listeners.pop().unwrap();
    let lagging = tokio::spawn(async move {
        let mut stream = accept_at(&a, 0).await;
        let call = read_request(&mut stream).await;
        answer(&mut stream, call.request_id, echo(&call, 70)).await;
        let read = read_request(&mut stream).await;
        assert_eq!(min_position(&read), 70);
        let behind = ResponseBody::Behind {
            applied: 12,
            wanted: 70,
        };
        answer(&mut stream, read.request_id, behind).await;
        // The client hangs up on this node.
        assert!(read_message::<Request>(&mut stream).await.is_none());
    });
    let caught_up = tokio::spawn(async move {
        let mut stream = accept_at(&b, 65).await;
        let read = read_request(&mut stream).await;
        answer(&mut stream, read.request_id, read_done(71)).await;
        min_position(&read)
    });
    let client = Client::connect_with(config(&addrs.join(",")))
        .await
        .unwrap();
    client.call_json("echo", "1").await.unwrap();
    let read = client
        .read::<_, u64>("balance", &7u64, ReadConsistency::Stale)
        .await
        .unwrap();
    // Answered by the second server (the first never answers a read).
    assert_eq!(read.position, 71);
    join(lagging).await;
    assert_eq!(join(caught_up).await, 70);
}
