//! `ordo-sim`: runs seeds of the deterministic simulation (see the
//! library's docs and docs/ARCHITECTURE.md, "The simulator").
//!
//! ```text
//! ordo-sim --seed S            one seed, with its report
//! ordo-sim --seeds N [--from S] N seeds from S (default 0)
//! ordo-sim --inject BUG ...    plant a bug; the checker must catch it
//! ordo-sim --inject list       the bugs it can plant
//! ordo-sim --single | --cluster force the topology (default: the seed's)
//! ```

use std::process::ExitCode;
use std::time::Instant;

use ordo::node_core::InjectedBug;
use ordo_sim::{Options, SeedReport, Topology, run_seed_with, shared_compiler};

const USAGE: &str = "usage: ordo-sim (--seed S | --seeds N [--from S]) [--inject BUG] [--keep-going] [--process-restart-after-failed-fsync] [--single | --cluster]\n       ordo-sim --inject list";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("ordo-sim: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a number"))?;
    value
        .parse()
        .map_err(|_| format!("{flag} takes a number, not {value:?}"))
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let mut seed = None;
    let mut seeds = None;
    let mut from = 0;
    let mut bug = None;
    let mut keep_going = false;
    let mut process_restart_after_failed_fsync = false;
    let mut topology = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => seed = Some(number("--seed", args.next())?),
            "--seeds" => seeds = Some(number("--seeds", args.next())?),
            "--from" => from = number("--from", args.next())?,
            "--keep-going" => keep_going = true,
            "--single" => topology = Some(Topology::Single),
            "--cluster" => topology = Some(Topology::Cluster),
            "--process-restart-after-failed-fsync" => process_restart_after_failed_fsync = true,
            "--inject" => {
                let name = args.next().ok_or("--inject needs a bug's name")?;
                if name == "list" {
                    for bug in InjectedBug::ALL {
                        println!("{:<20} {}", bug.name(), bug.describe());
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                bug = Some(InjectedBug::parse(&name).ok_or_else(|| {
                    format!("no bug is named {name:?} (`ordo-sim --inject list` names them)")
                })?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let options = Options {
        bug,
        process_restart_after_failed_fsync,
        topology,
    };
    let compiler = shared_compiler();
    if let Some(seed) = seed {
        let report = run_seed_with(seed, options, &compiler);
        print_report(&report);
        return Ok(if report.failure.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let count = seeds.ok_or("give --seed S or --seeds N")?;
    let started = Instant::now();
    let mut failed = 0u64;
    let mut ran = 0u64;
    let mut acknowledged = 0u64;
    let mut snapshots = 0u64;
    let mut clusters = 0u64;
    for seed in from..from.saturating_add(count) {
        let report = run_seed_with(seed, options, &compiler);
        ran += 1;
        acknowledged += report.acknowledged;
        snapshots += report.snapshots;
        clusters += u64::from(report.topology == Topology::Cluster);
        if report.failure.is_some() {
            failed += 1;
            print_report(&report);
            if !keep_going {
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{ran} seeds from {from} ({clusters} clusters) in {seconds:.1} s ({:.0} seeds/minute on one core), {acknowledged} acknowledged transactions checked, {snapshots} snapshots taken, {failed} failed{}",
        ran as f64 * 60.0 / seconds.max(1e-9),
        bug.map_or(String::new(), |bug| format!(
            ", with {} planted",
            bug.name()
        ))
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &SeedReport) {
    println!(
        "seed {} ({}): {} steps, {} ms simulated, {} clients, {} acknowledged, {} stale reads, {} process kills, {} power losses, {} failed fsyncs, {} torn writes, {} snapshots ({} starts from one, {} log prefix cuts), last seq {}, trace {:016x}",
        report.seed,
        report.topology.name(),
        report.steps,
        report.simulated_ms,
        report.clients,
        report.acknowledged,
        report.stale_reads,
        report.process_kills,
        report.power_losses,
        report.failed_syncs,
        report.torn_writes,
        report.snapshots,
        report.snapshot_restores,
        report.log_prefix_cuts,
        report.last_seq,
        report.trace_hash
    );
    if report.topology == Topology::Cluster {
        println!(
            "  cluster: term {} reached, {} partitions, {} messages lost, {} duplicated, {} members stopped by a storage failure",
            report.max_term,
            report.partitions,
            report.dropped_messages,
            report.duplicated_messages,
            report.failed_members
        );
    }
    match &report.failure {
        Some(failure) => {
            println!("  FAILED: {failure}");
            println!("  replay: {}", report.replay_command());
        }
        None => println!("  passed"),
    }
}
