//! Shared by the end-to-end tests: a real `ordo serve` process on loopback.

#![allow(dead_code)]

pub mod pki;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub const ADMIN: &str = "admin-secret";

/// A running `ordo serve` on an ephemeral loopback port, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Set when started with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// Set when started with `--http-listen`.
    pub http_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::start_with_env(dir, extra, &[])
    }

    /// [`Server::start_in`] with extra environment variables (test hooks).
    pub fn start_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                ADMIN,
                "--data",
            ])
            .arg(dir.path())
            .args(extra)
            .env_remove("ORDO_CLIENT_TOKEN")
            .env_remove("ORDO_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut metrics_addr = None;
        let mut http_addr = None;
        let addr = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "ordo serve exited"
            );
            let line = line.trim();
            if let Some(metrics) = line.strip_prefix("ordo serve: metrics on ") {
                metrics_addr = Some(metrics.parse().unwrap());
            } else if let Some(http) = line.strip_prefix("ordo serve: http on ") {
                http_addr = Some(http.parse().unwrap());
            } else if let Some(listening) = line.strip_prefix("ordo serve: listening on ") {
                break listening.parse().unwrap();
            } else {
                panic!("unexpected line before the address: {line:?}");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            child,
            addr,
            metrics_addr,
            http_addr,
            dir,
        }
    }

    /// The server process's id (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the process to exit; returns whether it
    /// exited successfully, and the data directory.
    pub fn terminate(mut self) -> (bool, tempfile::TempDir) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM could not be sent");
        let status = self.child.wait().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status.success(), dir)
    }

    /// SIGKILL, and hand back the data directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 2-worker runtime for tests that drive the async client.
/// A client of `server` holding the admin token.
pub async fn admin_client(server: &Server) -> ordo_client::Client {
    let config = ordo_client::ClientConfig {
        admin_token: Some(ADMIN.to_string()),
        ..ordo_client::ClientConfig::new(server.addr.to_string())
    };
    ordo_client::Client::connect_with(config).await.unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Log entries, for tests that drive the executor directly.
pub mod entries {
    use ordo::ArgsEncoding;
    use ordo_sequencer::entry::{Deploy, Entry, Invocation};

    /// A postcard call of `procedure` by `client_id`, never acknowledged.
    pub fn invoke(client_id: u128, request_id: u64, procedure: &str, args: Vec<u8>) -> Entry {
        Entry::Invoke(Invocation {
            client_id,
            request_id,
            acked_below: 0,
            procedure: procedure.to_string(),
            encoding: ArgsEncoding::Postcard,
            args,
        })
    }

    pub fn deploy(client_id: u128, request_id: u64, name: &str, wasm: &[u8]) -> Entry {
        Entry::Deploy(Deploy {
            client_id,
            request_id,
            name: name.to_string(),
            wasm: wasm.to_vec(),
        })
    }

    pub fn postcard<T: serde::Serialize>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).unwrap()
    }
}

/// Runs the test-built `ordo` with `args`, against `server` if given
/// (through `ORDO_SERVER`), without tokens or a server from the
/// environment.
pub fn run_ordo(server: Option<&Server>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command
        .args(args)
        .env_remove("ORDO_CLIENT_TOKEN")
        .env_remove("ORDO_ADMIN_TOKEN");
    match server {
        Some(server) => command.env("ORDO_SERVER", server.addr.to_string()),
        None => command.env_remove("ORDO_SERVER"),
    };
    command.output().unwrap()
}

/// The stdout of a command that must have succeeded.
#[track_caller]
pub fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Asserts a CLI failure: non-zero exit, one line on stderr containing
/// every one of `needles`.
#[track_caller]
pub fn fails_with_all(output: &std::process::Output, needles: &[&str]) {
    assert!(!output.status.success(), "should have failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    }
}

/// Waits (up to 30 s) until the single node with data directory `data`
/// has written a snapshot taken after sequence number `seq`. Snapshot
/// files are named `snapshot-<log index>-<next seq>.bin`.
pub fn wait_for_snapshot_after(data: &std::path::Path, seq: u64) {
    let after = |name: &str| {
        name.strip_suffix(".bin")
            .and_then(|stem| stem.rsplit('-').next())
            .and_then(|next| next.parse::<u64>().ok())
            .is_some_and(|next_seq| next_seq > seq)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_dir(data.join("snapshots"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .any(|entry| after(&entry.file_name().to_string_lossy()))
        })
        .unwrap_or(false)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot after seq {seq} was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
