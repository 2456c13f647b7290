//! `ordo bench`: a load generator built on the client SDK.
//!
//! It first looks at what the server holds: if the server already has a
//! module of the workload's name, or another module providing one of its
//! procedures or tables, it refuses to run unless told to reuse what is
//! there (after checking it: [`Existing::Reuse`]) or to deploy and load
//! over it ([`Existing::Force`]). Then it deploys a [`Workload`]'s
//! modules, loads its data, then keeps
//! `inflight` requests outstanding over `connections` connections (closed
//! loop), or sends at a fixed `rate` (open loop, latency measured from
//! when each request was due, so a stalled server cannot hide its queue:
//! no coordinated omission). Requests answered during the warm-up are
//! not counted (the chart shows them, marked). At the end it runs the
//! workload's checks and reports
//! throughput, latency percentiles (HDR histograms, microsecond
//! resolution) and aborts by reason, with a per-second timeline.

mod plot;
mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use ordo_client::{Client, ClientConfig, ClientError};
use parking_lot::Mutex;

use crate::workload::{Check, Generator, Request, Workload};

pub use plot::timeline_svg;
pub use report::{BenchReport, CheckResult, Second};

/// Longest latency the histograms hold (longer ones count as this).
const LATENCY_MAX_US: u64 = 60_000_000;
/// Load requests outstanding at once.
const LOAD_INFLIGHT: usize = 16;

/// How to run the load.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The measured part of the run (after the warm-up).
    pub duration: Duration,
    /// Run before measuring, to fill caches and batches.
    pub warmup: Duration,
    pub connections: usize,
    /// Requests outstanding in total, spread over the connections.
    pub inflight: usize,
    /// Open loop: requests per second in total. `None`: closed loop.
    pub rate: Option<f64>,
    /// Skip the workload's load phase (the server already holds the data).
    pub skip_load: bool,
    /// What to do when the server already has the workload's modules or
    /// data.
    pub existing: Existing,
    /// Seed of the first worker's request stream.
    pub seed: u64,
    /// Print a live progress line to stderr.
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            connections: 4,
            inflight: 1024,
            rate: None,
            skip_load: false,
            existing: Existing::Refuse,
            seed: 1,
            progress: false,
        }
    }
}

impl BenchConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.inflight < self.connections {
            bail!(
                "--inflight ({}) must be at least --connections ({}): every connection needs a request in flight",
                self.inflight,
                self.connections
            );
        }
        if self.duration.is_zero() {
            bail!("--duration must be longer than zero");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of requests per second, not {rate}");
        }
        Ok(())
    }
}

/// What `ordo bench` does when the server already has a module of the
/// workload's name, or another module with one of its procedures or
/// tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Existing {
    /// Refuse to run, saying what was found (`ordo bench` changes no
    /// module and no data it did not create).
    #[default]
    Refuse,
    /// Deploy and load nothing: run on the modules and data that are
    /// there, after checking that the modules provide every procedure the
    /// workload's do and that the data is loaded ([`Workload::probes`]).
    Reuse,
    /// Deploy over what is there and load the data (which fails if some
    /// of it exists already), after a warning.
    Force,
}

/// What the preflight decided.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Deploy the modules and load the data (unless `skip_load`).
    DeployAndLoad,
    /// Use what is on the server.
    Reuse,
}

/// A module of the workload, as compiled here.
struct OwnModule {
    name: &'static str,
    sha256: String,
    procedures: Vec<String>,
    tables: Vec<String>,
}

/// Runs `workload` against the server `client_config` points at.
pub async fn run(
    client_config: ClientConfig,
    workload: &dyn Workload,
    config: &BenchConfig,
) -> anyhow::Result<BenchReport> {
    config.validate()?;
    let mut clients = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let client = Client::connect_with(client_config.clone())
            .await
            .with_context(|| format!("connecting to {}", client_config.addr))?;
        clients.push(client);
    }
    let say = |line: String| {
        if config.progress {
            eprintln!("{line}");
        }
    };

    let plan = preflight(&clients[0], workload, config).await?;
    if plan == Plan::Reuse {
        say(format!(
            "ordo bench: reusing the server's {} and {}",
            workload
                .modules()
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", "),
            workload.data()
        ));
    } else {
        for (name, wasm) in workload.modules() {
            let deployed = clients[0]
                .deploy(name, wasm)
                .await
                .with_context(|| format!("deploying module `{name}`"))?;
            say(format!(
                "ordo bench: deployed `{name}` ({} procedures) at seq {}",
                deployed.procedures.len(),
                deployed.seq
            ));
        }
    }
    if plan == Plan::DeployAndLoad && !config.skip_load {
        // Data under the workload's tables that no module declares now
        // (left by an earlier module) would be loaded into: refuse that
        // too, unless forced.
        if config.existing != Existing::Force
            && let Some(found) = probe_data(&clients[0], workload).await
        {
            bail!(
                "the server already holds {} data ({found}): `ordo bench` would load {} into it. \
                 Use --reuse to run on that data, --force to load anyway, or a server of its own",
                workload.name(),
                workload.data()
            );
        }
        let started = Instant::now();
        let loaded = load(&clients, workload).await?;
        say(format!(
            "ordo bench: loaded {} in {loaded} transactions ({:.1} s)",
            workload.name(),
            started.elapsed().as_secs_f64()
        ));
    }

    let measured = measure(&clients, workload, config).await?;
    let checks = run_checks(&clients[0], workload).await;
    Ok(report::build(workload.name(), config, measured, checks))
}

/// Compiles the workload's modules here, for their hashes, procedures and
/// tables.
async fn own_modules(workload: &dyn Workload) -> anyhow::Result<Vec<OwnModule>> {
    let modules = workload.modules();
    tokio::task::spawn_blocking(move || {
        let compiler = ordo_engine::Executor::compiler(&ordo_engine::EngineConfig::default());
        modules
            .into_iter()
            .map(|(name, wasm)| {
                let compiled = compiler
                    .compile(name, wasm)
                    .with_context(|| format!("compiling the bench's module `{name}`"))?;
                Ok(OwnModule {
                    name,
                    sha256: compiled.sha256_hex(),
                    procedures: compiled.procedures.iter().map(|p| p.name.clone()).collect(),
                    tables: compiled.contract.tables.keys().cloned().collect(),
                })
            })
            .collect()
    })
    .await
    .context("compiling the bench's modules")?
}

/// What on the server the workload would deploy over: its modules by
/// name, and other modules providing its procedures or declaring its
/// tables. One phrase each.
fn conflicts(own: &[OwnModule], server: &[ordo_client::ModuleDescription]) -> Vec<String> {
    let mut found = Vec::new();
    for module in own {
        for there in server {
            let procedures: Vec<&str> = there
                .procedures
                .iter()
                .map(|procedure| procedure.name.as_str())
                .chain(there.unchecked.iter().map(String::as_str))
                .collect();
            if there.name == module.name {
                let whose = if there.sha256 == module.sha256 {
                    "the same build as the bench's"
                } else {
                    "not the bench's build"
                };
                found.push(format!(
                    "a module `{}` (sha256 {}…, {whose}, {} procedures)",
                    there.name,
                    &there.sha256[..there.sha256.len().min(12)],
                    procedures.len()
                ));
                continue;
            }
            let clashing: Vec<&str> = procedures
                .iter()
                .copied()
                .filter(|name| module.procedures.iter().any(|own| own == name))
                .collect();
            if !clashing.is_empty() {
                found.push(format!(
                    "a module `{}` providing {}",
                    there.name,
                    names("procedure", &clashing)
                ));
            }
            let tables: Vec<&str> = there
                .tables
                .iter()
                .map(|table| table.name.as_str())
                .filter(|name| module.tables.iter().any(|own| own == name))
                .collect();
            if !tables.is_empty() {
                found.push(format!(
                    "a module `{}` declaring {}",
                    there.name,
                    names("table", &tables)
                ));
            }
        }
    }
    found
}

/// `procedure `a`` or `procedures `a`, `b``.
fn names(what: &str, items: &[&str]) -> String {
    let list: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    let plural = if items.len() == 1 { "" } else { "s" };
    format!("{what}{plural} {}", list.join(", "))
}

/// Decides, from what the server holds, whether to deploy and load or to
/// reuse, or refuses with one line naming what it found and the options.
async fn preflight(
    client: &Client,
    workload: &dyn Workload,
    config: &BenchConfig,
) -> anyhow::Result<Plan> {
    let own = own_modules(workload).await?;
    let server = client
        .describe()
        .await
        .context("listing the server's modules (to change none the bench did not create)")?;
    let found = conflicts(&own, &server);
    match config.existing {
        Existing::Refuse if found.is_empty() => Ok(Plan::DeployAndLoad),
        Existing::Refuse => bail!(
            "the server already has {}: `ordo bench {}` would deploy over it and load {}. \
             Use --reuse to run on the module and data there (checked first), \
             --force to deploy and load anyway (changing the server's data), or a server of its own",
            found.join(" and "),
            workload.name(),
            workload.data()
        ),
        Existing::Force => {
            if !found.is_empty() {
                eprintln!(
                    "ordo bench: --force: deploying over {} and loading {} into the server",
                    found.join(" and "),
                    workload.data()
                );
            }
            Ok(Plan::DeployAndLoad)
        }
        Existing::Reuse => {
            check_reusable(client, workload, &own, &server).await?;
            Ok(Plan::Reuse)
        }
    }
}

/// For `--reuse`: the server has every module of the workload, each
/// providing every procedure the bench's build does, and the data
/// answers the workload's probes.
async fn check_reusable(
    client: &Client,
    workload: &dyn Workload,
    own: &[OwnModule],
    server: &[ordo_client::ModuleDescription],
) -> anyhow::Result<()> {
    for module in own {
        let Some(there) = server.iter().find(|there| there.name == module.name) else {
            bail!(
                "--reuse: the server has no module `{}` to reuse; run without --reuse to deploy it and load {}",
                module.name,
                workload.data()
            );
        };
        let missing: Vec<&str> = module
            .procedures
            .iter()
            .map(String::as_str)
            .filter(|name| {
                !there.procedures.iter().any(|p| p.name == *name)
                    && !there.unchecked.iter().any(|p| p == name)
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "--reuse: the server's module `{}` lacks {} that the bench's has; \
                 --force deploys the bench's build over it",
                module.name,
                names("procedure", &missing)
            );
        }
    }
    for probe in workload.probes() {
        if let Err(err) = call(client, &probe).await {
            bail!(
                "--reuse: the server does not hold the bench's data ({}): {} failed: {err}. \
                 Run with --force to load it, or on a server of its own",
                workload.data(),
                probe.procedure
            );
        }
    }
    Ok(())
}

/// For a fresh deploy: whether some probe finds data already there (it
/// commits); `Some` names it.
async fn probe_data(client: &Client, workload: &dyn Workload) -> Option<String> {
    for probe in workload.probes() {
        if call(client, &probe).await.is_ok() {
            return Some(format!("{} committed before loading", probe.procedure));
        }
    }
    None
}

async fn call(client: &Client, request: &Request) -> Result<Vec<u8>, ClientError> {
    client
        .call_signed_raw(request.procedure, request.args.clone(), request.signature)
        .await
        .map(|answer| answer.result)
}

/// Runs the load requests, `LOAD_INFLIGHT` at a time; every one must
/// commit. Returns how many ran.
async fn load(clients: &[Client], workload: &dyn Workload) -> anyhow::Result<usize> {
    let requests = workload.load();
    let total = requests.len();
    let queue = Arc::new(Mutex::new(requests.into_iter()));
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = Vec::new();
    for worker in 0..LOAD_INFLIGHT.min(total) {
        let client = clients[worker % clients.len()].clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(request) = queue.lock().next() else {
                    return Ok(());
                };
                client
                    .call_signed_raw(request.procedure, request.args, request.signature)
                    .await
                    .with_context(|| format!("loading: {} failed", request.procedure))?;
            }
        }));
    }
    for task in tasks {
        task.await.context("a load task panicked")??;
    }
    Ok(total)
}

/// What the workers measured.
pub(crate) struct Measured {
    /// Latency of every answered request (committed or aborted), in µs.
    pub latency: Histogram<u64>,
    pub committed: u64,
    pub aborted: u64,
    /// Normalised abort messages (digits folded to `N`) and their counts.
    pub aborts: BTreeMap<String, u64>,
    /// Requests with no answer: refusals, timeouts, lost connections.
    pub errors: BTreeMap<String, u64>,
    pub timeline: Vec<Slot>,
    /// The warm-up's seconds, counted from the start of the run: shown on
    /// the chart, counted nowhere else.
    pub warmup_timeline: Vec<Slot>,
    /// The longest time within the measured window with no request
    /// answered (committed or aborted), the window's ends included: what
    /// a failover costs the clients.
    pub longest_gap: Duration,
}

/// One second of the timeline.
pub(crate) struct Slot {
    pub committed: u64,
    pub aborted: u64,
    pub latency: Histogram<u64>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            committed: 0,
            aborted: 0,
            latency: latency_histogram(2),
        }
    }
}

fn latency_histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, significant_digits).expect("the bounds are valid")
}

/// Shared by the workers of one connection: they run on the same runtime
/// thread most of the time, so the lock is almost never contended.
struct Recorder {
    latency: Histogram<u64>,
    committed: u64,
    aborted: u64,
    aborts: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    measured: Lane,
    warmup: Lane,
}

/// Fills one timeline a second at a time: the second being filled is
/// merged into the shared timeline when a later second starts, so memory
/// stays one histogram per second.
struct Lane {
    second: usize,
    slot: Slot,
    timeline: Arc<Mutex<Vec<Slot>>>,
}

impl Lane {
    fn new(timeline: Arc<Mutex<Vec<Slot>>>) -> Lane {
        Lane {
            second: 0,
            slot: Slot::new(),
            timeline,
        }
    }

    fn record(&mut self, second: usize, micros: u64, committed: bool) {
        if second != self.second {
            self.flush();
            self.second = second;
        }
        if committed {
            self.slot.committed += 1;
        } else {
            self.slot.aborted += 1;
        }
        self.slot.latency.saturating_record(micros);
    }

    fn flush(&mut self) {
        if self.slot.committed + self.slot.aborted == 0 {
            return;
        }
        let mut timeline = self.timeline.lock();
        while timeline.len() <= self.second {
            timeline.push(Slot::new());
        }
        let target = &mut timeline[self.second];
        target.committed += self.slot.committed;
        target.aborted += self.slot.aborted;
        target
            .latency
            .add(&self.slot.latency)
            .expect("histograms with the same bounds add");
        self.slot = Slot::new();
    }
}

impl Recorder {
    fn new(timeline: Arc<Mutex<Vec<Slot>>>, warmup_timeline: Arc<Mutex<Vec<Slot>>>) -> Recorder {
        Recorder {
            latency: latency_histogram(3),
            committed: 0,
            aborted: 0,
            aborts: BTreeMap::new(),
            errors: BTreeMap::new(),
            measured: Lane::new(timeline),
            warmup: Lane::new(warmup_timeline),
        }
    }

    fn micros(latency: Duration) -> u64 {
        (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US)
    }

    fn record(&mut self, second: usize, latency: Duration, outcome: Result<(), ClientError>) {
        let micros = Recorder::micros(latency);
        match outcome {
            Ok(()) => {
                self.committed += 1;
                self.measured.record(second, micros, true);
            }
            Err(ClientError::Aborted { kind, message, .. }) => {
                self.aborted += 1;
                self.measured.record(second, micros, false);
                *self
                    .aborts
                    .entry(format!("{kind}: {}", fold_digits(&message)))
                    .or_insert(0) += 1;
            }
            Err(err) => {
                *self
                    .errors
                    .entry(fold_digits(&err.to_string()))
                    .or_insert(0) += 1;
                return;
            }
        }
        self.latency.saturating_record(micros);
    }

    /// An answer during the warm-up: on the warm-up's timeline only.
    fn record_warmup(
        &mut self,
        second: usize,
        latency: Duration,
        outcome: &Result<(), ClientError>,
    ) {
        match outcome {
            Ok(()) => self.warmup.record(second, Recorder::micros(latency), true),
            Err(ClientError::Aborted { .. }) => {
                self.warmup.record(second, Recorder::micros(latency), false)
            }
            Err(_) => {}
        }
    }

    fn flush(&mut self) {
        self.measured.flush();
        self.warmup.flush();
    }
}

/// Replaces every run of digits with `N`, so that abort messages that
/// differ only in ids and amounts count as one reason.
fn fold_digits(message: &str) -> String {
    let mut folded = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                folded.push('N');
            }
            in_digits = true;
        } else {
            folded.push(c);
            in_digits = false;
        }
    }
    folded
}

/// What the workers and the progress line share during a run.
struct Run {
    clock: Clock,
    stop: AtomicBool,
    /// Answers received so far, warm-up included, for the progress line.
    answered: AtomicU64,
    aborted: AtomicU64,
    /// Microseconds after the measured window began of the latest answer
    /// (committed or aborted) in it, and the longest time between two.
    last_answer_us: AtomicU64,
    longest_gap_us: AtomicU64,
}

/// When the phases of the run begin and end.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    measure_from: Instant,
    measure_until: Instant,
}

impl Run {
    /// Notes an answer at `now` (in the measured window) for the longest
    /// gap. Answers from several workers may arrive out of order; one
    /// that is older than the latest noted shortens no gap.
    fn answered_at(&self, now: Instant) {
        let at = (now - self.clock.measure_from).as_micros() as u64;
        let previous = self.last_answer_us.fetch_max(at, Ordering::Relaxed);
        if at > previous {
            self.longest_gap_us
                .fetch_max(at - previous, Ordering::Relaxed);
        }
    }
}

impl Clock {
    /// The timeline second of `at` if it is in the measured window.
    fn measured_second(&self, at: Instant) -> Option<usize> {
        (at >= self.measure_from && at < self.measure_until)
            .then(|| (at - self.measure_from).as_secs() as usize)
    }

    /// The warm-up timeline's second of `at` if it is in the warm-up.
    fn warmup_second(&self, at: Instant) -> Option<usize> {
        (at < self.measure_from)
            .then(|| (at.saturating_duration_since(self.start)).as_secs() as usize)
    }
}

async fn measure(
    clients: &[Client],
    workload: &dyn Workload,
    config: &BenchConfig,
) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let clock = Clock {
        start,
        measure_from: start + config.warmup,
        measure_until: start + config.warmup + config.duration,
    };
    let run = Arc::new(Run {
        clock,
        stop: AtomicBool::new(false),
        answered: AtomicU64::new(0),
        aborted: AtomicU64::new(0),
        last_answer_us: AtomicU64::new(0),
        longest_gap_us: AtomicU64::new(0),
    });
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let warmup_timeline = Arc::new(Mutex::new(Vec::new()));
    // Open loop: each worker sends every `interval`, offset so that the
    // workers' sends interleave evenly.
    let interval = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.inflight as f64 / rate));

    let mut recorders = Vec::new();
    let mut workers = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let recorder = Arc::new(Mutex::new(Recorder::new(
            timeline.clone(),
            warmup_timeline.clone(),
        )));
        recorders.push(recorder.clone());
        // Spread the in-flight budget; the first connections take the
        // remainder.
        let share =
            config.inflight / clients.len() + usize::from(index < config.inflight % clients.len());
        for _ in 0..share {
            let worker = workers.len() as u64;
            let generator = workload.generator(config.seed.wrapping_add(worker));
            let first_due = interval
                .map(|interval| start + interval.mul_f64(worker as f64 / config.inflight as f64));
            workers.push(tokio::spawn(worker_loop(
                client.clone(),
                generator,
                recorder.clone(),
                run.clone(),
                interval.zip(first_due),
            )));
        }
    }

    let progress = config
        .progress
        .then(|| tokio::spawn(show_progress(run.clone())));
    tokio::time::sleep_until(clock.measure_until.into()).await;
    run.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.context("a bench worker panicked")?;
    }
    if let Some(progress) = progress {
        let _ = progress.await;
    }

    let mut measured = Measured {
        latency: latency_histogram(3),
        committed: 0,
        aborted: 0,
        aborts: BTreeMap::new(),
        errors: BTreeMap::new(),
        timeline: Vec::new(),
        warmup_timeline: Vec::new(),
        longest_gap: {
            // The window's tail counts: a cluster that never recovered
            // has a gap to the end.
            let tail = (config.duration.as_micros() as u64)
                .saturating_sub(run.last_answer_us.load(Ordering::Relaxed));
            Duration::from_micros(run.longest_gap_us.load(Ordering::Relaxed).max(tail))
        },
    };
    for recorder in recorders {
        let mut recorder = recorder.lock();
        recorder.flush();
        measured
            .latency
            .add(&recorder.latency)
            .expect("histograms with the same bounds add");
        measured.committed += recorder.committed;
        measured.aborted += recorder.aborted;
        for (reason, count) in std::mem::take(&mut recorder.aborts) {
            *measured.aborts.entry(reason).or_insert(0) += count;
        }
        for (reason, count) in std::mem::take(&mut recorder.errors) {
            *measured.errors.entry(reason).or_insert(0) += count;
        }
    }
    measured.timeline = std::mem::take(&mut *timeline.lock());
    measured.warmup_timeline = std::mem::take(&mut *warmup_timeline.lock());
    Ok(measured)
}

/// One worker: a request at a time, in a closed loop, or in an open one
/// when `schedule` is `(interval, when the first request is due)`.
async fn worker_loop(
    client: Client,
    mut generator: Box<dyn Generator>,
    recorder: Arc<Mutex<Recorder>>,
    run: Arc<Run>,
    mut schedule: Option<(Duration, Instant)>,
) {
    while !run.stop.load(Ordering::Relaxed) {
        // Closed loop: now. Open loop: when this worker's next request is
        // due; a late worker sends at once and its latency includes the
        // wait, as the request's user would see it.
        let sent_at = match &mut schedule {
            Some((interval, due)) => {
                let at = *due;
                *due += *interval;
                tokio::time::sleep_until(at.into()).await;
                if run.stop.load(Ordering::Relaxed) {
                    break;
                }
                at
            }
            None => Instant::now(),
        };
        let request = generator.next_request();
        let result = client
            .call_signed_raw(request.procedure, request.args, request.signature)
            .await;
        let now = Instant::now();
        run.answered.fetch_add(1, Ordering::Relaxed);
        if matches!(result, Err(ClientError::Aborted { .. })) {
            run.aborted.fetch_add(1, Ordering::Relaxed);
        }
        // A closed loop's request counts in the window it was answered
        // in; an open loop's in the window it was due in, so requests due
        // in the warm-up and answered late (a slow start) do not raise the
        // measured rate above the offered one.
        let counted_at = if schedule.is_some() { sent_at } else { now };
        if let Some(second) = run.clock.measured_second(counted_at) {
            if matches!(result, Ok(_) | Err(ClientError::Aborted { .. })) {
                run.answered_at(now);
            }
            recorder
                .lock()
                .record(second, now - sent_at, result.map(|_| ()));
        } else if let Some(second) = run.clock.warmup_second(counted_at) {
            recorder
                .lock()
                .record_warmup(second, now - sent_at, &result.map(|_| ()));
        }
    }
}

/// Prints one progress line a second: a bar over warm-up plus run, and
/// the last second's throughput.
async fn show_progress(run: Arc<Run>) {
    const WIDTH: usize = 30;
    let clock = run.clock;
    let total = clock.measure_until - clock.start;
    let mut last = (Instant::now(), 0u64);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let count = run.answered.load(Ordering::Relaxed);
        let rate = (count - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, count);
        let done = ((now - clock.start).as_secs_f64() / total.as_secs_f64()).min(1.0);
        let filled = (done * WIDTH as f64) as usize;
        let phase = if now < clock.measure_from {
            "warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "[{}{}] {:>5.1}s {phase:<9} {:>9.0} tx/s  answered {count}  aborted {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            (now - clock.start).as_secs_f64(),
            rate,
            run.aborted.load(Ordering::Relaxed),
        );
        if run.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

async fn run_checks(client: &Client, workload: &dyn Workload) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for check in workload.checks() {
        let failure = run_check(client, &check).await.err();
        results.push(CheckResult {
            what: check.what,
            passed: failure.is_none(),
            failure,
        });
    }
    results
}

/// Makes a check's calls one after another and judges their answers.
async fn run_check(client: &Client, check: &Check) -> Result<(), String> {
    let mut answers = Vec::with_capacity(check.requests.len());
    for request in &check.requests {
        let answer = call(client, request)
            .await
            .map_err(|err| format!("{}: {err}", request.procedure))?;
        answers.push(answer);
    }
    check.judge(&answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_fold_to_one_placeholder() {
        assert_eq!(
            fold_digits("insufficient funds: account 12 has 0, needs 1"),
            "insufficient funds: account N has N, needs N"
        );
        assert_eq!(fold_digits("no digits"), "no digits");
    }

    #[test]
    fn the_recorder_fills_the_timeline_by_second() {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let warmup = Arc::new(Mutex::new(Vec::new()));
        let mut recorder = Recorder::new(timeline.clone(), warmup.clone());
        recorder.record_warmup(1, Duration::from_millis(30), &Ok(()));
        recorder.record(0, Duration::from_millis(2), Ok(()));
        recorder.record(
            0,
            Duration::from_millis(4),
            Err(ClientError::Aborted {
                seq: 9,
                kind: "user".into(),
                message: "no such account: 7".into(),
                fuel_used: 0,
            }),
        );
        recorder.record(2, Duration::from_millis(8), Ok(()));
        recorder.record(2, Duration::from_millis(1), Err(ClientError::Overloaded));
        recorder.flush();
        let timeline = timeline.lock();
        assert_eq!(timeline.len(), 3);
        assert_eq!((timeline[0].committed, timeline[0].aborted), (1, 1));
        assert_eq!((timeline[1].committed, timeline[1].aborted), (0, 0));
        assert_eq!(timeline[2].committed, 1);
        assert_eq!(recorder.latency.len(), 3, "the refusal has no latency");
        assert_eq!(recorder.aborts["user: no such account: N"], 1);
        assert_eq!(recorder.errors.len(), 1);
        let warmup = warmup.lock();
        assert_eq!(warmup.len(), 2);
        assert_eq!((warmup[1].committed, warmup[1].aborted), (1, 0));
        assert_eq!(recorder.committed, 2, "the warm-up counts nowhere else");
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            BenchConfig {
                connections: 0,
                ..BenchConfig::default()
            },
            BenchConfig {
                connections: 8,
                inflight: 4,
                ..BenchConfig::default()
            },
            BenchConfig {
                rate: Some(-1.0),
                ..BenchConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?} was accepted");
        }
        BenchConfig::default().validate().unwrap();
    }
}
