//! The client port under hostile clients, against real `ordo serve`
//! processes on loopback: big frames before the handshake, slow and
//! half-open handshakes, a thousand idle connections, a client that
//! pipelines and never reads, huge procedure names, running out of file
//! descriptors. After each attack the server's RSS has grown by at most
//! `RSS_GROWTH_BYTES_MAX`, and another client is still served.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ADMIN;
use ordo_client::protocol::{
    Encoding, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, HANDSHAKE_FRAME_BYTES_MAX, Hello,
    RefusalReason, Request, RequestBody, RequestRefusal, Response, ResponseBody, Welcome,
    decode_payload, encode_frame, frame_payload_bytes,
};
use ordo_client::{Client, ClientConfig, ClientError};

const TOKEN: &str = "client-secret";
/// The bound on what any one attack may add to the server's RSS.
const RSS_GROWTH_BYTES_MAX: u64 = 256 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// `ordo serve` with a client token, its stderr kept in a file so tests
/// can read what it logged.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, |_| {})
    }

    fn start_with(extra: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .args(["--admin-token", ADMIN, "--client-token", TOKEN])
            .args(extra)
            .env_remove("ORDO_CLIENT_TOKEN")
            .env_remove("ORDO_ADMIN_TOKEN")
            .env_remove("ORDO_TLS_CA")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        adjust(&mut command);
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "ordo serve exited"
            );
            if let Some(addr) = line.trim().strip_prefix("ordo serve: listening on ") {
                break addr.parse().unwrap();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            child,
            addr,
            stderr,
            _dir: dir,
        }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .map(|kib| kib.trim().parse().unwrap())
            .expect("VmRSS in /proc/PID/status");
        kib << 10
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// Waits until the log holds `needle`; false at the deadline.
    fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.log().contains(needle))
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            token: Some(TOKEN.into()),
            admin_token: Some(ADMIN.into()),
            reconnect_attempts: 0,
            ..ClientConfig::new(self.addr.to_string())
        }
    }

    /// A fresh SDK client makes a call, on a runtime of its own.
    fn still_serves(&self) {
        let runtime = common::runtime();
        runtime.block_on(async {
            let client = Client::connect_with(self.config()).await.unwrap();
            let status = client.status().await.unwrap();
            assert!(status.position > 0, "the server lost its state");
            client
                .call::<_, ()>("open", &(u64::MAX, 1i64))
                .await
                .map(|_| ())
                .or_else(|err| match err {
                    // Opened by an earlier check: the call still ran.
                    ClientError::Aborted { .. } => Ok(()),
                    err => Err(err),
                })
                .unwrap();
        });
    }

    fn deploy(&self, name: &str, wasm: &[u8]) {
        common::runtime().block_on(async {
            let client = Client::connect_with(self.config()).await.unwrap();
            client.deploy(name, wasm).await.unwrap();
        });
    }

    fn position(&self) -> u64 {
        common::runtime().block_on(async {
            let client = Client::connect_with(self.config()).await.unwrap();
            client.status().await.unwrap().position
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lets this process (and the servers it starts) hold a few thousand
/// sockets: the default soft limit of 1,024 is too few for the attacks.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        assert!(
            limit.rlim_cur >= 4096,
            "these tests need 4096 open files; the hard limit is {}",
            limit.rlim_max
        );
    }
}

fn send<T: serde::Serialize>(stream: &mut TcpStream, message: &T) {
    let frame = encode_frame(message, FRAME_BYTES_MAX_DEFAULT).unwrap();
    stream.write_all(&frame).unwrap();
}

fn receive<T: serde::de::DeserializeOwned>(stream: &mut TcpStream) -> Option<T> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    stream.read_exact(&mut header).ok()?;
    let bytes = frame_payload_bytes(header, FRAME_BYTES_MAX_DEFAULT).unwrap();
    let mut payload = vec![0u8; bytes];
    stream.read_exact(&mut payload).ok()?;
    Some(decode_payload(&payload).unwrap())
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A raw connection that has been welcomed.
fn welcomed(addr: SocketAddr, client_id: u128) -> TcpStream {
    let mut stream = connect(addr);
    send(&mut stream, &Hello::new(client_id, Some(TOKEN.into())));
    match receive::<Welcome>(&mut stream) {
        Some(Welcome::Accepted { .. }) => stream,
        other => panic!("not welcomed: {other:?}"),
    }
}

/// Whether the server has closed `stream` (EOF or reset), reading and
/// dropping whatever it still sent first; false if it stayed open for
/// `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut chunk = vec![0u8; 64 << 10];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A server with the bank deployed and one account open.
fn bank_server(extra: &[&str]) -> Server {
    let server = Server::start(extra);
    server.deploy("bank", ordo::modules::BANK);
    server.still_serves();
    server
}

#[test]
fn big_frames_before_the_handshake_are_refused_without_buffering() {
    let server = bank_server(&[]);
    let rss_before = server.rss_bytes();
    // Each claims a 16 MiB hello and sends 1 MiB of it: before, the server
    // reserved the whole frame and read it before looking at the token.
    let mut attackers: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream.write_all(&(16u32 << 20).to_le_bytes()).unwrap();
            stream
        })
        .collect();
    let junk = vec![0xA5u8; 1 << 20];
    let mut refusals = 0;
    for stream in &mut attackers {
        // The server may close before taking it all; that is the point.
        let _ = stream.write_all(&junk);
        if let Some(Welcome::Refused { reason, message }) = receive::<Welcome>(stream) {
            assert_eq!(reason, RefusalReason::BadHandshake);
            assert!(
                message.contains(&HANDSHAKE_FRAME_BYTES_MAX.to_string()),
                "the refusal names the limit: {message}"
            );
            refusals += 1;
        }
    }
    assert!(refusals > 0, "no attacker was told why it was refused");
    for stream in &mut attackers {
        assert!(closed_within(stream, Duration::from_secs(10)));
    }
    let growth = server.rss_bytes().saturating_sub(rss_before);
    assert!(
        growth < 64 << 20,
        "32 oversized hellos grew the server by {growth} bytes"
    );
    server.still_serves();
}

#[test]
fn slow_and_half_open_handshakes_end_at_the_deadline() {
    raise_open_files_limit();
    let server = bank_server(&[]);
    let rss_before = server.rss_bytes();
    let started = Instant::now();
    // Half-open: connected, never a byte.
    let mut silent: Vec<TcpStream> = (0..200).map(|_| connect(server.addr)).collect();
    // Slow: a valid hello, one byte at a time, slower than the deadline.
    let hello = encode_frame(
        &Hello::new(1, Some(TOKEN.into())),
        HANDSHAKE_FRAME_BYTES_MAX,
    )
    .unwrap();
    let mut slow: Vec<TcpStream> = (0..50).map(|_| connect(server.addr)).collect();
    let mut trickled = 0;
    while trickled < hello.len() && started.elapsed() < Duration::from_secs(8) {
        for stream in &mut slow {
            let _ = stream.write_all(&hello[trickled..trickled + 1]);
        }
        trickled += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    // While they hang, others get in.
    server.still_serves();
    for stream in silent.iter_mut().chain(slow.iter_mut()) {
        assert!(
            closed_within(stream, Duration::from_secs(10)),
            "a handshake outlived the deadline"
        );
    }
    // Closed at the 5 s deadline, not at some later sweep.
    assert!(started.elapsed() < Duration::from_secs(25));
    let growth = server.rss_bytes().saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_BYTES_MAX, "grew by {growth} bytes");
    server.still_serves();
}

#[test]
fn a_thousand_idle_connections_keep_nobody_out_for_long() {
    raise_open_files_limit();
    let server = bank_server(&["--client-idle-timeout", "3s"]);
    let rss_before = server.rss_bytes();
    // 1,024 welcomed connections that then say nothing: every slot.
    let mut idle: Vec<TcpStream> = Vec::new();
    for client_id in 0..1024u128 {
        let mut stream = connect(server.addr);
        send(
            &mut stream,
            &Hello::new(1000 + client_id, Some(TOKEN.into())),
        );
        match receive::<Welcome>(&mut stream) {
            Some(Welcome::Accepted { .. }) => idle.push(stream),
            // The bank client's own connection may still hold a slot for a
            // moment; the rest are enough.
            Some(Welcome::Refused {
                reason: RefusalReason::TooManyConnections,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(idle.len() >= 1000, "only {} got in", idle.len());

    // A newcomer is refused, with a clear reason, while they sit there...
    let runtime = common::runtime();
    let refused = runtime.block_on(Client::connect_with(server.config()));
    match refused {
        Err(ClientError::Refused {
            reason: RefusalReason::TooManyConnections,
            message,
        }) => assert!(message.contains("too many connections"), "{message}"),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        // The idle timeout already freed a slot: fine too.
        Ok(_) => {}
    }
    // ...and gets in once the idle timeout has closed them.
    let started = Instant::now();
    let got_in = wait_until(Duration::from_secs(20), || {
        runtime
            .block_on(Client::connect_with(server.config()))
            .is_ok()
    });
    assert!(
        got_in,
        "no way in 20 s after the idle connections took every slot"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    for stream in &mut idle {
        assert!(closed_within(stream, Duration::from_secs(10)));
    }
    // Refusals and closes are logged, but not one line each.
    let log = server.log();
    let lines = log.lines().count();
    assert!(
        lines < 100,
        "{lines} log lines for 1,024 idle connections:\n{log}"
    );
    assert!(log.contains("idle for 3s"), "{log}");
    let growth = server.rss_bytes().saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_BYTES_MAX, "grew by {growth} bytes");
    server.still_serves();
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_logs_little() {
    raise_open_files_limit();
    // A server allowed 64 files: a few dozen connections exhaust them, and
    // accept(2) fails with EMFILE for as long as they stay.
    let server = Server::start_with(&[], |command| {
        // SAFETY: setrlimit in the child between fork and exec touches only
        // the struct passed.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    server.deploy("bank", ordo::modules::BANK);
    let started = Instant::now();
    // More than the server's descriptors, fewer than the listen backlog
    // (128), so every connect completes at once.
    let flood: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    assert!(
        server.wait_for_log("accept failed", Duration::from_secs(10)),
        "the server never ran out of descriptors: {}",
        server.log()
    );
    // Before: 3 million lines in 9 s. Now at most one a second.
    std::thread::sleep(Duration::from_secs(3)); // let the failures go on
    let lines = server
        .log()
        .lines()
        .filter(|line| line.contains("accept failed"))
        .count() as u64;
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        lines <= seconds + 1,
        "{lines} accept failures logged in {seconds} s:\n{}",
        server.log()
    );
    // The flood leaves (the handshake deadline closes the ones accepted),
    // and a client gets in.
    drop(flood);
    let runtime = common::runtime();
    assert!(
        wait_until(Duration::from_secs(20), || runtime
            .block_on(Client::connect_with(server.config()))
            .is_ok()),
        "nobody got in after the flood left"
    );
    server.still_serves();
}

fn huge_result_call(request_id: u64, bytes: u32) -> Vec<u8> {
    let request = Request {
        request_id,
        // Acknowledges everything before, so the exactly-once table keeps
        // no result: what piles up is the connection's own answers.
        acked_below: request_id,
        body: RequestBody::Call {
            procedure: "huge_result".into(),
            encoding: Encoding::Postcard,
            args: postcard::to_stdvec(&bytes).unwrap(),
            signature: None,
        },
    };
    encode_frame(&request, FRAME_BYTES_MAX_DEFAULT).unwrap()
}

fn slow_reader_server(budget: &str, timeout: &str) -> Server {
    let server = Server::start(&[
        "--answer-bytes-queued-max",
        budget,
        "--slow-reader-timeout",
        timeout,
    ]);
    server.deploy("bank", ordo::modules::BANK);
    server.deploy("hostile", ordo::modules::HOSTILE);
    server.still_serves();
    server
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_disconnected() {
    let server = slow_reader_server("4194304", "3s");
    let rss_before = server.rss_bytes();
    // The attack: 2,000 calls answered with 256 KiB each (500 MiB),
    // all sent at once, none of the answers read.
    let mut attacker = welcomed(server.addr, 0xBAD);
    attacker
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sent = 0u64;
    for request_id in 1..=2000u64 {
        if attacker
            .write_all(&huge_result_call(request_id, 256 << 10))
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let mut peak = 0;
    let disconnected = wait_until(Duration::from_secs(30), || {
        peak = peak.max(server.rss_bytes());
        server.log().contains("a slow reader")
    });
    assert!(disconnected, "never disconnected: {}", server.log());
    let log = server.log();
    assert!(log.contains("over the 4194304-byte budget"), "{log}");
    assert!(closed_within(&mut attacker, Duration::from_secs(10)));
    let growth = peak.max(server.rss_bytes()).saturating_sub(rss_before);
    eprintln!("pipelining never-reader: {sent} calls sent, RSS grew by at most {growth} bytes");
    assert!(
        growth < RSS_GROWTH_BYTES_MAX,
        "{sent} pipelined calls grew the server by {growth} bytes"
    );
    server.still_serves();
}

#[test]
fn a_slow_reader_is_no_longer_read_then_disconnected_after_the_timeout() {
    let server = slow_reader_server("4194304", "4s");
    let position = server.position();
    let rss_before = server.rss_bytes();
    // A steady stream of calls answered with 64 KiB each, answers never
    // read. Paced, so that the server's reads stop before it has taken
    // in more than its budget can answer.
    let mut attacker = welcomed(server.addr, 0x51_0E);
    attacker
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut sent = 0u64;
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(30) && !server.log().contains("a slow reader") {
        for _ in 0..10 {
            if attacker
                .write_all(&huge_result_call(sent + 1, 64 << 10))
                .is_ok()
            {
                sent += 1;
            }
        }
        peak = peak.max(server.rss_bytes());
        std::thread::sleep(Duration::from_millis(10)); // the attacker's pace
    }
    let log = server.log();
    assert!(
        log.contains("a slow reader") && log.contains("for 4s (--slow-reader-timeout)"),
        "not disconnected by the timeout: {log}"
    );
    // Back-pressure: the server stopped reading, so most of what was sent
    // never became a transaction (the budget and the kernel's socket
    // buffers hold a few hundred answers).
    let ran = server.position() - position;
    eprintln!("slow reader: {ran} of {sent} calls ran");
    assert!(
        ran * 2 < sent,
        "{ran} of {sent} calls ran: the server kept reading a client over its budget"
    );
    assert!(closed_within(&mut attacker, Duration::from_secs(10)));
    let growth = peak.max(server.rss_bytes()).saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_BYTES_MAX, "grew by {growth} bytes");
    server.still_serves();
}

#[test]
fn huge_procedure_names_are_refused_before_the_log() {
    let server = bank_server(&[]);
    let position = server.position();
    let rss_before = server.rss_bytes();
    let mut stream = welcomed(server.addr, 0x4A4E);
    let huge = "a".repeat(16 << 20);
    for request_id in 1..=20u64 {
        send(
            &mut stream,
            &Request {
                request_id,
                acked_below: request_id,
                body: RequestBody::Call {
                    procedure: huge.clone(),
                    encoding: Encoding::Postcard,
                    args: Vec::new(),
                    signature: None,
                },
            },
        );
        let response: Response = receive(&mut stream).expect("an answer");
        assert_eq!(response.request_id, request_id);
        match response.body {
            ResponseBody::Refused { reason, message } => {
                assert_eq!(reason, RequestRefusal::BadRequest);
                assert!(message.contains("1 to 64 characters"), "{message}");
                assert!(
                    message.len() < 300,
                    "the name is echoed: {} bytes",
                    message.len()
                );
            }
            other => panic!("a 16 MiB name was not refused: {other:?}"),
        }
    }
    // Just over the limit, and a name outside the grammar, through the SDK.
    // Without a session registration, whose entry would count too: only
    // the calls' effect on the log is measured here.
    let runtime = common::runtime();
    runtime.block_on(async {
        let config = ClientConfig {
            register_session: false,
            ..server.config()
        };
        let client = Client::connect_with(config).await.unwrap();
        for name in ["a".repeat(65), "Transfer".to_string(), String::new()] {
            match client.call::<_, ()>(&name, &()).await {
                Err(ClientError::BadRequest(message)) => {
                    assert!(message.contains("64"), "{message}")
                }
                other => panic!("`{name}` was not refused: {other:?}"),
            }
        }
        // A name exactly at the limit is a valid name: it reaches the log
        // and aborts as unknown.
        match client.call::<_, ()>(&"a".repeat(64), &()).await {
            Err(ClientError::UnknownProcedure { .. }) => {}
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(
        server.position(),
        position + 1,
        "only the valid 64-byte name reached the log"
    );
    assert!(
        !server.log().contains("aaaaaaaaaaaaaaaa"),
        "a name was logged"
    );
    let growth = server.rss_bytes().saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_BYTES_MAX, "grew by {growth} bytes");
    server.still_serves();
}
