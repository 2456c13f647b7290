//! Procedure logs against a real `ordo serve`: `ordo_sdk::log!` lines and
//! a panic's message reach `ordo logs -f`, tagged with sequence number,
//! procedure, module and fuel; `ordo call -v` prints the same fuel; the
//! per-call limits; hostile calls of the host import; the admin token;
//! the per-procedure metrics; and a restart that re-executes the log
//! writes the same lines again (they are deterministic).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common;

use common::{ADMIN, Server, fails_with_all, run_ordo, runtime, stdout};

fn ordo_logs(server: &Server, args: &[&str]) -> std::process::Output {
    let mut all = vec!["logs", "--admin-token", ADMIN];
    all.extend_from_slice(args);
    run_ordo(Some(server), &all)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn deploy_hostile(server: &Server) {
    runtime().block_on(async {
        let client = common::admin_client(server).await;
        client
            .deploy("hostile", ordo::modules::HOSTILE)
            .await
            .unwrap();
    });
}

fn scrape(server: &Server) -> String {
    let mut http = TcpStream::connect(server.metrics_addr.expect("metrics address")).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(http, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    response
}

fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{series} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

#[test]
fn log_lines_and_panics_reach_ordo_logs_follow_with_their_fuel() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    deploy_hostile(&server);

    // A follower started before the calls sees them as they happen.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["logs", "-f", "--json", "--admin-token", ADMIN])
        .env("ORDO_SERVER", server.addr.to_string())
        .env_remove("ORDO_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    let follower_out = BufReader::new(follower.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in follower_out.lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    let called = run_ordo(
        Some(&server),
        &["call", "-v", "chatty", r#"{"lines": 2, "bytes": 3}"#],
    );
    assert_eq!(stdout(&called), "7\n");
    let verbose = String::from_utf8_lossy(&called.stderr).to_string();
    let (seq, fuel): (u64, u64) = {
        let rest = verbose
            .strip_prefix("committed at seq ")
            .unwrap_or_else(|| panic!("{verbose}"));
        let (seq, fuel) = rest.trim().split_once(", fuel used ").unwrap();
        (seq.parse().unwrap(), fuel.parse().unwrap())
    };
    assert!(fuel > 1_000, "{verbose}");

    let panicked = run_ordo(
        Some(&server),
        &["call", "log_then_panic", r#"{"tag": "t1"}"#],
    );
    fails_with_all(
        &panicked,
        &[
            "trap",
            "procedure panicked at",
            "hostile: panicking after logging t1",
        ],
    );

    // The follower's lines: chatty's 7, then the panicking call's warn
    // line and its abort.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 9 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the follower saw only {seen:#?}"));
        seen.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let chatty: Vec<_> = seen.iter().filter(|l| l["procedure"] == "chatty").collect();
    assert_eq!(chatty.len(), 7, "{seen:#?}");
    for line in &chatty {
        assert_eq!(line["seq"], seq);
        assert_eq!(line["module"], "hostile");
        assert_eq!(line["fuel_used"], fuel, "the log and `call -v` agree");
        assert!(line["abort_kind"].is_null());
    }
    let messages: Vec<_> = chatty
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "line 0: xxx",
            "line 1: xxx",
            "an error line",
            "a warn line",
            "an info line",
            "a debug line",
            "a trace line"
        ]
    );
    let levels: Vec<_> = chatty
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        levels,
        ["info", "info", "error", "warn", "info", "debug", "trace"]
    );
    let panic_lines: Vec<_> = seen
        .iter()
        .filter(|l| l["procedure"] == "log_then_panic")
        .collect();
    assert_eq!(panic_lines.len(), 2, "{seen:#?}");
    assert_eq!(panic_lines[0]["message"], "about to panic (t1)");
    assert_eq!(panic_lines[0]["level"], "warn");
    assert_eq!(panic_lines[1]["abort_kind"], "trap");
    assert_eq!(panic_lines[1]["level"], "error");
    let abort = panic_lines[1]["message"].as_str().unwrap();
    assert!(
        abort.starts_with("procedure panicked at ")
            && abort.ends_with("hostile: panicking after logging t1"),
        "{abort}"
    );
    assert!(panic_lines[1]["fuel_used"].as_u64().unwrap() > 0);

    // Filters: a level and a procedure; text output names the module.
    let warn_and_worse = stdout(&ordo_logs(
        &server,
        &["--procedure", "chatty", "--level", "warn"],
    ));
    assert_eq!(
        warn_and_worse,
        format!(
            "seq {seq} hostile::chatty error [fuel {fuel}]: an error line\nseq {seq} hostile::chatty warn [fuel {fuel}]: a warn line\n"
        )
    );
    let later = json_lines(&stdout(&ordo_logs(
        &server,
        &["--json", "--since", &(seq + 1).to_string()],
    )));
    assert!(later.iter().all(|line| line["seq"] != seq), "{later:#?}");
    assert_eq!(later.len(), 2);

    // Unknown procedures count under one label, whatever their names.
    for name in ["nope_1", "nope_2"] {
        let output = run_ordo(Some(&server), &["call", name]);
        assert!(!output.status.success());
    }
    let metrics = scrape(&server);
    assert!(
        metrics.starts_with("HTTP/1.1 200 OK")
            // Header names are case-insensitive; hyper writes them in
            // lower case.
            && metrics
                .to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text"),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ordo_procedure_calls_total{procedure="chatty"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ordo_procedure_committed_total{procedure="chatty"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&metrics, r#"ordo_procedure_fuel_total{procedure="chatty"}"#),
        fuel as f64
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ordo_procedure_aborts_total{procedure="log_then_panic",reason="trap"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ordo_procedure_aborts_total{procedure="(unknown)",reason="unknown_procedure"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"ordo_procedure_latency_seconds_count{procedure="chatty"}"#
        ),
        1.0
    );
    assert!(!metrics.contains("nope_1"), "{metrics}");
}

#[test]
fn per_call_limits_and_hostile_log_calls() {
    let server = Server::start(&[]);
    deploy_hostile(&server);
    let call = |procedure: &str, args: &str| run_ordo(Some(&server), &["call", procedure, args]);

    // 40 + 5 lines: 16 kept, the rest counted in one more line.
    assert_eq!(
        stdout(&call("chatty", r#"{"lines": 40, "bytes": 1}"#)),
        "45\n"
    );
    let lines = json_lines(&stdout(&ordo_logs(&server, &["--json"])));
    assert_eq!(lines.len(), 17, "{lines:#?}");
    assert_eq!(
        lines[16]["message"],
        "29 more lines not kept: one call keeps at most 16 lines and 2048 bytes of log"
    );
    let next = lines[16]["seq"].as_u64().unwrap() + 1;

    // One long line is cut at 2,048 bytes of text; what follows it is
    // dropped.
    assert_eq!(
        stdout(&call("chatty", r#"{"lines": 1, "bytes": 5000}"#)),
        "6\n"
    );
    let lines = json_lines(&stdout(&ordo_logs(
        &server,
        &["--json", "--since", &next.to_string()],
    )));
    assert_eq!(lines[0]["message"].as_str().unwrap().len(), 2048);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("5 more lines not kept")
    );

    // Calls of the host import that break its contract abort the call.
    fails_with_all(
        &call("bad_log_level", "{}"),
        &["trap", "ordo.log was given level 9"],
    );
    fails_with_all(
        &call("log_out_of_bounds", "{}"),
        &["trap", "out-of-bounds", "ordo.log"],
    );

    // `-v` gives an abort's fuel too, the one the node's log has.
    let verbose = run_ordo(
        Some(&server),
        &["call", "-v", "log_then_panic", r#"{"tag": "v"}"#],
    );
    assert!(!verbose.status.success());
    let stderr = String::from_utf8_lossy(&verbose.stderr).to_string();
    let fuel: u64 = stderr
        .lines()
        .find_map(|line| line.split_once(", fuel used ").map(|(_, fuel)| fuel))
        .and_then(|fuel| fuel.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(fuel > 0, "{stderr}");
    let logged = json_lines(&stdout(&ordo_logs(
        &server,
        &["--json", "--procedure", "log_then_panic"],
    )));
    assert_eq!(logged.last().unwrap()["abort_kind"], "trap");
    assert_eq!(logged.last().unwrap()["fuel_used"], fuel);

    // The node is fine: an ordinary call still commits.
    assert_eq!(
        stdout(&call("chatty", r#"{"lines": 0, "bytes": 0}"#)),
        "5\n"
    );

    // Without the admin token the log stays closed.
    fails_with_all(
        &run_ordo(Some(&server), &["logs"]),
        &["admin token", "procedure logs"],
    );
}

#[test]
fn a_restart_that_re_executes_the_log_writes_the_same_lines() {
    let server = Server::start(&[]);
    deploy_hostile(&server);
    for args in [
        r#"{"lines": 3, "bytes": 7}"#,
        r#"{"lines": 20, "bytes": 200}"#,
    ] {
        stdout(&run_ordo(Some(&server), &["call", "chatty", args]));
    }
    let _ = run_ordo(
        Some(&server),
        &["call", "log_then_panic", r#"{"tag": "r"}"#],
    );
    let before = stdout(&ordo_logs(&server, &["--json"]));
    // 8 lines; 9 whole lines of 208 bytes, a tenth cut at the 2 KiB, and
    // the count of the 15 dropped; a warn line and the abort.
    assert_eq!(json_lines(&before).len(), 8 + 11 + 2);

    let dir = server.kill();
    let server = Server::start_in(dir, &[]);
    let after = stdout(&ordo_logs(&server, &["--json"]));
    assert_eq!(after, before, "the same lines, the same fuel");

    // `ordo replay` of the first chatty call shows its lines and the fuel
    // the node's log recorded.
    let first = &json_lines(&before)[0];
    let seq = first["seq"].as_u64().unwrap().to_string();
    let replayed = stdout(&run_ordo(
        Some(&server),
        &[
            "replay",
            "--from-server",
            "--trace",
            "--admin-token",
            ADMIN,
            "--seq",
            &seq,
        ],
    ));
    assert!(
        replayed.contains("  log info: line 0: xxxxxxx\n"),
        "{replayed}"
    );
    assert!(
        replayed.contains("  log trace: a trace line\n"),
        "{replayed}"
    );
    assert!(
        replayed.contains(&format!("  fuel used {} ", first["fuel_used"])),
        "{replayed}"
    );
}
