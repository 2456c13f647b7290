#!/usr/bin/env bash
# Server memory per account (issue 19: state that fits). For each count
# in ACCOUNTS, starts a fresh `ordo serve`, opens that many bank accounts
# with `ordo bench transfer` (which then runs transfers for DURATION, so
# the figure includes what a working server holds besides its state),
# and prints the server's resident set (VmRSS) before and after, per
# account. Then, if redis-server is installed, does the same for Redis
# 7 holding the same accounts as the compare script stores them (string
# keys `acct:NNNNNNNNNNNN`), reporting `used_memory_rss`.
#
#   benches/memory.sh                          # 1M and 10M accounts
#   ACCOUNTS="1000000" benches/memory.sh
#   ORDO=/path/to/other/ordo benches/memory.sh # another build
#
# Work files go to OUT_DIR (default target/bench-memory), data
# directories are deleted after each run.
set -euo pipefail
cd "$(dirname "$0")/.."

ACCOUNTS=${ACCOUNTS:-"1000000 10000000"}
DURATION=${DURATION:-2s}
OUT_DIR=${OUT_DIR:-target/bench-memory}
ORDO=${ORDO:-${CARGO_TARGET_DIR:-target}/release/ordo}

[[ -n ${ORDO_SKIP_BUILD:-} ]] || cargo build --release --quiet
mkdir -p "$OUT_DIR"
# shellcheck source=benches/processes.sh
source benches/processes.sh

rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }
per() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.1f", a / n }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }

ordo_run() { # accounts
    local accounts=$1 data=$OUT_DIR/ordo-data log=$OUT_DIR/ordo-$1.log addr= before after
    rm -rf "$data"
    env -u ORDO_ADMIN_TOKEN -u ORDO_CLIENT_TOKEN -u ORDO_TLS_CA \
        "$ORDO" serve --listen 127.0.0.1:0 --data "$data" >"$log" 2>&1 &
    pids=($!)
    for _ in $(seq 1 600); do
        addr=$(sed -n 's/^ordo serve: listening on //p' "$log" | head -n 1)
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n $addr ]] || { echo "ordo serve did not start: $(tail -n 5 "$log")" >&2; exit 1; }
    before=$(rss_bytes "${pids[0]}")
    env -u ORDO_ADMIN_TOKEN -u ORDO_CLIENT_TOKEN -u ORDO_SERVER \
        "$ORDO" bench transfer --server "$addr" --accounts "$accounts" \
        --duration "$DURATION" --warmup 0s >"$OUT_DIR/ordo-bench-$accounts.txt" 2>&1
    after=$(rss_bytes "${pids[0]}")
    stop_all
    rm -rf "$data"
    echo "ordo  $accounts accounts: RSS $(mib "$before") MiB empty, $(mib "$after") MiB loaded:" \
        "$(per "$after" "$accounts") bytes/account ($(per $((after - before)) "$accounts") above the empty server)"
}

redis_run() { # accounts
    local accounts=$1 port dir=$OUT_DIR/redis first count used rss empty
    port=$(free_port)
    rm -rf "$dir" && mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no --save "" \
        --appendonly no --logfile "$dir/redis.log" &
    pids=($!)
    for _ in $(seq 1 100); do
        [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    redis-cli -p "$port" -x FUNCTION LOAD REPLACE <benches/compare/transfer.lua >/dev/null
    empty=$(redis-cli -p "$port" INFO memory | sed -n 's/^used_memory_rss:\([0-9]*\).*/\1/p')
    for ((first = 0; first < accounts; first += 50000)); do
        count=$((accounts - first < 50000 ? accounts - first : 50000))
        redis-cli -p "$port" FCALL open_accounts 0 "$first" "$count" 1000 >/dev/null
    done
    used=$(redis-cli -p "$port" INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
    rss=$(redis-cli -p "$port" INFO memory | sed -n 's/^used_memory_rss:\([0-9]*\).*/\1/p')
    stop_all
    rm -rf "$dir"
    echo "redis $accounts accounts: used_memory_rss $(mib "$empty") MiB empty, $(mib "$rss") MiB loaded:" \
        "$(per "$rss" "$accounts") bytes/account ($(per $((rss - empty)) "$accounts") above the empty server;" \
        "used_memory $(per "$used" "$accounts"))"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); ordo: $ORDO"
for accounts in $ACCOUNTS; do
    ordo_run "$accounts"
    if command -v redis-server >/dev/null; then
        redis_run "$accounts"
    else
        echo "redis: not installed (apt-get install -y redis-server redis-tools); skipped"
    fi
done
