#!/usr/bin/env python3
"""A cost model of partitioned execution beyond 2 cores (issue 19, item 7).

ordo's partitioned executor cannot be measured past 2 threads on the
2-core VM, so this models it from per-transaction costs, for the design
of today (one serial dispatcher, thread 0, hands tasks to partition
threads) and for the design issue 19 asks for (no serial dispatcher:
every thread reads the batch and takes the entries whose slots it owns;
a multi-partition transaction is run by one of its threads while the
others wait at it). It prints transactions per second at N = 1, 2, 4, 8
and 16 threads with 0%, 10% and 50% of transactions spanning two
partitions, so that a larger machine can check the curve.

    benches/partition_model.py              # the table
    benches/partition_model.py --json       # the same as JSON

The costs are per transaction, in microseconds, on one core of the
2-core VM, from `cargo bench --bench partitions` and the profile in
docs/BENCHMARKS.md ("Partitioned execution"); change them with the
flags to fit another machine. Everything else is arithmetic: no cache,
memory-bandwidth or NUMA effects, so real curves bend below these.
"""

import argparse
import json

THREADS = [1, 2, 4, 8, 16]
MULTI_FRACTIONS = [0.0, 0.1, 0.5]


def dispatcher_design(n, multi, c):
    """Today's design: thread 0 does the serial part of every transaction
    (exactly-once check, declaration, task building, ordered hand-out and
    hashing) and runs its own slots' transactions; each task it hands to
    another thread costs a hand-off on both sides; a transaction spanning
    threads makes the threads it needs drain their queues first."""
    if n == 1:
        return 1e6 / (c.serial + c.execute)
    # Slots spread evenly: a single-partition transaction lands on thread
    # 0 with probability 1/n.
    on_zero = 1.0 / n
    # Thread 0's time per transaction: the serial part always, its own
    # share of execution, a hand-off for every task it sends away, and for
    # a multi-partition transaction a wait as long as a drain.
    thread_zero = (
        c.serial
        + on_zero * c.execute
        + (1 - on_zero) * c.handoff
        + multi * c.drain
    )
    # The other threads share the rest of the execution.
    others = ((1 - on_zero) * (c.execute + c.handoff) + multi * c.execute) / (n - 1)
    return 1e6 / max(thread_zero, others)


def parallel_design(n, multi, c):
    """Issue 19's design: each thread scans every entry of the batch
    (cheap), executes the ones whose slots it owns, and records its own
    outcomes and part of the digest; answers are merged in log order by
    one thread at a small per-transaction cost. A transaction spanning two
    threads is run by one while the other waits at it (a meeting):
    both spend the execution time, plus a cross-core synchronisation."""
    if n == 1:
        # One thread: nothing to meet, nothing to merge across threads.
        return 1e6 / (c.scan + c.serial_sharded + c.execute)
    # Per transaction, summed over all threads: every thread scans it;
    # the owner runs its share of the serial work (exactly-once sharded by
    # client, declaration) and executes it; a meeting costs the second
    # thread the execution (it waits) and both a synchronisation.
    work = n * c.scan + c.serial_sharded + c.execute + multi * (c.execute + 2 * c.sync)
    parallel = n / work
    # The ordered merge of answers stays serial.
    return 1e6 * min(parallel, 1.0 / c.merge)


def cells_design(n, multi, c):
    """The design built in issue 19 (executor/lanes.rs): thread 0 plans
    every entry (exactly-once check, declaration) into a cell and hands
    every answer out in log order, and runs its own slots' lanes with the
    time left; every slot's lane walks the cells (reading a 2-byte mask
    per entry) and runs its slot's transactions; a transaction spanning
    slots on two threads is a meeting that costs both a synchronisation,
    and a waiting lane's thread goes on with its other slots' lanes.
    Thread 0's share of slots balances the load, so the curve is total
    work over N threads until thread 0 does nothing but plan and hand
    out: then the serial part is the cap."""
    serial = c.plan + c.hand_out
    walk = 16 * c.mask_read  # every slot's lane reads every entry's mask
    if n == 1:
        return 1e6 / (serial + walk + c.execute)
    work = serial + walk + c.execute + multi * 2 * c.sync
    return 1e6 * min(n / work, 1.0 / serial)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 1.15 M/s at N = 1 (benches/partitions, partitions/single/1).
    parser.add_argument("--execute", type=float, default=0.62,
                        help="µs to run one transfer in its slot (wasm call, reads, writes)")
    parser.add_argument("--serial", type=float, default=0.25,
                        help="µs of per-transaction serial work on thread 0 today")
    parser.add_argument("--serial-sharded", type=float, default=0.20,
                        help="µs of that work still done per transaction once sharded")
    parser.add_argument("--handoff", type=float, default=0.62,
                        help="µs per task crossing threads (send, wake, free on the other side)")
    parser.add_argument("--drain", type=float, default=1.25,
                        help="µs thread 0 waits per multi-partition transaction today")
    parser.add_argument("--scan", type=float, default=0.02,
                        help="µs for a thread to look at an entry it may not own")
    parser.add_argument("--sync", type=float, default=0.3,
                        help="µs per thread to meet another at a multi-partition transaction")
    parser.add_argument("--merge", type=float, default=0.03,
                        help="µs per transaction to merge answers in log order")
    parser.add_argument("--plan", type=float, default=0.13,
                        help="µs thread 0 spends planning one entry in the built design")
    parser.add_argument("--hand-out", type=float, default=0.05,
                        help="µs thread 0 spends handing one answer out in the built design")
    parser.add_argument("--mask-read", type=float, default=0.001,
                        help="µs for a lane to read an entry's slot mask")
    parser.add_argument("--json", action="store_true")
    costs = parser.parse_args()

    rows = []
    # Speed-ups are against today's one thread, the figure to beat.
    base = dispatcher_design(1, 0.0, costs)
    for design, model in [("dispatcher (before issue 19)", dispatcher_design),
                          ("parallel (issue 19's ask)", parallel_design),
                          ("cells (built, issue 19)", cells_design)]:
        for multi in MULTI_FRACTIONS:
            figures = [model(n, multi, costs) for n in THREADS]
            rows.append({
                "design": design,
                "multi_partition": multi,
                "tx_per_s": [round(f) for f in figures],
                "speedup": [round(f / base, 2) for f in figures],
            })
    if costs.json:
        print(json.dumps({"threads": THREADS, "rows": rows}, indent=2))
        return
    header = " | ".join(f"N={n}" for n in THREADS)
    print(f"| design | multi-partition | {header} |")
    print("| --- | --- |" + " --- |" * len(THREADS))
    for row in rows:
        cells = " | ".join(
            f"{tx / 1e6:.2f} M/s ({s:.2f}x)" for tx, s in zip(row["tx_per_s"], row["speedup"]))
        print(f"| {row['design']} | {row['multi_partition']:.0%} | {cells} |")


if __name__ == "__main__":
    main()
