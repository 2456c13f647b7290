#!/usr/bin/env bash
# How long a single node takes to restart with a large state and a long
# history: ACCOUNTS accounts (default 1,000,000) and TRANSFERS logged
# transfers (default 10,000,000), made once with `ordo quickstart --data`.
# Then ROUNDS times (default 3): start `ordo serve` on it and time until
# it listens, which it says once the newest snapshot is restored and the
# log after it replayed; then stop it.
# Prints every round and the median.
#
#   benches/restart.sh
#   ACCOUNTS=100000 TRANSFERS=1000000 benches/restart.sh
#
# The data directory (OUT_DIR, default target/bench-restart) is kept, so a
# second run skips the fill; delete it to start over.
set -euo pipefail
cd "$(dirname "$0")/.."

ACCOUNTS=${ACCOUNTS:-1000000}
TRANSFERS=${TRANSFERS:-10000000}
ROUNDS=${ROUNDS:-3}
OUT_DIR=${OUT_DIR:-target/bench-restart}
ORDO=${ORDO:-${CARGO_TARGET_DIR:-target}/release/ordo}
DATA="$OUT_DIR/data-$ACCOUNTS-$TRANSFERS"

cargo build --release --quiet
mkdir -p "$OUT_DIR"
if [ ! -d "$DATA" ]; then
    echo "filling $DATA: $ACCOUNTS accounts, $TRANSFERS transfers"
    # quickstart's closing `total` check runs out of fuel past about
    # 500,000 accounts (one transaction may not read them all); the
    # transfers are logged by then, which is all this needs.
    "$ORDO" quickstart --data "$DATA.tmp" --accounts "$ACCOUNTS" --transfers "$TRANSFERS" |
        tr '\r' '\n' | tail -1 || true
    mv "$DATA.tmp" "$DATA"
fi
echo "data directory: $(du -sh "$DATA/log" | cut -f1) of log in $(ls "$DATA/log" | grep -c '\.log$') segments, $(ls "$DATA/snapshots" 2>/dev/null | grep -c '\.bin$') snapshots ($(du -sh "$DATA/snapshots" | cut -f1))"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
times=()
cpus=()
ticks=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    log="$OUT_DIR/serve-$round.log"
    # An earlier run's log must not be mistaken for this start's.
    rm -f "$log"
    start=$(date +%s.%N)
    "$ORDO" serve --data "$DATA" --listen "127.0.0.1:$port" >"$log" 2>&1 &
    pid=$!
    until grep -qs "listening on" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "ordo serve exited:"; cat "$log"; exit 1
        fi
        sleep 0.005
    done
    end=$(date +%s.%N)
    # CPU seconds the process used until it listened (user + system, all
    # threads): on a shared machine the wall time also counts the time
    # other processes had the cores, the CPU time does not.
    cpu=$(awk -v ticks="$ticks" '{ printf "%.3f", ($14 + $15) / ticks }' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    took=$(python3 -c "print(f'{$end - $start:.3f}')")
    times+=("$took")
    cpus+=("$cpu")
    echo "round $round: listening after $took s ($cpu CPU s); $(grep -h 'restored the snapshot\|modules at startup' "$log" | tr '\n' ' ')"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 -c "import statistics,sys; print(f'median restart: {statistics.median(map(float, sys.argv[1:])):.3f} s over {len(sys.argv)-1} rounds')" "${times[@]}"
python3 -c "import statistics,sys; print(f'median CPU time until listening: {statistics.median(map(float, sys.argv[1:])):.3f} s')" "${cpus[@]}"
