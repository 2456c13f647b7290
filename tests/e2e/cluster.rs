//! Replication end to end: three real `ordo serve` processes on loopback
//! forming a Raft cluster, driven through the cluster-aware client, with
//! the leader killed (SIGKILL), frozen (SIGSTOP), a data directory wiped,
//! and a deliberately non-deterministic node.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common;

use common::{ADMIN, runtime};
use ordo_client::protocol::StatusInfo;
use ordo_client::{Client, ClientConfig, ClientError};

/// Accounts that receive transfers; each worker also owns one source
/// account, so its balance counts exactly the transfers that ran.
const SINKS: u64 = 8;
const SOURCE_BASE: u64 = 1_000;
const INITIAL: i64 = 1_000_000;
/// Every member's cluster secret in these tests.
const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";

/// `count` distinct free loopback ports: all are held while they are
/// picked, so none is handed out twice.
fn free_ports(count: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

struct Member {
    id: u64,
    client_addr: String,
    raft_addr: String,
    dir: PathBuf,
    child: Option<Child>,
    /// Everything the process wrote to stderr, collected by a thread.
    stderr: Arc<parking_lot::Mutex<String>>,
    /// Where it serves HTTP, when started with `--http-listen`.
    http_addr: Option<std::net::SocketAddr>,
}

struct Cluster {
    members: Vec<Member>,
    cluster_arg: String,
    _root: tempfile::TempDir,
    extra: Vec<String>,
    /// Set for a cluster started with TLS on both ports.
    tls: Option<Arc<ordo_client::rustls::ClientConfig>>,
    /// `RUST_LOG` for every member, if set.
    rust_log: Option<String>,
}

impl Cluster {
    fn start(extra: &[&str]) -> Cluster {
        Cluster::start_logging(extra, None)
    }

    /// A cluster whose members log with the `RUST_LOG` filter `rust_log`.
    fn start_logging(extra: &[&str], rust_log: Option<&str>) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let ports = free_ports(6);
        let members: Vec<Member> = (1..=3u64)
            .map(|id| Member {
                id,
                client_addr: format!("127.0.0.1:{}", ports[2 * id as usize - 2]),
                raft_addr: format!("127.0.0.1:{}", ports[2 * id as usize - 1]),
                dir: root.path().join(format!("node{id}")),
                child: None,
                stderr: Default::default(),
                http_addr: None,
            })
            .collect();
        let cluster_arg = members
            .iter()
            .map(|member| format!("{}={}/{}", member.id, member.raft_addr, member.client_addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members,
            cluster_arg,
            _root: root,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            tls: None,
            rust_log: rust_log.map(str::to_string),
        };
        for index in 0..3 {
            cluster.spawn(index, &[]);
        }
        cluster
    }

    /// A cluster with TLS on the client and the replication ports, every
    /// member presenting the PKI's certificate (for 127.0.0.1).
    fn start_tls(pki: &common::pki::Pki) -> Cluster {
        let paths = [pki.cert(), pki.key(), pki.ca()].map(|path| path.display().to_string());
        let mut cluster = Cluster::start(&[
            "--tls-cert",
            &paths[0],
            "--tls-key",
            &paths[1],
            "--tls-ca",
            &paths[2],
        ]);
        cluster.tls = Some(ordo_client::tls::client_config(&pki.ca()).unwrap());
        cluster
    }

    fn spawn(&mut self, index: usize, env: &[(&str, &str)]) {
        let member = &mut self.members[index];
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["serve", "--node-id", &member.id.to_string()])
            .args(["--cluster", &self.cluster_arg])
            .args(["--listen", &member.client_addr])
            .args(["--admin-token", ADMIN, "--partitions", "1", "--data"])
            .arg(&member.dir)
            .args(&self.extra)
            .envs(
                self.rust_log
                    .iter()
                    .map(|filter| ("RUST_LOG", filter.as_str())),
            )
            .envs(env.iter().copied())
            .env_remove("ORDO_CLIENT_TOKEN")
            .env_remove("ORDO_ADMIN_TOKEN")
            .env("ORDO_CLUSTER_SECRET", CLUSTER_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                panic!("node {} exited at start: {stderr}", member.id);
            }
            if let Some(http) = line.trim().strip_prefix("ordo serve: http on ") {
                member.http_addr = Some(http.parse().unwrap());
            }
            if line.starts_with("ordo serve: listening on ") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let mut stderr = child.stderr.take().unwrap();
        let collected = Arc::new(parking_lot::Mutex::new(String::new()));
        member.stderr = collected.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read) = stderr.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                collected
                    .lock()
                    .push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        });
        member.child = Some(child);
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, index: usize, signal: libc::c_int) {
        let child = self.members[index].child.as_ref().expect("running");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    }

    fn servers(&self) -> String {
        self.members
            .iter()
            .map(|member| member.client_addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn dir(&self, index: usize) -> &Path {
        &self.members[index].dir
    }

    /// The status of one member, asked of it alone; `None` if it does not
    /// answer within a second.
    async fn status(&self, index: usize) -> Option<StatusInfo> {
        let config = ClientConfig {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(1),
            reconnect_attempts: 0,
            tls: self.tls.clone(),
            ..ClientConfig::new(self.members[index].client_addr.clone())
        };
        let asking = async {
            let client = Client::connect_with(config).await.ok()?;
            client.status().await.ok()
        };
        tokio::time::timeout(Duration::from_secs(2), asking)
            .await
            .ok()
            .flatten()
    }

    /// Waits until one of `among` says it leads; returns its index.
    async fn leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for &index in among {
                if let Some(status) = self.status(index).await
                    && status.role == "leader"
                {
                    return index;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member in `among` reports the same position and
    /// state hash, at least `position`; returns them.
    async fn converged(&self, among: &[usize], position: u64, within: Duration) -> StatusInfo {
        let deadline = Instant::now() + within;
        loop {
            let mut statuses = Vec::new();
            for &index in among {
                statuses.push(self.status(index).await);
            }
            if let Some(Some(first)) = statuses.first()
                && first.position >= position
                && statuses.iter().all(|status| {
                    status.as_ref().is_some_and(|status| {
                        status.position == first.position
                            && status.state_hash == first.state_hash
                            && status.chain_hash == first.chain_hash
                    })
                })
            {
                return first.clone();
            }
            assert!(
                Instant::now() < deadline,
                "members {among:?} did not converge at position >= {position} within {within:?}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].child.is_some() {
                // A frozen process cannot die until it is continued.
                let _ = self.members[index]
                    .child
                    .as_ref()
                    .map(|child| unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) });
                self.kill(index);
            }
        }
    }
}

/// One cluster at a time: three nodes each already keep a 2-core machine
/// busy, and elections need timely heartbeats.
static ONE_CLUSTER_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

async fn cluster_client(cluster: &Cluster) -> Client {
    let config = ClientConfig {
        admin_token: Some(ADMIN.into()),
        tls: cluster.tls.clone(),
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::new(cluster.servers())
    };
    Client::connect_with(config).await.unwrap()
}

/// Deploys the bank and opens the sinks and one source per worker.
async fn set_up_bank(client: &Client, workers: u64) {
    client.deploy("bank", ordo::modules::BANK).await.unwrap();
    for id in 0..SINKS {
        client.call::<_, ()>("open", &(id, INITIAL)).await.unwrap();
    }
    for worker in 0..workers {
        client
            .call::<_, ()>("open", &(SOURCE_BASE + worker, INITIAL))
            .await
            .unwrap();
    }
}

/// Per worker: transfers acknowledged as committed, and requests that
/// failed (their outcome unknown to the client).
struct Tally {
    acknowledged: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    highest_seq: AtomicU64,
    /// When each acknowledgement arrived (at most `ACK_TIMES_MAX`), for
    /// the longest gap a fault caused.
    ack_times: parking_lot::Mutex<Vec<Instant>>,
}

/// Acknowledgement times kept at most (a test acknowledges a few
/// thousand transfers).
const ACK_TIMES_MAX: usize = 1_000_000;

/// The client-visible gap allowed after the leader is killed or frozen,
/// on loopback: the longest time with no transfer acknowledged. The
/// target is 2 s, met with room to spare on a loaded 2-core machine
/// (docs/BENCHMARKS.md, "Failover": medians of 1.2 s, at worst 1.4 s); the bound asserted
/// in the default run is looser, so that a CI machine busier still does
/// not fail it.
const FAILOVER_GAP_MAX: Duration = Duration::from_secs(3);

impl Tally {
    fn new(workers: u64) -> Arc<Tally> {
        Arc::new(Tally {
            acknowledged: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            highest_seq: AtomicU64::new(0),
            ack_times: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn acked(&self, worker: u64, seq: u64) {
        self.acknowledged[worker as usize].fetch_add(1, Ordering::SeqCst);
        self.highest_seq.fetch_max(seq, Ordering::SeqCst);
        let mut times = self.ack_times.lock();
        if times.len() < ACK_TIMES_MAX {
            times.push(Instant::now());
        }
    }

    /// The longest time after `from` with no acknowledgement: from `from`
    /// to the first one after it, or between two after it.
    fn longest_gap_after(&self, from: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .ack_times
            .lock()
            .iter()
            .copied()
            .filter(|at| *at >= from)
            .collect();
        times.sort();
        let mut previous = from;
        let mut longest = Duration::ZERO;
        for at in times {
            longest = longest.max(at - previous);
            previous = at;
        }
        longest
    }

    fn acknowledged(&self) -> u64 {
        self.acknowledged
            .iter()
            .map(|count| count.load(Ordering::SeqCst))
            .sum()
    }
}

/// Workers that each move 1 unit at a time from their own account to a
/// sink, until `stop`.
fn start_transfers(
    client: &Client,
    workers: u64,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|worker| {
            let (client, tally, stop) = (client.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let sink = (worker + round) % SINKS;
                    round += 1;
                    match client
                        .call::<_, ()>("transfer", &(SOURCE_BASE + worker, sink, 1i64))
                        .await
                    {
                        Ok(called) => tally.acked(worker, called.seq),
                        Err(_) => {
                            tally.failed[worker as usize].fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn wait_for_acknowledged(tally: &Tally, at_least: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while tally.acknowledged() < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} transfers acknowledged within {within:?}, wanted {at_least}",
            tally.acknowledged()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No acknowledged transfer lost, none applied twice, money conserved:
/// checked with stale reads on `index` (which must have converged).
async fn check_bank(cluster: &Cluster, index: usize, load: &Load) {
    let (workers, tally) = (load.workers, &load.tally);
    let config = ClientConfig {
        reconnect_attempts: 0,
        ..ClientConfig::new(cluster.members[index].client_addr.clone())
    };
    let client = Client::connect_with(config).await.unwrap();
    let balance = async |id: u64| -> i64 {
        client
            .read::<_, i64>("balance", &id, ordo_client::ReadConsistency::Stale)
            .await
            .unwrap()
            .value
    };
    let mut total = 0;
    for worker in 0..workers {
        let moved = (INITIAL - balance(SOURCE_BASE + worker).await) as u64;
        let acknowledged = tally.acknowledged[worker as usize].load(Ordering::SeqCst);
        let failed = tally.failed[worker as usize].load(Ordering::SeqCst);
        assert!(
            moved >= acknowledged,
            "node {}: worker {worker} had {acknowledged} transfers acknowledged but only {moved} took effect",
            index + 1
        );
        assert!(
            moved <= acknowledged + failed,
            "node {}: worker {worker}: {moved} transfers took effect, more than {acknowledged} acknowledged plus {failed} failed (a retry ran twice?)",
            index + 1
        );
        total += INITIAL - moved as i64;
    }
    for sink in 0..SINKS {
        total += balance(sink).await;
    }
    assert_eq!(
        total,
        INITIAL * (SINKS + workers) as i64,
        "node {}: money is not conserved",
        index + 1
    );
    let all: i64 = client
        .read::<_, i64>("total", &(), ordo_client::ReadConsistency::Stale)
        .await
        .unwrap()
        .value;
    assert_eq!(all, INITIAL * (SINKS + workers) as i64);
}

/// The bank load every test runs: the bank deployed and opened, and
/// `workers` transfer tasks running through the cluster-aware client.
struct Load {
    workers: u64,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(cluster: &Cluster, workers: u64) -> Load {
        let client = cluster_client(cluster).await;
        set_up_bank(&client, workers).await;
        let tally = Tally::new(workers);
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = start_transfers(&client, workers, &tally, &stop);
        Load {
            workers,
            tally,
            stop,
            tasks,
        }
    }

    /// Waits for `more` acknowledged transfers than now.
    async fn progress(&self, more: u64, within: Duration) {
        let now = self.tally.acknowledged();
        wait_for_acknowledged(&self.tally, now + more, within).await;
    }

    /// Stops the workers; returns the highest sequence number any
    /// acknowledged transfer got.
    async fn finish(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        self.tally.highest_seq.load(Ordering::SeqCst)
    }
}

#[test]
fn killing_the_leader_loses_no_acknowledged_transfer_and_it_catches_up() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        let mut cluster = Cluster::start(&[]);
        let first_leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let mut load = Load::start(&cluster, 16).await;
        load.progress(300, Duration::from_secs(60)).await;

        cluster.kill(first_leader);
        let killed_at = Instant::now();
        let others: Vec<usize> = (0..3).filter(|index| *index != first_leader).collect();
        let new_leader = cluster.leader(&others, Duration::from_secs(20)).await;
        assert_ne!(new_leader, first_leader);
        // Clients carry on through the new leader.
        load.progress(300, Duration::from_secs(60)).await;
        let gap = load.tally.longest_gap_after(killed_at);
        eprintln!(
            "a new leader (node {}) and 300 more transfers {:?} after the kill; longest gap without an acknowledgement {gap:?}",
            new_leader + 1,
            killed_at.elapsed()
        );
        assert!(
            gap <= FAILOVER_GAP_MAX,
            "clients saw no commit for {gap:?} after the leader was killed (at most {FAILOVER_GAP_MAX:?})"
        );
        let highest = load.finish().await;
        let survivors = cluster
            .converged(&others, highest, Duration::from_secs(30))
            .await;
        for &index in &others {
            check_bank(&cluster, index, &load).await;
        }

        // The killed node restarts from its own data and catches up.
        cluster.spawn(first_leader, &[]);
        let all = cluster
            .converged(&[0, 1, 2], survivors.position, Duration::from_secs(60))
            .await;
        assert_eq!(all.state_hash, survivors.state_hash);
        check_bank(&cluster, first_leader, &load).await;
        let status = cluster.status(first_leader).await.unwrap();
        assert_eq!(status.role, "follower");
        assert_eq!(status.leader, Some(new_leader as u64 + 1));

        // `ordo status --json` shows the same, given the whole list.
        let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["status", "--json", "--server", &cluster.servers()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(["leader", "follower"].contains(&json["role"].as_str().unwrap()));
        assert_eq!(json["leader"], new_leader as u64 + 1);
        assert!(json["term"].as_u64().unwrap() >= 2, "{json}");
        assert!(json["commit"].as_u64().unwrap() > 0, "{json}");
        assert!(json["applied"].as_u64().unwrap() > 0, "{json}");
        assert_eq!(json["position"], all.position);
        assert_eq!(json["state_hash"], all.state_hash.as_str());
    });
}

#[test]
fn a_wiped_node_rejoins_from_a_snapshot() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        // Snapshots every 64 sequence numbers, so a short run makes many
        // and the log before them is purged.
        let mut cluster =
            Cluster::start(&["--snapshot-every", "64", "--snapshot-log-bytes-min", "0"]);
        let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let mut load = Load::start(&cluster, 8).await;
        load.progress(1_500, Duration::from_secs(90)).await;
        let highest = load.finish().await;
        let before = cluster
            .converged(&[0, 1, 2], highest, Duration::from_secs(30))
            .await;
        assert!(
            snapshot_files(cluster.dir(leader)) > 0,
            "the leader wrote no snapshot"
        );

        let wiped = (leader + 1) % 3;
        cluster.kill(wiped);
        std::fs::remove_dir_all(cluster.dir(wiped)).unwrap();
        // No transactions from here on: a snapshot file on the wiped node
        // can only have come from the leader.
        cluster.spawn(wiped, &[]);
        let after = cluster
            .converged(&[0, 1, 2], before.position, Duration::from_secs(60))
            .await;
        assert_eq!(after.state_hash, before.state_hash);
        assert_eq!(after.position, before.position);
        assert!(
            snapshot_files(cluster.dir(wiped)) > 0,
            "the wiped node caught up without installing a snapshot"
        );
        let stderr = cluster.members[wiped].stderr.lock().clone();
        assert!(
            stderr.contains("installed the leader's snapshot"),
            "the wiped node replayed the log instead of installing a snapshot: {stderr}"
        );
        check_bank(&cluster, wiped, &load).await;

        // And it restarts from that snapshot plus its log tail.
        cluster.kill(wiped);
        cluster.spawn(wiped, &[]);
        cluster
            .converged(&[0, 1, 2], before.position, Duration::from_secs(60))
            .await;
    });
}

/// `ordo` with `args`; its output.
fn ordo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env_remove("ORDO_CLIENT_TOKEN")
        .env_remove("ORDO_ADMIN_TOKEN")
        .output()
        .unwrap()
}

/// Issue 15, item 4: a backup seeds a member. A backup of one follower,
/// taken under a bank load, is restored (`ordo restore --member`) into
/// the wiped data directory of the other follower; started, that member
/// takes only the log after the backup's snapshot from the leader (no
/// snapshot is installed), converges to the same state hash with every
/// acknowledged transfer, and votes again once it has caught up: with
/// the leader killed, it and the backed-up member elect a new one.
/// Refused on the way: a member that is still running, too few members
/// asked, a data directory that is not empty.
#[test]
fn a_backup_seeds_a_replaced_member_that_catches_up_through_the_log() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        // One snapshot and no second one during the test (the load runs
        // at about 1,500 transfers/s here, and the rest of the test takes
        // a few seconds): the leader keeps its log from 64 entries before
        // its newest snapshot, so a backup of that snapshot finds it.
        let mut cluster = Cluster::start(&["--snapshot-every", "16384", "--snapshot-log-bytes-min", "0"]);
        let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let (source, replaced) = ((leader + 1) % 3, (leader + 2) % 3);
        let mut load = Load::start(&cluster, 8).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while snapshot_files(cluster.dir(source)) == 0 {
            assert!(Instant::now() < deadline, "no snapshot on the source member");
            load.progress(200, Duration::from_secs(60)).await;
        }

        // The backup, hot: the load keeps going.
        let root = tempfile::tempdir().unwrap();
        let backup_dir = root.path().join("backup");
        let output = ordo(&[
            "backup",
            "--server",
            &cluster.members[source].client_addr,
            "--admin-token",
            ADMIN,
            backup_dir.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{output:?}");
        let said = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(said.contains("0 log records"), "{said}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(backup_dir.join("BACKUP.json")).unwrap())
                .unwrap();
        let backup_position = manifest["position"].as_u64().unwrap();
        // The first snapshot, at the start of the second epoch.
        assert!(backup_position >= 8_192, "{manifest}");

        let replaced_id = (replaced + 1).to_string();
        let others = [leader, source]
            .map(|index| cluster.members[index].client_addr.clone())
            .join(",");
        let seed = |data: &Path, peers: &str| {
            ordo(&[
                "restore",
                backup_dir.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--member",
                &replaced_id,
                "--peers",
                peers,
            ])
        };
        // Refused while the member to replace still answers.
        let fresh = root.path().join("fresh");
        let refused = seed(&fresh, &cluster.servers());
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("still running"), "{stderr}");
        assert!(!fresh.exists(), "a refused seed wrote {}", fresh.display());
        // Refused: a node id the backup's cluster does not have.
        let refused = ordo(&[
            "restore",
            backup_dir.to_str().unwrap(),
            "--data",
            fresh.to_str().unwrap(),
            "--member",
            "9",
            "--peers",
            &others,
        ]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("node 9 is not a member of the backup's cluster"),
            "{stderr}"
        );
        assert!(!fresh.exists(), "a refused seed wrote {}", fresh.display());

        load.progress(300, Duration::from_secs(60)).await;
        cluster.kill(replaced);
        load.progress(300, Duration::from_secs(60)).await;

        // Refused: one other member of three is not enough to know what
        // the lost member may have acknowledged.
        let refused = seed(&fresh, &cluster.members[source].client_addr);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("1 of the other members answered"), "{stderr}");
        // Refused: the old data directory is still there.
        let refused = seed(cluster.dir(replaced), &others);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("is not empty"), "{stderr}");

        std::fs::remove_dir_all(cluster.dir(replaced)).unwrap();
        let seeded = seed(cluster.dir(replaced), &others);
        assert!(seeded.status.success(), "{seeded:?}");
        let said = String::from_utf8_lossy(&seeded.stdout).to_string();
        assert!(
            said.contains(&format!("seeded member {replaced_id} at position {backup_position}")),
            "{said}"
        );
        cluster.spawn(replaced, &[]);
        load.progress(300, Duration::from_secs(60)).await;
        let highest = load.finish().await;
        let all = cluster
            .converged(&[0, 1, 2], highest, Duration::from_secs(60))
            .await;
        assert!(all.position > backup_position);
        for index in 0..3 {
            check_bank(&cluster, index, &load).await;
        }
        let stderr = cluster.members[replaced].stderr.lock().clone();
        assert!(
            !stderr.contains("installed the leader's snapshot"),
            "the seeded member was sent the whole state: {stderr}"
        );
        assert!(stderr.contains("seeded by `ordo restore --member`"), "{stderr}");
        assert_eq!(
            snapshot_files(cluster.dir(replaced)),
            1,
            "the seeded member has another snapshot than the backup's"
        );

        // Caught up, it votes again: without the leader, it and the
        // source member make a majority.
        cluster
            .wait_until_logged(
                replaced,
                "it votes and stands for election again",
                Duration::from_secs(30),
                "the seeded member never caught up",
            )
            .await;
        cluster.kill(leader);
        let new_leader = cluster
            .leader(&[source, replaced], Duration::from_secs(20))
            .await;
        let client = cluster_client(&cluster).await;
        client
            .call::<_, ()>("transfer", &(SOURCE_BASE, 0u64, 1i64))
            .await
            .unwrap();
        let caught_up = cluster.members[replaced]
            .stderr
            .lock()
            .lines()
            .find(|line| line.contains("node caught up"))
            .map(str::to_string);
        eprintln!(
            "seeded node {} from a backup at position {backup_position}; node {} leads after the old leader's death; {caught_up:?}",
            replaced + 1,
            new_leader + 1
        );
    });
}

fn snapshot_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("raft/snapshots"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".bin"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn frozen_minority_and_frozen_leader() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        let cluster = Cluster::start(&[]);
        let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let mut load = Load::start(&cluster, 8).await;
        load.progress(200, Duration::from_secs(60)).await;

        // A frozen follower: the majority keeps committing.
        let follower = (leader + 1) % 3;
        cluster.signal(follower, libc::SIGSTOP);
        load.progress(300, Duration::from_secs(60)).await;
        cluster.signal(follower, libc::SIGCONT);
        let highest = load.tally.highest_seq.load(Ordering::SeqCst);
        cluster
            .converged(&[0, 1, 2], highest, Duration::from_secs(60))
            .await;

        // A frozen leader: the others elect a new one and clients carry on.
        let old_term = cluster.status(leader).await.unwrap().term;
        // A client that knows only the old leader sends a call into the
        // freeze; whatever it gets back must not be a stale commit.
        let stranded_config = ClientConfig {
            reconnect_attempts: 0,
            request_timeout: Duration::from_secs(60),
            ..ClientConfig::new(cluster.members[leader].client_addr.clone())
        };
        let stranded = Client::connect_with(stranded_config).await.unwrap();
        cluster.signal(leader, libc::SIGSTOP);
        let frozen_at = Instant::now();
        let stranded_call = tokio::spawn(async move {
            stranded
                .call::<_, ()>("deposit", &(SOURCE_BASE + 999, 5i64))
                .await
        });
        let others: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
        let new_leader = cluster.leader(&others, Duration::from_secs(20)).await;
        load.progress(300, Duration::from_secs(60)).await;
        let gap = load.tally.longest_gap_after(frozen_at);
        eprintln!("longest gap without an acknowledgement after freezing the leader: {gap:?}");
        assert!(
            gap <= FAILOVER_GAP_MAX,
            "clients saw no commit for {gap:?} after the leader froze (at most {FAILOVER_GAP_MAX:?})"
        );
        cluster.signal(leader, libc::SIGCONT);
        // The stranded call reached only the deposed leader: it must not
        // be answered as committed (the account does not even exist, so
        // a commit would be an abort; anything but NotLeader or a refusal
        // means the old leader acted on its own).
        match tokio::time::timeout(Duration::from_secs(30), stranded_call)
            .await
            .expect("the stranded call was answered")
            .unwrap()
        {
            Err(ClientError::NotLeader { .. })
            | Err(ClientError::Unavailable(_))
            | Err(ClientError::ConnectionLost { .. }) => {}
            other => panic!("the deposed leader answered {other:?}"),
        }
        let highest = load.finish().await;
        cluster
            .converged(&[0, 1, 2], highest, Duration::from_secs(60))
            .await;
        let resumed = cluster.status(leader).await.unwrap();
        assert_eq!(resumed.role, "follower", "the old leader stepped down");
        assert!(resumed.term > old_term);
        assert_eq!(resumed.leader, Some(new_leader as u64 + 1));
        for index in 0..3 {
            check_bank(&cluster, index, &load).await;
        }
    });
}

/// A follower loses the end of its Raft journal (its newest segment file
/// is deleted while it is down), the loss is accepted with `ordo repair
/// --accept-loss`, and it restarts. It catches up from the leader, but
/// until it has applied an entry of a later term it must neither vote nor
/// stand: with the leader killed, the other survivor cannot win an
/// election with it (it may have been the second copy of entries it no
/// longer has). Once the old leader is back, a new term starts, the
/// repaired member votes again, and nothing acknowledged is lost.
#[test]
fn a_member_that_lost_journal_entries_does_not_vote_until_it_caught_up() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        let mut cluster = Cluster::start(&[]);
        let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let (lossy, other) = ((leader + 1) % 3, (leader + 2) % 3);
        let mut load = Load::start(&cluster, 4).await;
        load.progress(100, Duration::from_secs(60)).await;

        cluster.kill(lossy);
        let journal = cluster.dir(lossy).join("raft").join("journal");
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&journal)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        segments.sort();
        std::fs::remove_file(segments.last().unwrap()).unwrap();
        let repair = |accept: bool| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
            command.args(["repair", "--data"]).arg(cluster.dir(lossy));
            if accept {
                command.arg("--accept-loss");
            }
            command.output().unwrap()
        };
        let refused = repair(false);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{stderr}");
        assert!(stderr.contains("--accept-loss"), "{stderr}");
        let accepted = repair(true);
        let stdout = String::from_utf8_lossy(&accepted.stdout);
        assert!(accepted.status.success(), "{accepted:?}");
        assert!(
            stdout.contains("accepted the loss") && stdout.contains("neither vote nor stand"),
            "{stdout}"
        );
        let marker = cluster.dir(lossy).join("raft").join("lost-entries");
        assert!(marker.exists());

        // It restarts, says it will not vote, and catches up.
        cluster.spawn(lossy, &[]);
        load.progress(100, Duration::from_secs(60)).await;
        let highest = load.tally.highest_seq.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while cluster
            .status(lossy)
            .await
            .is_none_or(|status| status.position < highest)
        {
            assert!(
                Instant::now() < deadline,
                "the repaired member did not catch up to {highest}: {:?}\n{}",
                cluster.status(lossy).await.map(|status| status.position),
                cluster.members[lossy].stderr.lock()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            cluster.members[lossy]
                .stderr
                .lock()
                .contains("it will neither vote nor stand for election"),
            "{}",
            cluster.members[lossy].stderr.lock()
        );

        // If the survivors elected a new leader while the member was down
        // (a slow, loaded machine can miss heartbeats), the member catches
        // up legitimately: it applies an entry of a term its vote had no
        // part in, and votes again. That is told by the cluster's term,
        // not by the member's log: the member says so just after the apply
        // that let its position reach `highest`, so its log may not have
        // the line yet. Then what is left to check is that it says so,
        // and nothing acknowledged was lost.
        let marker_term: u64 = cluster.members[lossy]
            .stderr
            .lock()
            .split("until it has applied an entry of a term after ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|term| term.parse().ok())
            .expect("the marker's term in the log");
        let term = cluster.status(other).await.expect("a status").term;
        if term > marker_term {
            cluster
                .wait_until_logged(
                    lossy,
                    "it votes and stands for election again",
                    Duration::from_secs(10),
                    &format!("caught up in term {term} (marked at {marker_term}) but never said it votes again"),
                )
                .await;
            eprintln!(
                "a new term ({term}) began while the member was down, so it caught up before the leader was killed; the vote refusal was not exercised this run"
            );
            finish_and_check_every_member(&cluster, &mut load).await;
            return;
        }

        // The leader dies: the other survivor stands, but the repaired
        // member refuses its votes and does not stand itself, so no
        // leader appears (normally one does within 1.5 s).
        cluster.kill(leader);
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            for index in [lossy, other] {
                if let Some(status) = cluster.status(index).await {
                    assert_ne!(
                        status.role,
                        "leader",
                        "node {} was elected with the vote of a member that lost entries; the repaired member's log:\n{}",
                        index + 1,
                        cluster.members[lossy].stderr.lock()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(marker.exists());

        // The old leader returns: a new term, which the repaired member
        // applies; then it votes again.
        cluster.spawn(leader, &[]);
        cluster.leader(&[0, 1, 2], Duration::from_secs(30)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while marker.exists() {
            assert!(
                Instant::now() < deadline,
                "the repaired member did not catch up past the term of its loss"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The marker goes first, then the node says so.
        cluster
            .wait_until_logged(
                lossy,
                "votes and stands for election again",
                Duration::from_secs(10),
                "the marker went but the member never said it votes again",
            )
            .await;
        load.progress(100, Duration::from_secs(60)).await;
        finish_and_check_every_member(&cluster, &mut load).await;
    });
}

/// Stops the load, waits until all three members reach its last
/// acknowledged transfer, and checks every member's bank against it.
async fn finish_and_check_every_member(cluster: &Cluster, load: &mut Load) {
    let highest = load.finish().await;
    cluster
        .converged(&[0, 1, 2], highest, Duration::from_secs(60))
        .await;
    for index in 0..3 {
        check_bank(cluster, index, load).await;
    }
}

#[test]
fn an_injected_divergence_stops_the_diverging_node_and_names_the_sequence() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        // No snapshots: a lagging node 3 that installed the leader's
        // snapshot would skip sequence 40 and be healed, not diverged.
        let mut cluster = Cluster::start(&["--snapshot-every", "1000000000"]);
        cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        // Node 3 runs a test-only hook that garbles the arguments of the
        // transaction at sequence 40, on that node alone.
        cluster.kill(2);
        cluster.spawn(2, &[("ORDO_TEST_DIVERGE_AT_SEQ", "40")]);
        let mut load = Load::start(&cluster, 4).await;
        // At the next check point (every batch) that reaches the log, node 3
        // must stop on its own, naming where it diverged.
        let deadline = Instant::now() + Duration::from_secs(90);
        let exit = loop {
            if let Some(status) = cluster.members[2]
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                break status;
            }
            if Instant::now() >= deadline {
                // Seen once on a fresh CI machine (not reproduced here):
                // say where every member was, for whoever sees it next.
                let mut statuses = Vec::new();
                for index in 0..3 {
                    statuses.push(cluster.status(index).await);
                }
                panic!(
                    "the diverging node kept running; acknowledged {}; statuses {statuses:#?}; node 3 stderr: {}",
                    load.tally.acknowledged(),
                    cluster.members[2].stderr.lock()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(!exit.success());
        let stderr = cluster.members[2].stderr.lock().clone();
        assert!(
            stderr.contains("this node diverged: after the batch ending at sequence"),
            "{stderr}"
        );
        assert!(stderr.contains("state hash"), "{stderr}");
        // The two deterministic nodes carry on and agree.
        load.progress(100, Duration::from_secs(60)).await;
        let highest = load.finish().await;
        for index in [0, 1] {
            let stderr = cluster.members[index].stderr.lock().clone();
            assert!(!stderr.contains("diverged"), "node {}: {stderr}", index + 1);
        }
        cluster
            .converged(&[0, 1], highest, Duration::from_secs(30))
            .await;
        check_bank(&cluster, 0, &load).await;
    });
}

#[test]
fn bad_cluster_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(args)
            .env_remove("ORDO_CLUSTER_SECRET")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let not_member = serve(&[
        "--node-id",
        "4",
        "--cluster",
        "1=127.0.0.1:1/127.0.0.1:11,2=127.0.0.1:2/127.0.0.1:12",
    ]);
    assert!(
        not_member.contains("--node-id 4 is not in --cluster"),
        "{not_member}"
    );
    let no_id = serve(&["--cluster", "1=127.0.0.1:1/127.0.0.1:11"]);
    assert!(no_id.contains("--node-id"), "{no_id}");
    let garbage = serve(&["--node-id", "1", "--cluster", "1=nowhere/127.0.0.1:11"]);
    assert!(garbage.contains("is not HOST:PORT"), "{garbage}");
    let no_client = serve(&["--node-id", "1", "--cluster", "1=127.0.0.1:1"]);
    assert!(no_client.contains("names no client address"), "{no_client}");
    let twice = serve(&[
        "--node-id",
        "1",
        "--cluster",
        "1=127.0.0.1:1/127.0.0.1:11,1=127.0.0.1:2/127.0.0.1:12",
    ]);
    assert!(twice.contains("node id 1 appears twice"), "{twice}");
    // A member without the cluster secret, or with a short one, does not
    // start: its replication port would trust nobody, or everybody.
    let one_member = ["--node-id", "1", "--cluster", "1=127.0.0.1:0/127.0.0.1:0"];
    let no_secret = serve(&one_member);
    assert!(
        no_secret.contains("needs the cluster secret") && no_secret.contains("ORDO_CLUSTER_SECRET"),
        "{no_secret}"
    );
    let short = dir.path().join("short-secret");
    std::fs::write(&short, "abc\n").unwrap();
    let short_secret = serve(
        &[
            &one_member[..],
            &["--cluster-secret-file", short.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(
        short_secret.contains("the cluster secret is 3 bytes"),
        "{short_secret}"
    );
    let missing = serve(
        &[
            &one_member[..],
            &["--cluster-secret-file", "/nonexistent/secret"],
        ]
        .concat(),
    );
    assert!(missing.contains("/nonexistent/secret"), "{missing}");
    let zero = serve(&["--snapshot-every", "0"]);
    assert!(
        zero.contains("--snapshot-every must be at least 1"),
        "{zero}"
    );
    let retaining = serve(&[&one_member[..], &["--retain-positions", "1000"]].concat());
    assert!(
        retaining.contains("--retain-positions and --snapshots-kept apply to a single node"),
        "{retaining}"
    );
    // Nothing was created for a refused start of a cluster member.
    assert!(!dir.path().join("raft").exists());
}

// ---------------------------------------------------------------------
// The replication port under attack: a process that is not a member, or
// does not hold the cluster secret, must reach nothing.
// ---------------------------------------------------------------------

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

const RSS_GROWTH_KIB_MAX: u64 = 256 << 10;

impl Cluster {
    /// Waits until member `index` has logged `line`, for at most `within`;
    /// fails with `what` and the member's log.
    async fn wait_until_logged(&self, index: usize, line: &str, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while !self.members[index].stderr.lock().contains(line) {
            assert!(
                Instant::now() < deadline,
                "{what}:\n{}",
                self.members[index].stderr.lock()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self, index: usize) -> u32 {
        self.members[index].child.as_ref().expect("running").id()
    }

    fn running(&mut self, index: usize) -> bool {
        self.members[index]
            .child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }
}

/// Waits until the peer closes `stream` (a read returns 0 or fails);
/// false if it is still open at the deadline. Whatever the server sent
/// before closing is ignored.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// A postcard greeting as the handshake expects it: magic, version, the
/// claimed sender, the intended receiver, a nonce.
fn greeting(from: u64, to: u64) -> Vec<u8> {
    let mut body = b"ordopeer".to_vec();
    body.push(1); // version 1 as a varint
    body.push(from as u8);
    body.push(to as u8);
    body.extend_from_slice(&[7u8; 32]);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

async fn peer_io(addr: &str) -> Box<dyn ordo_sequencer::raft::auth::PeerIo> {
    Box::new(tokio::net::TcpStream::connect(addr).await.unwrap())
}

#[test]
fn non_members_and_wrong_secrets_reach_nothing_on_the_replication_port() {
    use ordo_sequencer::raft::ClusterSecret;
    use ordo_sequencer::raft::auth::{self, HandshakeError};
    use tokio::io::AsyncWriteExt;

    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        let mut cluster = Cluster::start(&[]);
        cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let client = cluster_client(&cluster).await;
        set_up_bank(&client, 1).await;
        let before = cluster
            .converged(&[0, 1, 2], 1, Duration::from_secs(30))
            .await;
        let procedures_before: Vec<String> = client
            .procedures()
            .await
            .unwrap()
            .into_iter()
            .map(|procedure| procedure.name)
            .collect();
        let rss_before: Vec<u64> = (0..3).map(|index| rss_kib(cluster.pid(index))).collect();
        let right = ClusterSecret::new(CLUSTER_SECRET.as_bytes().to_vec()).unwrap();
        let wrong = ClusterSecret::new(b"not-the-cluster-secret-at-all".to_vec()).unwrap();

        for index in 0..3 {
            let member = cluster.members[index].id;
            let other = if member == 1 { 2 } else { 1 };
            let addr = cluster.members[index].raft_addr.clone();

            // Bytes of the old protocol (a peer hello naming node 3 and
            // an attacker's client address): not a handshake, closed.
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let mut hello = postcard::to_stdvec(&(3u64, "127.0.0.1:1".to_string())).unwrap();
            let mut frame = (hello.len() as u32).to_le_bytes().to_vec();
            frame.append(&mut hello);
            stream.write_all(&frame).await.unwrap();
            assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

            // A first frame claiming 1 GiB: closed without reading it.
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.write_all(&(1u32 << 30).to_le_bytes()).await.unwrap();
            assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

            // A greeting in a member's name with a made-up proof: the
            // challenge comes back, the proof fails, and the frame sent
            // after it (it would be an AppendEntries) is never read.
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.write_all(&greeting(other, member)).await.unwrap();
            let mut proof = (32u32).to_le_bytes().to_vec();
            proof.extend_from_slice(&[0u8; 32]);
            stream.write_all(&proof).await.unwrap();
            let _ = stream.write_all(&[0u8; 64]).await;
            assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

            // The real handshake with the wrong secret: this side sees
            // the member's proof fail and stops.
            let refused = auth::connect(peer_io(&addr).await, &wrong, other, member).await;
            assert!(
                matches!(refused, Err(HandshakeError::BadProof)),
                "member {member}"
            );
            // The right secret under an id that is not a member.
            let refused = auth::connect(peer_io(&addr).await, &right, 9, member).await;
            assert!(refused.is_err(), "node 9 was let in by member {member}");
            // Control: the same handshake with the secret and a member's
            // id is accepted, so the refusals above are the checks at work.
            auth::connect(peer_io(&addr).await, &right, other, member)
                .await
                .unwrap_or_else(|err| panic!("member {member} refused a member: {err}"));
        }

        // Nothing changed: every member runs, the state and the modules
        // are as before, clients are served, memory and stderr stayed
        // small.
        for index in 0..3 {
            assert!(cluster.running(index), "member {} stopped", index + 1);
        }
        let after = cluster
            .converged(&[0, 1, 2], before.position, Duration::from_secs(30))
            .await;
        assert_eq!(after.position, before.position);
        assert_eq!(after.state_hash, before.state_hash);
        let procedures_after: Vec<String> = client
            .procedures()
            .await
            .unwrap()
            .into_iter()
            .map(|procedure| procedure.name)
            .collect();
        assert_eq!(procedures_after, procedures_before);
        client
            .call::<_, ()>("transfer", &(SOURCE_BASE, 0u64, 1i64))
            .await
            .unwrap();
        for (index, rss_before) in rss_before.iter().enumerate() {
            let grown = rss_kib(cluster.pid(index)).saturating_sub(*rss_before);
            assert!(
                grown < RSS_GROWTH_KIB_MAX,
                "member {} grew {grown} KiB",
                index + 1
            );
            let stderr = cluster.members[index].stderr.lock().clone();
            assert!(
                !stderr.contains("diverged"),
                "member {}: {stderr}",
                index + 1
            );
            assert!(
                stderr.len() < 64 << 10,
                "member {} logged {} bytes",
                index + 1,
                stderr.len()
            );
        }
    });
}

/// Raises this process's descriptor limit (inherited by the members) so
/// the flood below is limited by the server, not by the test.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from `limit` only.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

#[test]
fn a_flood_of_idle_and_slow_replication_connections_leaves_the_cluster_serving() {
    use tokio::io::AsyncWriteExt;

    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let open_files = raise_open_files_limit();
    let flood = 2_000.min(open_files as usize / 2);
    let runtime = runtime();
    runtime.block_on(async {
        let mut cluster = Cluster::start(&[]);
        let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let client = cluster_client(&cluster).await;
        set_up_bank(&client, 1).await;
        let rss_before = rss_kib(cluster.pid(leader));
        let addr = cluster.members[leader].raft_addr.clone();

        // Idle connections, and slow ones that send half a greeting.
        let mut streams = Vec::with_capacity(flood);
        for count in 0..flood {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            if count % 2 == 0 {
                stream.write_all(&greeting(2, 1)[..6]).await.unwrap();
            }
            streams.push(stream);
        }
        // The cluster keeps committing while they hang on.
        for round in 0..20u64 {
            client
                .call::<_, ()>("transfer", &(SOURCE_BASE, round % SINKS, 1i64))
                .await
                .unwrap();
        }
        // Every one of them is closed: at once beyond the handshake cap,
        // at the handshake deadline otherwise.
        let started = Instant::now();
        for stream in &mut streams {
            let left = Duration::from_secs(20).saturating_sub(started.elapsed());
            assert!(
                closed_within(stream, left).await,
                "a connection was still open {:?} after the flood",
                started.elapsed()
            );
        }
        eprintln!(
            "{flood} idle connections all closed by the leader within {:?}",
            started.elapsed()
        );
        let position = client
            .call::<_, ()>("transfer", &(SOURCE_BASE, 0u64, 1i64))
            .await
            .unwrap()
            .seq;
        cluster
            .converged(&[0, 1, 2], position, Duration::from_secs(30))
            .await;
        assert!(cluster.running(leader));
        let status = cluster.status(leader).await.unwrap();
        assert_eq!(status.role, "leader", "the flood cost the leader its place");
        let grown = rss_kib(cluster.pid(leader)).saturating_sub(rss_before);
        assert!(grown < RSS_GROWTH_KIB_MAX, "the leader grew {grown} KiB");
        let stderr = cluster.members[leader].stderr.lock().clone();
        assert!(
            stderr.len() < 16 << 10,
            "the leader logged {} bytes for {flood} connections:\n{}",
            stderr.len(),
            &stderr[..stderr.len().min(2000)]
        );
    });
}

#[test]
fn serving_without_an_admin_token_is_refused_off_loopback_and_warned_on_it() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before anything is bound or opened.
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path().join("data"))
        .env_remove("ORDO_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without an admin token") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists());
    // On loopback it starts, with a warning.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env_remove("ORDO_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let warning = stderr
        .lines()
        .take(20)
        .map_while(Result::ok)
        .find(|line| line.contains("warning: no admin token"));
    let _ = child.kill();
    let _ = child.wait();
    let warning = warning.expect("serve warned about the missing admin token");
    assert!(warning.contains("may deploy code"), "{warning}");
}

#[test]
fn a_tls_cluster_replicates_and_its_ports_speak_only_tls() {
    use ordo_sequencer::raft::ClusterSecret;
    use ordo_sequencer::raft::auth;

    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let pki = common::pki::Pki::new(&["127.0.0.1"]);
    let runtime = runtime();
    runtime.block_on(async {
        let mut cluster = Cluster::start_tls(&pki);
        cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        // `ordo bench` and the CLI over TLS, against the server list.
        let ca = pki.ca().display().to_string();
        let servers = cluster.servers();
        let ordo = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_ordo"))
                .args(args)
                .args(["--server", &servers, "--tls-ca", &ca])
                .env("ORDO_ADMIN_TOKEN", ADMIN)
                .env_remove("ORDO_SERVER")
                .env_remove("ORDO_TLS_CA")
                .output()
                .unwrap()
        };
        let bench = ordo(&[
            "bench",
            "transfer",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--accounts",
            "1000",
        ]);
        assert!(
            bench.status.success(),
            "ordo bench over TLS: {}",
            String::from_utf8_lossy(&bench.stderr)
        );
        let balance = ordo(&["call", "balance", r#"{"id": 1}"#]);
        assert!(
            balance.status.success(),
            "ordo call over TLS: {}",
            String::from_utf8_lossy(&balance.stderr)
        );
        let status = ordo(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let position = status["position"].as_u64().unwrap();
        assert!(position > 1000, "{status}");
        // Every member executed it all: the log went over TLS.
        cluster
            .converged(&[0, 1, 2], position, Duration::from_secs(30))
            .await;
        let client = cluster_client(&cluster).await;
        client.call::<_, i64>("balance", &(1u64,)).await.unwrap();
        // A plain client is refused by the TLS client port.
        let plain = ClientConfig {
            connect_timeout: Duration::from_secs(2),
            reconnect_attempts: 0,
            ..ClientConfig::new(cluster.members[0].client_addr.clone())
        };
        assert!(Client::connect_with(plain).await.is_err());
        // The replication port wants TLS first: the secret handshake over
        // plain TCP gets nowhere, even with the right secret.
        let secret = ClusterSecret::new(CLUSTER_SECRET.as_bytes().to_vec()).unwrap();
        let addr = cluster.members[0].raft_addr.clone();
        let plain_peer = tokio::time::timeout(
            Duration::from_secs(10),
            auth::connect(peer_io(&addr).await, &secret, 2, 1),
        )
        .await
        .expect("the port answers or closes within its handshake deadline");
        assert!(plain_peer.is_err());
        for index in 0..3 {
            assert!(cluster.running(index), "member {} stopped", index + 1);
        }
    });
}

#[test]
fn a_tls_member_without_a_peer_ca_does_not_start() {
    let pki = common::pki::Pki::new(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN])
        .args(["--node-id", "1", "--cluster", "1=127.0.0.1:0/127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(pki.cert())
        .arg("--tls-key")
        .arg(pki.key())
        .arg("--data")
        .arg(dir.path())
        .env("ORDO_CLUSTER_SECRET", CLUSTER_SECRET)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs --tls-ca"), "{stderr}");
}

/// The failover gap as `ordo bench` sees it: a 3-member cluster on
/// loopback, `ordo bench transfer --server A,B,C` running, and the leader
/// killed (SIGKILL) or frozen (SIGSTOP) in the middle of the measured
/// window; the bench's `longest_gap_ms` (the longest time with no
/// transaction answered) is the figure. `FAILOVER_ROUNDS` rounds of each
/// (default 3), each on a fresh cluster; prints every figure and the
/// medians, recorded in docs/BENCHMARKS.md ("Failover"). Run with
/// `cargo test --test e2e failover_gap_with_ordo_bench -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: about 25 s per round"]
fn failover_gap_with_ordo_bench() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let rounds: usize = std::env::var("FAILOVER_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(3);
    let runtime = runtime();
    let mut figures: Vec<(&str, Vec<f64>)> = vec![("SIGKILL", Vec::new()), ("SIGSTOP", Vec::new())];
    // With FAILOVER_LOGS set, every member logs its elections (openraft's
    // vote handling), printed after each round next to the fault's time.
    let election_logs = std::env::var_os("FAILOVER_LOGS").is_some();
    for round in 0..rounds {
        for (fault, gaps) in &mut figures {
            let mut cluster = Cluster::start_logging(
                &[],
                election_logs.then_some(
                    "warn,ordo=info,ordo_sequencer=info,openraft::engine::engine_impl=info",
                ),
            );
            let leader = runtime.block_on(cluster.leader(&[0, 1, 2], Duration::from_secs(20)));
            let report = tempfile::NamedTempFile::new().unwrap();
            let mut bench = Command::new(env!("CARGO_BIN_EXE_ordo"))
                .args(["bench", "transfer", "--server", &cluster.servers()])
                .args(["--admin-token", ADMIN, "--accounts", "10000"])
                .args(["--connections", "4", "--inflight", "256"])
                .args(["--warmup", "2s", "--duration", "10s", "--json"])
                .arg(report.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // The measured window starts 2 s after the load is done.
            let mut stderr = BufReader::new(bench.stderr.take().unwrap());
            loop {
                let mut line = String::new();
                assert!(
                    stderr.read_line(&mut line).unwrap() > 0,
                    "the bench ended early"
                );
                if line.contains("ordo bench: loaded") {
                    break;
                }
            }
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            std::thread::sleep(Duration::from_secs(5));
            let fault_at = utc_time_of_day();
            if *fault == "SIGKILL" {
                cluster.kill(leader);
            } else {
                cluster.signal(leader, libc::SIGSTOP);
            }
            let _ = bench.wait().unwrap();
            if election_logs {
                eprintln!(
                    "{fault} of node {} at {fault_at} UTC; the others' elections:",
                    leader + 1
                );
                for (index, member) in cluster.members.iter().enumerate() {
                    if index == leader {
                        continue;
                    }
                    for line in member.stderr.lock().lines().filter(|line| {
                        [
                            "raft role",
                            "new candidate",
                            "reject vote-request",
                            "quorum granted",
                            "greater log",
                            "standing for election instead",
                            "handle_vote_resp",
                        ]
                        .iter()
                        .any(|needle| line.contains(needle))
                    }) {
                        eprintln!("  node {}: {line}", index + 1);
                    }
                }
            }
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
            let gap = json["longest_gap_ms"].as_f64().unwrap();
            eprintln!(
                "round {}: {fault} of the leader: longest gap {gap:.0} ms ({} committed tx/s over the window)",
                round + 1,
                json["throughput_tps"].as_f64().unwrap().round()
            );
            gaps.push(gap);
        }
    }
    for (fault, gaps) in &mut figures {
        gaps.sort_by(f64::total_cmp);
        eprintln!(
            "{fault}: median longest gap {:.0} ms over {} rounds: {gaps:.0?}",
            gaps[gaps.len() / 2],
            gaps.len()
        );
    }
}

/// The time of day now, UTC, as the members' log lines print it
/// (`HH:MM:SS.mmm`).
fn utc_time_of_day() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let millis = since_epoch.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// Issue 15, item 6: a client doing stale reads against one node never
/// sees a position lower than one it saw before, although that node is
/// killed (SIGKILL) and restarts from a snapshot behind what the client
/// saw: while it catches up, the node holds the client's reads (they ask
/// for at least the highest position seen) instead of answering from the
/// snapshot's older state.
#[test]
fn a_stale_reader_never_goes_back_across_its_nodes_restart() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let runtime = runtime();
    runtime.block_on(async {
        // Snapshots every 64 sequence numbers: the restarted node resumes
        // from one behind what it had executed.
        let mut cluster = Cluster::start(&["--snapshot-every", "64", "--snapshot-log-bytes-min", "0"]);
        let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
        let mut load = Load::start(&cluster, 4).await;
        load.progress(200, Duration::from_secs(60)).await;

        let node = (leader + 1) % 3;
        let config = ClientConfig {
            request_timeout: Duration::from_secs(30),
            ..ClientConfig::new(cluster.members[node].client_addr.clone())
        };
        let reader = Client::connect_with(config).await.unwrap();
        // A follower applies behind the leader: on a loaded machine it may
        // not have applied the bank's deploy yet, and a stale read there
        // rightly answers "no procedure `total`". The test is about what
        // happens after the reader has seen a position, so it starts once
        // the node answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader
            .read::<_, i64>("total", &(), ordo_client::ReadConsistency::Stale)
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "node {node} never applied the bank's deploy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let restarted = Arc::new(AtomicBool::new(false));
        let after_restart = Arc::new(AtomicU64::new(0));
        let highest = Arc::new(AtomicU64::new(0));
        let reads = {
            let (stop, restarted) = (stop.clone(), restarted.clone());
            let (after_restart, highest) = (after_restart.clone(), highest.clone());
            tokio::spawn(async move {
                let mut positions = Vec::new();
                let mut errors = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match reader
                        .read::<_, i64>("total", &(), ordo_client::ReadConsistency::Stale)
                        .await
                    {
                        Ok(read) => {
                            positions.push(read.position);
                            highest.fetch_max(read.position, Ordering::SeqCst);
                            if restarted.load(Ordering::SeqCst) {
                                after_restart.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(err) => errors.push(err.to_string()),
                    }
                }
                (positions, errors)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while highest.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no stale read answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the reads see the node advance, then kill it while the
        // cluster keeps committing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill(node);
        let seen_before = highest.load(Ordering::SeqCst);
        load.progress(50, Duration::from_secs(30)).await;
        cluster.spawn(node, &[]);
        let welcomed_at = cluster.status(node).await.map(|status| status.position);
        restarted.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while after_restart.load(Ordering::SeqCst) < 50 {
            assert!(
                Instant::now() < deadline,
                "only {} stale reads answered after the restart",
                after_restart.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::SeqCst);
        load.finish().await;
        let (positions, errors) = reads.await.unwrap();
        eprintln!(
            "{} stale reads, {} after the restart; the reader had seen {seen_before} before the kill, the restarted node first reported {welcomed_at:?}",
            positions.len(),
            after_restart.load(Ordering::SeqCst),
        );
        assert!(errors.is_empty(), "stale reads failed: {errors:?}");
        for pair in positions.windows(2) {
            assert!(
                pair[1] >= pair[0],
                "a stale read went back from position {} to {}",
                pair[0],
                pair[1]
            );
        }
    });
}

#[test]
fn over_http_a_follower_names_the_leader_and_answers_stale_reads() {
    use crate::http::{Answer, bearer, ok, request};
    let _alone = ONE_CLUSTER_AT_A_TIME.lock();
    let cluster = Cluster::start(&["--http-listen", "127.0.0.1:0"]);
    let http = |index: usize| cluster.members[index].http_addr.expect("an HTTP address");
    let json = [("Content-Type", "application/json")];
    let admin = bearer(ADMIN);
    let wasm = [
        ("Authorization", admin.as_str()),
        ("Content-Type", "application/wasm"),
    ];
    // Early in a cluster's life the leader may still change: send what
    // only a leader takes to each member in turn until one takes it, as a
    // client would (the open carries an Idempotency-Key, so a retry after
    // a lost answer cannot open twice). Returns the answer and who gave it.
    let led = |path: &str, headers: &[(&str, &str)], body: &[u8]| -> (Answer, usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for index in (0..3).cycle() {
            let answer = request(http(index), "POST", path, headers, body);
            if answer.status != 503 || Instant::now() > deadline {
                return (answer, index);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unreachable!("the cycle never ends")
    };
    runtime().block_on(cluster.leader(&[0, 1, 2], Duration::from_secs(20)));
    ok(&led("/v1/modules/bank", &wasm, ordo::modules::BANK).0);
    let keyed = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "open-1"),
    ];
    let (opened, leader) = led("/v1/call/open", &keyed, br#"{"id": 1, "balance": 100}"#);
    let seq = ok(&opened)["seq"].as_u64().unwrap();

    // A follower runs no call (nor deploy): 503 `not_leader`, with
    // Retry-After, naming the leader's client address once it has heard
    // from the leader.
    let follower = (leader + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused = request(
            http(follower),
            "POST",
            "/v1/call/deposit",
            &json,
            br#"{"id": 1, "amount": 5}"#,
        );
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (503, "not_leader")
        );
        if !refused.json()["leader"].is_null() || Instant::now() > deadline {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.json()["leader"],
        cluster.members[leader].client_addr.as_str()
    );
    let deploy = request(
        http(follower),
        "POST",
        "/v1/modules/bank",
        &wasm,
        ordo::modules::BANK,
    );
    assert_eq!(deploy.code(), "not_leader");

    // But it answers stale reads at or after a position it is told, and
    // its status.
    let read = ok(&request(
        http(follower),
        "POST",
        &format!("/v1/call/balance?read=stale&min_position={seq}"),
        &json,
        br#"{"id": 1}"#,
    ));
    assert_eq!(read["result"], 100);
    assert!(read["position"].as_u64().unwrap() >= seq, "{read}");
    let status = ok(&request(http(follower), "GET", "/v1/status", &[], &[]));
    assert_eq!(status["role"], "follower");
    let balance = ok(&request(
        http(leader),
        "POST",
        "/v1/call/balance",
        &json,
        br#"{"id": 1}"#,
    ));
    assert_eq!(balance["result"], 100, "the refused deposit never ran");
}
