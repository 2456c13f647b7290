//! Counters for the Prometheus endpoint (`ordo serve --metrics-listen`).
//! Updated with relaxed atomics on the hot path; read only to render.
//! Nothing here can reach a transaction's outcome.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use ordo_engine::{AbortKind, Outcome, TxOutcome};

const ABORT_KINDS: [AbortKind; 16] = [
    AbortKind::User,
    AbortKind::BadArguments,
    AbortKind::UnknownProcedure,
    AbortKind::OutOfFuel,
    AbortKind::MemoryLimit,
    AbortKind::StackOverflow,
    AbortKind::Trap,
    AbortKind::LimitExceeded,
    AbortKind::DeployRejected,
    AbortKind::RequestForgotten,
    AbortKind::UndeclaredPartition,
    AbortKind::ReadOnly,
    AbortKind::NotReadOnly,
    AbortKind::SessionExpired,
    AbortKind::ResultNotRetained,
    AbortKind::SignatureMismatch,
];

/// Batch-size histogram bucket bounds (entries).
const BATCH_ENTRIES_BUCKETS: [u64; 8] = [1, 10, 100, 1_000, 4_096, 8_192, 16_384, u64::MAX];

#[derive(Default)]
pub struct Metrics {
    requests: AtomicU64,
    committed: AtomicU64,
    duplicates: AtomicU64,
    aborts: [AtomicU64; ABORT_KINDS.len()],
    batches: AtomicU64,
    batch_entries: [AtomicU64; BATCH_ENTRIES_BUCKETS.len()],
    fsync_nanos: AtomicU64,
    fsync_nanos_max: AtomicU64,
    executor_nanos: AtomicU64,
    log_position: AtomicU64,
    overloaded: AtomicU64,
}

impl Metrics {
    pub(crate) fn request_refused_overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn batch_durable(&self, entries: usize, fsync_nanos: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        let bucket = BATCH_ENTRIES_BUCKETS
            .iter()
            .position(|bound| entries as u64 <= *bound)
            .expect("the last bucket is unbounded");
        self.batch_entries[bucket].fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos.fetch_add(fsync_nanos, Ordering::Relaxed);
        self.fsync_nanos_max
            .fetch_max(fsync_nanos, Ordering::Relaxed);
    }

    pub(crate) fn batch_executed(&self, executor_nanos: u64, position: u64) {
        self.executor_nanos
            .fetch_add(executor_nanos, Ordering::Relaxed);
        self.log_position.store(position, Ordering::Relaxed);
    }

    /// Counts executed transactions by outcome.
    pub(crate) fn outcomes(&self, outcomes: &[TxOutcome]) {
        self.requests
            .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
        let (mut committed, mut duplicates) = (0, 0);
        for tx in outcomes {
            duplicates += tx.duplicate as u64;
            match &tx.outcome {
                Outcome::Aborted(abort) => {
                    let index = ABORT_KINDS
                        .iter()
                        .position(|kind| *kind == abort.kind)
                        .expect("every abort kind is listed");
                    self.aborts[index].fetch_add(1, Ordering::Relaxed);
                }
                _ => committed += 1,
            }
        }
        self.committed.fetch_add(committed, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, inflight: u64) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |value: u64| vec![(String::new(), value as f64)];
        metric(
            "ordo_requests_total",
            "counter",
            "Log entries executed.",
            &plain(get(&self.requests)),
        );
        metric(
            "ordo_committed_total",
            "counter",
            "Entries that committed (or deployed).",
            &plain(get(&self.committed)),
        );
        metric(
            "ordo_duplicates_total",
            "counter",
            "Retries answered from the exactly-once table.",
            &plain(get(&self.duplicates)),
        );
        let aborts: Vec<(String, f64)> = ABORT_KINDS
            .iter()
            .zip(&self.aborts)
            .map(|(kind, count)| {
                (
                    format!("{{reason=\"{}\"}}", kind.as_str()),
                    get(count) as f64,
                )
            })
            .collect();
        metric(
            "ordo_aborts_total",
            "counter",
            "Aborted entries by reason.",
            &aborts,
        );
        metric(
            "ordo_overloaded_total",
            "counter",
            "Requests refused because too many were in flight.",
            &plain(get(&self.overloaded)),
        );
        let mut cumulative = 0;
        let mut buckets: Vec<(String, f64)> = BATCH_ENTRIES_BUCKETS
            .iter()
            .zip(&self.batch_entries)
            .map(|(bound, count)| {
                cumulative += get(count);
                let le = if *bound == u64::MAX {
                    "+Inf".to_string()
                } else {
                    bound.to_string()
                };
                (format!("_bucket{{le=\"{le}\"}}"), cumulative as f64)
            })
            .collect();
        buckets.push(("_count".to_string(), get(&self.batches) as f64));
        metric(
            "ordo_batch_entries",
            "histogram",
            "Entries per durable batch.",
            &buckets,
        );
        metric(
            "ordo_fsync_seconds_total",
            "counter",
            "Time spent appending and fsyncing batches.",
            &[(String::new(), get(&self.fsync_nanos) as f64 / 1e9)],
        );
        metric(
            "ordo_fsync_seconds_max",
            "gauge",
            "Slowest append plus fsync of one batch.",
            &[(String::new(), get(&self.fsync_nanos_max) as f64 / 1e9)],
        );
        metric(
            "ordo_executor_seconds_total",
            "counter",
            "Time the executor spent executing batches.",
            &[(String::new(), get(&self.executor_nanos) as f64 / 1e9)],
        );
        metric(
            "ordo_log_position",
            "gauge",
            "Sequence number of the last executed entry.",
            &plain(get(&self.log_position)),
        );
        metric(
            "ordo_inflight_requests",
            "gauge",
            "Requests accepted and not yet answered.",
            &plain(inflight),
        );
        out
    }
}

/// How this node got its compiled modules since it started (the compiler
/// keeps the counts; see `ModuleCompiler::stats`).
pub fn render_compile_stats(stats: &ordo_engine::CompileStats) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "ordo_modules_compiled_total",
            "Modules compiled by cranelift since the node started.",
            stats.compiled,
        ),
        (
            "ordo_compile_cache_loads_total",
            "Modules loaded from the on-disk compiled-code cache instead of compiled.",
            stats.loaded_from_cache,
        ),
        (
            "ordo_compile_cache_discarded_total",
            "Compiled-code cache files found unusable (corrupt, truncated, refused), deleted and recompiled.",
            stats.cache_discarded,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}
