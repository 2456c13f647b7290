//! The `ordo` command-line tool.

mod init;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ordo::workload::TransferPicker;
use ordo::{ArgsEncoding, Node, NodeConfig, Outcome};

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "A deterministic stored-procedure transaction engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start an embedded node, deploy the bank example, run transfers and
    /// report throughput, latency and the conserved total.
    Quickstart(QuickstartArgs),
    /// Run a node and serve clients over TCP until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Create a procedure crate (Cargo.toml, a first procedure with a
    /// test, README) that `ordo build` builds as it is.
    Init {
        /// The crate's name, also the module name it suggests: lower-case
        /// letters, digits, `_` and `-`, starting with a letter, at most 64
        /// bytes.
        name: String,
        /// The directory to create (default: ./NAME). It must not exist, or
        /// be empty.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The ordo SDK to depend on, a directory holding `ordo-sdk`'s
        /// Cargo.toml (default: the procedures/sdk of the source tree this
        /// ordo was built from; the SDK is not on crates.io).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Compile a procedure crate to wasm; prints the path of the `.wasm`.
    Build {
        /// The procedure crate's directory (holding its Cargo.toml).
        dir: PathBuf,
    },
    /// Deploy (or upgrade) a module: prints its name, hash and procedures.
    Deploy {
        #[command(flatten)]
        remote: AdminRemote,
        /// Module name; redeploying a name upgrades it.
        name: String,
        /// The compiled `.wasm` file.
        file: PathBuf,
        /// Development only: delete every row of this table (repeatable)
        /// if the deploy succeeds, so its type may change without a
        /// migration. The server must run with --allow-table-reset.
        #[arg(long = "reset-table", value_name = "TABLE")]
        reset_tables: Vec<String>,
    },
    /// Call a procedure with JSON arguments; prints the JSON result (nothing
    /// for a `()` result, which is JSON `null`).
    Call {
        #[command(flatten)]
        remote: AdminRemote,
        procedure: String,
        /// Arguments as a JSON object keyed by parameter name.
        #[arg(default_value = "{}")]
        args: String,
        /// Print the transaction's sequence number (a fencing token) alone
        /// on the first line of stdout, before the result; an abort prints
        /// it too, then fails as usual.
        #[arg(long, conflicts_with = "json")]
        seq: bool,
        /// Print one JSON object on stdout: `{"seq":N,"result":RESULT}`, or
        /// for an abort `{"seq":N,"aborted":{"kind":K,"message":M}}` (and
        /// the usual error line and exit status).
        #[arg(long)]
        json: bool,
        /// Run the read-only procedure as a stale read on the node
        /// `--server` names (any node of a cluster, leader or not), at
        /// that node's position, without a log entry; `--seq` and `--json`
        /// then give the position it read at.
        #[arg(long)]
        stale: bool,
        /// With --stale: read at this position or later, e.g. the `--seq`
        /// of an earlier call, to see that call's effect on a follower. A
        /// node behind it waits up to a second to catch up, and otherwise
        /// the read is retried (on the next node of the list) until the
        /// request timeout.
        #[arg(long, value_name = "SEQ", requires = "stale")]
        min_position: Option<u64>,
        /// A time-travel read: run the read-only procedure against the
        /// state as of this position (just after the entry with this
        /// sequence number). The server (a standalone node; admin token)
        /// rebuilds that state beside its own from its kept snapshots and
        /// log, so it reaches back as far as `ordo serve
        /// --retain-positions` keeps.
        #[arg(long, value_name = "SEQ", conflicts_with_all = ["stale", "min_position"])]
        at: Option<u64>,
        /// Print the sequence number and the fuel the call used on
        /// standard error, for a commit or an abort (logged calls only).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Remove a deployed module (admin token): from the sequence number it
    /// prints, its procedures are unknown. The rows of its tables stay,
    /// for a later deploy that declares them.
    Undeploy {
        #[command(flatten)]
        remote: AdminRemote,
        /// The module's name.
        name: String,
    },
    /// List the deployed modules: name, SHA-256, the sequence number of
    /// the deploy that installed each, size and procedures.
    Modules {
        #[command(flatten)]
        remote: Remote,
        /// One JSON object per module (`name`, `sha256`, `deployed_at`,
        /// `wasm_bytes`, `procedures`).
        #[arg(long)]
        json: bool,
    },
    /// List the deployed procedures and their parameters.
    Procedures {
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the full contract of the deployed modules (or of a `.wasm`
    /// file): every procedure's parameters and result, every table's key
    /// and value, the structs and enums they use, and their doc comments.
    Describe {
        #[command(flatten)]
        remote: Remote,
        /// Only this procedure or table, or what uses this type.
        name: Option<String>,
        /// Describe this compiled module instead of asking a server.
        #[arg(long, value_name = "FILE")]
        wasm: Option<PathBuf>,
        /// One JSON array of modules (the schemas in full) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a table's rows (admin token): keys and values decoded with the
    /// table's schema where a deployed module declares one (`#[table]`),
    /// as bytes otherwise; in key order, at the server's current position.
    Scan {
        #[command(flatten)]
        remote: AdminRemote,
        /// The table's name.
        table: String,
        /// Only keys starting with this (JSON): the whole key, or for a
        /// tuple key its first elements, e.g. `7` or `[7, "a"]` (whole
        /// elements: a string matches only itself, not longer strings).
        #[arg(long, value_name = "JSON")]
        prefix: Option<String>,
        /// The most rows to show.
        #[arg(long, default_value_t = ordo::scan::SCAN_LIMIT_DEFAULT)]
        limit: u64,
        /// One JSON object per row (`key`, `value`, `raw_key`, `raw_value`,
        /// `decoded`), then one with the position and whether more follow.
        #[arg(long)]
        json: bool,
    },
    /// Show the procedure log of the node --server names (admin token):
    /// the lines procedures wrote with `ordo_sdk::log!` and one line for
    /// each call that aborted after it started (a panic's message, fuel
    /// exhaustion, ...), each with its sequence number, procedure, module
    /// and the fuel the call used. A node keeps its newest 16 MiB of lines
    /// in memory.
    Logs {
        #[command(flatten)]
        remote: AdminRemote,
        /// Keep waiting for new lines (stop with Ctrl-C).
        #[arg(short, long)]
        follow: bool,
        /// Only this procedure's lines.
        #[arg(long)]
        procedure: Option<String>,
        /// Only lines of transactions at this sequence number or later.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        since: u64,
        /// Only lines at this level or more severe.
        #[arg(long, default_value = "trace", value_parser = ["error", "warn", "info", "debug", "trace"])]
        level: String,
        /// One JSON object per line (`seq`, `procedure`, `module`, `level`,
        /// `message`, `fuel_used`, `abort_kind`).
        #[arg(long)]
        json: bool,
    },
    /// Write typed client bindings for the deployed modules (or a `.wasm`
    /// file): one type per struct or enum and one typed function per
    /// procedure, one file per module; prints the files written.
    Generate {
        #[command(flatten)]
        remote: Remote,
        /// rust (over ordo-client), python or typescript (over the JSON call path).
        #[arg(value_parser = ["rust", "python", "typescript"])]
        language: String,
        /// The directory to write into: new, empty, or holding an earlier
        /// generation (its files are replaced, nothing else is touched).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Generate from this compiled module instead of asking a server.
        #[arg(long, value_name = "FILE")]
        wasm: Option<PathBuf>,
        /// With a server, only this deployed module (default: every one);
        /// with --wasm, the module's name (default: the file's stem).
        #[arg(long, value_name = "NAME")]
        module: Option<String>,
    },
    /// Run a benchmark workload against a server (--server) or an
    /// embedded node, and report throughput, latency and aborts.
    Bench(BenchArgs),
    /// Repair a stopped node's data directory after damage `ordo serve`
    /// refused to start with. Today: accept the loss of the newest log
    /// segments when their files are gone (printing exactly what is lost);
    /// for a cluster member, of its Raft journal's, after which it does not
    /// vote until it has caught up from the others.
    Repair {
        /// The node's data directory (as given to `ordo serve --data`).
        #[arg(long)]
        data: PathBuf,
        /// Accept that the records in the missing segments are gone.
        /// Without it, `repair` only says what it would do.
        #[arg(long)]
        accept_loss: bool,
    },
    /// Take a hot, consistent backup of a node into DIR (new or empty).
    /// Of a standalone node: its newest snapshot and the log after it, at
    /// the node's current position. Of a cluster member (give its address
    /// alone): its newest Raft snapshot, at that snapshot's position.
    /// Writes go on meanwhile. Needs the admin token.
    Backup {
        #[command(flatten)]
        remote: AdminRemote,
        /// Where to write the backup.
        dir: PathBuf,
    },
    /// Make a data directory from a backup, check that a node opened on it
    /// reaches the backup's position and hashes, and print them; then
    /// `ordo serve --data NEWDIR` serves it.
    ///
    /// With --member ID and --peers, seeds cluster member ID instead (in
    /// place of a member whose data is gone) from a backup of a member of
    /// the same cluster: it starts from the backup's snapshot and takes
    /// only the log after it from the leader. The other members are asked
    /// for their term and log length first (enough of them must answer,
    /// and the member being replaced must not); the seeded member neither
    /// votes nor stands for election until it has applied that far.
    Restore {
        /// The backup (a directory `ordo backup` wrote).
        dir: PathBuf,
        /// The data directory to create (new or empty).
        #[arg(long)]
        data: PathBuf,
        /// Seed this cluster member (its `--node-id`) instead of a
        /// standalone node.
        #[arg(long, requires = "peers")]
        member: Option<u64>,
        /// With --member: the client addresses of the cluster's other
        /// members, `A,B`.
        #[arg(long, requires = "member")]
        peers: Option<String>,
        /// Client token, if the members require one.
        #[arg(long, env = "ORDO_CLIENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Ask the members over TLS, trusting the CA certificates in this
        /// PEM file.
        #[arg(long, env = "ORDO_TLS_CA")]
        tls_ca: Option<PathBuf>,
    },
    /// Re-run past transactions exactly, offline, from a stopped node's
    /// data directory or a backup: shows each one's procedure, module,
    /// arguments, time and random seed, its outcome, and with `--trace`
    /// every read, write, delete and scan it made. Checks the replayed
    /// history against the chain hash of the original run's next snapshot.
    Replay {
        /// The transaction (`N`) or an inclusive range (`A..B`) to replay.
        #[arg(
            long,
            value_name = "N|A..B",
            required_unless_present = "at",
            conflicts_with = "at"
        )]
        seq: Option<String>,
        /// Instead of replaying: run the read-only procedure `--read`
        /// against the state as of this position (just after the entry
        /// with this sequence number), a time-travel read.
        #[arg(long, value_name = "SEQ", requires = "read")]
        at: Option<u64>,
        /// The read-only procedure for `--at`.
        #[arg(long, value_name = "PROCEDURE", requires = "at")]
        read: Option<String>,
        /// Its arguments as JSON, for `--at`.
        #[arg(default_value = "{}", requires = "at")]
        args: String,
        /// A stopped single node's data directory.
        #[arg(long, group = "history", required_unless_present_any = ["backup", "from_server"])]
        data: Option<PathBuf>,
        /// A directory `ordo backup` wrote.
        #[arg(long, group = "history")]
        backup: Option<PathBuf>,
        /// Take a hot backup from the running server (`--server`, admin
        /// token) into a temporary directory and replay that: it reaches
        /// back to the server's newest snapshot.
        #[arg(long, group = "history")]
        from_server: bool,
        #[command(flatten)]
        remote: AdminRemote,
        /// Show every host call each transaction made, and its fuel.
        #[arg(long)]
        trace: bool,
        /// One JSON object per transaction (one per line), then one with
        /// the verification.
        #[arg(long)]
        json: bool,
        /// Executor threads for the replay (outcomes never depend on it).
        #[arg(long, default_value_t = 1)]
        partitions: usize,
    },
    /// Show the node's position and hashes.
    Status {
        #[command(flatten)]
        remote: Remote,
        /// One JSON object with `position` and `state_hash` (hex).
        #[arg(long)]
        json: bool,
    },
}

/// How to reach a server.
#[derive(clap::Args, Clone)]
struct Remote {
    /// The server's client address, or a cluster's as a comma-separated list (`A,B,C`): the client finds the leader and fails over.
    #[arg(long, env = "ORDO_SERVER", default_value = "127.0.0.1:7878")]
    server: String,
    /// Client token, if the server requires one.
    #[arg(long, env = "ORDO_CLIENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Set through [`AdminRemote`], on the commands that need it.
    #[arg(skip)]
    admin_token: Option<String>,
    /// Connect over TLS, trusting the CA certificates in this PEM file
    /// (the server runs with --tls-cert).
    #[arg(long, env = "ORDO_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

/// How to reach a server, for a command that needs the admin token (so
/// only those commands offer `--admin-token`).
#[derive(clap::Args)]
struct AdminRemote {
    #[command(flatten)]
    remote: Remote,
    /// Admin token (deploys, backups, scans, replays and reads of the
    /// past).
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

impl AdminRemote {
    /// The connection settings with the admin token.
    fn with_token(&self) -> Remote {
        Remote {
            admin_token: self.admin_token.clone(),
            ..self.remote.clone()
        }
    }

    fn run<T>(
        &self,
        work: impl AsyncFnOnce(ordo_client::Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.with_token().run(work)
    }

    fn run_in_session<T>(
        &self,
        work: impl AsyncFnOnce(ordo_client::Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.with_token().run_in_session(work)
    }

    fn fetch_backup(&self) -> anyhow::Result<(tempfile::TempDir, ordo::replay::ReplaySource)> {
        self.with_token().fetch_backup()
    }
}

/// The client's TLS configuration for `--tls-ca`, if given.
fn client_tls(
    tls_ca: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<ordo_client::rustls::ClientConfig>>> {
    tls_ca
        .map(|ca| ordo_client::tls::client_config(ca).map_err(anyhow::Error::from))
        .transpose()
}

impl Remote {
    /// Runs `work` with a client that needs no session: it sends nothing
    /// the log keeps (status, the procedure list).
    fn run<T>(
        &self,
        work: impl AsyncFnOnce(ordo_client::Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.run_with(false, work)
    }

    /// A hot backup of the server in a temporary directory (removed when
    /// the returned guard drops), as a replay source: what `ordo replay
    /// --from-server` rebuilds state from.
    fn fetch_backup(&self) -> anyhow::Result<(tempfile::TempDir, ordo::replay::ReplaySource)> {
        let fetched = tempfile::tempdir()?;
        let dir = fetched.path().join("backup");
        self.run(async |client| ordo::backup::take(&client, &dir).await)?;
        Ok((fetched, ordo::replay::ReplaySource::Backup(dir)))
    }

    /// Runs `work` (calls, deploys) in a session of its own that is
    /// registered first and ended after `work`'s answers arrived: a
    /// resend after a lost connection stays exactly-once, and running the
    /// CLI again and again leaves no session behind to crowd out other
    /// clients'. (Keeping one client id across runs instead would need a
    /// state file, and two runs at once would then share request ids.)
    fn run_in_session<T>(
        &self,
        work: impl AsyncFnOnce(ordo_client::Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.run_with(true, work)
    }

    fn run_with<T>(
        &self,
        session: bool,
        work: impl AsyncFnOnce(ordo_client::Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(async {
            let mut config = ordo_client::ClientConfig::new(self.server.clone());
            config.token = self.token.clone();
            config.admin_token = self.admin_token.clone();
            config.register_session = session;
            config.tls = client_tls(self.tls_ca.as_deref())?;
            let client = ordo_client::Client::connect_with(config).await?;
            let result = work(client.clone()).await;
            if session {
                // The answer is already in hand; failing to end the
                // session only leaves it to expire.
                let _ = client.end_session().await;
            }
            result
        })
    }
}

/// `ordo restore --member`: the status of each member in `peers` (a
/// comma-separated list of client addresses), asked of it alone. One that
/// does not answer is left out (and said); `restore_member` decides
/// whether enough did.
fn ask_members(
    peers: &str,
    token: Option<String>,
    tls_ca: Option<&std::path::Path>,
) -> anyhow::Result<Vec<ordo::backup::MemberReport>> {
    let tls = client_tls(tls_ca)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut reports = Vec::new();
    for addr in peers
        .split(',')
        .map(str::trim)
        .filter(|addr| !addr.is_empty())
    {
        let config = ordo_client::ClientConfig {
            token: token.clone(),
            tls: tls.clone(),
            connect_timeout: std::time::Duration::from_secs(2),
            request_timeout: std::time::Duration::from_secs(5),
            reconnect_attempts: 0,
            register_session: false,
            ..ordo_client::ClientConfig::new(addr)
        };
        let asked = runtime.block_on(async {
            let client = ordo_client::Client::connect_with(config).await?;
            client.status().await
        });
        match asked {
            Ok(status) => match status.node_id {
                Some(node_id) => reports.push(ordo::backup::MemberReport {
                    addr: addr.to_string(),
                    node_id,
                    term: status.term,
                    last_log_index: status.log_records,
                }),
                None => bail!("{addr} is a standalone node, not a cluster member"),
            },
            Err(err) => eprintln!("ordo restore: {addr} did not answer: {err}"),
        }
    }
    Ok(reports)
}

#[derive(clap::Args)]
struct ServeArgs {
    /// How the server's log (stderr) is written: `text` lines, or one
    /// JSON object per line. `RUST_LOG` sets the levels (default: info
    /// from ordo, warnings from its libraries; e.g. `RUST_LOG=debug`,
    /// `RUST_LOG=ordo=debug,openraft=info`).
    #[arg(long, value_enum, default_value_t = ordo::logging::LogFormat::Text)]
    log_format: ordo::logging::LogFormat,
    /// Address to accept clients on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: std::net::SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, default_value = "./ordo-data")]
    data: PathBuf,
    /// Token that deploys must carry.
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Token every client must present when it connects.
    #[arg(long, env = "ORDO_CLIENT_TOKEN", hide_env_values = true)]
    client_token: Option<String>,
    /// Most simultaneous client connections (handshakes included); more
    /// are refused with "too many connections".
    #[arg(long, default_value_t = ordo::server::CONNECTIONS_MAX_DEFAULT)]
    connections_max: usize,
    /// Serve the client port over TLS with this PEM certificate chain
    /// (leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// In a cluster with --tls-cert: the PEM CA certificate that signed the
    /// members' certificates. The replication port then speaks TLS too,
    /// presenting --tls-cert and checking every member it connects to
    /// against this CA (the certificate must name the host of the member's
    /// replication address).
    #[arg(long = "tls-ca", requires_all = ["tls_cert", "cluster"])]
    peer_tls_ca: Option<PathBuf>,
    /// Close a client connection that has sent and received nothing for
    /// this long (e.g. `300s`, `5m`).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    client_idle_timeout: Duration,
    /// Bytes of answers a connection may have waiting to be written before
    /// its requests are no longer read.
    #[arg(long, default_value_t = ordo::server::ANSWER_BYTES_QUEUED_MAX_DEFAULT)]
    answer_bytes_queued_max: usize,
    /// Disconnect a client that stays over --answer-bytes-queued-max this
    /// long (it is not reading its answers).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    slow_reader_timeout: Duration,
    /// Development only: let `ordo deploy --reset-table` delete a table's
    /// data.
    #[arg(long)]
    allow_table_reset: bool,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the HTTP/JSON API (docs/HTTP.md) on this address, with the
    /// same tokens as the client port, and HTTPS with --tls-cert.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    /// Most HTTP requests handled at once, from before their body is read
    /// to their answer; more are answered 503 `overloaded`.
    #[arg(long, default_value_t = ordo::http::REQUESTS_IN_FLIGHT_MAX_DEFAULT, requires = "http_listen")]
    http_requests_max: usize,
    /// Most simultaneous HTTP connections; more are answered 503
    /// `too_many_connections` and closed.
    #[arg(long, default_value_t = ordo::http::CONNECTIONS_MAX_DEFAULT, requires = "http_listen")]
    http_connections_max: usize,
    /// How long an HTTP client may take to send a request's head, then
    /// its body, and the longest a write to it may stall; also how long
    /// an idle keep-alive connection stays open.
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "http_listen")]
    http_client_timeout: Duration,
    /// Executor threads, 1 to 16 (default: one per two cores). Changes
    /// speed only, never a result, so a node may restart with another
    /// number.
    #[arg(long, default_value_t = ordo::node::default_partitions(), value_parser = parse_partitions)]
    partitions: usize,
    /// This node's id in a replicated cluster (with `--cluster`).
    #[arg(long, requires = "cluster")]
    node_id: Option<u64>,
    /// Every cluster member's replication and client addresses, as
    /// `ID=REPLICATION_ADDR/CLIENT_ADDR,...`, for example
    /// `1=127.0.0.1:7001/127.0.0.1:7101,2=...`. Starts this node as a
    /// member of a Raft-replicated cluster; the members initialise the
    /// cluster themselves on first start. Followers point clients at the
    /// leader's client address from this list, never from what a peer
    /// says. Needs the cluster secret (`ORDO_CLUSTER_SECRET` or
    /// `--cluster-secret-file`).
    #[arg(long, requires = "node_id", value_parser = parse_cluster)]
    cluster: Option<std::collections::BTreeMap<u64, ordo_sequencer::raft::MemberAddrs>>,
    /// A file holding the cluster secret (16 to 4096 bytes; surrounding
    /// white space is ignored), shared by every member. Instead of this,
    /// the secret can come from the environment variable
    /// `ORDO_CLUSTER_SECRET`. Make one with `openssl rand -hex 32`.
    #[arg(long, requires = "cluster")]
    cluster_secret_file: Option<PathBuf>,
    /// Serve on a non-loopback address without an admin token, so that
    /// anyone who can reach the port may deploy code. Without this flag
    /// such a `serve` refuses to start.
    #[arg(long)]
    insecure: bool,
    /// Sequence numbers between engine snapshots (and wasm instance
    /// resets). Recorded with the data: every member must use the same.
    #[arg(long, default_value_t = ordo_engine::INSTANCE_EPOCH_DEFAULT)]
    snapshot_every: u64,
    /// Snapshot (at one of the points above) only once the log (a
    /// cluster member's: its Raft journal) has grown by this many bytes
    /// and by the previous snapshot's size since it; on a single node the
    /// log the oldest kept snapshot (`--snapshots-kept`) covers is then
    /// removed, in a cluster openraft purges the journal it covers. 0
    /// snapshots at every point. Not recorded: it may change between
    /// restarts, and members may differ.
    #[arg(long, default_value_t = ordo::snapshots::SNAPSHOT_LOG_BYTES_MIN_DEFAULT)]
    snapshot_log_bytes_min: u64,
    /// On a single node, how many snapshots to keep (2 to 1,000); the log
    /// is kept from the oldest on. Each costs one state's size on disk;
    /// more keep more history for `ordo replay` and `--at` reads.
    #[arg(long, default_value_t = ordo_sequencer::raft::SNAPSHOTS_KEPT_DEFAULT)]
    snapshots_kept: usize,
    /// On a single node, keep enough snapshots and log that `ordo replay`
    /// and `--at` reads reach at least this many positions back from the
    /// newest snapshot (older snapshots are kept past `--snapshots-kept`
    /// for it, up to 1,000 in all). 0: none beyond `--snapshots-kept`.
    /// Costs one state's size on disk per snapshot interval it spans,
    /// plus the log (about 44 bytes per transfer).
    #[arg(long, default_value_t = 0)]
    retain_positions: u64,
    /// Unregistered clients (no session registered) whose answers are
    /// kept for retries. Recorded with the data, like the three below.
    #[arg(long, default_value_t = ordo_engine::config::SESSIONS_MAX_DEFAULT)]
    sessions_max: usize,
    /// Registered sessions open at once; past it the least recently active
    /// eighth expires.
    #[arg(long, default_value_t = ordo_engine::config::REGISTERED_SESSIONS_MAX_DEFAULT)]
    registered_sessions_max: usize,
    /// Largest outcome kept for a retry, in bytes; a retry of a larger one
    /// gets `result_not_retained`.
    #[arg(long, default_value_t = ordo_engine::config::STORED_RESULT_BYTES_MAX_DEFAULT)]
    stored_result_bytes_max: usize,
    /// Budget in bytes for every outcome kept for retries; near it the
    /// least recently active sessions expire.
    #[arg(long, default_value_t = ordo_engine::config::STORED_RESULTS_TOTAL_BYTES_MAX_DEFAULT)]
    stored_results_total_bytes_max: u64,
}

/// Where the cluster secret comes from when `--cluster-secret-file` is
/// not given.
const CLUSTER_SECRET_VARIABLE: &str = "ORDO_CLUSTER_SECRET";

/// The cluster secret, from `--cluster-secret-file` or the environment;
/// a cluster member refuses to start without one.
fn cluster_secret(
    file: Option<&std::path::Path>,
) -> anyhow::Result<ordo_sequencer::raft::ClusterSecret> {
    use ordo_sequencer::raft::{CLUSTER_SECRET_BYTES_MAX, ClusterSecret};
    let bytes = match file {
        Some(file) => {
            let length = std::fs::metadata(file)
                .with_context(|| format!("reading the cluster secret file {}", file.display()))?
                .len();
            // Checked before reading: the file could be anything.
            if length > CLUSTER_SECRET_BYTES_MAX as u64 + 2 {
                bail!(
                    "the cluster secret file {} is {length} bytes; a secret is at most {CLUSTER_SECRET_BYTES_MAX}",
                    file.display()
                );
            }
            std::fs::read(file)
                .with_context(|| format!("reading the cluster secret file {}", file.display()))?
        }
        None => match std::env::var_os(CLUSTER_SECRET_VARIABLE) {
            Some(secret) => secret.into_encoded_bytes(),
            None => bail!(
                "a cluster member needs the cluster secret, shared by every member: set {CLUSTER_SECRET_VARIABLE} or pass --cluster-secret-file FILE (make one with `openssl rand -hex 32`)"
            ),
        },
    };
    Ok(ClusterSecret::new(bytes)?)
}

fn parse_cluster(
    text: &str,
) -> Result<std::collections::BTreeMap<u64, ordo_sequencer::raft::MemberAddrs>, String> {
    let mut members = std::collections::BTreeMap::new();
    for member in text
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
    {
        let (id, addrs) = member
            .split_once('=')
            .ok_or_else(|| format!("`{member}` is not ID=REPLICATION_ADDR/CLIENT_ADDR"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}` in `{member}` is not a node id (a number)"))?;
        let (replication, client) = addrs.split_once('/').ok_or_else(|| {
            format!(
                "`{member}` names no client address: write ID=REPLICATION_ADDR/CLIENT_ADDR, e.g. 1=127.0.0.1:7001/127.0.0.1:7101"
            )
        })?;
        for addr in [replication, client] {
            if addr.trim().parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "`{}` in `{member}` is not HOST:PORT (an IP address and a port)",
                    addr.trim()
                ));
            }
        }
        let addrs = ordo_sequencer::raft::MemberAddrs {
            replication: replication.trim().to_string(),
            client: client.trim().to_string(),
        };
        if members.insert(id, addrs).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if members.is_empty() {
        return Err("the cluster list is empty".into());
    }
    Ok(members)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum WorkloadName {
    /// Move 1 unit between two accounts (bank example); checks the total.
    Transfer,
    /// The SmallBank mix (smallbank example).
    Smallbank,
    /// TPC-C NewOrder and Payment, 50/50 (tpcc example).
    Tpcc,
    /// A YCSB core workload (ycsb example); choose it with --mix.
    Ycsb,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum YcsbMixName {
    /// 50% read, 50% update.
    A,
    /// 95% read, 5% update.
    B,
    /// 100% read.
    C,
    /// 50% read, 50% read-modify-write.
    F,
}

#[derive(clap::Args)]
struct BenchArgs {
    workload: WorkloadName,
    /// The server's client address. Without it, an embedded node is
    /// started in this process and served on a loopback port.
    #[arg(long, env = "ORDO_SERVER")]
    server: Option<String>,
    /// Client token, if the server requires one.
    #[arg(long, env = "ORDO_CLIENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Admin token, for deploying the workload's modules.
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Connect over TLS, trusting the CA certificates in this PEM file.
    #[arg(long, env = "ORDO_TLS_CA", requires = "server")]
    tls_ca: Option<PathBuf>,
    /// The embedded node's data directory (default: a fresh temporary one).
    #[arg(long, conflicts_with = "server")]
    data: Option<PathBuf>,
    /// The embedded node's executor threads, 1 to 16 (default: one per two cores).
    #[arg(long, default_value_t = ordo::node::default_partitions(), value_parser = parse_partitions, conflicts_with = "server")]
    partitions: usize,
    /// How long to measure, e.g. `20s`, `500ms`, `2m` (a bare number is seconds).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Client connections. Each costs the server a write and the client a
    /// wake-up per batch of answers, so fewer, fuller connections are
    /// faster for the same requests in flight.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests outstanding in total, over all connections.
    #[arg(long, default_value_t = 1024)]
    inflight: usize,
    /// Open loop: send this many requests per second in total (latency
    /// counts from when each was due). Default: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Accounts (transfer), customers (smallbank) or records (ycsb).
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Starting balance of every account (transfer). Under heavy skew the
    /// hottest accounts drain and transfers from them abort.
    #[arg(long, default_value_t = 1_000)]
    balance: i64,
    /// TPC-C warehouses.
    #[arg(long, default_value_t = 2)]
    warehouses: u32,
    /// TPC-C items (the specification: 100,000), stocked in every warehouse.
    #[arg(long, default_value_t = 100_000)]
    items: u32,
    /// TPC-C customers per district (the specification: 3,000).
    #[arg(long, default_value_t = 3_000)]
    customers: u32,
    /// The YCSB operation mix.
    #[arg(long, value_enum, default_value = "a")]
    mix: YcsbMixName,
    /// Zipf exponent of key choice; 0 is uniform.
    #[arg(long, default_value_t = 0.0)]
    zipf: f64,
    /// Do not load data: the server already holds this workload's data.
    #[arg(long)]
    skip_load: bool,
    /// Run on the workload's module and data already on the server
    /// (checked first: every procedure the bench calls is there, and the
    /// first and last records exist); deploy and load nothing. Without
    /// --reuse or --force, `ordo bench` refuses a server that already has
    /// the workload's module, procedures or tables.
    #[arg(long, conflicts_with = "force")]
    reuse: bool,
    /// Deploy the workload's module over the one on the server and load
    /// its data, changing what the server holds.
    #[arg(long)]
    force: bool,
    /// Seed of the request streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw a chart of the run into this SVG file: committed tx/s, p50,
    /// p99 and p99.9 latency, and aborts/s over time, the warm-up marked.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// A number of executor threads the engine accepts.
fn parse_partitions(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(partitions) if (1..=ordo::SLOTS).contains(&partitions) => Ok(partitions),
        _ => Err(format!(
            "`{text}` is not a number of partitions from 1 to {}",
            ordo::SLOTS
        )),
    }
}

/// `20s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 20s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}`: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is not a valid duration"))
}

#[derive(clap::Args)]
struct QuickstartArgs {
    /// Data directory (default: a fresh temporary directory, removed after).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of accounts.
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Starting balance of every account.
    #[arg(long, default_value_t = 1_000)]
    balance: i64,
    /// Transfers to run.
    #[arg(long, default_value_t = 2_000_000)]
    transfers: u64,
    /// Transfers in flight at once.
    #[arg(long, default_value_t = 32_768)]
    inflight: usize,
    /// Executor threads, 1 to 16. Changes speed only, never a result. The
    /// default is 1 here: these transfers pick two accounts at random, so
    /// with more threads most of them span two threads and must wait for
    /// both (see docs/ARCHITECTURE.md, "Partitions").
    #[arg(long, default_value_t = 1, value_parser = parse_partitions)]
    partitions: usize,
    /// Print one line per acknowledged transfer (used by crash tests).
    #[arg(long, hide = true)]
    print_acks: bool,
}

fn main() {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => {
            ordo::malloc::configure_for_serve();
            ordo::logging::init(args.log_format, ordo::logging::SERVE_FILTER_DEFAULT)
        }
        _ => ordo::logging::init(
            ordo::logging::LogFormat::Text,
            ordo::logging::COMMAND_FILTER_DEFAULT,
        ),
    }
    if !matches!(cli.command, Command::Serve(_)) {
        end_quietly_when_stdout_closes();
    }
    if let Err(err) = run(cli.command) {
        // One line a person can act on; the cause chain joined with ": ".
        eprintln!("ordo: {err:#}");
        std::process::exit(1);
    }
}

/// A command whose reader goes away (`ordo replay --seq 1..100000 | head`)
/// ends as Unix tools do, killed by SIGPIPE, instead of panicking in
/// `println!` on the broken pipe. Rust starts every program with SIGPIPE
/// ignored; `ordo serve` keeps that, so a client that hangs up is an
/// error on its socket, never the end of the server. (Sockets are written
/// with MSG_NOSIGNAL anyway, so only stdout and stderr are affected.)
fn end_quietly_when_stdout_closes() {
    // SAFETY: called once at startup, before any other thread exists;
    // `signal` with SIG_DFL installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Quickstart(args) => quickstart(args),
        Command::Serve(args) => serve(args),
        Command::Bench(args) => bench(args),
        Command::Init {
            name,
            path,
            sdk_path,
        } => {
            let dir = init::init(&name, path.as_deref(), sdk_path.as_deref())?;
            println!("created procedure crate `{name}` in {}", dir.display());
            println!(
                "next: ordo build {dir}, then ordo deploy {name} <the .wasm it prints>, then ordo call counter_add '{{\"key\": \"a\", \"amount\": 1}}'",
                dir = dir.display()
            );
            Ok(())
        }
        Command::Build { dir } => {
            for wasm in build(&dir)? {
                println!("{}", wasm.display());
            }
            Ok(())
        }
        Command::Deploy {
            remote,
            name,
            file,
            reset_tables,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let reset: Vec<&str> = reset_tables.iter().map(String::as_str).collect();
            let deployed = remote.run_in_session(async |client| {
                Ok(client.deploy_resetting(&name, &wasm, &reset).await?)
            })?;
            println!(
                "deployed module `{}` sha256 {} at seq {}",
                deployed.name, deployed.sha256, deployed.seq
            );
            println!("procedures: {}", deployed.procedures.join(", "));
            Ok(())
        }
        Command::Call {
            remote,
            procedure,
            args,
            seq,
            json,
            stale,
            min_position,
            at,
            verbose,
        } => {
            let parsed: serde_json::Value = serde_json::from_str(&args)
                .with_context(|| format!("the arguments are not valid JSON ({args})"))?;
            if !parsed.is_object() {
                bail!(
                    "the arguments must be a JSON object keyed by parameter name, e.g. '{{\"id\": 1}}'"
                );
            }
            let called = if let Some(at) = at {
                remote.run(async |client| {
                    Ok(client
                        .read_json(&procedure, &args, ordo_client::ReadConsistency::AsOf(at))
                        .await)
                })?
            } else if stale {
                // Nothing is logged, so no session is registered.
                remote.run(async |client| {
                    client.observe_position(min_position.unwrap_or(0));
                    Ok(client
                        .read_json(&procedure, &args, ordo_client::ReadConsistency::Stale)
                        .await)
                })?
            } else {
                remote.run_in_session(async |client| {
                    Ok(client.call_json_outcome(&procedure, &args).await.map(
                        |(result, outcome)| {
                            if verbose {
                                eprintln!(
                                    "committed at seq {}, fuel used {}",
                                    outcome.seq, outcome.fuel_used
                                );
                            }
                            (result, outcome.seq)
                        },
                    ))
                })?
            };
            if verbose
                && let Err(ordo_client::ClientError::Aborted { seq, fuel_used, .. }) = &called
            {
                eprintln!("aborted at seq {seq}, fuel used {fuel_used}");
            }
            print_call(called, seq, json)
        }
        Command::Logs {
            remote,
            follow,
            procedure,
            since,
            level,
            json,
        } => {
            let level_max =
                ordo_engine::LogLevel::parse(&level).expect("clap allows only level names") as u8;
            remote.run(async |client| {
                show_logs(&client, since, procedure, level_max, follow, json).await
            })
        }
        Command::Scan {
            remote,
            table,
            prefix,
            limit,
            json,
        } => {
            let scan = remote.run(async |client| {
                ordo::scan::scan(&client, &table, prefix.as_deref(), limit).await
            })?;
            print_scan(&scan, json);
            Ok(())
        }
        Command::Procedures { remote } => {
            let procedures = remote.run(async |client| Ok(client.procedures().await?))?;
            for procedure in procedures {
                let params = match &procedure.params {
                    Some(params) => params
                        .iter()
                        .map(|(name, ty)| format!("{name}: {ty}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => "?".to_string(),
                };
                let read_only = if procedure.read_only {
                    " (read-only)"
                } else {
                    ""
                };
                println!(
                    "{} {{{params}}}  [module {}]{read_only}",
                    procedure.name, procedure.module
                );
            }
            Ok(())
        }
        Command::Undeploy { remote, name } => {
            let seq = remote.run_in_session(async |client| Ok(client.undeploy(&name).await?))?;
            println!("undeployed module `{name}` at seq {seq}");
            Ok(())
        }
        Command::Modules { remote, json } => {
            let modules = remote.run(async |client| Ok(client.describe().await?))?;
            let mut out = std::io::stdout().lock();
            for module in &modules {
                let mut procedures: Vec<&str> = module
                    .procedures
                    .iter()
                    .map(|procedure| procedure.name.as_str())
                    .chain(module.unchecked.iter().map(String::as_str))
                    .collect();
                procedures.sort_unstable();
                let written = if json {
                    let object = serde_json::json!({
                        "name": module.name,
                        "sha256": module.sha256,
                        "deployed_at": module.deployed_at,
                        "wasm_bytes": module.wasm_bytes,
                        "procedures": procedures,
                    });
                    writeln!(out, "{object}")
                } else {
                    let deployed = module.deployed_at.map_or_else(
                        || "at an unknown seq".to_string(),
                        |seq| format!("at seq {seq}"),
                    );
                    writeln!(
                        out,
                        "{} sha256 {} deployed {deployed}, {} bytes: {}",
                        module.name,
                        module.sha256,
                        module.wasm_bytes,
                        procedures.join(", ")
                    )
                };
                if written.is_err() {
                    break;
                }
            }
            Ok(())
        }
        Command::Describe {
            remote,
            name,
            wasm,
            json,
        } => {
            let modules = match wasm {
                Some(path) => vec![describe_wasm_file(&path)?],
                None => remote.run(async |client| Ok(client.describe().await?))?,
            };
            let modules = match &name {
                Some(name) => ordo::describe::select(modules, name).with_context(|| {
                    format!("no procedure, table or type named `{name}` is deployed")
                })?,
                None => modules,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&modules)?);
            } else {
                print!("{}", ordo::describe::render_text(&modules));
            }
            Ok(())
        }
        Command::Generate {
            remote,
            language,
            out,
            wasm,
            module,
        } => {
            use ordo::generate::{Language, generate, select_module, write_generation};
            let language = match language.as_str() {
                "rust" => Language::Rust,
                "python" => Language::Python,
                _ => Language::TypeScript,
            };
            let modules = match &wasm {
                Some(path) => {
                    let mut described = describe_wasm_file(path)?;
                    if let Some(name) = module {
                        described.name = name;
                    }
                    vec![described]
                }
                None => select_module(
                    remote.run(async |client| Ok(client.describe().await?))?,
                    module.as_deref(),
                )?,
            };
            let files = generate(language, &modules)?;
            for path in write_generation(&out, language, &files)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Repair { data, accept_loss } => repair(&data, accept_loss),
        Command::Backup { remote, dir } => {
            let manifest = remote.run(async |client| ordo::backup::take(&client, &dir).await)?;
            println!(
                "backup of position {} (state hash {}) in {}: {} snapshot bytes and {} log records",
                manifest.position,
                manifest.state_hash,
                dir.display(),
                manifest.snapshot.as_ref().map_or(0, |sum| sum.bytes),
                manifest.record_count
            );
            Ok(())
        }
        Command::Restore {
            dir,
            data,
            member: Some(node_id),
            peers: Some(peers),
            token,
            tls_ca,
        } => {
            let reports = ask_members(&peers, token, tls_ca.as_deref())?;
            let seeded = ordo::backup::restore_member(&dir, &data, node_id, &reports)?;
            println!(
                "seeded member {} at position {} (state hash {}, Raft index {}) into {}; it takes the log after index {} from the leader, and votes again once it has applied index {} (or an entry of a term after {}); serve it with `ordo serve --node-id {} --data {}` and the cluster's flags",
                seeded.node_id,
                seeded.position,
                seeded.state_hash,
                seeded.snapshot_index,
                seeded.data.display(),
                seeded.snapshot_index,
                seeded.caught_up_at,
                seeded.term,
                seeded.node_id,
                seeded.data.display()
            );
            Ok(())
        }
        Command::Restore { dir, data, .. } => {
            let restored = ordo::backup::restore(&dir, &data)?;
            println!(
                "restored position {} (state hash {}) into {}; serve it with `ordo serve --data {}`",
                restored.position,
                restored.state_hash,
                restored.data.display(),
                restored.data.display()
            );
            Ok(())
        }
        Command::Replay {
            seq,
            at,
            read,
            args,
            data,
            backup,
            from_server,
            remote,
            trace,
            json,
            partitions,
        } => {
            // Lives until the replay ends: the backup taken from the server.
            let _fetched;
            let source = match (data, backup) {
                (Some(dir), _) => ordo::replay::ReplaySource::DataDir(dir),
                (None, Some(dir)) => ordo::replay::ReplaySource::Backup(dir),
                (None, None) => {
                    debug_assert!(from_server, "clap requires one source");
                    let (fetched, source) = remote.fetch_backup()?;
                    _fetched = fetched;
                    source
                }
            };
            if let (Some(at), Some(procedure)) = (at, read) {
                serde_json::from_str::<serde_json::Value>(&args)
                    .map_err(|err| anyhow::anyhow!("the arguments are not JSON: {err}"))?;
                let read =
                    ordo::replay::read_at(&source, at, &procedure, args.as_bytes(), partitions)?;
                return match read.outcome {
                    ordo_engine::Outcome::Committed { result } => {
                        let value = ordo::replay::render_payload(
                            Some(ordo_sequencer::entry::ArgsEncoding::Json),
                            &result,
                        );
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"position": read.position, "result": value})
                            );
                        } else {
                            println!("{value}");
                            eprintln!("(as of position {})", read.position);
                        }
                        Ok(())
                    }
                    ordo_engine::Outcome::Aborted(abort) => Err(anyhow::anyhow!(
                        "the read at position {} aborted: {abort}",
                        read.position
                    )),
                    ordo_engine::Outcome::Deployed(_) => unreachable!("a read deploys nothing"),
                };
            }
            let seqs = parse_seq_range(seq.as_deref().expect("clap requires --seq without --at"))?;
            let replayed = ordo::replay::replay(&source, seqs, trace, partitions)?;
            print_replay(&replayed, json);
            if matches!(
                replayed.verification,
                ordo::replay::Verification::Diverged { .. }
                    | ordo::replay::Verification::DivergedInBatch { .. }
            ) {
                std::process::exit(3);
            }
            Ok(())
        }
        Command::Status { remote, json } => {
            let status = remote.run(async |client| Ok(client.status().await?))?;
            if json {
                let object = serde_json::json!({
                    "position": status.position,
                    "state_hash": status.state_hash,
                    "chain_hash": status.chain_hash,
                    "keys": status.keys,
                    "log_records": status.log_records,
                    "node_id": status.node_id,
                    "role": status.role,
                    "term": status.term,
                    "leader": status.leader,
                    "commit": status.commit,
                    "applied": status.applied,
                    "partitions": status.partitions,
                    "sessions": status.sessions,
                    "stored_result_bytes": status.stored_result_bytes,
                    "snapshot_position": status.snapshot_position,
                    "log_bytes": status.log_bytes,
                });
                println!("{object}");
            } else {
                println!("role        {}", status.role);
                if let Some(node_id) = status.node_id {
                    println!("node        {node_id}");
                    println!("term        {}", status.term);
                    match status.leader {
                        Some(leader) => println!("leader      {leader}"),
                        None => println!("leader      (none known)"),
                    }
                    println!("commit      {}", status.commit);
                }
                println!("position    {}", status.position);
                println!("state hash  {}", status.state_hash);
                println!("chain hash  {}", status.chain_hash);
                println!("keys        {}", status.keys);
                println!("log records {}", status.log_records);
                if status.node_id.is_none() {
                    println!("log bytes   {}", status.log_bytes);
                    match status.snapshot_position {
                        Some(position) => println!("snapshot    at position {position}"),
                        None => println!("snapshot    (none yet)"),
                    }
                }
                println!("partitions  {}", status.partitions);
                println!(
                    "sessions    {} ({} bytes of kept answers)",
                    status.sessions, status.stored_result_bytes
                );
            }
            Ok(())
        }
    }
}

/// Prints what `ordo call` got: the result, the sequence number with
/// `--seq`, one JSON object with `--json`. An abort is still an error (one
/// line on stderr, exit 1), after its sequence number or JSON object.
/// Prints the node's procedure log from `since` on, page by page; with
/// `follow`, polls for new lines until interrupted. Stops quietly when
/// stdout closes (`ordo logs | head`).
async fn show_logs(
    client: &ordo_client::Client,
    since: u64,
    procedure: Option<String>,
    level_max: u8,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    /// How often `--follow` asks for new lines when it has seen them all.
    const FOLLOW_POLL: Duration = Duration::from_millis(250);
    let mut next = since;
    let mut warned_gap = false;
    loop {
        let page = client
            .logs(
                next,
                procedure.clone(),
                level_max,
                ordo_client::protocol::LOG_PAGE_LINES_MAX,
            )
            .await?;
        if !warned_gap && next < page.oldest_seq && since > 0 {
            eprintln!(
                "note: the node no longer keeps lines before seq {} (its store is bounded, and a restart keeps only the lines of what it re-executed)",
                page.oldest_seq
            );
        }
        warned_gap = true;
        let mut out = std::io::stdout().lock();
        for line in &page.lines {
            let written = if json {
                let object = serde_json::json!({
                    "seq": line.seq,
                    "procedure": line.procedure,
                    "module": line.module,
                    "level": ordo_client::protocol::log_level_name(line.level),
                    "message": line.message,
                    "fuel_used": line.fuel_used,
                    "abort_kind": line.abort_kind,
                });
                writeln!(out, "{object}")
            } else {
                let aborted = line
                    .abort_kind
                    .as_ref()
                    .map(|kind| format!(" aborted ({kind})"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "seq {} {}::{} {}{aborted} [fuel {}]: {}",
                    line.seq,
                    line.module,
                    line.procedure,
                    ordo_client::protocol::log_level_name(line.level),
                    line.fuel_used,
                    line.message
                )
            };
            if written.and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
        drop(out);
        let caught_up = page.next_seq == next || page.lines.is_empty();
        next = page.next_seq;
        if caught_up {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

fn print_call(
    called: Result<(String, u64), ordo_client::ClientError>,
    print_seq: bool,
    json: bool,
) -> anyhow::Result<()> {
    use ordo_client::ClientError;
    let mut out = std::io::stdout().lock();
    match called {
        Ok((result, seq)) => {
            // A module that never sets a result (docs/ABI.md) returns none.
            let result = match result.trim() {
                "" => "null",
                result => result,
            };
            if json {
                // The result is the procedure's JSON text: embedded as it
                // is (re-parsing it would round large integers).
                if serde_json::from_str::<serde::de::IgnoredAny>(result).is_err() {
                    bail!("the call committed at seq {seq}, but its result is not JSON: {result}");
                }
                writeln!(out, "{{\"seq\":{seq},\"result\":{result}}}")?;
                return Ok(());
            }
            if print_seq {
                writeln!(out, "{seq}")?;
            }
            // `()` is JSON `null`: print nothing for it.
            if result != "null" {
                writeln!(out, "{result}")?;
            }
            Ok(())
        }
        Err(err) => {
            let aborted = match &err {
                ClientError::Aborted {
                    seq, kind, message, ..
                } => Some((*seq, kind.as_str(), message)),
                ClientError::UnknownProcedure { seq, message, .. } => {
                    Some((*seq, "unknown_procedure", message))
                }
                ClientError::BadArguments {
                    seq: Some(seq),
                    message,
                } => Some((*seq, "bad_arguments", message)),
                ClientError::ResultNotRetained { seq, message } => {
                    Some((*seq, "result_not_retained", message))
                }
                // Not sequenced (or not known to be): nothing to print
                // but the error.
                _ => None,
            };
            if let Some((seq, kind, message)) = aborted {
                if json {
                    let object = serde_json::json!({
                        "seq": seq,
                        "aborted": { "kind": kind, "message": message },
                    });
                    writeln!(out, "{object}")?;
                } else if print_seq {
                    writeln!(out, "{seq}")?;
                }
            }
            out.flush()?;
            Err(err.into())
        }
    }
}

/// `ordo repair`: opens the node's file log as `serve` would and, if it
/// is refused only for missing newest segments, accepts that loss when
/// told to.
fn repair(data: &std::path::Path, accept_loss: bool) -> anyhow::Result<()> {
    use ordo_sequencer::{FileLog, FileLogConfig, LogError};
    let raft = data.join("raft");
    if raft.join("journal").is_dir() {
        return repair_member(data, &raft, accept_loss);
    }
    let dir = data.join("log");
    if !dir.is_dir() {
        bail!(
            "{} holds no file log ({} is missing); is it a node's data directory?",
            data.display(),
            dir.display()
        );
    }
    let detail = match FileLog::open(FileLogConfig::new(&dir)) {
        Ok(log) => {
            println!(
                "nothing to repair: the log in {} opens, indexes {} to {}",
                dir.display(),
                log.first_index(),
                log.last_index()
            );
            return Ok(());
        }
        Err(LogError::MissingSegments { detail, .. }) => detail,
        Err(other) => return Err(other.into()),
    };
    if !accept_loss {
        bail!(
            "{detail}. Run `ordo repair --data {} --accept-loss` to accept losing those records, or restore the files",
            data.display()
        );
    }
    let log = FileLog::open(FileLogConfig {
        accept_lost_segments: true,
        ..FileLogConfig::new(&dir)
    })?;
    println!(
        "accepted the loss: {detail}. The log now ends at index {}; acknowledged transactions after it are gone from this node",
        log.last_index()
    );
    Ok(())
}

/// `ordo repair` on a cluster member's data directory: its Raft journal.
/// An accepted loss also marks the member so that it neither votes nor
/// stands for election until it has caught up from the others (see
/// `ordo_sequencer::raft::lost`).
fn repair_member(
    data: &std::path::Path,
    raft: &std::path::Path,
    accept_loss: bool,
) -> anyhow::Result<()> {
    use ordo_sequencer::raft::store::{JournalRepair, repair_journal};
    match repair_journal(raft, accept_loss)? {
        JournalRepair::Intact { last_index } => {
            println!(
                "nothing to repair: the Raft journal in {} opens, up to journal index {last_index}",
                raft.join("journal").display()
            );
            Ok(())
        }
        JournalRepair::Refused { detail } => bail!(
            "{detail}. Run `ordo repair --data {} --accept-loss` to accept losing those entries (the member then catches up from the others and does not vote until it has), or restore the files",
            data.display()
        ),
        JournalRepair::Accepted { marker } => {
            println!(
                "accepted the loss: {}. The Raft journal now ends at entry {}; the entries after it are gone from this member. It will take them from the leader again, and neither vote nor stand for election until it has applied an entry of a term after {}",
                marker.detail, marker.kept_up_to, marker.term
            );
            Ok(())
        }
    }
}

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Builds the crate in `dir` for wasm and returns the `.wasm` files.
fn build(dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml; point `ordo build` at a procedure crate",
            dir.display()
        );
    }
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (ordo build needs rustup to add the wasm target)")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        eprintln!(
            "ordo build: the {WASM_TARGET} target is missing; installing it with `rustup target add {WASM_TARGET}`"
        );
        let status = std::process::Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status()
            .context("running rustup target add")?;
        if !status.success() {
            bail!(
                "could not install the {WASM_TARGET} target; run `rustup target add {WASM_TARGET}` and retry"
            );
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !output.status.success() {
        bail!(
            "cargo build failed for {} (see the errors above)",
            manifest.display()
        );
    }
    let mut wasm = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let local = message["manifest_path"].as_str().map(std::path::Path::new)
            == Some(&*manifest.canonicalize()?);
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|file| file.ends_with(".wasm"))
                && local
            {
                wasm.push(PathBuf::from(file));
            }
        }
    }
    if wasm.is_empty() {
        bail!(
            "{} built no .wasm: give the crate `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        );
    }
    Ok(wasm)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.snapshot_every == 0 {
        bail!("--snapshot-every must be at least 1");
    }
    if args.cluster.is_some()
        && (args.retain_positions > 0
            || args.snapshots_kept != ordo_sequencer::raft::SNAPSHOTS_KEPT_DEFAULT)
    {
        bail!(
            "--retain-positions and --snapshots-kept apply to a single node; a cluster member keeps its two newest snapshots"
        );
    }
    let admin_token_set = args.admin_token.is_some();
    for addr in std::iter::once(args.listen).chain(args.http_listen) {
        if !admin_token_set && !addr.ip().is_loopback() && !args.insecure {
            bail!(
                "refusing to serve on {addr} without an admin token: anyone who can reach it could deploy code. Set ORDO_ADMIN_TOKEN (or --admin-token), or pass --insecure to accept that"
            );
        }
    }
    if args.http_requests_max == 0 || args.http_connections_max == 0 {
        bail!("--http-requests-max and --http-connections-max must be at least 1");
    }
    if args.http_client_timeout.is_zero() {
        bail!("--http-client-timeout must be above zero");
    }
    // Bound before the node opens: a port in use fails before any data
    // is touched.
    let client_listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    client_listener.set_nonblocking(true)?;
    let http_listener = match args.http_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("listening for HTTP on {addr}"))?;
            listener.set_nonblocking(true)?;
            Some(listener)
        }
        None => None,
    };
    let tls_enabled = args.tls_cert.is_some();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ordo::tls::server_config(cert, key)?),
        _ => None,
    };
    let cluster = match (args.node_id, &args.cluster) {
        (Some(node_id), Some(members)) => {
            if !members.contains_key(&node_id) {
                bail!(
                    "--node-id {node_id} is not in --cluster (members: {:?})",
                    members.keys().collect::<Vec<_>>()
                );
            }
            let peer_tls = match (&tls, &args.peer_tls_ca) {
                (Some(server), Some(ca)) => Some(ordo_sequencer::raft::PeerTls {
                    server: server.clone(),
                    client: ordo_client::tls::client_config(ca)?,
                }),
                (Some(_), None) => bail!(
                    "a cluster member with --tls-cert needs --tls-ca: the CA that signed the other members' certificates, so the replication port can speak TLS too"
                ),
                (None, _) => None,
            };
            Some(ordo::node::ClusterMember {
                node_id,
                members: members.clone(),
                secret: cluster_secret(args.cluster_secret_file.as_deref())?,
                tls: peer_tls,
            })
        }
        _ => None,
    };
    let mut config = NodeConfig {
        partitions: args.partitions,
        cluster,
        snapshot_log_bytes_min: args.snapshot_log_bytes_min,
        snapshots_kept: args.snapshots_kept,
        retain_positions: args.retain_positions,
        ..NodeConfig::new(&args.data)
    };
    config.engine.instance_epoch = args.snapshot_every;
    config.engine.sessions_max = args.sessions_max;
    config.engine.registered_sessions_max = args.registered_sessions_max;
    config.engine.stored_result_bytes_max = args.stored_result_bytes_max;
    config.engine.stored_results_total_bytes_max = args.stored_results_total_bytes_max;
    config
        .engine
        .validate()
        .map_err(|err| anyhow::anyhow!("invalid engine limits: {err}"))?;
    let engine_limits = config.engine.clone();
    let node = std::sync::Arc::new(
        Node::open(config)
            .with_context(|| format!("opening the node in {}", args.data.display()))?,
    );
    if let Some(recovery) = node.recovery() {
        tracing::warn!("recovered the log: {recovery}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.client_idle_timeout.is_zero() || args.slow_reader_timeout.is_zero() {
        bail!("--client-idle-timeout and --slow-reader-timeout must be above zero");
    }
    let http_config = ordo::http::HttpConfig {
        client_token: args.client_token.clone(),
        admin_token: args.admin_token.clone(),
        requests_in_flight_max: args.http_requests_max,
        connections_max: args.http_connections_max,
        call_body_bytes_max: engine_limits.args_bytes_max,
        deploy_body_bytes_max: engine_limits.module_bytes_max,
        client_timeout: args.http_client_timeout,
        tls: tls.clone(),
    };
    let config = ordo::server::ServerConfig {
        connections_max: args.connections_max,
        client_token: args.client_token,
        admin_token: args.admin_token,
        tls,
        idle_timeout: args.client_idle_timeout,
        answer_bytes_queued_max: args.answer_bytes_queued_max,
        slow_reader_timeout: args.slow_reader_timeout,
        allow_table_reset: args.allow_table_reset,
        ..Default::default()
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(client_listener)?;
        let local = listener.local_addr()?;
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(metrics_addr) = args.metrics_listen {
            let metrics = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("listening for metrics on {metrics_addr}"))?;
            println!("ordo serve: metrics on {}", metrics.local_addr()?);
            tokio::spawn(ordo::http::serve_metrics(node.clone(), metrics, async {
                let _ = metrics_stopped.await;
            }));
        }
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(http) = http_listener {
            let http = tokio::net::TcpListener::from_std(http)?;
            // Tests and scripts read this line to learn the port.
            println!("ordo serve: http on {}", http.local_addr()?);
            tokio::spawn(ordo::http::serve(node.clone(), http, http_config, async {
                let _ = http_stopped.await;
            }));
        }
        let status = node.status();
        // Tests and scripts read this line to learn the port.
        // Said once the node is up, so a start that fails says one line.
        if !admin_token_set {
            tracing::warn!(
                "warning: no admin token (ORDO_ADMIN_TOKEN / --admin-token): anyone who can reach {local} may deploy code"
            );
        }
        println!("ordo serve: listening on {local}");
        tracing::info!(
            listen = %local,
            data = %args.data.display(),
            position = status.engine.position,
            partitions = node.partitions(),
            cluster = node.cluster_status().is_some(),
            tls = tls_enabled,
            admin_token = admin_token_set,
            "serving"
        );
        println!(
            "ordo serve: data in {}, position {}, state hash {}",
            args.data.display(),
            status.engine.position,
            status.engine.state_hash_hex()
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        if let Some(cluster) = node.cluster_status() {
            println!(
                "ordo serve: node {} of a {}-member cluster",
                cluster.node_id,
                args.cluster.as_ref().map_or(0, |members| members.len())
            );
            std::io::stdout().flush()?;
        }
        let failed = {
            let node = node.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Some(reason) = node.failure() {
                        return reason;
                    }
                }
            }
        };
        tokio::select! {
            served = ordo::server::serve(node.clone(), listener, config, shutdown_signal()) => served?,
            reason = failed => {
                tracing::error!("the node stopped: {reason}");
                std::process::exit(1);
            }
        }
        let _ = stop_metrics.send(());
        let _ = stop_http.send(());
        tracing::info!("shutting down: making the open batch durable and answering it");
        let stopping = node.clone();
        tokio::task::spawn_blocking(move || stopping.shutdown()).await?;
        // Let connection writers deliver the last answers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    use ordo::workload::{KeyChooser, Smallbank, Tpcc, Transfer, Workload, Ycsb, YcsbMix};

    if !(args.zipf.is_finite() && args.zipf >= 0.0) {
        bail!(
            "--zipf must be a number >= 0 (0 is uniform), not {}",
            args.zipf
        );
    }
    if args.accounts < 2 {
        bail!("--accounts must be at least 2");
    }
    let keys = KeyChooser::zipf(args.accounts, args.zipf);
    let workload: Box<dyn Workload> = match args.workload {
        WorkloadName::Transfer => {
            if args.balance < 0 {
                bail!("--balance must not be negative");
            }
            Box::new(Transfer::new(keys, args.balance))
        }
        WorkloadName::Smallbank => Box::new(Smallbank { keys }),
        WorkloadName::Tpcc => {
            if args.warehouses == 0 || args.items == 0 || args.items == u32::MAX {
                bail!(
                    "--warehouses and --items must be at least 1 (and --items below {})",
                    u32::MAX
                );
            }
            if args.customers == 0 {
                bail!("--customers must be at least 1");
            }
            Box::new(Tpcc::scaled(
                args.warehouses,
                10,
                args.customers,
                args.items,
            ))
        }
        WorkloadName::Ycsb => {
            let mix = match args.mix {
                YcsbMixName::A => YcsbMix::A,
                YcsbMixName::B => YcsbMix::B,
                YcsbMixName::C => YcsbMix::C,
                YcsbMixName::F => YcsbMix::F,
            };
            Box::new(Ycsb::new(keys, mix))
        }
    };
    let config = ordo::bench::BenchConfig {
        duration: args.duration,
        warmup: args.warmup,
        connections: args.connections,
        inflight: args.inflight,
        rate: args.rate,
        skip_load: args.skip_load,
        existing: if args.reuse {
            ordo::bench::Existing::Reuse
        } else if args.force {
            ordo::bench::Existing::Force
        } else {
            ordo::bench::Existing::Refuse
        },
        seed: args.seed,
        progress: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let tls = client_tls(args.tls_ca.as_deref())?;
    let report = runtime.block_on(async {
        let client_config = |addr: String| {
            let mut client = ordo_client::ClientConfig::new(addr);
            client.token = args.token.clone();
            client.admin_token = args.admin_token.clone();
            client.tls = tls.clone();
            client
        };
        match &args.server {
            Some(server) => {
                eprintln!("ordo bench: {} against {server}", workload.name());
                ordo::bench::run(client_config(server.clone()), &*workload, &config).await
            }
            None => {
                let temp;
                let data_dir = match &args.data {
                    Some(dir) => dir.clone(),
                    None => {
                        temp =
                            tempfile::tempdir().context("creating a temporary data directory")?;
                        temp.path().to_path_buf()
                    }
                };
                let node = std::sync::Arc::new(
                    Node::open(NodeConfig {
                        partitions: args.partitions,
                        ..NodeConfig::new(&data_dir)
                    })
                    .with_context(|| format!("opening the node in {}", data_dir.display()))?,
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .context("listening on a loopback port")?;
                let addr = listener.local_addr()?;
                eprintln!(
                    "ordo bench: {} against an embedded node in {} served on {addr}",
                    workload.name(),
                    data_dir.display()
                );
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(ordo::server::serve(
                    node.clone(),
                    listener,
                    ordo::server::ServerConfig::default(),
                    async {
                        let _ = stopped.await;
                    },
                ));
                let report =
                    ordo::bench::run(client_config(addr.to_string()), &*workload, &config).await;
                let _ = stop.send(());
                let _ = server.await;
                let stopping = node.clone();
                tokio::task::spawn_blocking(move || stopping.shutdown()).await?;
                report
            }
        }
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    print!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = ordo::bench::timeline_svg(&report).context("drawing the chart")?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.clean() {
        bail!("the run was not clean: a check failed or requests went unanswered (see above)");
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    if args.accounts < 2 {
        bail!("--accounts must be at least 2 for transfers between accounts");
    }
    let temp;
    let data_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary data directory")?;
            temp.path().to_path_buf()
        }
    };
    let quiet = args.print_acks;
    let say = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
    say(format!(
        "ordo quickstart: embedded node in {}",
        data_dir.display()
    ));
    let node = Node::open(NodeConfig {
        partitions: args.partitions,
        ..NodeConfig::new(&data_dir)
    })
    .with_context(|| format!("opening the node in {}", data_dir.display()))?;
    if let Some(recovery) = node.recovery() {
        say(format!("recovered the log: {recovery}"));
    }
    let status = node.status();
    if status.engine.position > 0 {
        say(format!(
            "replayed {} log entries, state hash {}",
            status.engine.position,
            status.engine.state_hash_hex()
        ));
    }

    let deployed = node.deploy("bank", ordo::modules::BANK)?;
    say(format!(
        "deployed module `bank` sha256 {} with procedures {}",
        &deployed.sha256[..16],
        deployed.procedures.join(", ")
    ));

    let expected_total = args.accounts as i64 * args.balance;
    let existing_total: i64 = node.call("total", &())?.value;
    if existing_total == 0 {
        let chunk = 10_000;
        let mut first = 0;
        while first < args.accounts {
            let count = chunk.min(args.accounts - first);
            node.call::<_, ()>("open_many", &(first, count, args.balance))?;
            first += count;
        }
        say(format!(
            "opened {} accounts with {} each",
            args.accounts, args.balance
        ));
    } else if existing_total != expected_total {
        bail!(
            "the data directory holds accounts totalling {existing_total}, not {expected_total}; use a fresh --data directory or the same --accounts/--balance"
        );
    }

    let session = node.session();
    if args.print_acks {
        println!("client {:032x}", session.client_id());
    }
    let mut picker = TransferPicker::new(0x5eed, args.accounts);
    let mut submitted_at: Vec<Option<Instant>> = Vec::new();
    let mut latencies_us: Vec<u32> = Vec::with_capacity(args.transfers as usize);
    // Request ids of a fresh session start at 1.
    let first_request = 1u64;
    let mut sent = 0u64;
    let mut done = 0u64;
    let mut aborted = 0u64;
    let started = Instant::now();
    let mut last_report = started;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while done < args.transfers {
        while sent < args.transfers && (sent - done) < args.inflight as u64 {
            let encoded = picker.transfer_args(1);
            match session.submit("transfer", ArgsEncoding::Postcard, encoded) {
                Ok(request_id) => {
                    let slot = (request_id - first_request) as usize;
                    if submitted_at.len() <= slot {
                        submitted_at.resize(slot + 1, None);
                    }
                    submitted_at[slot] = Some(Instant::now());
                    sent += 1;
                }
                Err(ordo::NodeError::Overloaded { .. }) => break,
                Err(err) => return Err(err.into()),
            }
        }
        let completion = session
            .recv_timeout(Duration::from_secs(30))
            .context("no transfer completed for 30 s")?;
        session.acknowledge(completion.request_id);
        let tx = completion.result?;
        let slot = (completion.request_id - first_request) as usize;
        if let Some(at) = submitted_at.get_mut(slot).and_then(Option::take) {
            latencies_us.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        done += 1;
        if !matches!(tx.outcome, Outcome::Committed { .. }) {
            aborted += 1;
        }
        if args.print_acks {
            writeln!(out, "ack {} {}", completion.request_id, tx.seq)?;
            out.flush()?;
        } else if last_report.elapsed() >= Duration::from_millis(250) || done == args.transfers {
            last_report = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64();
            let width = 30;
            let filled = (done * width / args.transfers) as usize;
            write!(
                out,
                "\r[{}{}] {done}/{} transfers, {rate:.0}/s   ",
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                args.transfers
            )?;
            out.flush()?;
        }
    }
    let elapsed = started.elapsed();
    drop(out);
    let total: i64 = node.call("total", &())?.value;
    if !quiet {
        println!();
        latencies_us.sort_unstable();
        let percentile = |p: f64| {
            latencies_us
                .get(
                    ((latencies_us.len() as f64 * p) as usize)
                        .min(latencies_us.len().saturating_sub(1)),
                )
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let status = node.status();
        println!(
            "{} transfers in {:.2} s: {:.0} transfers/s ({} aborted for insufficient funds)",
            done,
            elapsed.as_secs_f64(),
            done as f64 / elapsed.as_secs_f64(),
            aborted
        );
        println!(
            "latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms (durable: fsync per batch)",
            percentile(0.50),
            percentile(0.99),
            percentile(0.999)
        );
        println!(
            "log position {}, {} batches, state hash {}",
            status.engine.position,
            status.log_records,
            status.engine.state_hash_hex()
        );
        println!(
            "total money {total} (expected {expected_total}): {}",
            if total == expected_total {
                "conserved"
            } else {
                "NOT CONSERVED"
            }
        );
    }
    node.shutdown();
    if total != expected_total {
        bail!("money was not conserved: total {total}, expected {expected_total}");
    }
    Ok(())
}

/// `ordo describe --wasm FILE`: the contract of a compiled module, read
/// the way a node reads it at deploy time (every check included).
fn describe_wasm_file(path: &std::path::Path) -> anyhow::Result<ordo_client::ModuleDescription> {
    let config = ordo_engine::EngineConfig::default();
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if bytes > config.module_bytes_max as u64 {
        bail!(
            "{} is {bytes} bytes, over the {}-byte module limit",
            path.display(),
            config.module_bytes_max
        );
    }
    let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| ordo_engine::module::valid_module_name(stem))
        .unwrap_or("module");
    let compiled = ordo_engine::Executor::compiler(&config)
        .compile(name, &wasm)
        .with_context(|| format!("{} is not a deployable module", path.display()))?;
    Ok(ordo::describe::module_description(
        &ordo_engine::contract::DeployedModule {
            name: compiled.name.clone(),
            sha256: compiled.sha256_hex(),
            procedures: compiled.procedures.iter().map(|p| p.name.clone()).collect(),
            contract: compiled.contract.clone(),
            deployed_at: None,
            wasm_bytes: wasm.len() as u64,
        },
    ))
}

/// `N` or `A..B` (inclusive).
fn parse_seq_range(text: &str) -> anyhow::Result<std::ops::RangeInclusive<u64>> {
    let number = |part: &str| {
        part.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!("--seq takes a sequence number N or a range A..B, not `{text}`")
        })
    };
    match text.split_once("..") {
        Some((first, last)) => Ok(number(first)?..=number(last)?),
        None => {
            let seq = number(text)?;
            Ok(seq..=seq)
        }
    }
}

fn print_scan(scan: &ordo::scan::Scan, json: bool) {
    use ordo::replay::render_bytes;
    let (first, last) = scan.positions;
    let positions = if first == last {
        format!("position {first}")
    } else {
        format!("positions {first} to {last} (each page of up to 1,000 rows is one state)")
    };
    for row in &scan.rows {
        let shown = |decoded: &Result<serde_json::Value, String>| match decoded {
            Ok(value) => value.clone(),
            Err(raw) => serde_json::Value::String(raw.clone()),
        };
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "key": shown(&row.key),
                    "value": shown(&row.value),
                    "raw_key": render_bytes(&row.raw_key),
                    "raw_value": render_bytes(&row.raw_value),
                    "decoded": row.key.is_ok() && row.value.is_ok(),
                })
            );
        } else {
            let text = |decoded: &Result<serde_json::Value, String>| match decoded {
                Ok(value) => value.to_string(),
                Err(raw) => raw.clone(),
            };
            println!("{} = {}", text(&row.key), text(&row.value));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"position": last, "positions": [first, last], "rows": scan.rows.len(), "more": scan.more})
        );
        return;
    }
    let more = if scan.more {
        " (more rows follow: raise --limit, or narrow with --prefix)"
    } else {
        ""
    };
    let undecoded = if scan.schema.is_none() {
        "; no deployed module declares this table with #[table], so rows are shown as bytes"
    } else {
        ""
    };
    let rows = match scan.rows.len() {
        1 => "1 row".to_string(),
        n => format!("{n} rows"),
    };
    eprintln!("({rows} as of {positions}{more}{undecoded})");
}

fn print_replay(replayed: &ordo::replay::Replay, json: bool) {
    use ordo::replay::{Verification, render_bytes};
    use ordo_engine::{HostCall, Outcome};
    let verification = match &replayed.verification {
        Verification::Matches { position } => serde_json::json!({
            "matches": true, "checked_at": position,
        }),
        Verification::Diverged {
            since,
            position,
            original,
            replayed,
        } => serde_json::json!({
            "matches": false, "diverged_after": since, "checked_at": position,
            "original_chain_hash": format!("{original:032x}"),
            "replayed_chain_hash": format!("{replayed:032x}"),
        }),
        Verification::DivergedInBatch {
            first_seq,
            last_seq,
        } => serde_json::json!({
            "matches": false, "diverged_in_batch": [first_seq, last_seq],
        }),
        Verification::Unverified { reason } => serde_json::json!({
            "matches": null, "reason": reason,
        }),
    };
    for tx in &replayed.transactions {
        let encoding = tx.entry.encoding;
        let (outcome, detail) = match &tx.outcome.outcome {
            Outcome::Committed { result } => ("committed", tx.schemas.result(&tx.entry, result)),
            Outcome::Deployed(module) => ("deployed", serde_json::json!(module.sha256)),
            Outcome::Aborted(abort) => (
                "aborted",
                serde_json::json!({"kind": abort.kind.as_str(), "reason": abort.message}),
            ),
        };
        // In JSON, `key` and `value` are decoded with the table's schema
        // where it can (`key_decoded`, `value_decoded`), the bytes as text
        // otherwise; `raw_key` and `raw_value` always hold the bytes.
        let row = |key: &[u8], value: Option<&[u8]>, object: &mut serde_json::Value| {
            let row = tx.schemas.row(key, value);
            if let Some(table) = row.table {
                object["table"] = table.into();
            }
            object["key_decoded"] = row.key.is_ok().into();
            object["key"] = row.key.unwrap_or_else(serde_json::Value::String);
            object["raw_key"] = render_bytes(key).into();
            if let (Some(shown), Some(bytes)) = (row.value, value) {
                object["value_decoded"] = shown.is_ok().into();
                object["value"] = shown.unwrap_or_else(serde_json::Value::String);
                object["raw_value"] = render_bytes(bytes).into();
            }
        };
        let calls: Vec<serde_json::Value> = tx
            .trace
            .iter()
            .flat_map(|trace| trace.calls.iter())
            .map(|call| match call {
                HostCall::Get { key, value } => {
                    let mut object = serde_json::json!({
                        "call": "get", "found": value.is_some(), "value": null,
                    });
                    row(key, value.as_deref(), &mut object);
                    object
                }
                HostCall::Put { key, value } => {
                    let mut object = serde_json::json!({"call": "put"});
                    row(key, Some(value), &mut object);
                    object
                }
                HostCall::Delete { key } => {
                    let mut object = serde_json::json!({"call": "delete"});
                    row(key, None, &mut object);
                    object
                }
                HostCall::Scan {
                    start,
                    end,
                    limit,
                    rows,
                } => serde_json::json!({
                    "call": "scan", "start": render_bytes(start),
                    "end": end.as_ref().map(|end| render_bytes(end)), "limit": limit,
                    "rows": rows.iter().map(|(key, value)| {
                        let mut object = serde_json::json!({});
                        row(key, Some(value), &mut object);
                        object
                    }).collect::<Vec<_>>(),
                }),
            })
            .collect();
        if json {
            let mut object = serde_json::json!({
                "seq": tx.seq,
                "kind": tx.entry.kind,
                "name": tx.entry.name,
                "module": tx.entry.module.as_ref().map(|(name, _)| name),
                "module_sha256": tx.entry.module.as_ref().map(|(_, sha)| sha),
                "args": tx.schemas.args(&tx.entry),
                "args_encoding": encoding.map(|encoding| match encoding {
                    ordo_sequencer::entry::ArgsEncoding::Postcard => "postcard",
                    ordo_sequencer::entry::ArgsEncoding::Json => "json",
                }),
                "timestamp_ms": tx.timestamp_ms,
                "random_seed": format!("{:016x}", tx.random_seed),
                "duplicate_of": tx.outcome.duplicate.then_some(tx.outcome.seq),
                "outcome": outcome,
                "result": detail,
                "matches": tx.matches,
            });
            if let Some(trace) = &tx.trace {
                object["calls"] = serde_json::Value::Array(calls);
                object["calls_dropped"] = trace.calls_dropped.into();
                object["fuel_used"] = trace.fuel_used.into();
                object["warm_instance"] = trace.warm_instance.into();
            }
            if let Some(logs) = &tx.outcome.logs {
                object["logs"] = logs
                    .lines
                    .iter()
                    .map(|line| serde_json::json!({"level": line.level.as_str(), "message": line.message}))
                    .collect();
                object["logs_dropped"] = logs.dropped.into();
            }
            println!("{object}");
            continue;
        }
        let module = tx
            .entry
            .module
            .as_ref()
            .map(|(name, sha)| format!(" module {name} ({})", &sha[..sha.len().min(12)]))
            .unwrap_or_default();
        println!(
            "seq {} {} {}{module} at {}, seed {:016x}",
            tx.seq,
            tx.entry.kind,
            tx.entry.name,
            ordo::replay::utc_time(tx.timestamp_ms),
            tx.random_seed
        );
        if tx.entry.kind == "call" {
            println!("  args {}", tx.schemas.args(&tx.entry));
        }
        // `acct[1]`: the table and the decoded key; the raw bytes where
        // no schema decodes them.
        let place = |object: &serde_json::Value| match (object["table"].as_str(), &object["key"]) {
            (Some(table), key) if object["key_decoded"] == true => {
                format!("{table}[{key}]")
            }
            _ => object["raw_key"].as_str().unwrap_or_default().to_string(),
        };
        let shown = |object: &serde_json::Value| {
            if object["found"] == false {
                "(none)".to_string()
            } else if object["value_decoded"] == true {
                object["value"].to_string()
            } else {
                object["raw_value"].as_str().unwrap_or_default().to_string()
            }
        };
        for call in &calls {
            let text = match call["call"].as_str() {
                Some("get") => format!("get {} -> {}", place(call), shown(call)),
                Some("put") => format!("put {} = {}", place(call), shown(call)),
                Some("delete") => format!("delete {}", place(call)),
                _ => {
                    let rows = call["rows"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let listed: Vec<String> = rows
                        .iter()
                        .map(|row| format!("{} = {}", place(row), shown(row)))
                        .collect();
                    format!(
                        "scan {}..{} limit {} -> {} rows [{}]",
                        call["start"].as_str().unwrap_or(""),
                        call["end"].as_str().unwrap_or("(end)"),
                        call["limit"],
                        rows.len(),
                        listed.join(", ")
                    )
                }
            };
            println!("  {text}");
        }
        if let Some(trace) = &tx.trace {
            if trace.calls_dropped > 0 {
                println!(
                    "  ({} more calls not kept: trace byte limit)",
                    trace.calls_dropped
                );
            }
            println!(
                "  fuel used {} ({} instance)",
                trace.fuel_used,
                if trace.warm_instance { "warm" } else { "fresh" }
            );
        }
        // What it logged (ordo_sdk::log!), as the node's procedure log has it.
        for line in tx.outcome.logs.iter().flat_map(|logs| &logs.lines) {
            println!("  log {}: {}", line.level.as_str(), line.message);
        }
        if let Some(logs) = tx.outcome.logs.as_ref().filter(|logs| logs.dropped > 0) {
            println!("  ({} more log lines not kept)", logs.dropped);
        }
        let duplicate = if tx.outcome.duplicate {
            format!(" (a retry: the answer of seq {})", tx.outcome.seq)
        } else {
            String::new()
        };
        let original = match tx.matches {
            Some(true) => " (as in the original run)",
            Some(false) => " (NOT as in the original run: its batch's chain hash differs)",
            None => "",
        };
        match &tx.outcome.outcome {
            Outcome::Committed { result } if result.is_empty() => {
                println!("  {outcome}{duplicate}{original}")
            }
            _ => println!("  {outcome}{duplicate}: {detail}{original}"),
        }
    }
    if json {
        println!("{}", serde_json::json!({ "verification": verification }));
        return;
    }
    match &replayed.verification {
        Verification::Matches { position } => println!(
            "matches: the replayed history equals the original run's through position {position} (its recorded chain hash)"
        ),
        Verification::Diverged {
            since,
            position,
            original,
            replayed,
        } => println!(
            "DIVERGED: the original run's chain hash at position {position} is {original:032x}, the replay's {replayed:032x}: an outcome after position {since} and at or before {position} differs"
        ),
        Verification::DivergedInBatch {
            first_seq,
            last_seq,
        } if first_seq == last_seq => println!(
            "DIVERGED at sequence {first_seq}: its outcome is not the one the node recorded when it ran it (the chain journal's hash differs)"
        ),
        Verification::DivergedInBatch {
            first_seq,
            last_seq,
        } => println!(
            "DIVERGED in the batch of sequence {first_seq} to {last_seq}: an outcome in it is not the one the node recorded when it ran it (the chain journal's hash differs)"
        ),
        Verification::Unverified { reason } => println!("not verified: {reason}"),
    }
}
