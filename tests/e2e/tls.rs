//! TLS on the client port, end to end against real `ordo serve`
//! processes: the SDK, the CLI (`ordo call`, `ordo status`) and `ordo
//! bench --server` over TLS; tokens never cross the wire in clear; a
//! client with the wrong CA, a plain client on a TLS port and a TLS
//! client on a plain port each fail with one clear line. Certificates are
//! made on the fly with rcgen (a CA, and a server certificate for
//! 127.0.0.1 signed by it).

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::pki::Pki;
use common::{ADMIN, Server};
use ordo_client::{Client, ClientConfig, ClientError};

const TOKEN: &str = "tls-client-token-0123456789";

/// `ordo serve` over TLS with a test PKI's certificate.
trait TlsServer {
    fn serve_args(&self) -> Vec<String>;
    fn server(&self) -> Server;
}

impl TlsServer for Pki {
    fn serve_args(&self) -> Vec<String> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--tls-cert".into(),
            path("server.pem"),
            "--tls-key".into(),
            path("server.key"),
            "--client-token".into(),
            TOKEN.into(),
        ]
    }

    fn server(&self) -> Server {
        let args = self.serve_args();
        Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

fn ordo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env_remove("ORDO_TLS_CA")
        .env_remove("ORDO_CLIENT_TOKEN")
        .env_remove("ORDO_ADMIN_TOKEN")
        .env_remove("ORDO_SERVER")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The command failed with exactly one line on stderr, holding `needle`.
fn fails_with_one_line(output: &Output, needle: &str) -> String {
    let err = stderr(output);
    assert!(!output.status.success(), "succeeded: {}", stdout(output));
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "missing {needle:?} in: {err}");
    eprint!("as expected: {err}");
    err
}

fn tls_config(addr: SocketAddr, ca: &Path) -> ClientConfig {
    ClientConfig {
        token: Some(TOKEN.into()),
        admin_token: Some(ADMIN.into()),
        tls: Some(ordo_client::tls::client_config(ca).unwrap()),
        reconnect_attempts: 0,
        ..ClientConfig::new(addr.to_string())
    }
}

/// A TCP relay on loopback in front of `target` that keeps a copy of
/// every byte either side sent, to see what crosses the wire.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    fn new(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    return;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let recorded = recorded.clone();
                    std::thread::spawn(move || {
                        let mut chunk = [0u8; 16 << 10];
                        while let Ok(read) = from.read(&mut chunk) {
                            if read == 0 || to.write_all(&chunk[..read]).is_err() {
                                break;
                            }
                            recorded.lock().unwrap().extend_from_slice(&chunk[..read]);
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Tap { addr, seen }
    }

    fn saw(&self, needle: &[u8]) -> bool {
        let seen = self.seen.lock().unwrap();
        !seen.is_empty() && seen.windows(needle.len()).any(|window| window == needle)
    }

    fn bytes_seen(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[test]
fn the_sdk_cli_and_bench_work_over_tls() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let server = pki.server();
    let ca = pki.ca();
    let runtime = common::runtime();
    runtime.block_on(async {
        let client = Client::connect_with(tls_config(server.addr, &ca))
            .await
            .unwrap();
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client.call::<_, ()>("open", &(1u64, 100i64)).await.unwrap();
        client.call::<_, ()>("open", &(2u64, 0i64)).await.unwrap();
        client
            .call::<_, ()>("transfer", &(1u64, 2u64, 30i64))
            .await
            .unwrap();
        let balance = client.call::<_, i64>("balance", &(2u64,)).await.unwrap();
        assert_eq!(balance.value, 30);
        // Pipelined over one TLS session.
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.call::<_, i64>("balance", &(1u64,)).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().value, 70);
        }
    });

    let addr = server.addr.to_string();
    let ca_arg = ca.display().to_string();
    let common = ["--server", &addr, "--tls-ca", &ca_arg, "--token", TOKEN];
    let call = ordo(&[&["call"][..], &common, &["balance", r#"{"id": 2}"#]].concat());
    assert!(call.status.success(), "{}", stderr(&call));
    assert_eq!(stdout(&call).trim(), "30");
    let status = ordo(&[&["status", "--json"][..], &common].concat());
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("\"position\""),
        "{}",
        stdout(&status)
    );

    // The CA from the environment, as a deployment would set it.
    let from_env = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["status", "--server", &addr, "--token", TOKEN])
        .env("ORDO_TLS_CA", &ca)
        .env_remove("ORDO_CLIENT_TOKEN")
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", stderr(&from_env));

    // The bench loads its own accounts: a fresh server.
    let bench_server = pki.server();
    let bench_addr = bench_server.addr.to_string();
    let bench = ordo(&[
        "bench",
        "transfer",
        "--server",
        &bench_addr,
        "--tls-ca",
        &ca_arg,
        "--token",
        TOKEN,
        "--admin-token",
        ADMIN,
        "--accounts",
        "1000",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--connections",
        "2",
        "--inflight",
        "64",
    ]);
    assert!(
        bench.status.success(),
        "{}\n{}",
        stdout(&bench),
        stderr(&bench)
    );
}

#[test]
fn tokens_cross_the_wire_only_inside_tls() {
    let pki = Pki::new(&["127.0.0.1"]);
    let runtime = common::runtime();
    let exercise = |config: ClientConfig| {
        runtime.block_on(async {
            let client = Client::connect_with(config).await.unwrap();
            client.deploy("bank", ordo::modules::BANK).await.unwrap();
            client.call::<_, ()>("open", &(1u64, 5i64)).await.unwrap();
        })
    };

    // With TLS, neither token nor the module's bytes are on the wire.
    let server = pki.server();
    let tap = Tap::new(server.addr);
    exercise(tls_config(tap.addr, &pki.ca()));
    assert!(tap.bytes_seen() > 1000, "the tap saw no traffic");
    assert!(
        !tap.saw(TOKEN.as_bytes()),
        "the client token crossed in clear"
    );
    assert!(
        !tap.saw(ADMIN.as_bytes()),
        "the admin token crossed in clear"
    );

    // The control: without TLS the same tap sees both, so the check above
    // can fail.
    let plain = Server::start(&["--client-token", TOKEN]);
    let tap = Tap::new(plain.addr);
    exercise(ClientConfig {
        tls: None,
        ..tls_config(tap.addr, &pki.ca())
    });
    assert!(tap.saw(TOKEN.as_bytes()) && tap.saw(ADMIN.as_bytes()));
}

#[test]
fn a_client_with_the_wrong_ca_is_refused_with_one_line() {
    let pki = Pki::new(&["127.0.0.1"]);
    let other = Pki::new(&["127.0.0.1"]);
    let server = pki.server();
    let addr = server.addr.to_string();
    let wrong_ca = other.ca().display().to_string();
    let output = ordo(&[
        "status", "--server", &addr, "--tls-ca", &wrong_ca, "--token", TOKEN,
    ]);
    let line = fails_with_one_line(&output, "UnknownIssuer");
    assert!(line.contains("--tls-ca"), "{line}");
    assert!(!line.contains(TOKEN), "{line}");

    let runtime = common::runtime();
    match runtime.block_on(Client::connect_with(tls_config(server.addr, &other.ca()))) {
        Err(ClientError::Tls { message, .. }) => {
            assert!(message.contains("certificate"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // A certificate for another name, from the right CA, is refused too.
    let misnamed = Pki::new(&["db.example"]);
    let misnamed_server = misnamed.server();
    match runtime.block_on(Client::connect_with(tls_config(
        misnamed_server.addr,
        &misnamed.ca(),
    ))) {
        Err(ClientError::Tls { .. }) => {}
        other => panic!("{other:?}"),
    }
    // And the server keeps serving clients that have the right CA.
    runtime
        .block_on(Client::connect_with(tls_config(server.addr, &pki.ca())))
        .unwrap();
}

#[test]
fn plain_and_tls_mismatches_fail_clearly() {
    let pki = Pki::new(&["127.0.0.1"]);
    let server = pki.server();
    let addr = server.addr.to_string();
    // A plain client on the TLS port is told, in clear, what to do.
    let output = ordo(&["status", "--server", &addr, "--token", TOKEN]);
    fails_with_one_line(&output, "this port serves TLS");

    // A TLS client on a plain port.
    let plain = Server::start(&[]);
    let plain_addr = plain.addr.to_string();
    let ca = pki.ca().display().to_string();
    let output = ordo(&["status", "--server", &plain_addr, "--tls-ca", &ca]);
    fails_with_one_line(&output, "--tls-cert");
    // The plain server is unharmed.
    let output = ordo(&["status", "--server", &plain_addr]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn bad_tls_files_are_refused_at_start_with_one_line() {
    let pki = Pki::new(&["127.0.0.1"]);
    let data = tempfile::tempdir().unwrap();
    let serve = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    let dir = pki.dir.path();
    let missing = dir.join("missing.pem");
    let output = serve(&missing, &dir.join("server.key"));
    fails_with_one_line(&output, "missing.pem");
    // The CA's certificate with the server's key: they do not match.
    let output = serve(&pki.ca(), &dir.join("server.key"));
    fails_with_one_line(&output, "--tls-key");
    // A key file that holds a certificate.
    let output = serve(&dir.join("server.pem"), &dir.join("server.pem"));
    fails_with_one_line(&output, "--tls-key");
    // The client's CA file, likewise.
    let output = ordo(&["status", "--tls-ca", &missing.display().to_string()]);
    fails_with_one_line(&output, "missing.pem");
}
