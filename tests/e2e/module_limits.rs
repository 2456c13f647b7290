//! Compile limits and the compiled-code cache, end to end through real
//! `ordo serve` processes on loopback: compile bombs are refused with one
//! line naming the limit while another client keeps being served and the
//! server's RSS stays put; modules at the limits are accepted; a restart
//! loads compiled code from `<data>/compiled/` instead of compiling, and a
//! damaged cache file is recompiled to the same state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ordo_client::{Client, ClientConfig};

const ADMIN: &str = "admin-secret";
/// How much a server's RSS may grow while it refuses compile bombs.
const RSS_GROWTH_BYTES_MAX: u64 = 256 << 20;

// ---- wasm, written byte by byte (the bombs are too big to want text) ----

fn leb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    leb(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn name(out: &mut Vec<u8>, text: &str) {
    leb(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// An ABI-valid module: memory, `ordo_args_buffer`, the procedure `ping`
/// (commits an empty result), plus `extra` functions of type `() -> ()`
/// with the given bodies (locals and code, without the size prefix).
fn module(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // Types: (i32) -> i32, (i32, i32) -> i32, () -> ().
    section(
        &mut wasm,
        1,
        &[
            3, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0,
        ],
    );
    let mut functions = Vec::new();
    leb(&mut functions, 2 + extra.len() as u64);
    functions.extend([0, 1]);
    functions.extend(std::iter::repeat_n(2, extra.len()));
    section(&mut wasm, 3, &functions);
    section(&mut wasm, 5, &[1, 0, 1]);
    let mut exports = vec![3];
    for (export, kind, index) in [
        ("memory", 2, 0),
        ("ordo_args_buffer", 0, 0),
        ("ordo_proc_ping", 0, 1),
    ] {
        name(&mut exports, export);
        exports.extend([kind, index]);
    }
    section(&mut wasm, 7, &exports);
    let returns_zero = vec![0, 0x41, 0, 0x0b];
    let mut code = Vec::new();
    leb(&mut code, 2 + extra.len() as u64);
    for body in [&returns_zero, &returns_zero].into_iter().chain(extra) {
        leb(&mut code, body.len() as u64);
        code.extend_from_slice(body);
    }
    section(&mut wasm, 10, &code);
    wasm
}

fn empty_body() -> Vec<u8> {
    vec![0, 0x0b]
}

/// A body whose blocks nest `depth` deep.
fn nested_body(depth: usize) -> Vec<u8> {
    let mut body = vec![0];
    for _ in 0..depth {
        body.extend([0x02, 0x40]);
    }
    body.extend(std::iter::repeat_n(0x0b, depth + 1));
    body
}

/// A body of exactly `bytes` bytes: no locals, `nop`s, `end`.
fn body_of(bytes: usize) -> Vec<u8> {
    let mut body = vec![0];
    body.extend(std::iter::repeat_n(0x01, bytes - 2));
    body.push(0x0b);
    body
}

/// A module at every structural limit at once: as many functions as
/// allowed, one body of the largest size and one nested the deepest.
fn module_at_the_limits() -> Vec<u8> {
    let functions = ordo_engine::FUNCTIONS_COUNT_MAX_DEFAULT - 2;
    let mut extra = vec![
        body_of(ordo_engine::FUNCTION_BODY_BYTES_MAX_DEFAULT),
        nested_body(ordo_engine::NESTING_DEPTH_MAX_DEFAULT),
    ];
    extra.extend(std::iter::repeat_n(empty_body(), functions - 2));
    module(&extra)
}

// ---- a server whose stderr the test reads ----

struct Server {
    child: Child,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    stderr: PathBuf,
}

impl Server {
    /// Starts `ordo serve` on `data`, with stderr going to `stderr`.
    fn start(data: &Path, stderr: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--admin-token", ADMIN, "--partitions", "2", "--data"])
            .arg(data)
            .env_remove("ORDO_CLIENT_TOKEN")
            .env_remove("ORDO_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut metrics_addr = None;
        let addr = loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            assert!(
                read > 0,
                "ordo serve exited: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
            let line = line.trim();
            if let Some(metrics) = line.strip_prefix("ordo serve: metrics on ") {
                metrics_addr = Some(metrics.parse().unwrap());
            } else if let Some(listening) = line.strip_prefix("ordo serve: listening on ") {
                break listening.parse().unwrap();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            child,
            addr,
            metrics_addr: metrics_addr.expect("a metrics address"),
            stderr,
        }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    fn metric(&self, name: &str) -> u64 {
        let mut http = TcpStream::connect(self.metrics_addr).unwrap();
        http.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(http, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        response
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{response}")) as u64
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// SIGKILL and wait: the restart must not depend on a clean shutdown.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(addr: SocketAddr) -> Client {
    let mut config = ClientConfig::new(addr.to_string());
    config.admin_token = Some(ADMIN.to_string());
    // A compile at the limits is slow in a debug build on a busy machine.
    config.request_timeout = Duration::from_secs(300);
    Client::connect_with(config).await.unwrap()
}

const ACCOUNTS: u64 = 20;
const BALANCE: i64 = 1_000;

async fn open_bank(client: &Client) {
    client.deploy("bank", ordo::modules::BANK).await.unwrap();
    client
        .call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
        .await
        .unwrap();
}

#[test]
fn compile_bombs_are_refused_in_one_line_while_others_are_served() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("node"), data.path().join("stderr"));
    runtime().block_on(async {
        let admin = connect(server.addr).await;
        open_bank(&admin).await;
        let hash_before = admin.status().await.unwrap().state_hash;

        // Another client keeps calling the whole time (read-only calls, so
        // the state hash must not move).
        let other = Arc::new(connect(server.addr).await);
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let background = {
            let (other, stop, served) = (other.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let balance = other
                        .call::<_, i64>("balance", &(i % ACCOUNTS,))
                        .await
                        .expect("the other client is served during the bombs");
                    assert_eq!(balance.value, BALANCE);
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        };

        let rss_before = server.rss_bytes();
        let bombs: [(&str, Vec<u8>, &[&str]); 4] = [
            (
                "250,000 empty functions",
                module(&vec![empty_body(); 250_000]),
                &["250002 functions", "functions_count_max limit of 10000"],
            ),
            (
                "1,000,000 nested blocks",
                module(&[nested_body(1_000_000)]),
                &[
                    "3000002-byte body",
                    "function_body_bytes_max limit of 262144",
                ],
            ),
            (
                "80,000 nested blocks in a small body",
                module(&[nested_body(80_000)]),
                &["80000 deep", "nesting_depth_max limit of 1024"],
            ),
            (
                "a body one byte over",
                module(&[body_of(ordo_engine::FUNCTION_BODY_BYTES_MAX_DEFAULT + 1)]),
                &[
                    "262145-byte body",
                    "function_body_bytes_max limit of 262144",
                ],
            ),
        ];
        for (what, wasm, expected) in &bombs {
            let served_before = served.load(Ordering::Relaxed);
            let message = match admin.deploy("bomb", wasm).await {
                Ok(_) => panic!("{what} was accepted"),
                Err(err) => err.to_string(),
            };
            assert!(!message.contains('\n'), "{what}: one line: {message}");
            for part in *expected {
                assert!(message.contains(part), "{what}: {message}");
            }
            // The other client is still being served.
            let deadline = Instant::now() + Duration::from_secs(60);
            while served.load(Ordering::Relaxed) < served_before + 5 {
                assert!(Instant::now() < deadline, "the other client stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let rss_after = server.rss_bytes();
        assert!(
            rss_after <= rss_before + RSS_GROWTH_BYTES_MAX,
            "RSS grew from {rss_before} to {rss_after} bytes"
        );
        assert_eq!(
            server.metric("ordo_modules_compiled_total"),
            1,
            "only the bank compiled"
        );

        stop.store(true, Ordering::Relaxed);
        background.await.unwrap();
        assert_eq!(admin.status().await.unwrap().state_hash, hash_before);
        assert!(
            admin
                .procedures()
                .await
                .unwrap()
                .iter()
                .all(|procedure| procedure.module == "bank"),
            "no bomb was deployed"
        );
    });
}

#[test]
fn the_cli_refuses_a_bomb_in_one_line() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("node"), data.path().join("stderr"));
    let runtime = runtime();
    let hash_before = runtime.block_on(async {
        let admin = connect(server.addr).await;
        open_bank(&admin).await;
        admin.status().await.unwrap().state_hash
    });
    let bomb = data.path().join("bomb.wasm");
    std::fs::write(&bomb, module(&vec![empty_body(); 250_000])).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["deploy", "--admin-token", ADMIN, "bomb"])
        .arg(&bomb)
        .env("ORDO_SERVER", server.addr.to_string())
        .env_remove("ORDO_CLIENT_TOKEN")
        .env_remove("ORDO_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("250002 functions") && stderr.contains("functions_count_max"),
        "{stderr}"
    );
    runtime.block_on(async {
        let admin = connect(server.addr).await;
        let balance = admin.call::<_, i64>("balance", &(3u64,)).await.unwrap();
        assert_eq!(balance.value, BALANCE);
        assert_eq!(admin.status().await.unwrap().state_hash, hash_before);
    });
}

#[test]
fn a_module_at_every_limit_is_accepted_and_runs() {
    let wasm = module_at_the_limits();
    let shape = ordo_engine::measure(&wasm).unwrap();
    assert_eq!(
        shape.functions,
        ordo_engine::FUNCTIONS_COUNT_MAX_DEFAULT as u64
    );
    assert_eq!(
        shape.largest_body.1,
        ordo_engine::FUNCTION_BODY_BYTES_MAX_DEFAULT
    );
    assert_eq!(
        shape.deepest_nesting.1,
        ordo_engine::NESTING_DEPTH_MAX_DEFAULT
    );
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("node"), data.path().join("stderr"));
    runtime().block_on(async {
        let admin = connect(server.addr).await;
        let deployed = admin.deploy("limits", &wasm).await.unwrap();
        assert_eq!(deployed.procedures, vec!["ping".to_string()]);
        admin
            .call_raw("ping", ordo_client::Encoding::Postcard, Vec::new())
            .await
            .unwrap();
    });
}

#[test]
fn every_example_module_is_far_inside_the_limits() {
    let config = ordo::EngineConfig::default();
    let compiler = ordo_engine::Executor::compiler(&config);
    for (name, wasm) in [
        ("bank", ordo::modules::BANK),
        ("kv", ordo::modules::KV),
        ("lock", ordo::modules::LOCK),
        ("smallbank", ordo::modules::SMALLBANK),
        ("tpcc", ordo::modules::TPCC),
        ("ycsb", ordo::modules::YCSB),
        ("hostile", ordo::modules::HOSTILE),
    ] {
        let shape = ordo_engine::measure(wasm).unwrap();
        let code = compiler.compile(name, wasm).unwrap().module.text().len();
        println!("{name}: {shape:?}, {code} bytes of machine code");
        // "Far inside": a quarter of each limit at most.
        assert!(
            shape.functions as usize * 4 <= config.functions_count_max
                && shape.largest_body.1 * 4 <= config.function_body_bytes_max
                && shape.deepest_nesting.1 * 4 <= config.nesting_depth_max
                && code * 4 <= config.compiled_code_bytes_max,
            "{name}: {shape:?}, {code} bytes of machine code"
        );
    }
}

/// The cache files of a data directory.
fn cache_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("compiled"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_restart_loads_compiled_code_from_the_cache_and_recompiles_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let runtime = runtime();
    let server = Server::start(&data, dir.path().join("stderr-1"));
    let hash = runtime.block_on(async {
        let admin = connect(server.addr).await;
        open_bank(&admin).await;
        admin
            .deploy("limits", &module_at_the_limits())
            .await
            .unwrap();
        admin
            .call::<_, ()>("transfer", &(1u64, 2u64, 10i64))
            .await
            .unwrap();
        admin.status().await.unwrap().state_hash
    });
    assert_eq!(server.metric("ordo_modules_compiled_total"), 2);
    assert_eq!(cache_files(&data).len(), 2);
    server.kill();

    // A restart compiles nothing: both modules come from the cache.
    let server = Server::start(&data, dir.path().join("stderr-2"));
    assert!(
        server
            .stderr_text()
            .contains("modules at startup: 2 loaded from the compiled-code cache, 0 compiled, 0 cache files discarded"),
        "{}",
        server.stderr_text()
    );
    assert_eq!(server.metric("ordo_compile_cache_loads_total"), 2);
    assert_eq!(server.metric("ordo_modules_compiled_total"), 0);
    let status_hash = |server: &Server| {
        runtime.block_on(async {
            let admin = connect(server.addr).await;
            admin
                .call_raw("ping", ordo_client::Encoding::Postcard, Vec::new())
                .await
                .unwrap();
            let balance = admin.call::<_, i64>("balance", &(2u64,)).await.unwrap();
            assert_eq!(balance.value, BALANCE + 10);
            admin.status().await.unwrap().state_hash
        })
    };
    assert_eq!(status_hash(&server), hash);
    server.kill();

    // Damage both files: flip a byte in the middle of one, cut the other
    // short. The node deletes them, compiles again, and reaches the same
    // state.
    let files = cache_files(&data);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&files[0], bytes).unwrap();
    let length = std::fs::metadata(&files[1]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(length - 100)
        .unwrap();
    let server = Server::start(&data, dir.path().join("stderr-3"));
    let stderr = server.stderr_text();
    assert!(
        stderr
            .contains("0 loaded from the compiled-code cache, 2 compiled, 2 cache files discarded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("checksum") && stderr.contains("truncated"),
        "{stderr}"
    );
    assert_eq!(server.metric("ordo_compile_cache_discarded_total"), 2);
    assert_eq!(status_hash(&server), hash);
    // The recompiled code was cached again.
    assert_eq!(cache_files(&data).len(), 2);
    server.kill();
}

/// A body of `bytes` bytes of real arithmetic (`i32.const 1`, `i32.const
/// 1`, `i32.add`, `drop`, repeated), which cranelift has to compile, unlike
/// `nop`s.
fn arithmetic_body(bytes: usize) -> Vec<u8> {
    const OPS: [u8; 6] = [0x41, 1, 0x41, 1, 0x6a, 0x1a];
    let mut body = vec![0];
    while body.len() + OPS.len() < bytes {
        body.extend(OPS);
    }
    body.extend(std::iter::repeat_n(0x01, bytes - 1 - body.len()));
    body.push(0x0b);
    body
}

/// The heaviest module the default limits let through that this test
/// knows of: 16 MiB of real code in bodies of the largest size.
fn heavy_module() -> Vec<u8> {
    let bodies = (ordo_engine::config::MODULE_BYTES_MAX_DEFAULT - 4096)
        / (ordo_engine::FUNCTION_BODY_BYTES_MAX_DEFAULT + 4);
    module(&vec![
        arithmetic_body(
            ordo_engine::FUNCTION_BODY_BYTES_MAX_DEFAULT
        );
        bodies
    ])
}

/// Measures what a compile at the limits costs, and how long a restart
/// takes with and without the compiled-code cache on a log that holds the
/// heaviest module. Prints the figures for docs/BENCHMARKS.md:
/// `cargo test --test e2e module_limits:: -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check; run it by name"]
fn measure_compile_costs_and_restart_times() {
    for (what, wasm) in [
        ("a module at every structural limit", module_at_the_limits()),
        ("16 MiB of arithmetic in 256 KiB bodies", heavy_module()),
    ] {
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(&data.path().join("node"), data.path().join("stderr"));
        let rss_before = server.rss_bytes();
        let started = Instant::now();
        let deployed = runtime().block_on(async {
            let admin = connect(server.addr).await;
            admin.deploy("big", &wasm).await
        });
        let elapsed = started.elapsed();
        println!(
            "{what}: {} bytes of wasm, deploy {} after {elapsed:.2?}, RSS {} -> {} MiB",
            wasm.len(),
            match &deployed {
                Ok(_) => "accepted".to_string(),
                Err(err) => format!("refused ({err})"),
            },
            rss_before >> 20,
            server.rss_bytes() >> 20
        );
        if deployed.is_err() {
            continue;
        }
        server.kill();
        let node = data.path().join("node");
        for round in 0..3 {
            for cached in [true, false] {
                if !cached {
                    std::fs::remove_dir_all(node.join("compiled")).unwrap();
                }
                let started = Instant::now();
                let server = Server::start(&node, data.path().join("stderr-restart"));
                let elapsed = started.elapsed();
                println!(
                    "  restart {round} {}: listening after {elapsed:.2?} ({})",
                    if cached {
                        "with the cache   "
                    } else {
                        "without the cache"
                    },
                    server
                        .stderr_text()
                        .lines()
                        .find(|line| line.contains("modules at startup"))
                        .unwrap_or("no startup line")
                );
                server.kill();
            }
        }
    }
}
