#!/usr/bin/env bash
# How long `ordo replay --seq N` takes on a large history: the data
# directory benches/restart.sh makes (1,000,000 accounts, 10,000,000
# logged transfers; run it first). ROUNDS times (default 3), each of:
#
#   last    the newest transaction, traced: the newest snapshot's restore
#           plus the replay of the whole log after it
#   middle  the transaction at the newest snapshot's position: the older
#           snapshot's restore plus the replay of everything between the
#           two snapshots (a replay of any transaction between them costs
#           the same: without a chain journal it goes on to the newer
#           snapshot to check its chain hash)
#
# Prints every round and the medians, with the number of log entries
# replayed.
#
#   benches/replay.sh
#   DATA=target/bench-restart/data-100000-1000000 benches/replay.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DATA=${DATA:-target/bench-restart/data-1000000-10000000}
ORDO=${ORDO:-${CARGO_TARGET_DIR:-target}/release/ordo}

if [ ! -d "$DATA" ]; then
    echo "no $DATA: run benches/restart.sh first (it makes and keeps it)" >&2
    exit 1
fi
cargo build --release --quiet

# Each snapshot's file names the sequence number it continues at.
mapfile -t NEXT < <(for file in "$DATA"/snapshots/snapshot-*.bin; do
    head -c 4096 "$file" | strings -n 6 | grep -o 'seq[0-9]*' | head -n 1 | tr -d 'seq'
done | sort -n)
if [ "${#NEXT[@]}" -lt 2 ]; then
    echo "$DATA holds fewer than two snapshots" >&2
    exit 1
fi
OLDER=$((NEXT[0] - 1))
NEWER=$((NEXT[${#NEXT[@]} - 1] - 1))
# The refusal of a sequence number past the end names the last one.
LAST=$({ "$ORDO" replay --data "$DATA" --seq 99999999999999 2>&1 || true; } |
    grep -o 'ends at sequence [0-9]*' | grep -o '[0-9]*$')
echo "snapshots at positions $OLDER and $NEWER, last sequence $LAST"

time_ms() {
    local start end
    start=$(date +%s%N)
    "$ORDO" replay --data "$DATA" "$@" > /dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -a last middle
for round in $(seq 1 "$ROUNDS"); do
    last+=("$(time_ms --seq "$LAST" --trace)")
    middle+=("$(time_ms --seq "$NEWER")")
    echo "round $round: last ${last[-1]} ms, middle ${middle[-1]} ms"
done
echo "median: last $(printf '%s\n' "${last[@]}" | median) ms ($((LAST - NEWER)) entries after the snapshot)," \
    "middle $(printf '%s\n' "${middle[@]}" | median) ms ($((NEWER - OLDER)) entries between the snapshots)"
