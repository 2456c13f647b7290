//! `ordo bench` as a user runs it: a real process, against an embedded
//! node or a real `ordo serve`, checked through its JSON report, its SVG
//! chart, its exit status and its error messages.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{ADMIN, Server, run_ordo, stdout};
use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .arg("bench")
        .args(args)
        .env_remove("ORDO_SERVER")
        .env_remove("ORDO_CLIENT_TOKEN")
        .env_remove("ORDO_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[track_caller]
fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "ordo bench failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The last line of stderr, which is where a failing command says why.
fn error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "expected exit status 1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().last().unwrap_or_default().to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing from {report}"))
}

/// What every sane report satisfies.
#[track_caller]
fn check_report(report: &Value) {
    let committed = number(report, "committed");
    let duration = number(report, "duration_s");
    let throughput = number(report, "throughput_tps");
    assert!(committed > 0.0, "nothing committed: {report}");
    assert!(
        (throughput - committed / duration).abs() < 1e-6 * throughput.max(1.0),
        "throughput is not committed / duration: {report}"
    );
    let (p50, p99, p999, max) = (
        number(report, "p50_ms"),
        number(report, "p99_ms"),
        number(report, "p999_ms"),
        number(report, "max_ms"),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max * 1.001,
        "percentiles out of order: {report}"
    );
    let timeline = report["timeline"].as_array().unwrap();
    let per_second: f64 = timeline
        .iter()
        .map(|second| second["committed"].as_f64().unwrap())
        .sum();
    assert_eq!(per_second, committed, "the timeline does not add up");
    assert!(timeline.len() <= duration.ceil() as usize);
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(check["passed"], true, "check failed: {check}");
    }
}

#[test]
fn an_embedded_run_reports_json_and_a_chart_and_conserves_money() {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("result.json");
    let svg = out.path().join("result.svg");
    let output = bench(&[
        "transfer",
        "--accounts",
        "1000",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--connections",
        "4",
        "--inflight",
        "64",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    succeeded(&output);
    let report = read_json(&json);
    check_report(&report);
    assert_eq!(report["workload"], "transfer");
    assert_eq!(report["connections"], 4);
    assert_eq!(report["inflight"], 64);
    let checks = report["checks"].as_array().unwrap();
    assert!(
        checks[0]["what"]
            .as_str()
            .unwrap()
            .contains("money is conserved"),
        "{checks:?}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("throughput"), "{stdout}");
    assert!(
        stdout.contains("check        ok      money is conserved"),
        "{stdout}"
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "not an SVG: {chart:.80}");
    // plotters writes each text on a line of its own.
    for series in [
        "committed tx/s",
        "p50",
        "p99",
        "p99.9",
        "aborts/s",
        "warm-up (not measured)",
    ] {
        assert!(
            chart.lines().any(|line| line.trim() == series),
            "no {series} in the chart"
        );
    }
    assert!(chart.matches("<polyline").count() >= 5, "a line per series");
    // The warm-up is in the JSON too, apart from the measured seconds.
    assert!(!report["warmup_timeline"].as_array().unwrap().is_empty());
    // The progress bar went to stderr.
    assert!(String::from_utf8_lossy(&output.stderr).contains("tx/s"));
}

#[test]
fn runs_against_a_server_with_skew_smallbank_and_a_reload() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("zipf.json");
    let common = [
        "--server",
        &addr,
        "--admin-token",
        ADMIN,
        "--accounts",
        "500",
        "--duration",
        "1500ms",
        "--warmup",
        "200ms",
        "--inflight",
        "32",
        "--connections",
        "2",
    ];
    let mut args = vec![
        "transfer",
        "--zipf",
        "1.5",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend(common);
    succeeded(&bench(&args));
    check_report(&read_json(&json));

    // The data is still there: a second run on it keeps the same total
    // (the check would fail otherwise).
    let mut args = vec!["transfer", "--reuse", "--json", json.to_str().unwrap()];
    args.extend(common);
    succeeded(&bench(&args));
    check_report(&read_json(&json));

    // Procedure names are global: smallbank's `balance` clashes with
    // bank's, and the bench says so before deploying anything.
    let mut args = vec!["smallbank"];
    args.extend(common);
    let line = error_line(&bench(&args));
    assert!(
        line.contains("a module `bank` providing procedure `balance`") && line.contains("--force"),
        "{line}"
    );
    // Forced, the deploy itself refuses it.
    let mut args = vec!["smallbank", "--force"];
    args.extend(common);
    let line = error_line(&bench(&args));
    assert!(
        line.contains("deploying module `smallbank`")
            && line.contains("procedure `balance` is already provided by module `bank`"),
        "{line}"
    );

    // On a server of its own it runs.
    drop(server);
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let mut args = vec!["smallbank", "--json", json.to_str().unwrap()];
    args.extend(common);
    let at = args.iter().position(|arg| *arg == "--server").unwrap();
    args[at + 1] = &addr;
    succeeded(&bench(&args));
    let report = read_json(&json);
    check_report(&report);
    assert_eq!(report["workload"], "smallbank");
}

#[test]
fn a_failed_check_and_aborts_are_reported_and_fail_the_run() {
    // No accounts were loaded: every transfer aborts and the total is 0.
    let server = Server::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("result.json");
    let output = bench(&[
        "transfer",
        "--server",
        &server.addr.to_string(),
        "--admin-token",
        ADMIN,
        "--skip-load",
        "--accounts",
        "100",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--inflight",
        "8",
        "--connections",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let line = error_line(&output);
    assert!(line.contains("not clean"), "{line}");
    let report = read_json(&json);
    assert_eq!(report["committed"], 0);
    assert!(number(&report, "aborted") > 0.0);
    let reasons = report["aborts_by_reason"].as_object().unwrap();
    assert_eq!(
        reasons.keys().collect::<Vec<_>>(),
        ["user: no such account: N"],
        "{reasons:?}"
    );
    assert_eq!(report["checks"][0]["passed"], false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("check        FAILED"), "{stdout}");
}

#[test]
fn the_open_loop_holds_its_rate() {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("result.json");
    succeeded(&bench(&[
        "transfer",
        "--accounts",
        "100",
        "--rate",
        "400",
        "--duration",
        "3s",
        "--warmup",
        "500ms",
        "--inflight",
        "16",
        "--connections",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]));
    let report = read_json(&json);
    check_report(&report);
    let throughput = number(&report, "throughput_tps");
    // Requests count in the window they were due in, so at most the
    // rate (plus rounding); below it only if the machine is too loaded
    // to send them on time. A closed loop would run at thousands.
    assert!(
        (300.0..=410.0).contains(&throughput),
        "open loop at 400/s ran at {throughput}/s"
    );
    assert_eq!(report["rate"], 400.0);
}

#[test]
fn bad_arguments_fail_with_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["transfer", "--connections", "8", "--inflight", "4"],
            "--inflight (4) must be at least --connections (8)",
        ),
        (&["transfer", "--zipf=-1"], "--zipf must be a number >= 0"),
        (
            &["transfer", "--accounts", "1"],
            "--accounts must be at least 2",
        ),
        (
            &["transfer", "--rate", "0"],
            "--rate must be a positive number",
        ),
        (
            &["transfer", "--server", "127.0.0.1:1", "--duration", "1s"],
            "cannot connect to 127.0.0.1:1",
        ),
    ];
    for (args, expected) in cases {
        let output = bench(args);
        let line = error_line(&output);
        assert!(
            line.starts_with("ordo: ") && line.contains(expected),
            "`ordo bench {}` said {line:?}, expected {expected:?}",
            args.join(" ")
        );
    }
    // clap rejects what does not parse at all.
    for args in [
        &["transfer", "--duration", "soon"][..],
        &["transfer", "--duration", "3h"][..],
        &["no-such-workload"][..],
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

/// The arguments of a short run against `server`.
fn short_run<'a>(server: &'a str, json: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["transfer"];
    args.extend(extra);
    args.extend([
        "--server",
        server,
        "--admin-token",
        ADMIN,
        "--accounts",
        "300",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--inflight",
        "16",
        "--connections",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    args
}

fn ordo_on(server: &Server, args: &[&str]) -> String {
    stdout(&run_ordo(Some(server), args))
}

#[test]
fn a_users_bank_is_left_alone_unless_reused_or_forced() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("result.json");
    let wasm = out.path().join("bank.wasm");
    std::fs::write(&wasm, ordo::modules::BANK).unwrap();
    // The user's bank: the same build, two accounts far above the bench's.
    ordo_on(
        &server,
        &[
            "deploy",
            "--admin-token",
            ADMIN,
            "bank",
            wasm.to_str().unwrap(),
        ],
    );
    ordo_on(
        &server,
        &["call", "open", r#"{"id": 1000000, "balance": 50}"#],
    );
    ordo_on(
        &server,
        &["call", "open", r#"{"id": 1000001, "balance": 20}"#],
    );
    let total = || ordo_on(&server, &["call", "total"]).trim().to_string();
    let state_hash = || {
        let status: Value = serde_json::from_str(&ordo_on(&server, &["status", "--json"])).unwrap();
        status["state_hash"].clone()
    };
    let before = state_hash();

    // Refused, naming what is there and the way out; nothing changed.
    let line = error_line(&bench(&short_run(&addr, &json, &[])));
    assert!(
        line.contains("the server already has a module `bank`")
            && line.contains("the same build as the bench's")
            && line.contains("--reuse")
            && line.contains("--force"),
        "{line}"
    );
    // With --skip-load it would still deploy over the module: refused too.
    error_line(&bench(&short_run(&addr, &json, &["--skip-load"])));
    // --reuse checks that the bench's accounts are there: they are not.
    let line = error_line(&bench(&short_run(&addr, &json, &["--reuse"])));
    assert!(
        line.contains("--reuse: the server does not hold the bench's data (300 accounts")
            && line.contains("balance failed"),
        "{line}"
    );
    assert_eq!(total(), "70");
    assert_eq!(state_hash(), before, "no data changed");

    // --force deploys over the module and loads, and says so.
    let forced = bench(&short_run(&addr, &json, &["--force"]));
    succeeded(&forced);
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains("--force: deploying over a module `bank`"),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    check_report(&read_json(&json));
    assert_eq!(total(), (70 + 300 * 1000).to_string());

    // Now the data is there, --reuse runs on it, its check passing.
    succeeded(&bench(&short_run(&addr, &json, &["--reuse"])));
    check_report(&read_json(&json));

    // A unit of money minted in the bench's accounts fails the paged check.
    ordo_on(&server, &["call", "deposit", r#"{"id": 7, "amount": 1}"#]);
    let output = bench(&short_run(&addr, &json, &["--reuse"]));
    let line = error_line(&output);
    assert!(line.contains("not clean"), "{line}");
    let report = read_json(&json);
    assert_eq!(report["checks"][0]["passed"], false);
    let failure = report["checks"][0]["failure"].as_str().unwrap();
    assert!(
        failure.contains("sum to 300001 over 300 entries, expected 300000 over 300"),
        "{failure}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("check        FAILED"));

    // --reuse and --force together make no sense.
    let output = bench(&short_run(&addr, &json, &["--reuse", "--force"]));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn reuse_refuses_a_module_of_the_same_name_that_is_not_the_bank() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("result.json");
    let wasm = out.path().join("kv.wasm");
    std::fs::write(&wasm, ordo::modules::KV).unwrap();
    ordo_on(
        &server,
        &[
            "deploy",
            "--admin-token",
            ADMIN,
            "bank",
            wasm.to_str().unwrap(),
        ],
    );
    ordo_on(&server, &["call", "put", r#"{"key": "a", "value": 5}"#]);
    let procedures = ordo_on(&server, &["procedures"]);

    let line = error_line(&bench(&short_run(&addr, &json, &[])));
    assert!(
        line.contains("a module `bank`") && line.contains("not the bench's build"),
        "{line}"
    );
    let line = error_line(&bench(&short_run(&addr, &json, &["--reuse"])));
    assert!(
        line.contains("--reuse: the server's module `bank` lacks procedures `balance`"),
        "{line}"
    );
    assert_eq!(ordo_on(&server, &["procedures"]), procedures);
    assert_eq!(
        ordo_on(&server, &["call", "get", r#"{"key": "a"}"#]).trim(),
        "5"
    );
}
