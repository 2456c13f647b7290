//! The result of a bench run: printed for people, written as JSON for
//! scripts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::{BenchConfig, Measured};

/// Everything `ordo bench` reports. `--json` writes this object.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub inflight: usize,
    /// Open-loop target rate, if any.
    pub rate: Option<f64>,
    /// Committed transactions per second over the measured window.
    pub throughput_tps: f64,
    /// Answered (committed or aborted) transactions per second.
    pub answered_tps: f64,
    pub committed: u64,
    pub aborted: u64,
    /// Latency of answered requests, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// The longest time in the measured window with no transaction
    /// answered (committed or aborted), in milliseconds: what a leader
    /// failover (or any stall) cost the clients.
    pub longest_gap_ms: f64,
    /// Abort messages with digits folded to `N`, and their counts.
    pub aborts_by_reason: BTreeMap<String, u64>,
    /// Requests that got no answer (refused, timed out, connection lost).
    pub errors: BTreeMap<String, u64>,
    /// The measured window, a second at a time.
    pub timeline: Vec<Second>,
    /// The warm-up, a second at a time from the start of the run (its
    /// last second may be partial); counted in nothing above.
    pub warmup_timeline: Vec<Second>,
    pub checks: Vec<CheckResult>,
}

/// One second of the measured window (or of the warm-up).
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds since the measured window (or the warm-up) began.
    pub t: u64,
    pub committed: u64,
    pub aborted: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub what: String,
    pub passed: bool,
    pub failure: Option<String>,
}

impl BenchReport {
    /// Whether every check passed and every request was answered.
    pub fn clean(&self) -> bool {
        self.checks.iter().all(|check| check.passed) && self.errors.is_empty()
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

pub(super) fn build(
    workload: &str,
    config: &BenchConfig,
    measured: Measured,
    checks: Vec<CheckResult>,
) -> BenchReport {
    let seconds = config.duration.as_secs_f64();
    let latency = &measured.latency;
    let quantile = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            ms(latency.value_at_quantile(q))
        }
    };
    let timeline = seconds_of(&measured.timeline);
    let warmup_timeline = seconds_of(&measured.warmup_timeline);
    BenchReport {
        workload: workload.to_string(),
        duration_s: seconds,
        warmup_s: config.warmup.as_secs_f64(),
        connections: config.connections,
        inflight: config.inflight,
        rate: config.rate,
        throughput_tps: measured.committed as f64 / seconds,
        answered_tps: (measured.committed + measured.aborted) as f64 / seconds,
        committed: measured.committed,
        aborted: measured.aborted,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        p999_ms: quantile(0.999),
        max_ms: if latency.is_empty() {
            0.0
        } else {
            ms(latency.max())
        },
        mean_ms: if latency.is_empty() {
            0.0
        } else {
            latency.mean() / 1000.0
        },
        longest_gap_ms: measured.longest_gap.as_secs_f64() * 1000.0,
        aborts_by_reason: measured.aborts,
        errors: measured.errors,
        timeline,
        warmup_timeline,
        checks,
    }
}

fn seconds_of(slots: &[super::Slot]) -> Vec<Second> {
    slots
        .iter()
        .enumerate()
        .map(|(t, slot)| {
            let quantile = |q: f64| {
                if slot.latency.is_empty() {
                    0.0
                } else {
                    ms(slot.latency.value_at_quantile(q))
                }
            };
            Second {
                t: t as u64,
                committed: slot.committed,
                aborted: slot.aborted,
                p50_ms: quantile(0.5),
                p99_ms: quantile(0.99),
                p999_ms: quantile(0.999),
            }
        })
        .collect()
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loop_kind = match self.rate {
            Some(rate) => format!("open loop at {rate:.0} tx/s"),
            None => "closed loop".to_string(),
        };
        writeln!(
            f,
            "workload     {} ({} connections, {} in flight, {loop_kind})",
            self.workload, self.connections, self.inflight
        )?;
        writeln!(
            f,
            "measured     {:.1} s after {:.1} s of warm-up",
            self.duration_s, self.warmup_s
        )?;
        writeln!(
            f,
            "throughput   {:.0} committed tx/s ({:.0} answered tx/s)",
            self.throughput_tps, self.answered_tps
        )?;
        writeln!(
            f,
            "transactions {} committed, {} aborted",
            self.committed, self.aborted
        )?;
        writeln!(
            f,
            "latency ms   p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        )?;
        writeln!(
            f,
            "longest gap  {:.0} ms without an answer",
            self.longest_gap_ms
        )?;
        for (reason, count) in &self.aborts_by_reason {
            writeln!(f, "abort        {count:>10}  {reason}")?;
        }
        for (reason, count) in &self.errors {
            writeln!(f, "error        {count:>10}  {reason}")?;
        }
        for check in &self.checks {
            match &check.failure {
                None => writeln!(f, "check        ok      {}", check.what)?,
                Some(failure) => writeln!(f, "check        FAILED  {}: {failure}", check.what)?,
            }
        }
        Ok(())
    }
}
