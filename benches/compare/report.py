#!/usr/bin/env python3
"""Helpers for benches/compare/run.sh (python3 standard library only).

  report.py free-port
      print a free TCP port on 127.0.0.1
  report.py redis-csv CSV_FILE
      print "rps p50_ms p99_ms" from redis-benchmark --csv output
  report.py pgbench-log LOG_PREFIX
      print "p50_ms p99_ms count" from pgbench per-transaction logs
      (LOG_PREFIX.PID and LOG_PREFIX.PID.N, one file per pgbench thread)
  report.py ordo-json JSON_FILE
      print "tps p50_ms p99_ms committed aborted errors conserved" (tab separated)
      from the --json output of `ordo bench transfer`
  report.py result OUT_FILE key=value ...
      write one system's result as a JSON object
  report.py table OUT_DIR SYSTEM...
      read OUT_DIR/SYSTEM.json for each SYSTEM, print one markdown table
      and write it to OUT_DIR/results.md and everything to results.json
"""

import csv
import glob
import json
import math
import os
import re
import socket
import sys


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def redis_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"no result row in {path}")
    row = rows[-1]
    print(row["rps"], row["p50_latency_ms"], row["p99_latency_ms"])


def percentile(sorted_values, q):
    """Nearest-rank percentile, q in (0, 100]."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def pgbench_log(prefix):
    files = sorted(glob.glob(glob.escape(prefix) + ".*"))
    if not files:
        sys.exit(f"no pgbench log files match {prefix}.*")
    latencies_us = []
    failed = 0
    for name in files:
        with open(name) as f:
            for line in f:
                # client_id transaction_no time script_no time_epoch time_us ...
                fields = line.split()
                if len(fields) < 6:
                    continue
                if fields[2] in ("failed", "skipped"):
                    failed += 1
                    continue
                latencies_us.append(int(fields[2]))
    if not latencies_us:
        sys.exit(f"no transactions in {files}")
    latencies_us.sort()
    p50 = percentile(latencies_us, 50) / 1000.0
    p99 = percentile(latencies_us, 99) / 1000.0
    print(f"{p50:.3f} {p99:.3f} {len(latencies_us)} {failed}")


def ordo_json(path):
    with open(path) as f:
        r = json.load(f)
    # `checks` holds the workload's own end-of-run checks (for transfer:
    # the balances still sum to accounts x balance).
    checks = r.get("checks") or []
    if not checks:
        conserved = "not checked"
    elif all(c.get("passed") for c in checks):
        sums = [re.search(r"sum to (-?\d+)", c.get("what", "")) for c in checks]
        if len(checks) == 1 and sums[0]:
            conserved = f"yes (sum {sums[0].group(1)}, checked by ordo bench)"
        else:
            conserved = "yes (" + "; ".join(c.get("what", "?") for c in checks) + ")"
    else:
        conserved = "NO: " + "; ".join(
            f"{c.get('what', '?')}: {c.get('failure')}" for c in checks if not c.get("passed")
        )
    errors = sum(int(v) for v in (r.get("errors") or {}).values())
    fields = [
        r["throughput_tps"],
        r["p50_ms"],
        r["p99_ms"],
        r.get("committed", "?"),
        r.get("aborted", "?"),
        errors,
        conserved,
    ]
    print("\t".join(str(f) for f in fields))


def result(path, pairs):
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(value, digits):
    v = number(value)
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def table(out_dir, systems):
    results = []
    for system in systems:
        path = os.path.join(out_dir, system + ".json")
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
        else:
            results.append({"system": system, "status": "not run"})
    ordo_tps = None
    for r in results:
        if r.get("system") == "ordo" and r.get("status") == "ok":
            ordo_tps = number(r.get("tps"))
    header = [
        "system",
        "driver",
        "in flight / connections",
        "throughput tx/s",
        "p50 ms",
        "p99 ms",
        "ordo / system",
        "money conserved",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    for r in results:
        tps = number(r.get("tps"))
        ok = r.get("status") == "ok"
        if ok and ordo_tps and tps:
            ratio = f"{ordo_tps / tps:.2f}x"
        else:
            ratio = "-"
        name = r.get("system", "?")
        if not ok:
            name += f" ({r.get('status', '?')})"
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    r.get("driver", "-"),
                    r.get("inflight", "-"),
                    fmt(r.get("tps"), 0) if ok else "-",
                    fmt(r.get("p50_ms"), 2) if ok else "-",
                    fmt(r.get("p99_ms"), 2) if ok else "-",
                    ratio,
                    r.get("conservation", "-"),
                ]
            )
            + " |"
        )
    text = "\n".join(lines) + "\n"
    notes = []
    for r in results:
        parts = [p for p in (r.get("note"),) if p]
        if r.get("load_at_start"):
            parts.append(f"load average at start {r['load_at_start']}")
        if parts:
            notes.append(f"- {r['system']}: {'; '.join(parts)}\n")
    machine = os.path.join(out_dir, "machine.txt")
    if os.path.exists(machine):
        with open(machine) as f:
            text = f.read().rstrip("\n") + "\n\n" + text
    if notes:
        text += "\n" + "".join(notes)
    print(text, end="")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    command, args = argv[1], argv[2:]
    if command == "free-port":
        free_port()
    elif command == "redis-csv" and len(args) == 1:
        redis_csv(args[0])
    elif command == "pgbench-log" and len(args) == 1:
        pgbench_log(args[0])
    elif command == "ordo-json" and len(args) == 1:
        ordo_json(args[0])
    elif command == "result" and args:
        result(args[0], args[1:])
    elif command == "table" and args:
        table(args[0], args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
