#!/usr/bin/env bash
# Runs every `ordo bench` workload ROUNDS times, interleaved (workload A,
# B, ..., then A, B, ... again), so that all of them see the same noise
# on a shared machine, and prints the median of each as a Markdown table.
#
#   benches/matrix.sh                 # 3 rounds of 10 s, embedded node
#   ROUNDS=5 DURATION=20s benches/matrix.sh
#   SERVER=127.0.0.1:7878 benches/matrix.sh   # against `ordo serve`
#
# Results (JSON per run, the table, one SVG chart per workload) go to
# OUT_DIR (default: target/bench-matrix).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
OUT_DIR=${OUT_DIR:-target/bench-matrix}
ORDO=${ORDO:-${CARGO_TARGET_DIR:-target}/release/ordo}

cargo build --release --quiet
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.json

# name|arguments
workloads=(
    "transfer|transfer"
    "transfer-zipf-1.5|transfer --zipf 1.5"
    "smallbank|smallbank"
    "tpcc-2w|tpcc --warehouses 2"
    "ycsb-a|ycsb --mix a"
    "ycsb-b|ycsb --mix b"
    "ycsb-c|ycsb --mix c"
    "ycsb-f|ycsb --mix f"
)

target=()
if [[ -n "${SERVER:-}" ]]; then
    # Workloads deploy modules whose procedure names clash (bank and
    # smallbank both define `balance`): against one server, run one
    # workload per server.
    target=(--server "$SERVER")
fi

for round in $(seq 1 "$ROUNDS"); do
    for entry in "${workloads[@]}"; do
        name=${entry%%|*}
        read -r -a args <<<"${entry#*|}"
        echo "round $round/$ROUNDS: $name" >&2
        "$ORDO" bench "${args[@]}" "${target[@]}" --duration "$DURATION" --warmup "$WARMUP" \
            --json "$OUT_DIR/$name-$round.json" --plot "$OUT_DIR/$name.svg" >/dev/null 2>"$OUT_DIR/$name-$round.log" ||
            { echo "$name failed; see $OUT_DIR/$name-$round.log" >&2; exit 1; }
    done
done

names=()
for entry in "${workloads[@]}"; do names+=("${entry%%|*}"); done
python3 - "$OUT_DIR" "$ROUNDS" "${names[@]}" <<'EOF'
import json, statistics, sys, pathlib
out, rounds, names = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
rows = ["| workload | committed tx/s (median, range) | answered tx/s | p50 ms | p99 ms | p99.9 ms | aborted/s |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
for name in names:
    runs = [json.loads((out / f"{name}-{r}.json").read_text()) for r in range(1, rounds + 1)]
    med = lambda key: statistics.median(r[key] for r in runs)
    tps = [r["throughput_tps"] for r in runs]
    rows.append(
        f"| {name} | **{med('throughput_tps'):,.0f}** ({min(tps):,.0f}–{max(tps):,.0f}) "
        f"| {med('answered_tps'):,.0f} | {med('p50_ms'):.1f} | {med('p99_ms'):.1f} "
        f"| {med('p999_ms'):.1f} | {statistics.median(r['aborted'] / r['duration_s'] for r in runs):,.0f} |")
table = "\n".join(rows)
(out / "table.md").write_text(table + "\n")
print(table)
EOF
