//! `ordo scan TABLE` against a real `ordo serve`: rows decoded with the
//! table's schema, in key order, across pages of the server's 1,000-row
//! answers; `--prefix`; keys of another type (strings); the admin token;
//! bad input refused in one line.

use crate::common;

use common::{ADMIN, Server, fails_with_all, run_ordo, runtime, stdout};

fn scan(server: &Server, args: &[&str]) -> std::process::Output {
    let mut all = vec!["scan", "--admin-token", ADMIN];
    all.extend_from_slice(args);
    run_ordo(Some(server), &all)
}

fn json_lines(output: &std::process::Output) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut lines: Vec<serde_json::Value> = stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    (lines, summary)
}

#[test]
fn a_table_scans_in_key_order_decoded_across_pages() {
    let server = Server::start(&[]);
    let position = runtime().block_on(async {
        let client = common::admin_client(&server).await;
        client.deploy("bank", ordo::modules::BANK).await.unwrap();
        client
            .call::<_, ()>("open_many", &(0u64, 2_500u64, 100i64))
            .await
            .unwrap();
        client
            .call::<_, ()>("transfer", &(7u64, 8u64, 30i64))
            .await
            .unwrap()
            .seq
    });

    // Three rows in text, and a note that more follow.
    let output = scan(&server, &["acct", "--limit", "3"]);
    assert_eq!(stdout(&output), "0 = 100\n1 = 100\n2 = 100\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("3 rows as of position {position}"))
            && stderr.contains("more rows follow"),
        "{stderr}"
    );

    // All 2,500, over three pages, in order, with the transfer's effect.
    let (rows, summary) = json_lines(&scan(&server, &["acct", "--limit", "5000", "--json"]));
    assert_eq!(rows.len(), 2_500);
    for (id, row) in rows.iter().enumerate() {
        assert_eq!(row["key"], id as u64, "{row}");
        assert_eq!(row["decoded"], true, "{row}");
    }
    assert_eq!(rows[7]["value"], 70);
    assert_eq!(rows[8]["value"], 130);
    assert_eq!(summary["more"], false, "{summary}");
    assert_eq!(summary["rows"], 2_500);
    let total: i64 = rows.iter().map(|row| row["value"].as_i64().unwrap()).sum();
    assert_eq!(total, 250_000);

    // A page asked for as large as a u32 allows comes back at the
    // server's 1,000 rows, saying more follow; without the admin token a
    // client gets nothing.
    runtime().block_on(async {
        let admin = common::admin_client(&server).await;
        let (_, rows, more) = admin
            .scan_raw(b"acct\0".to_vec(), None, u32::MAX)
            .await
            .unwrap();
        assert_eq!((rows.len(), more), (1_000, true));
        // An end below the start is an empty range, not a stopped
        // executor (the store's B-tree used to panic on it, on the
        // executor's thread).
        let (_, rows, more) = admin
            .scan_raw(b"acct\0\x09".to_vec(), Some(b"acct\0".to_vec()), 10)
            .await
            .unwrap();
        assert_eq!((rows.len(), more), (0, false));
        let total: i64 = admin.call("total", &()).await.unwrap().value;
        assert_eq!(
            total, 250_000,
            "the node still executes after the reversed scan"
        );
        let anyone = ordo_client::Client::connect(server.addr.to_string())
            .await
            .unwrap();
        let refused = anyone.scan_raw(Vec::new(), None, 10).await;
        assert!(
            matches!(refused, Err(ordo_client::ClientError::Unauthorized)),
            "{refused:?}"
        );
    });

    // A prefix: the one key.
    let output = scan(&server, &["acct", "--prefix", "8"]);
    assert_eq!(stdout(&output), "8 = 130\n");

    // Refused: no admin token; a prefix of the wrong type; a limit of 0;
    // a prefix on a table no module declares.
    fails_with_all(
        &run_ordo(Some(&server), &["scan", "acct"]),
        &["credentials"],
    );
    fails_with_all(
        &scan(&server, &["acct", "--prefix", "\"eight\""]),
        &["is not a key of table `acct` (u64)"],
    );
    fails_with_all(
        &scan(&server, &["acct", "--limit", "0"]),
        &["--limit must be 1 to"],
    );
    fails_with_all(
        &scan(&server, &["nothing", "--prefix", "1"]),
        &["no deployed module declares a table `nothing`"],
    );
    // A table nobody declares scans (empty here), as bytes.
    let output = scan(&server, &["nothing"]);
    assert_eq!(stdout(&output), "");
    assert!(String::from_utf8_lossy(&output.stderr).contains("shown as bytes"));
}

#[test]
fn string_keys_and_their_prefixes_decode() {
    let server = Server::start(&[]);
    runtime().block_on(async {
        let client = common::admin_client(&server).await;
        client.deploy("kv", ordo::modules::KV).await.unwrap();
        for (key, by) in [("apple", 1i64), ("apricot", 2), ("banana", 3), ("a\0b", 4)] {
            client
                .call::<_, i64>("incr", &(key.to_string(), by))
                .await
                .unwrap();
        }
    });
    // Escaped NUL sorts first: `a\0b` < `apple` in key order.
    let output = scan(&server, &["kv"]);
    assert_eq!(
        stdout(&output),
        "\"a\\u0000b\" = 4\n\"apple\" = 1\n\"apricot\" = 2\n\"banana\" = 3\n"
    );
    let output = scan(&server, &["kv", "--prefix", "\"banana\""]);
    assert_eq!(stdout(&output), "\"banana\" = 3\n");
}
