//! The simulator's own tests: seeds pass, a seed's run is bit-identical
//! when run again, and every planted bug is caught within a stated number
//! of seeds (the checker bites).

use ordo::node_core::InjectedBug;
use ordo_engine::ModuleCompiler;
use ordo_sim::{Options, SeedReport, Topology, run_seed_with, shared_compiler};
use std::sync::Arc;

/// Single-node seeds the test suite runs without a planted bug.
const CLEAN_SEEDS: u64 = 200;

/// Cluster seeds the test suite runs without a planted bug (in a debug
/// build one takes about 0.2 s, a single-node seed about 0.3 s).
const CLEAN_CLUSTER_SEEDS: u64 = 120;

fn run_seed(seed: u64, bug: Option<InjectedBug>, compiler: &Arc<ModuleCompiler>) -> SeedReport {
    run_in(Topology::Single, seed, bug, compiler)
}

fn run_in(
    topology: Topology,
    seed: u64,
    bug: Option<InjectedBug>,
    compiler: &Arc<ModuleCompiler>,
) -> SeedReport {
    run_seed_with(
        seed,
        Options {
            bug,
            topology: Some(topology),
            ..Options::default()
        },
        compiler,
    )
}

/// Within how many seeds each planted bug must be caught.
const SEEDS_TO_CATCH: u64 = 20;

#[test]
fn clean_seeds_pass_the_checker() {
    let compiler = shared_compiler();
    let mut acknowledged = 0;
    let mut faults = 0;
    let (mut snapshots, mut restores, mut cuts) = (0, 0, 0);
    // Seed 8862: two failed fsyncs queued at once defeated the
    // best-effort FAILED-SYNC marker (the simulator now arms one at a
    // time, as on the cluster's disks).
    for seed in (0..CLEAN_SEEDS).chain([8862]) {
        let report = run_seed(seed, None, &compiler);
        assert!(
            report.failure.is_none(),
            "seed {seed} failed: {}\nreplay: {}",
            report.failure.as_deref().unwrap_or_default(),
            report.replay_command()
        );
        acknowledged += report.acknowledged;
        faults +=
            report.process_kills + report.power_losses + report.failed_syncs + report.torn_writes;
        snapshots += report.snapshots;
        restores += report.snapshot_restores;
        cuts += report.log_prefix_cuts;
    }
    // The seeds did something: transactions were answered and checked, and
    // faults happened.
    assert!(
        acknowledged > CLEAN_SEEDS * 20,
        "only {acknowledged} acknowledged"
    );
    assert!(faults > CLEAN_SEEDS, "only {faults} faults injected");
    // Snapshots were saved, nodes started from them, and logs lost the
    // records they cover (so the restarts checked above went through
    // restore, check_fits and a tail replay).
    assert!(snapshots > CLEAN_SEEDS, "only {snapshots} snapshots");
    assert!(
        restores > CLEAN_SEEDS,
        "only {restores} starts from a snapshot"
    );
    assert!(cuts > CLEAN_SEEDS / 4, "only {cuts} log prefix cuts");
}

#[test]
fn clean_cluster_seeds_pass_the_checker() {
    let compiler = shared_compiler();
    let (mut acknowledged, mut kills, mut partitions, mut lost, mut disk_faults) = (0, 0, 0, 0, 0);
    let mut elections = 0;
    // Seed 513: four failed fsyncs in a row on one disk, before the
    // simulator kept at most one pending (docs/ARCHITECTURE.md, "What the
    // cluster simulator found").
    for seed in (0..CLEAN_CLUSTER_SEEDS).chain([513]) {
        let report = run_in(Topology::Cluster, seed, None, &compiler);
        assert!(
            report.failure.is_none(),
            "cluster seed {seed} failed: {}\nreplay: {}",
            report.failure.as_deref().unwrap_or_default(),
            report.replay_command()
        );
        acknowledged += report.acknowledged;
        kills += report.process_kills + report.power_losses;
        partitions += report.partitions;
        lost += report.dropped_messages;
        disk_faults += report.failed_syncs + report.torn_writes;
        elections += report.max_term;
    }
    // Leaders changed: more than the first election per seed.
    assert!(
        elections > CLEAN_CLUSTER_SEEDS * 2,
        "only {elections} terms in all"
    );
    assert!(
        acknowledged > CLEAN_CLUSTER_SEEDS * 20,
        "only {acknowledged} acknowledged"
    );
    assert!(kills > CLEAN_CLUSTER_SEEDS / 2, "only {kills} member kills");
    assert!(
        partitions > CLEAN_CLUSTER_SEEDS / 2,
        "only {partitions} partitions"
    );
    assert!(lost > CLEAN_CLUSTER_SEEDS * 10, "only {lost} messages lost");
    assert!(
        disk_faults > CLEAN_CLUSTER_SEEDS / 2,
        "only {disk_faults} disk faults"
    );
}

#[test]
fn a_cluster_seed_runs_the_same_twice() {
    let compiler = shared_compiler();
    for seed in [3, 11, 1_000_003] {
        let first = run_in(Topology::Cluster, seed, None, &compiler);
        let second = run_in(Topology::Cluster, seed, None, &compiler);
        assert!(first.failure.is_none(), "seed {seed}: {:?}", first.failure);
        assert_eq!(first.trace_hash, second.trace_hash, "cluster seed {seed}");
        assert_eq!(first.steps, second.steps, "cluster seed {seed}");
        assert_eq!(first.last_seq, second.last_seq, "cluster seed {seed}");
        assert_eq!(
            first.simulated_ms, second.simulated_ms,
            "cluster seed {seed}"
        );
    }
    assert_ne!(
        run_in(Topology::Cluster, 1, None, &compiler).trace_hash,
        run_in(Topology::Cluster, 2, None, &compiler).trace_hash
    );
}

#[test]
fn a_seed_runs_the_same_twice() {
    let compiler = shared_compiler();
    for seed in [1, 7, 42, 1_000_003] {
        let first = run_seed(seed, None, &compiler);
        let second = run_seed(seed, None, &compiler);
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.steps, second.steps, "seed {seed}");
        assert_eq!(first.last_seq, second.last_seq, "seed {seed}");
    }
    // And different seeds make different runs.
    assert_ne!(
        run_seed(1, None, &compiler).trace_hash,
        run_seed(2, None, &compiler).trace_hash
    );
}

#[test]
fn every_planted_bug_is_caught() {
    let compiler = shared_compiler();
    for bug in InjectedBug::ALL {
        let topology = Topology::of_bug(bug);
        let caught = (0..SEEDS_TO_CATCH).find_map(|seed| {
            let report = run_in(topology, seed, Some(bug), &compiler);
            report.failure.map(|failure| (seed, failure))
        });
        let Some((seed, failure)) = caught else {
            panic!("{} was not caught in {SEEDS_TO_CATCH} seeds", bug.name());
        };
        eprintln!("{} caught at seed {seed}: {failure}", bug.name());
    }
}

/// A vote counted twice must be caught by a safety check, not only by a
/// cluster that stops making progress: replicas that diverge or an
/// acknowledged transaction lost, or a member's Raft task panicking on
/// its inconsistent state (in a release build seed 8 of 0..20 diverges,
/// seeds 1 and 9 panic; in a debug build openraft's own debug assertions
/// fire first, at seed 1).
#[test]
fn a_vote_counted_twice_is_caught_as_split_brain() {
    let compiler = shared_compiler();
    let caught = (0..SEEDS_TO_CATCH).find_map(|seed| {
        let report = run_in(
            Topology::Cluster,
            seed,
            Some(InjectedBug::CountVoteTwice),
            &compiler,
        );
        report
            .failure
            .filter(|failure| {
                ["diverged", "lost", "panicked"]
                    .iter()
                    .any(|safety| failure.contains(safety))
            })
            .map(|failure| (seed, failure))
    });
    let Some((seed, failure)) = caught else {
        panic!("count-vote-twice caused no divergence or loss in {SEEDS_TO_CATCH} seeds");
    };
    eprintln!("count-vote-twice: split brain at seed {seed}: {failure}");
}

/// The regression test of what the simulator found (docs/ARCHITECTURE.md,
/// "What the simulator found"): with only the process restarted after a
/// failed fsync, the restarted node used to replay and build on records
/// the failed fsync had dropped, and a later power loss left a hole the
/// log refused to open past (seed 2 was the first of many in 0..300).
#[test]
fn a_process_restart_after_a_failed_fsync_keeps_the_log_openable() {
    let compiler = shared_compiler();
    let mut failed_syncs = 0;
    for seed in 0..40 {
        let report = run_seed_with(
            seed,
            Options {
                process_restart_after_failed_fsync: true,
                topology: Some(Topology::Single),
                ..Options::default()
            },
            &compiler,
        );
        assert!(
            report.failure.is_none(),
            "{}\nreplay: {}",
            report.failure.as_deref().unwrap_or_default(),
            report.replay_command()
        );
        failed_syncs += report.failed_syncs;
    }
    assert!(failed_syncs > 20, "only {failed_syncs} failed fsyncs");
}
