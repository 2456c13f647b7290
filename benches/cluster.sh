#!/usr/bin/env bash
# A 3-node Raft cluster against one node, on this machine, with the same
# durable transfer workload driven over TCP by `ordo bench`. Runs ROUNDS
# rounds, alternating single node and cluster so both see the same noise,
# and prints the medians and their ratio (issue 5's bar: at least 0.5),
# and the CPU seconds each server process used per million committed
# transfers (issue 19's bar: the leader at most 1.3x a single node).
#
#   benches/cluster.sh                    # 3 rounds of 15 s
#   ROUNDS=5 DURATION=20s benches/cluster.sh
#
# Every node gets its own fresh data directory under OUT_DIR (default
# target/bench-cluster), deleted after its run; the JSON reports and
# server logs stay.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
OUT_DIR=${OUT_DIR:-target/bench-cluster}
ORDO=${ORDO:-${CARGO_TARGET_DIR:-target}/release/ordo}
# The bench's own defaults, spelled out: both sides get the same load.
LOAD=(transfer --connections "${CONNECTIONS:-4}" --inflight "${INFLIGHT:-1024}")
# Extra `ordo serve` flags for every node, single and cluster alike.
read -r -a SERVE_ARGS <<<"${SERVE_ARGS:-}"

cargo build --release --quiet
mkdir -p "$OUT_DIR"
# shellcheck source=benches/processes.sh
source benches/processes.sh

# CPU seconds (user + system) process $1 has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# Writes the servers' CPU seconds used since `before` (one per pid, in
# order) to file $1, as JSON.
write_cpu() { # file, "before..." , pids...
    local file=$1 before=($2) i=0 used=()
    shift 2
    for pid in "$@"; do
        used+=("$(awk -v a="$(cpu_seconds "$pid")" -v b="${before[$i]}" 'BEGIN { print a - b }')")
        i=$((i + 1))
    done
    printf '{"cpu_seconds": [%s]}\n' "$(IFS=,; echo "${used[*]}")" >"$file"
}

wait_for_line() { # file, text
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    exit 1
}

run_single() { # round
    local dir="$OUT_DIR/single-$1" port
    rm -rf "$dir" && mkdir -p "$dir"
    port=$(free_port)
    "$ORDO" serve --listen "127.0.0.1:$port" --data "$dir/data" --partitions 1 \
        "${SERVE_ARGS[@]}" >"$dir/serve.log" 2>&1 &
    pids+=($!)
    wait_for_line "$dir/serve.log" "listening on"
    local before
    before=$(cpu_seconds "${pids[0]}")
    "$ORDO" bench "${LOAD[@]}" --server "127.0.0.1:$port" --duration "$DURATION" \
        --warmup "$WARMUP" --json "$dir/report.json" >/dev/null 2>"$dir/bench.log"
    write_cpu "$dir/cpu.json" "$before" "${pids[@]}"
    stop_all
    rm -rf "$dir/data" # hundreds of MB per run; the report and logs stay
}

run_cluster() { # round
    local dir="$OUT_DIR/cluster-$1" members="" servers="" id
    rm -rf "$dir" && mkdir -p "$dir"
    local raft_ports=() client_ports=()
    for id in 1 2 3; do
        raft_ports+=("$(free_port)")
        client_ports+=("$(free_port)")
    done
    for id in 1 2 3; do
        members+="${members:+,}$id=127.0.0.1:${raft_ports[$((id - 1))]}/127.0.0.1:${client_ports[$((id - 1))]}"
        servers+="${servers:+,}127.0.0.1:${client_ports[$((id - 1))]}"
    done
    export ORDO_CLUSTER_SECRET="${ORDO_CLUSTER_SECRET:-bench-cluster-secret-$RANDOM-$RANDOM}"
    for id in 1 2 3; do
        "$ORDO" serve --node-id "$id" --cluster "$members" \
            --listen "127.0.0.1:${client_ports[$((id - 1))]}" --data "$dir/node$id" \
            --partitions 1 "${SERVE_ARGS[@]}" >"$dir/serve$id.log" 2>&1 &
        pids+=($!)
    done
    for id in 1 2 3; do wait_for_line "$dir/serve$id.log" "listening on"; done
    local before="" pid
    for pid in "${pids[@]}"; do before+="$(cpu_seconds "$pid") "; done
    "$ORDO" bench "${LOAD[@]}" --server "$servers" --duration "$DURATION" \
        --warmup "$WARMUP" --json "$dir/report.json" >/dev/null 2>"$dir/bench.log"
    write_cpu "$dir/cpu.json" "$before" "${pids[@]}"
    stop_all
    rm -rf "$dir"/node?
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS: single node" >&2
    run_single "$round"
    echo "round $round/$ROUNDS: 3-node cluster" >&2
    run_cluster "$round"
done

python3 - "$OUT_DIR" "$ROUNDS" <<'EOF'
import json, statistics, sys, pathlib
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def runs(kind):
    return [json.loads((out / f"{kind}-{r}" / "report.json").read_text()) for r in range(1, rounds + 1)]
single, cluster = runs("single"), runs("cluster")
ratios = [c["throughput_tps"] / s["throughput_tps"] for s, c in zip(single, cluster)]
rows = ["| setup | committed tx/s (median, range) | p50 ms | p99 ms |", "| --- | --- | --- | --- |"]
for name, results in (("1 node", single), ("3-node cluster", cluster)):
    tps = [r["throughput_tps"] for r in results]
    rows.append(f"| {name} | **{statistics.median(tps):,.0f}** ({min(tps):,.0f}–{max(tps):,.0f}) "
                f"| {statistics.median(r['p50_ms'] for r in results):.1f} "
                f"| {statistics.median(r['p99_ms'] for r in results):.1f} |")
rows.append("")
rows.append("cluster / single per round: " + ", ".join(f"{r:.2f}" for r in ratios)
            + f"; median **{statistics.median(ratios):.2f}**")

def cpu_per_million(kind, r, report):
    # Transfers committed while the CPU was counted: the warm-up's and the
    # measured window's (the load before them is a few transactions).
    committed = report["committed"] + sum(s["committed"] for s in report.get("warmup_timeline", []))
    used = json.loads((out / f"{kind}-{r}" / "cpu.json").read_text())["cpu_seconds"]
    return [u / committed * 1e6 for u in used]

single_cpu = [cpu_per_million("single", r + 1, s)[0] for r, s in enumerate(single)]
# The busiest member is the leader: it alone serves the client,
# proposes and replicates; the other two execute and append.
members = [sorted(cpu_per_million("cluster", r + 1, c), reverse=True) for r, c in enumerate(cluster)]
leader = [m[0] for m in members]
follower = [statistics.median(m[1:]) for m in members]
rows.append("")
rows.append("| process | CPU s per million committed transfers (median, range) |")
rows.append("| --- | --- |")
for name, values in (("1 node", single_cpu), ("cluster leader (busiest member)", leader),
                     ("cluster follower", follower)):
    rows.append(f"| {name} | **{statistics.median(values):.2f}** ({min(values):.2f}–{max(values):.2f}) |")
leader_ratios = [l / s for l, s in zip(leader, single_cpu)]
rows.append("")
rows.append("leader / single node CPU per transfer, per round: "
            + ", ".join(f"{r:.2f}" for r in leader_ratios)
            + f"; median **{statistics.median(leader_ratios):.2f}** (issue 19's bar: at most 1.3)")
for results in (single, cluster):
    for r in results:
        for check in r.get("checks", []):
            if not check.get("passed", True):
                rows.append(f"CHECK FAILED: {check}")
table = "\n".join(rows)
(out / "table.md").write_text(table + "\n")
print(table)
EOF
