//! The node's metrics for the Prometheus endpoint (`ordo serve
//! --metrics-listen`), kept and encoded (OpenMetrics text) by the
//! `prometheus-client` crate. Counters are relaxed atomics on the hot
//! path; per-procedure figures are added once per run of equal procedures
//! in an answered chunk, not once per call. Nothing here can reach a
//! transaction's outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ordo_engine::{AbortKind, CompileStats, Outcome, TxOutcome};
use ordo_sequencer::entry::Entry;
use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

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
const BATCH_ENTRIES_BUCKETS: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 4_096.0, 8_192.0, 16_384.0];

/// Call latency histogram bucket bounds (seconds), from 100 us to 10 s.
const LATENCY_SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Procedures with their own series. Names come from deployed modules
/// (calls to a name no module provides count as [`UNKNOWN_PROCEDURE`]),
/// but deploys can add new ones for ever; past this, calls count under
/// [`OTHER_PROCEDURES`] so a scrape stays bounded. `(other)` itself takes
/// one of the series.
pub const PROCEDURE_SERIES_MAX: usize = 1_000;
/// The label of calls to procedures no module provides: a client picks
/// those names, so they never get a series of their own.
const UNKNOWN_PROCEDURE: &str = "(unknown)";
/// The label of calls past [`PROCEDURE_SERIES_MAX`].
const OTHER_PROCEDURES: &str = "(other)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcedureLabel {
    procedure: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcedureReasonLabels {
    procedure: String,
    reason: &'static str,
}

/// A histogram that takes many equal observations at once (every call of
/// an answered chunk has the same latency), so the executor thread pays
/// one update per chunk instead of one lock per call, as
/// `prometheus_client`'s own histogram would cost. The crate encodes it.
#[derive(Debug)]
struct CountedHistogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one unbounded.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    /// Values are stored as integer nanos (seconds) or units (entries).
    scale: f64,
}

impl CountedHistogram {
    fn new(bounds: &'static [f64], scale: f64) -> CountedHistogram {
        CountedHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            scale,
        }
    }

    fn seconds() -> CountedHistogram {
        CountedHistogram::new(&LATENCY_SECONDS_BUCKETS, 1e9)
    }

    /// Records `times` observations of `value` (in the histogram's unit
    /// times its scale: nanoseconds for seconds).
    fn observe_many(&self, value: u64, times: u64) {
        let unscaled = value as f64 / self.scale;
        let bucket = self
            .bounds
            .iter()
            .position(|bound| unscaled <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(times, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(value.saturating_mul(times), Ordering::Relaxed);
    }
}

impl TypedMetric for CountedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts.iter().copied())
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / self.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Counts of one run of calls to one procedure, added to its series at
/// once.
struct ProcedureRun<'a> {
    procedure: &'a str,
    calls: u64,
    committed: u64,
    aborts: [u64; ABORT_KINDS.len()],
    fuel_used: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: Counter,
    committed: Counter,
    duplicates: Counter,
    aborts: Family<ReasonLabel, Counter>,
    overloaded: Counter,
    batch_entries: std::sync::Arc<CountedHistogram>,
    fsync_seconds: FloatCounter,
    fsync_seconds_max: FloatGauge,
    fsync_nanos_max: AtomicU64,
    executor_seconds: FloatCounter,
    log_position: Gauge,
    inflight: Gauge,
    sessions: Gauge,
    stored_result_bytes: Gauge,
    modules_compiled: Counter,
    compile_cache_loads: Counter,
    compile_cache_discarded: Counter,
    /// Serializes the catching-up of the compile counters at render time.
    compile_counted: Mutex<CompileStats>,
    procedure_calls: Family<ProcedureLabel, Counter>,
    /// Series in `procedure_calls`, against [`PROCEDURE_SERIES_MAX`].
    procedure_series: std::sync::atomic::AtomicUsize,
    procedure_committed: Family<ProcedureLabel, Counter>,
    procedure_aborts: Family<ProcedureReasonLabels, Counter>,
    procedure_fuel: Family<ProcedureLabel, Counter>,
    procedure_latency: Family<ProcedureLabel, CountedHistogram>,
}

/// What [`Metrics::render`] reads from the node at scrape time.
pub struct Gauges {
    pub inflight: u64,
    pub sessions: u64,
    pub stored_result_bytes: u64,
    pub compile: CompileStats,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let mut metrics = Metrics {
            registry: Registry::default(),
            requests: Counter::default(),
            committed: Counter::default(),
            duplicates: Counter::default(),
            aborts: Family::default(),
            overloaded: Counter::default(),
            batch_entries: std::sync::Arc::new(CountedHistogram::new(&BATCH_ENTRIES_BUCKETS, 1.0)),
            fsync_seconds: FloatCounter::default(),
            fsync_seconds_max: FloatGauge::default(),
            fsync_nanos_max: AtomicU64::new(0),
            executor_seconds: FloatCounter::default(),
            log_position: Gauge::default(),
            inflight: Gauge::default(),
            sessions: Gauge::default(),
            stored_result_bytes: Gauge::default(),
            modules_compiled: Counter::default(),
            compile_cache_loads: Counter::default(),
            compile_cache_discarded: Counter::default(),
            compile_counted: Mutex::new(CompileStats::default()),
            procedure_calls: Family::default(),
            procedure_series: Default::default(),
            procedure_committed: Family::default(),
            procedure_aborts: Family::default(),
            procedure_fuel: Family::default(),
            procedure_latency: Family::new_with_constructor(
                CountedHistogram::seconds as fn() -> CountedHistogram,
            ),
        };
        // Counters are named without `_total`: the encoder adds it.
        registry.register(
            "ordo_requests",
            "Log entries executed.",
            metrics.requests.clone(),
        );
        registry.register(
            "ordo_committed",
            "Entries that committed (or deployed).",
            metrics.committed.clone(),
        );
        registry.register(
            "ordo_duplicates",
            "Retries answered from the exactly-once table.",
            metrics.duplicates.clone(),
        );
        registry.register(
            "ordo_aborts",
            "Aborted entries by reason.",
            metrics.aborts.clone(),
        );
        registry.register(
            "ordo_overloaded",
            "Requests refused because too many were in flight.",
            metrics.overloaded.clone(),
        );
        registry.register(
            "ordo_batch_entries",
            "Entries per durable batch.",
            SharedHistogram(metrics.batch_entries.clone()),
        );
        registry.register(
            "ordo_fsync_seconds",
            "Time spent appending and fsyncing batches.",
            metrics.fsync_seconds.clone(),
        );
        registry.register(
            "ordo_fsync_seconds_max",
            "Slowest append plus fsync of one batch.",
            metrics.fsync_seconds_max.clone(),
        );
        registry.register(
            "ordo_executor_seconds",
            "Time the executor spent executing batches.",
            metrics.executor_seconds.clone(),
        );
        registry.register(
            "ordo_log_position",
            "Sequence number of the last executed entry.",
            metrics.log_position.clone(),
        );
        registry.register(
            "ordo_inflight_requests",
            "Requests accepted and not yet answered.",
            metrics.inflight.clone(),
        );
        registry.register(
            "ordo_sessions",
            "Open exactly-once sessions, registered or not.",
            metrics.sessions.clone(),
        );
        registry.register(
            "ordo_stored_result_bytes",
            "Bytes the stored outcomes are charged against their budget.",
            metrics.stored_result_bytes.clone(),
        );
        registry.register(
            "ordo_modules_compiled",
            "Modules compiled by cranelift since the node started.",
            metrics.modules_compiled.clone(),
        );
        registry.register(
            "ordo_compile_cache_loads",
            "Modules loaded from the on-disk compiled-code cache instead of compiled.",
            metrics.compile_cache_loads.clone(),
        );
        registry.register(
            "ordo_compile_cache_discarded",
            "Compiled-code cache files found unusable (corrupt, truncated, refused), deleted and recompiled.",
            metrics.compile_cache_discarded.clone(),
        );
        registry.register(
            "ordo_procedure_calls",
            "Calls executed, by procedure ((unknown): no module provides it).",
            metrics.procedure_calls.clone(),
        );
        registry.register(
            "ordo_procedure_committed",
            "Calls that committed, by procedure.",
            metrics.procedure_committed.clone(),
        );
        registry.register(
            "ordo_procedure_aborts",
            "Calls that aborted, by procedure and reason.",
            metrics.procedure_aborts.clone(),
        );
        registry.register(
            "ordo_procedure_fuel",
            "Fuel used by calls, by procedure.",
            metrics.procedure_fuel.clone(),
        );
        registry.register(
            "ordo_procedure_latency_seconds",
            "Time from a call's batch opening on this node to its answer, by procedure (calls this node admitted only).",
            metrics.procedure_latency.clone(),
        );
        metrics.registry = registry;
        metrics
    }

    pub(crate) fn request_refused_overloaded(&self) {
        self.overloaded.inc();
    }

    pub(crate) fn batch_durable(&self, entries: usize, fsync_nanos: u64) {
        self.batch_entries.observe_many(entries as u64, 1);
        self.fsync_seconds.inc_by(fsync_nanos as f64 / 1e9);
        let max = self
            .fsync_nanos_max
            .fetch_max(fsync_nanos, Ordering::Relaxed)
            .max(fsync_nanos);
        self.fsync_seconds_max.set(max as f64 / 1e9);
    }

    pub(crate) fn batch_executed(&self, executor_nanos: u64, position: u64) {
        self.executor_seconds.inc_by(executor_nanos as f64 / 1e9);
        self.log_position
            .set(i64::try_from(position).unwrap_or(i64::MAX));
    }

    /// Counts executed transactions by outcome, and per procedure.
    /// `latency` is the time since the chunk's batch opened on this node
    /// (`None` for a batch another node proposed).
    pub(crate) fn outcomes(
        &self,
        entries: &[Entry],
        outcomes: &[TxOutcome],
        latency: Option<Duration>,
    ) {
        self.requests.inc_by(outcomes.len() as u64);
        let (mut committed, mut duplicates) = (0, 0);
        // Added to the labelled series once per chunk, not once per abort.
        let mut aborts = [0u64; ABORT_KINDS.len()];
        let mut run: Option<ProcedureRun<'_>> = None;
        for (entry, tx) in entries.iter().zip(outcomes) {
            duplicates += tx.duplicate as u64;
            let abort = match &tx.outcome {
                Outcome::Aborted(abort) => {
                    let index = abort_index(abort.kind);
                    aborts[index] += 1;
                    Some((abort.kind, index))
                }
                _ => {
                    committed += 1;
                    None
                }
            };
            let procedure = match entry {
                Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => {
                    match abort {
                        Some((AbortKind::UnknownProcedure, _)) => UNKNOWN_PROCEDURE,
                        _ => invocation.procedure.as_str(),
                    }
                }
                _ => continue,
            };
            if run.as_ref().is_some_and(|run| run.procedure != procedure) {
                self.add_run(run.take().expect("checked above"), latency);
            }
            let run = run.get_or_insert(ProcedureRun {
                procedure,
                calls: 0,
                committed: 0,
                aborts: [0; ABORT_KINDS.len()],
                fuel_used: 0,
            });
            run.calls += 1;
            run.fuel_used += tx.fuel_used;
            match abort {
                Some((_, index)) => run.aborts[index] += 1,
                None => run.committed += 1,
            }
        }
        if let Some(run) = run {
            self.add_run(run, latency);
        }
        for (kind, count) in ABORT_KINDS.iter().zip(aborts) {
            if count > 0 {
                self.aborts
                    .get_or_create(&ReasonLabel {
                        reason: kind.as_str(),
                    })
                    .inc_by(count);
            }
        }
        self.committed.inc_by(committed);
        self.duplicates.inc_by(duplicates);
    }

    fn add_run(&self, run: ProcedureRun<'_>, latency: Option<Duration>) {
        let mut label = ProcedureLabel {
            procedure: run.procedure.to_string(),
        };
        if self.procedure_calls.get(&label).is_none() {
            // Only the executor thread adds series, so this count is exact.
            let series = self.procedure_series.fetch_add(1, Ordering::Relaxed);
            if series >= PROCEDURE_SERIES_MAX {
                self.procedure_series.fetch_sub(1, Ordering::Relaxed);
                label.procedure = OTHER_PROCEDURES.to_string();
            }
        }
        self.procedure_calls.get_or_create(&label).inc_by(run.calls);
        if run.committed > 0 {
            self.procedure_committed
                .get_or_create(&label)
                .inc_by(run.committed);
        }
        for (kind, count) in ABORT_KINDS.iter().zip(run.aborts) {
            if count > 0 {
                self.procedure_aborts
                    .get_or_create(&ProcedureReasonLabels {
                        procedure: label.procedure.clone(),
                        reason: kind.as_str(),
                    })
                    .inc_by(count);
            }
        }
        self.procedure_fuel
            .get_or_create(&label)
            .inc_by(run.fuel_used);
        if let Some(latency) = latency {
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            self.procedure_latency
                .get_or_create(&label)
                .observe_many(nanos, run.calls);
        }
    }

    /// Every metric, in the OpenMetrics text format (served as
    /// `application/openmetrics-text`).
    pub fn render(&self, gauges: Gauges) -> String {
        let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.inflight.set(clamp(gauges.inflight));
        self.sessions.set(clamp(gauges.sessions));
        self.stored_result_bytes
            .set(clamp(gauges.stored_result_bytes));
        {
            // The compiler keeps absolute counts; the counters catch up.
            let mut counted = self.compile_counted.lock();
            let now = gauges.compile;
            self.modules_compiled
                .inc_by(now.compiled.saturating_sub(counted.compiled));
            self.compile_cache_loads.inc_by(
                now.loaded_from_cache
                    .saturating_sub(counted.loaded_from_cache),
            );
            self.compile_cache_discarded
                .inc_by(now.cache_discarded.saturating_sub(counted.cache_discarded));
            *counted = now;
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn abort_index(kind: AbortKind) -> usize {
    ABORT_KINDS
        .iter()
        .position(|listed| *listed == kind)
        .expect("every abort kind is listed")
}

/// The batch histogram, registered while [`Metrics`] keeps updating it.
#[derive(Debug)]
struct SharedHistogram(std::sync::Arc<CountedHistogram>);

impl EncodeMetric for SharedHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_histogram_buckets_many_observations_at_once() {
        let histogram = CountedHistogram::seconds();
        histogram.observe_many(300_000, 4); // 0.3 ms: the 0.5 ms bucket
        histogram.observe_many(20_000_000_000, 1); // 20 s: +Inf
        let counts: Vec<u64> = histogram
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[2], 4);
        assert_eq!(counts[LATENCY_SECONDS_BUCKETS.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 5);
        assert_eq!(
            histogram.sum_nanos.load(Ordering::Relaxed),
            4 * 300_000 + 20_000_000_000
        );
    }
}
