#!/usr/bin/env bash
# Side-by-side transfer benchmark: ordo, Redis Functions and PostgreSQL,
# one after the other on loopback, every one fsyncing before it replies.
# Prints one table and writes it to $OUT_DIR/results.md (and results.json).
#
#   benches/compare/run.sh                        # everything, 20 s each
#   DURATION=10 SYSTEMS="redis postgres" benches/compare/run.sh
#   SYSTEMS="ordo-base ordo ordo-tls" ORDO_BASE_BIN=/path/to/older/ordo benches/compare/run.sh
#
# See benches/compare/README.md for what each system runs and why.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ACCOUNTS=${ACCOUNTS:-100000}
BALANCE=${BALANCE:-1000}
DURATION=${DURATION:-20}          # seconds measured per system
WARMUP=${WARMUP:-3}               # seconds of unmeasured load before each
SYSTEMS=${SYSTEMS:-"ordo redis postgres"}
OUT_DIR=${OUT_DIR:-${TMPDIR:-/tmp}/ordo-compare-$(date +%Y%m%d-%H%M%S)}
KEEP_WORK=${KEEP_WORK:-0}         # 1: keep data dirs and logs

ORDO_CONNECTIONS=${ORDO_CONNECTIONS:-4}
ORDO_INFLIGHT=${ORDO_INFLIGHT:-1024}
REDIS_CONNECTIONS=${REDIS_CONNECTIONS:-16}
REDIS_PIPELINE=${REDIS_PIPELINE:-64}
REDIS_REQUESTS=${REDIS_REQUESTS:-}  # default: calibrated to last DURATION
PG_CLIENTS=${PG_CLIENTS:-50}
PG_THREADS=${PG_THREADS:-2}
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-256MB}
PG_EXTRA_OPTS=${PG_EXTRA_OPTS:-}  # more server options, e.g. "-c commit_delay=100"

REPORT=(python3 "$HERE/report.py")

PG_BIN=${PG_BIN:-}
if [[ -z $PG_BIN ]]; then
    if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
        PG_BIN=/usr/lib/postgresql/15/bin
    else
        PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
    fi
fi

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for var in ACCOUNTS BALANCE DURATION WARMUP ORDO_CONNECTIONS ORDO_INFLIGHT \
    REDIS_CONNECTIONS REDIS_PIPELINE PG_CLIENTS PG_THREADS; do
    is_uint "${!var}" || die "$var must be a whole number, got '${!var}'"
done
[[ -z $REDIS_REQUESTS ]] || is_uint "$REDIS_REQUESTS" || die "REDIS_REQUESTS must be a whole number"
((ACCOUNTS >= 2)) || die "ACCOUNTS must be at least 2"
for system in $SYSTEMS; do
    case $system in
        ordo | ordo-tls | ordo-base | redis | postgres) ;;
        *) die "unknown system '$system' in SYSTEMS (use ordo, ordo-tls, ordo-base, redis, postgres)" ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed to parse and print the results"

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ordo-compare-work.XXXXXX")
# The postgres user must be able to reach its data directory inside.
chmod 711 "$WORK"

fstype=$(df -P -T "$WORK" | awk 'NR == 2 { print $2 }')
if [[ $fstype == tmpfs || $fstype == ramfs ]] && [[ ${ALLOW_TMPFS:-0} != 1 ]]; then
    die "$WORK is on $fstype, where fsync costs nothing; set TMPDIR to a directory on a disk (or ALLOW_TMPFS=1)"
fi

# Every server started here leaves "NAME.pid" in $WORK; this stops any that
# are still running, whatever way the script ends.
cleanup() {
    local pidfile pid pids=() i
    if [[ -f $WORK/pg/data/postmaster.pid ]]; then
        log "stopping leftover postgres"
        if as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1; then
            rm -f "$WORK/postgres.pid"
        fi
    fi
    for pidfile in "$WORK"/*.pid; do
        [[ -e $pidfile ]] || continue
        pid=$(<"$pidfile")
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            log "stopping leftover $(basename "$pidfile" .pid) (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_WORK == 1 ]]; then
        log "kept the work directory $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops the process in $WORK/NAME.pid with SIGTERM and waits (up to $2 s).
stop_pidfile() {
    local name=$1 wait_s=${2:-30} pid i
    [[ -f $WORK/$name.pid ]] || return 0
    pid=$(<"$WORK/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < wait_s * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for ${wait_s}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$WORK/$name.pid"
}

# result SYSTEM key=value ...: records one row of the table.
result() {
    local system=$1
    shift
    "${REPORT[@]}" result "$OUT_DIR/$system.json" "system=$system" \
        "load_at_start=${LOAD_AT_START:-?}" "$@"
}

# --------------------------------------------------------------------------
# ordo: `ordo serve` plus `ordo bench transfer` (the project's own client,
# 16 connections sharing 1024 requests in flight).

ordo_bin() {
    if [[ -n ${ORDO_BIN:-} ]]; then
        printf '%s\n' "$ORDO_BIN"
        return
    fi
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$ROOT/$target
    printf '%s\n' "$target/release/ordo"
}

# ordo-tls: the same over TLS (a CA and a server certificate for
# 127.0.0.1 made with openssl for the run). ordo-base: the same, plain, with
# the binary in ORDO_BASE_BIN (an earlier build), to measure what a change
# costs in the same run.
run_ordo() { run_ordo_as ordo "$(ordo_bin)" plain; }
run_ordo_tls() { run_ordo_as ordo-tls "$(ordo_bin)" tls; }
run_ordo_base() {
    [[ -n ${ORDO_BASE_BIN:-} ]] || die "ordo-base: set ORDO_BASE_BIN to the binary to compare with"
    run_ordo_as ordo-base "$ORDO_BASE_BIN" plain
}

make_test_certificates() { # dir
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj "/CN=ordo compare CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 1 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
}

run_ordo_as() { # name binary plain|tls
    local name=$1 bin=$2 mode=$3
    local addr json i fields tps p50 p99 committed aborted errors conserved bench_rc=0
    local serve_tls=() bench_tls=()
    if [[ $name != ordo-base && -z ${ORDO_BIN:-} ]]; then
        log "ordo: cargo build --release (ORDO_BIN=path skips this)"
        (cd "$ROOT" && cargo build --release --bin ordo) >&2
    fi
    [[ -x $bin ]] || die "ordo: no binary at $bin"
    if ! "$bin" bench --help >/dev/null 2>&1; then
        log "ordo: SKIPPED: '$bin bench --help' fails, so this build has no 'ordo bench' yet"
        result "$name" status=skipped driver="ordo bench transfer" \
            inflight="$ORDO_CONNECTIONS conns, $ORDO_INFLIGHT in flight" \
            note="skipped: this build of ordo has no 'bench' subcommand"
        return 0
    fi

    mkdir -p "$WORK/$name"
    if [[ $mode == tls ]]; then
        command -v openssl >/dev/null || die "$name: openssl is needed to make test certificates"
        make_test_certificates "$WORK/$name"
        serve_tls=(--tls-cert "$WORK/$name/server.pem" --tls-key "$WORK/$name/server.key")
        bench_tls=(--tls-ca "$WORK/$name/ca.pem")
    fi
    log "$name: starting ordo serve"
    env -u ORDO_ADMIN_TOKEN -u ORDO_CLIENT_TOKEN -u ORDO_TLS_CA \
        "$bin" serve --listen 127.0.0.1:0 --data "$WORK/$name/data" "${serve_tls[@]}" \
        >"$WORK/$name/serve.log" 2>&1 &
    echo $! >"$WORK/ordo-serve.pid"
    addr=
    for ((i = 0; i < 600; i++)); do
        addr=$(sed -n 's/^ordo serve: listening on //p' "$WORK/$name/serve.log" | head -n 1)
        [[ -n $addr ]] && break
        kill -0 "$(<"$WORK/ordo-serve.pid")" 2>/dev/null ||
            die "ordo serve exited: $(tail -n 5 "$WORK/$name/serve.log")"
        sleep 0.1
    done
    [[ -n $addr ]] || die "ordo serve did not print its address in 60 s"
    log "$name: serving on $addr; running ordo bench transfer for ${DURATION}s (+${WARMUP}s warm-up)"

    json=$OUT_DIR/$name-bench.json
    rm -f "$json"
    local balance_arg=()
    if "$bin" bench --help 2>/dev/null | grep -q -- '--balance'; then
        balance_arg=(--balance "$BALANCE")
    elif ((BALANCE != 1000)); then
        log "ordo: this ordo bench has no --balance; it uses its default (1000)"
    fi
    env -u ORDO_ADMIN_TOKEN -u ORDO_CLIENT_TOKEN -u ORDO_SERVER \
        "$bin" bench transfer --server "$addr" --accounts "$ACCOUNTS" "${balance_arg[@]}" "${bench_tls[@]}" \
        --connections "$ORDO_CONNECTIONS" --inflight "$ORDO_INFLIGHT" \
        --duration "${DURATION}s" --warmup "${WARMUP}s" --json "$json" \
        2>&1 | tee "$OUT_DIR/$name-bench.txt" >&2 || bench_rc=$?
    stop_pidfile ordo-serve 60
    cp "$WORK/$name/serve.log" "$OUT_DIR/$name-serve.log"
    [[ -s $json ]] || die "ordo bench failed (exit $bench_rc) and wrote no JSON"

    fields=$("${REPORT[@]}" ordo-json "$json")
    IFS=$'\t' read -r tps p50 p99 committed aborted errors conserved <<<"$fields"
    result "$name" status=ok driver="ordo bench transfer" \
        inflight="$ORDO_CONNECTIONS conns, $ORDO_INFLIGHT in flight" \
        tps="$tps" p50_ms="$p50" p99_ms="$p99" conservation="$conserved" \
        note="$committed committed, $aborted aborted, $errors unanswered (measured window)"
    log "$name: $tps tx/s, p50 $p50 ms, p99 $p99 ms; $committed committed, $aborted aborted; money conserved: $conserved"
    # ordo bench exits non-zero when a check fails or requests go unanswered.
    ((bench_rc == 0)) || die "ordo bench exited with $bench_rc"
}

# --------------------------------------------------------------------------
# Redis 7 Functions: a Lua library, appendfsync always, driven by
# redis-benchmark with FCALL, 16 connections x pipeline 64.

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_total() {
    # Prints "SUM FOUND CHANGED" (CHANGED: accounts not at BALANCE).
    redis_cli FCALL_RO total 0 "$ACCOUNTS" "$BALANCE" | paste -sd ' '
}

run_redis() {
    local tool dir pid i first count before after requests calib_rps fields tps p50 p99 conserved errors changed
    for tool in redis-server redis-cli redis-benchmark; do
        command -v "$tool" >/dev/null ||
            die "redis: $tool is missing (apt-get install -y redis-server redis-tools)"
    done
    dir=$WORK/redis
    mkdir -p "$dir"
    REDIS_PORT=$("${REPORT[@]}" free-port)
    log "redis: starting $(redis-server --version | cut -d' ' -f3) on 127.0.0.1:$REDIS_PORT"
    # appendfsync always: the AOF is fsynced before replies go out (Redis
    # writes and fsyncs the AOF in beforeSleep, before it writes replies).
    # No RDB snapshots, and no AOF rewrite mid-run (ordo does not compact
    # its log mid-run either).
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
        --daemonize no --save "" --appendonly yes --appendfsync always \
        --auto-aof-rewrite-percentage 0 --logfile "$dir/redis.log" &
    pid=$!
    echo "$pid" >"$WORK/redis.pid"
    for ((i = 0; i < 100; i++)); do
        [[ $(redis_cli PING 2>/dev/null) == PONG ]] && break
        kill -0 "$pid" 2>/dev/null || die "redis-server exited: $(tail -n 5 "$dir/redis.log")"
        sleep 0.1
    done
    [[ $(redis_cli PING 2>/dev/null) == PONG ]] || die "redis-server did not answer PING"

    redis_cli -x FUNCTION LOAD REPLACE <"$HERE/transfer.lua" >/dev/null
    log "redis: opening $ACCOUNTS accounts"
    for ((first = 0; first < ACCOUNTS; first += 50000)); do
        count=$((ACCOUNTS - first < 50000 ? ACCOUNTS - first : 50000))
        redis_cli FCALL open_accounts 0 "$first" "$count" "$BALANCE" >/dev/null
    done
    before=$(redis_total)
    [[ $before == "$((ACCOUNTS * BALANCE)) $ACCOUNTS 0" ]] ||
        die "redis: after loading, total, count and changed are '$before'"
    before=${before% *}

    local bench=(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT"
        -c "$REDIS_CONNECTIONS" -P "$REDIS_PIPELINE" -r "$ACCOUNTS")
    local cmd=(FCALL transfer 2 acct:__rand_int__ acct:__rand_int__ 1)
    # redis-benchmark counts requests, not seconds: a warm-up run of about
    # WARMUP seconds measures the rate, which sets the request count.
    requests=$REDIS_REQUESTS
    if [[ -z $requests ]]; then
        log "redis: warm-up and calibration"
        "${bench[@]}" -n $((WARMUP * 50000 + 10000)) --csv "${cmd[@]}" >"$dir/calibrate.csv"
        calib_rps=$("${REPORT[@]}" redis-csv "$dir/calibrate.csv" | cut -d' ' -f1)
        requests=$(awk -v rps="$calib_rps" -v s="$DURATION" \
            'BEGIN { n = int(rps * s); print (n < 10000 ? 10000 : n) }')
    fi
    log "redis: redis-benchmark, $requests FCALL transfer, $REDIS_CONNECTIONS conns x pipeline $REDIS_PIPELINE"
    "${bench[@]}" -n "$requests" --csv "${cmd[@]}" >"$OUT_DIR/redis-benchmark.csv"
    fields=$("${REPORT[@]}" redis-csv "$OUT_DIR/redis-benchmark.csv")
    read -r tps p50 p99 <<<"$fields"

    # redis-benchmark stops at the first error reply; the server's own
    # count makes sure of it.
    errors=$(redis_cli INFO stats | tr -d '\r' | sed -n 's/^total_error_replies://p')
    after=$(redis_total)
    changed=${after##* }
    after=${after% *}
    if [[ $after == "$before" ]]; then
        conserved="yes (${before% *} -> ${after% *})"
    else
        conserved="NO (sum count '$before' -> '$after')"
    fi
    [[ $(redis_cli CONFIG GET appendfsync | tail -n 1) == always ]] ||
        die "redis: appendfsync is not 'always'"
    redis_cli INFO persistence | tr -d '\r' | grep -E '^aof_(enabled|last_write_status):' >"$dir/aof.txt" || true
    grep -q '^aof_last_write_status:ok' "$dir/aof.txt" || die "redis: AOF write status is not ok"
    redis_cli SHUTDOWN >/dev/null 2>&1 || true
    stop_pidfile redis 30
    cp "$dir/redis.log" "$OUT_DIR/redis-server.log"

    result redis status=ok driver="redis-benchmark FCALL" \
        inflight="$REDIS_CONNECTIONS conns x pipeline $REDIS_PIPELINE" \
        tps="$tps" p50_ms="$p50" p99_ms="$p99" conservation="$conserved" \
        note="$requests requests, $changed accounts changed; latency is per pipeline of $REDIS_PIPELINE (redis-benchmark's measure)"
    log "redis: $tps tx/s, p50 $p50 ms, p99 $p99 ms; $changed accounts changed; money conserved: $conserved"
    [[ $conserved == yes* ]] || die "redis: money was not conserved"
    ((errors == 0)) || die "redis: $errors transfers returned an error"
    # Transfers that abort (-1) are not errors for redis-benchmark, so make
    # sure that money did move: a run of aborts would be fast and empty.
    ((changed * 10 >= (ACCOUNTS < requests ? ACCOUNTS : requests))) ||
        die "redis: only $changed of $ACCOUNTS balances changed after $requests transfers"
}

# --------------------------------------------------------------------------
# PostgreSQL: a plpgsql function, fsync and synchronous_commit on, driven by
# pgbench with prepared statements, PG_CLIENTS connections.

# PostgreSQL refuses to run as root: run the server tools as "postgres".
as_postgres() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

run_postgres() {
    local dir port psql before after conserved out tps lat p50 p99 count failed changed
    [[ -n $PG_BIN && -x $PG_BIN/postgres ]] ||
        die "postgres: no PostgreSQL server found (apt-get install -y postgresql-15, or set PG_BIN)"
    command -v pgbench >/dev/null || [[ -x $PG_BIN/pgbench ]] || die "postgres: pgbench is missing"
    local pgbench=$PG_BIN/pgbench
    [[ -x $pgbench ]] || pgbench=$(command -v pgbench)
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        log "postgres: creating the system user 'postgres'"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi

    dir=$WORK/pg
    mkdir -p "$dir/data" "$dir/sock" "$dir/txlog"
    [[ $EUID -ne 0 ]] || chown -R postgres: "$dir/data" "$dir/sock"
    chmod 700 "$dir/data"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        >"$dir/initdb.log" 2>&1 || die "postgres: initdb failed: $(tail -n 5 "$dir/initdb.log")"
    port=$("${REPORT[@]}" free-port)
    log "postgres: starting $("$PG_BIN/postgres" --version | sed 's/^.*(PostgreSQL) \([^ ]*\).*$/\1/') on 127.0.0.1:$port"
    # Durable commits (fsync, synchronous_commit and full_page_writes are the
    # defaults; they are spelled out so nobody wonders). The rest is ordinary
    # sizing: enough connections, a 256MB buffer pool that holds the table,
    # and no forced checkpoint in the middle of a short run.
    local opts="-c listen_addresses=127.0.0.1 -p $port -k $dir/sock"
    opts+=" -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    opts+=" -c shared_buffers=$PG_SHARED_BUFFERS -c max_connections=$((PG_CLIENTS + 20))"
    opts+=" -c max_wal_size=8GB -c checkpoint_timeout=30min"
    [[ -z $PG_EXTRA_OPTS ]] || opts+=" $PG_EXTRA_OPTS"
    touch "$dir/server.log"
    [[ $EUID -ne 0 ]] || chown postgres: "$dir/server.log"
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start \
        >"$dir/pg_ctl.log" 2>&1 || die "postgres: pg_ctl start failed: $(tail -n 5 "$dir/server.log")"
    head -n 1 "$dir/data/postmaster.pid" >"$WORK/postgres.pid"

    psql=(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1)
    log "postgres: opening $ACCOUNTS accounts"
    "${psql[@]}" -v accounts="$ACCOUNTS" -v balance="$BALANCE" -f "$HERE/transfer.sql" >"$dir/load.log"
    before=$("${psql[@]}" -At -c "SELECT sum(balance) || ' ' || count(*) FROM accounts")
    [[ $before == "$((ACCOUNTS * BALANCE)) $ACCOUNTS" ]] ||
        die "postgres: after loading, total and count are '$before'"
    [[ $("${psql[@]}" -At -c "SHOW fsync") == on &&
        $("${psql[@]}" -At -c "SHOW synchronous_commit") == on ]] ||
        die "postgres: fsync or synchronous_commit is not on"

    local bench=("$pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M prepared
        -f "$HERE/transfer.pgbench" -D accounts="$ACCOUNTS"
        -c "$PG_CLIENTS" -j "$PG_THREADS")
    log "postgres: warm-up ${WARMUP}s"
    "${bench[@]}" -T "$WARMUP" postgres >"$dir/warmup.out" 2>&1 ||
        die "postgres: pgbench warm-up failed: $(tail -n 5 "$dir/warmup.out")"
    log "postgres: pgbench -M prepared, $PG_CLIENTS connections, ${DURATION}s"
    out=$OUT_DIR/pgbench.out
    "${bench[@]}" -T "$DURATION" -l --log-prefix="$dir/txlog/tx" postgres >"$out" 2>&1 ||
        die "postgres: pgbench failed: $(tail -n 5 "$out")"
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    [[ -n $tps ]] || die "postgres: no tps line in $out"
    lat=$("${REPORT[@]}" pgbench-log "$dir/txlog/tx")
    read -r p50 p99 count failed <<<"$lat"

    after=$("${psql[@]}" -At -c "SELECT sum(balance) || ' ' || count(*) FROM accounts")
    changed=$("${psql[@]}" -At -c "SELECT count(*) FROM accounts WHERE balance <> $BALANCE")
    if [[ $after == "$before" ]]; then
        conserved="yes (${before% *} -> ${after% *})"
    else
        conserved="NO (sum count '$before' -> '$after')"
    fi
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >>"$dir/pg_ctl.log" 2>&1 ||
        log "postgres: pg_ctl stop failed"
    rm -f "$WORK/postgres.pid"
    cp "$dir/server.log" "$OUT_DIR/postgres-server.log"

    result postgres status=ok driver="pgbench -M prepared" \
        inflight="$PG_CLIENTS conns, no pipelining" \
        tps="$tps" p50_ms="$p50" p99_ms="$p99" conservation="$conserved" \
        note="$count transactions logged, $failed failed, $changed accounts changed"
    log "postgres: $tps tx/s, p50 $p50 ms, p99 $p99 ms; money conserved: $conserved"
    [[ $conserved == yes* ]] || die "postgres: money was not conserved"
    # An aborting transfer (-1) is a success for pgbench: make sure money moved.
    ((changed * 10 >= (ACCOUNTS < count ? ACCOUNTS : count))) ||
        die "postgres: only $changed of $ACCOUNTS balances changed after $count transfers"
}

# --------------------------------------------------------------------------

{
    echo "Transfer workload: $ACCOUNTS accounts, ${DURATION}s measured per system (after ${WARMUP}s warm-up), loopback."
    echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1),"\
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $fstype, kernel $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')."
} >"$OUT_DIR/machine.txt"
log "results go to $OUT_DIR"
cat "$OUT_DIR/machine.txt" >&2

failed_systems=()
for system in $SYSTEMS; do
    rm -f "$OUT_DIR/$system.json"
    # The machine may be shared: the load average is kept with each result.
    LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
    # A subshell per system, so one failing does not stop the others; set -e
    # is switched back on inside it (it is off inside `if`, `||` and `!`).
    set +e
    (
        set -e
        "run_${system//-/_}"
    )
    rc=$?
    set -e
    if ((rc != 0)); then
        failed_systems+=("$system")
        [[ -f $OUT_DIR/$system.json ]] || result "$system" status=failed note="failed (exit $rc); see the log above"
        # Whatever it left running must not disturb the next system.
        if [[ -f $WORK/pg/data/postmaster.pid ]]; then
            as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1 || true
        fi
        for pidname in ordo-serve redis postgres; do stop_pidfile "$pidname" 30; done
    fi
done

echo
# shellcheck disable=SC2086 # SYSTEMS is a word list
"${REPORT[@]}" table "$OUT_DIR" $SYSTEMS
echo
echo "Written to $OUT_DIR/results.md and $OUT_DIR/results.json"
if ((${#failed_systems[@]})); then
    log "failed: ${failed_systems[*]}"
    exit 1
fi
