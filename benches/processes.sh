# Sourced by benches/cluster.sh and benches/memory.sh: the servers a
# script starts (their pids in `pids`), stopped when it exits however it
# exits, and a free loopback port.

pids=()

# Kills every process in `pids` and waits for each.
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

# A TCP port on 127.0.0.1 that nothing listens on (the moment it is asked).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
