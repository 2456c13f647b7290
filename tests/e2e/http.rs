//! The HTTP/JSON API of `ordo serve --http-listen` as a real process on
//! loopback, driven by a small hand-written HTTP/1.1 client (curl-like
//! requests, byte for byte what goes on the wire): calls and their
//! sequence numbers, stable error codes, tokens, deploys, idempotent
//! retries (counted by their effects, across a restart too), stale and
//! linearizable reads, and the limits: oversized bodies refused before
//! they are read, slow clients, overload, connections, and memory under a
//! flood of large bodies.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ADMIN, Server};

const IO_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_TOKEN: &str = "client-secret";

/// An answer as it came off the wire.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The stable error code of a refusal or an abort.
    #[track_caller]
    pub(crate) fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {self:?}"))
            .to_string()
    }
}

/// Parses one response from the bytes of a connection the server closed
/// (every request here says `Connection: close`).
fn parse_answer(bytes: &[u8]) -> Answer {
    let head_end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..head_end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    let mut body = bytes[head_end + 4..].to_vec();
    if let Some((_, length)) = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        body.truncate(length.parse().unwrap());
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn head_bytes(method: &str, path: &str, headers: &[(&str, &str)], body_bytes: usize) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if method == "POST" {
        head.push_str(&format!("Content-Length: {body_bytes}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends one request and reads its answer to the end of the connection.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = connect(addr);
    let mut bytes = head_bytes(method, path, headers, body.len());
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    parse_answer(&answer)
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST /v1/call/{path}` with a JSON body and the client token.
fn call(addr: SocketAddr, path: &str, json: &str, extra: &[(&str, &str)]) -> Answer {
    let auth = bearer(CLIENT_TOKEN);
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    request(
        addr,
        "POST",
        &format!("/v1/call/{path}"),
        &headers,
        json.as_bytes(),
    )
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|auth| ("Authorization", auth))
        .into_iter()
        .collect();
    request(addr, "GET", path, &headers, &[])
}

fn deploy(addr: SocketAddr, name: &str, wasm: &[u8], token: Option<&str>) -> Answer {
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", "application/wasm")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    request(addr, "POST", &format!("/v1/modules/{name}"), &headers, wasm)
}

/// A server with the HTTP API, a client token and `extra` options.
fn start(extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec![
        "--http-listen",
        "127.0.0.1:0",
        "--client-token",
        CLIENT_TOKEN,
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let http = server.http_addr.expect("started with --http-listen");
    (server, http)
}

#[track_caller]
pub(crate) fn ok(answer: &Answer) -> serde_json::Value {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()
}

fn deploy_bank(http: SocketAddr) -> u64 {
    let deployed = ok(&deploy(http, "bank", ordo::modules::BANK, Some(ADMIN)));
    deployed["seq"].as_u64().unwrap()
}

#[test]
fn http_calls_reads_deploys_and_stable_errors() {
    let (server, http) = start(&["--metrics-listen", "127.0.0.1:0"]);

    // Tokens: none, a wrong one, a malformed header.
    let missing = get(http, "/v1/status", None);
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (401, "unauthorized")
    );
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = get(http, "/v1/status", Some("not-the-token"));
    assert_eq!((wrong.status, wrong.code().as_str()), (401, "unauthorized"));
    let basic = request(
        http,
        "GET",
        "/v1/status",
        &[("Authorization", "Basic Y2xpZW50")],
        &[],
    );
    assert_eq!(basic.status, 401);

    // Deploys need the admin token: the client token is forbidden,
    // nothing is unauthorized, and neither deployed anything.
    let forbidden = deploy(http, "bank", ordo::modules::BANK, Some(CLIENT_TOKEN));
    assert_eq!(
        (forbidden.status, forbidden.code().as_str()),
        (403, "forbidden")
    );
    let anonymous = deploy(http, "bank", ordo::modules::BANK, None);
    assert_eq!(anonymous.status, 401);
    let listed = ok(&get(http, "/v1/modules", Some(CLIENT_TOKEN)));
    assert_eq!(listed["modules"], serde_json::json!([]), "{listed}");
    let deployed = ok(&deploy(http, "bank", ordo::modules::BANK, Some(ADMIN)));
    assert_eq!(deployed["seq"], 1, "{deployed}");
    assert_eq!(deployed["name"], "bank");
    let sha256 = deployed["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha256.len(), 64);
    let rejected = deploy(http, "junk", b"\0asm not really", Some(ADMIN));
    assert_eq!(
        (rejected.status, rejected.code().as_str()),
        (422, "deploy_rejected")
    );

    // Listings.
    let modules = ok(&get(http, "/v1/modules", Some(CLIENT_TOKEN)));
    assert_eq!(modules["modules"][0]["name"], "bank");
    assert_eq!(modules["modules"][0]["sha256"], sha256.as_str());
    assert_eq!(modules["modules"][0]["tables"], serde_json::json!(["acct"]));
    assert_eq!(modules["modules"][0]["deployed_at"], 1);
    assert_eq!(
        modules["modules"][0]["wasm_bytes"],
        ordo::modules::BANK.len() as u64
    );
    let procedures = ok(&get(http, "/v1/procedures", Some(ADMIN)));
    let balance = procedures["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|procedure| procedure["name"] == "balance")
        .expect("balance is listed")
        .clone();
    assert_eq!(
        balance,
        serde_json::json!({
            "name": "balance",
            "module": "bank",
            "read_only": true,
            "params": [{"name": "id", "type": "u64"}],
        })
    );

    // A call: its seq, its result embedded as JSON (null for `()`).
    let opened = ok(&call(http, "open", r#"{"id": 1, "balance": 100}"#, &[]));
    assert_eq!(opened, serde_json::json!({"seq": 2, "result": null}));
    ok(&call(http, "open", r#"{"id": 2, "balance": 5}"#, &[]));
    let moved = ok(&call(
        http,
        "transfer",
        r#"{"from": 1, "to": 2, "amount": 30}"#,
        &[],
    ));
    let moved_seq = moved["seq"].as_u64().unwrap();
    assert_eq!(moved_seq, 4);
    let range = ok(&call(
        http,
        "total_range",
        r#"{"first_id": 1, "count": 2}"#,
        &[],
    ));
    assert_eq!(range["result"], serde_json::json!([105, 2]), "{range}");

    // A user abort: 422, its kind as the code, sequenced.
    let exists = call(http, "open", r#"{"id": 1, "balance": 1}"#, &[]);
    assert_eq!((exists.status, exists.code().as_str()), (422, "user"));
    let body = exists.json();
    assert!(body["seq"].as_u64().unwrap() > moved_seq, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{body}"
    );
    let overdrawn = call(
        http,
        "transfer",
        r#"{"from": 2, "to": 1, "amount": 1000}"#,
        &[],
    );
    assert_eq!((overdrawn.status, overdrawn.code().as_str()), (422, "user"));

    // Bad JSON, arguments that do not fit, an unknown procedure, a
    // missing content type: nothing ran.
    let position = ok(&get(http, "/v1/status", Some(CLIENT_TOKEN)))["position"]
        .as_u64()
        .unwrap();
    let bad_json = call(http, "open", r#"{"id": 3, "balance": "#, &[]);
    assert_eq!(
        (bad_json.status, bad_json.code().as_str()),
        (400, "bad_json")
    );
    let bad_args = call(http, "open", r#"{"id": "three", "balance": 1}"#, &[]);
    assert_eq!(
        (bad_args.status, bad_args.code().as_str()),
        (400, "bad_arguments")
    );
    let bad_name = call(http, "No-Such-Name", "{}", &[]);
    assert_eq!(
        (bad_name.status, bad_name.code().as_str()),
        (404, "unknown_procedure")
    );
    let form = request(
        http,
        "POST",
        "/v1/call/open",
        &[
            ("Authorization", &bearer(CLIENT_TOKEN)),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"id=3",
    );
    assert_eq!(
        (form.status, form.code().as_str()),
        (415, "unsupported_media_type")
    );
    let after = ok(&get(http, "/v1/status", Some(CLIENT_TOKEN)));
    assert_eq!(after["position"], position, "refusals are not sequenced");
    assert_eq!(after["role"], "standalone");
    // A well-formed name that no module has is logged and aborts, 404.
    let unknown = call(http, "nope", "{}", &[]);
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "unknown_procedure")
    );
    assert_eq!(unknown.json()["seq"], position + 1);

    // Reads: stale at this node's position, linearizable through the log.
    let stale = ok(&call(http, "balance?read=stale", r#"{"id": 1}"#, &[]));
    assert_eq!(stale["result"], 70);
    assert_eq!(stale["position"], position + 1, "{stale}");
    assert!(stale.get("seq").is_none(), "a stale read is not sequenced");
    let linearizable = ok(&call(
        http,
        "balance?read=linearizable",
        r#"{"id": 1}"#,
        &[],
    ));
    assert_eq!(linearizable["result"], 70);
    assert_eq!(linearizable["seq"], position + 2, "{linearizable}");
    assert_eq!(linearizable["position"], linearizable["seq"]);
    let monotonic = ok(&call(
        http,
        "balance?read=stale&min_position=3",
        r#"{"id": 2}"#,
        &[],
    ));
    assert_eq!(monotonic["result"], 35);
    for mode in ["stale", "linearizable"] {
        let writer = call(
            http,
            &format!("deposit?read={mode}"),
            r#"{"id": 1, "amount": 1}"#,
            &[],
        );
        assert_eq!(
            (writer.status, writer.code().as_str()),
            (400, "not_read_only"),
            "{mode}"
        );
    }
    let bogus = call(http, "balance?read=eventually", r#"{"id": 1}"#, &[]);
    assert_eq!((bogus.status, bogus.code().as_str()), (400, "bad_request"));
    assert_eq!(
        ok(&call(http, "balance", r#"{"id": 1}"#, &[]))["result"],
        70
    );

    // Routing: unknown endpoints and methods answer JSON too.
    let missing = get(http, "/v2/everything", Some(CLIENT_TOKEN));
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );
    let method = get(http, "/v1/call/balance", Some(CLIENT_TOKEN));
    assert_eq!(
        (method.status, method.code().as_str()),
        (405, "method_not_allowed")
    );

    // The metrics endpoint, now on the same HTTP library: one scrape per
    // connection, closed after the answer.
    let metrics_addr = server.metrics_addr.expect("metrics address");
    let mut scrape = connect(metrics_addr);
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut bytes = Vec::new();
    scrape.read_to_end(&mut bytes).unwrap();
    let metrics = parse_answer(&bytes);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("application/openmetrics-text")),
        "{metrics:?}"
    );
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("ordo_log_position"), "{text}");
    assert_eq!(get(metrics_addr, "/other", None).status, 404);
}

/// The balance of account `id`, read through the log.
fn balance(http: SocketAddr, id: u64) -> i64 {
    ok(&call(http, "balance", &format!(r#"{{"id": {id}}}"#), &[]))["result"]
        .as_i64()
        .unwrap()
}

#[test]
fn an_idempotency_key_runs_its_call_once_even_across_a_restart() {
    let (server, http) = start(&[]);
    deploy_bank(http);
    ok(&call(http, "open", r#"{"id": 1, "balance": 0}"#, &[]));
    let deposit = r#"{"id": 1, "amount": 10}"#;

    let first = call(http, "deposit", deposit, &[("Idempotency-Key", "order-1")]);
    let seq = ok(&first)["seq"].as_u64().unwrap();
    assert_eq!(first.header("idempotent-replayed"), None);
    let retry = call(http, "deposit", deposit, &[("Idempotency-Key", "order-1")]);
    assert_eq!(ok(&retry)["seq"], seq, "the original's seq");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(http, 1), 10, "one deposit for two requests");

    // Another key is another request; no key, a new one each time.
    ok(&call(
        http,
        "deposit",
        deposit,
        &[("Idempotency-Key", "order-2")],
    ));
    ok(&call(http, "deposit", deposit, &[]));
    ok(&call(http, "deposit", deposit, &[]));
    assert_eq!(balance(http, 1), 40);

    // Eight clients retrying one key at the same time: one effect, one
    // seq for all.
    let seqs: Vec<u64> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let answer = call(http, "deposit", deposit, &[("Idempotency-Key", "race")]);
                    ok(&answer)["seq"].as_u64().unwrap()
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect()
    });
    assert!(seqs.iter().all(|&racer| racer == seqs[0]), "{seqs:?}");
    assert_eq!(balance(http, 1), 50);

    // An abort is an outcome too: the retry gets it back, same seq.
    let missing = r#"{"id": 99, "amount": 10}"#;
    let aborted = call(http, "deposit", missing, &[("Idempotency-Key", "order-3")]);
    assert_eq!(aborted.status, 422);
    let again = call(http, "deposit", missing, &[("Idempotency-Key", "order-3")]);
    assert_eq!(again.status, 422);
    assert_eq!(again.json()["seq"], aborted.json()["seq"]);

    let bad_key = call(
        http,
        "deposit",
        deposit,
        &[("Idempotency-Key", "has space")],
    );
    assert_eq!(
        (bad_key.status, bad_key.code().as_str()),
        (400, "bad_idempotency_key")
    );

    // The exactly-once table is replicated state, rebuilt from the log:
    // after a restart the retry is still answered, not run.
    let (clean, dir) = server.terminate();
    assert!(clean);
    let server = Server::start_in(
        dir,
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--client-token",
            CLIENT_TOKEN,
        ],
    );
    let http = server.http_addr.unwrap();
    let retry = call(http, "deposit", deposit, &[("Idempotency-Key", "order-1")]);
    assert_eq!(ok(&retry)["seq"], seq);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(http, 1), 50);

    // A keyed deploy is answered once too.
    let first = deploy_keyed(http, "kv-1");
    let again = deploy_keyed(http, "kv-1");
    assert_eq!(ok(&first)["seq"], ok(&again)["seq"]);
}

fn deploy_keyed(http: SocketAddr, key: &str) -> Answer {
    let auth = bearer(ADMIN);
    request(
        http,
        "POST",
        "/v1/modules/kv",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/wasm"),
            ("Idempotency-Key", key),
        ],
        ordo::modules::KV,
    )
}

/// Reads what the server sends until it closes the connection (or the
/// read times out); the bytes, and whether it closed.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (bytes, true),
            Ok(read) => bytes.extend_from_slice(&chunk[..read]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                return (bytes, true);
            }
            Err(_) => return (bytes, false),
        }
    }
}

#[test]
fn http_bodies_heads_and_slow_clients_are_bounded() {
    let (_server, http) = start(&["--http-client-timeout", "1s"]);
    deploy_bank(http);
    let auth = bearer(CLIENT_TOKEN);
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];

    // A body announced over the 1 MiB call limit is refused at once from
    // its Content-Length: 64 KiB of 256 MiB sent, the answer arrives.
    let started = Instant::now();
    let mut stream = connect(http);
    stream
        .write_all(&head_bytes("POST", "/v1/call/open", &json, 256 << 20))
        .unwrap();
    // The server may have answered and closed already.
    let _ = stream.write_all(&vec![b' '; 64 << 10]);
    let (bytes, _) = read_until_closed(&mut stream);
    let refused = parse_answer(&bytes);
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (413, "body_too_large")
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Without a length (chunked), it is read up to the limit and refused
    // there.
    let mut stream = connect(http);
    let head = "POST /v1/call/open HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n";
    stream
        .write_all(format!("{head}Authorization: {auth}\r\n\r\n").as_bytes())
        .unwrap();
    let chunk = vec![b' '; 64 << 10];
    for _ in 0..17 {
        let sent = stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| stream.write_all(&chunk))
            .and_then(|()| stream.write_all(b"\r\n"));
        if sent.is_err() {
            break;
        }
    }
    let (bytes, _) = read_until_closed(&mut stream);
    assert_eq!(parse_answer(&bytes).status, 413);

    // A module over the engine's 16 MiB limit, by its length.
    let mut stream = connect(http);
    let admin = bearer(ADMIN);
    let wasm = [
        ("Authorization", admin.as_str()),
        ("Content-Type", "application/wasm"),
    ];
    stream
        .write_all(&head_bytes("POST", "/v1/modules/big", &wasm, 17 << 20))
        .unwrap();
    let (bytes, _) = read_until_closed(&mut stream);
    assert_eq!(parse_answer(&bytes).status, 413);

    // Headers over 16 KiB: 431 from hyper.
    let big_header = "a".repeat(20 << 10);
    let answer = request(http, "GET", "/v1/status", &[("X-Big", &big_header)], &[]);
    assert_eq!(answer.status, 431);

    // A body that stops arriving: 408 after the client timeout.
    let started = Instant::now();
    let mut stream = connect(http);
    stream
        .write_all(&head_bytes("POST", "/v1/call/balance", &json, 100))
        .unwrap();
    stream.write_all(br#"{"id": "#).unwrap();
    let (bytes, _) = read_until_closed(&mut stream);
    let slow = parse_answer(&bytes);
    assert_eq!((slow.status, slow.code().as_str()), (408, "body_timeout"));
    assert!(started.elapsed() < Duration::from_secs(10));

    // A head that never ends (slowloris), and an idle keep-alive
    // connection: closed after the client timeout.
    let started = Instant::now();
    let mut slowloris = connect(http);
    slowloris
        .write_all(b"POST /v1/call/balance HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, closed) = read_until_closed(&mut slowloris);
    assert!(closed, "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut idle = connect(http);
    idle.write_all(
        format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let (bytes, closed) = read_until_closed(&mut idle);
    assert!(closed && bytes.starts_with(b"HTTP/1.1 200"), "{bytes:?}");

    // None of it stopped the server.
    assert_eq!(
        ok(&get(http, "/v1/status", Some(CLIENT_TOKEN)))["role"],
        "standalone"
    );
}

#[test]
fn http_overload_is_refused_with_retry_after_and_others_are_still_served() {
    let (_server, http) = start(&[
        "--http-requests-max",
        "2",
        "--http-connections-max",
        "16",
        "--http-client-timeout",
        "10s",
    ]);
    deploy_bank(http);
    ok(&call(http, "open", r#"{"id": 1, "balance": 0}"#, &[]));
    let auth = bearer(CLIENT_TOKEN);
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];

    // Two requests whose bodies are still coming hold both slots. Each is
    // seen to hold one (no answer within a moment) before the next is
    // sent, so no other request races them for the slots.
    let body = br#"{"id": 1, "amount": 1}"#;
    let mut holders: Vec<TcpStream> = Vec::new();
    while holders.len() < 2 {
        let mut stream = connect(http);
        stream
            .write_all(&head_bytes("POST", "/v1/call/deposit", &json, body.len()))
            .unwrap();
        stream.write_all(&body[..4]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("a holder was answered at once: {other:?}"),
        }
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        holders.push(stream);
    }
    // A third request is refused, at once, with a stable code and
    // Retry-After.
    let refused = call(http, "balance", r#"{"id": 1}"#, &[]);
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (503, "overloaded")
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    // A flood while the slots are held: every answer is the same refusal.
    let refusals = std::thread::scope(|scope| {
        let flooders: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .filter(|_| {
                            call(http, "deposit", r#"{"id": 1, "amount": 1}"#, &[]).status == 503
                        })
                        .count()
                })
            })
            .collect();
        flooders
            .into_iter()
            .map(|flooder| flooder.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(refusals, 80, "every flooding request was refused");
    // The holders finish and are answered; then the server serves again.
    for holder in &mut holders {
        holder.write_all(&body[4..]).unwrap();
    }
    for holder in &mut holders {
        let (bytes, _) = read_until_closed(holder);
        assert_eq!(parse_answer(&bytes).status, 200);
    }
    assert_eq!(balance(http, 1), 2, "only the two held deposits ran");

    // A flood of fast calls at two slots: each is answered 200 or 503
    // `overloaded`, never anything else, and the server keeps serving.
    let (served, overloaded) = std::thread::scope(|scope| {
        let flooders: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let (mut served, mut overloaded) = (0, 0);
                    for _ in 0..25 {
                        let answer = call(http, "deposit", r#"{"id": 1, "amount": 1}"#, &[]);
                        match answer.status {
                            200 => served += 1,
                            503 => {
                                assert_eq!(answer.code(), "overloaded");
                                overloaded += 1;
                            }
                            other => panic!("{other}: {answer:?}"),
                        }
                    }
                    (served, overloaded)
                })
            })
            .collect();
        flooders
            .into_iter()
            .map(|flooder| flooder.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert_eq!(served + overloaded, 200);
    assert!(served > 0, "some of the flood was served");
    assert_eq!(balance(http, 1), 2 + served as i64, "each 200 ran once");

    // Connections over --http-connections-max are answered 503 and closed.
    let idle: Vec<TcpStream> = (0..16).map(|_| connect(http)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = connect(http);
    over.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (bytes, closed) = read_until_closed(&mut over);
    let answer = parse_answer(&bytes);
    assert!(closed);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (503, "too_many_connections")
    );
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(http, "/v1/status", Some(CLIENT_TOKEN)).status != 200 {
        assert!(Instant::now() < deadline, "served again once they closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A value of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib * 1024
}

#[test]
fn http_memory_stays_bounded_under_a_flood_of_large_bodies() {
    let (server, http) = start(&["--http-requests-max", "4"]);
    deploy_bank(http);
    ok(&call(http, "open", r#"{"id": 1, "balance": 0}"#, &[]));
    let before_rss = proc_status_bytes(server.pid(), "VmRSS");
    let before_peak = proc_status_bytes(server.pid(), "VmHWM");
    let auth = bearer(CLIENT_TOKEN);

    // 16 clients, each 8 times: a body announced at 512 MiB and pushed
    // for up to 8 MiB (refused from its length), then a body just under
    // the 1 MiB limit that is read whole (JSON, the wrong argument type).
    // 16 * 8 * (8 + 1) MiB offered; what the server holds at once is
    // bounded by its 4 slots of 1 MiB.
    let almost_limit = {
        let mut body = br#"{"id": ""#.to_vec();
        body.resize((1 << 20) - 2, b'a');
        body.extend_from_slice(br#""}"#);
        body
    };
    let (refused, read_whole) = std::thread::scope(|scope| {
        let flooders: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let json = [
                        ("Authorization", auth.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    let (mut refused, mut read_whole) = (0, 0);
                    for _ in 0..8 {
                        let mut stream = connect(http);
                        stream
                            .write_all(&head_bytes("POST", "/v1/call/balance", &json, 512 << 20))
                            .unwrap();
                        let chunk = vec![b'a'; 64 << 10];
                        for _ in 0..128 {
                            if stream.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                        let (bytes, _) = read_until_closed(&mut stream);
                        if !bytes.is_empty() {
                            let answer = parse_answer(&bytes);
                            assert!(matches!(answer.status, 413 | 503), "{answer:?}");
                            refused += 1;
                        }
                        // Refused at once when the slots are full: the
                        // server may close before all of it is written,
                        // and the answer may be lost to the reset.
                        let mut stream = connect(http);
                        let mut bytes =
                            head_bytes("POST", "/v1/call/balance", &json, almost_limit.len());
                        bytes.extend_from_slice(&almost_limit);
                        let _ = stream.write_all(&bytes);
                        let (bytes, _) = read_until_closed(&mut stream);
                        if bytes.is_empty() {
                            continue;
                        }
                        let answer = parse_answer(&bytes);
                        match answer.status {
                            400 => {
                                assert_eq!(answer.code(), "bad_arguments");
                                read_whole += 1;
                            }
                            503 => assert_eq!(answer.code(), "overloaded"),
                            other => panic!("{other}: {answer:?}"),
                        }
                    }
                    (refused, read_whole)
                })
            })
            .collect();
        flooders
            .into_iter()
            .map(|flooder| flooder.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    let after_rss = proc_status_bytes(server.pid(), "VmRSS");
    let after_peak = proc_status_bytes(server.pid(), "VmHWM");
    println!(
        "RSS {before_rss} -> {after_rss} bytes, peak {before_peak} -> {after_peak}; {refused} refused by length, {read_whole} read whole"
    );
    assert!(read_whole > 0, "some large bodies were read whole");
    // 64 GiB announced and up to 1,152 MiB sent; the peak may grow by the
    // slots' bodies, their copies and the allocator's slack, not by what
    // was sent.
    let growth_max = 64 << 20;
    assert!(
        after_peak.saturating_sub(before_peak) < growth_max,
        "peak RSS grew from {before_peak} to {after_peak} bytes"
    );
    assert!(
        after_rss.saturating_sub(before_rss) < growth_max,
        "RSS grew from {before_rss} to {after_rss} bytes"
    );
    assert_eq!(balance(http, 1), 0);
}

#[test]
fn with_tls_cert_the_http_api_is_served_over_https_only() {
    let pki = common::pki::Pki::new(&["127.0.0.1"]);
    let (cert, key) = (pki.cert(), pki.key());
    let (_server, http) = start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    use ordo_client::rustls;
    let config = ordo_client::tls::client_config(&pki.ca()).unwrap();
    let name = ordo_client::tls::server_name(&http.to_string()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, connect(http));
    let auth = bearer(CLIENT_TOKEN);
    tls.write_all(&head_bytes(
        "GET",
        "/v1/status",
        &[("Authorization", &auth)],
        0,
    ))
    .unwrap();
    let mut bytes = Vec::new();
    // A server that closes without close_notify ends the stream with
    // UnexpectedEof; what came before it is the answer.
    let _ = tls.read_to_end(&mut bytes);
    let answer = parse_answer(&bytes);
    assert_eq!(ok(&answer)["role"], "standalone");

    // Plain HTTP to the HTTPS port gets no answer, and the token it sent
    // reached no handler.
    let mut plain = connect(http);
    plain
        .write_all(&head_bytes(
            "GET",
            "/v1/status",
            &[("Authorization", &auth)],
            0,
        ))
        .unwrap();
    let (bytes, closed) = read_until_closed(&mut plain);
    assert!(closed);
    assert!(!bytes.starts_with(b"HTTP/1.1 200"), "{bytes:?}");
}
