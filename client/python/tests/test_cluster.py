"""A real 3-node cluster: the client finds the leader from a follower's
NotLeader, and fails over when the leader dies."""

import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import ADMIN, CLUSTER_SECRET, _clean_env, ordo_bin, wasm
from ordo_client import Client, OrdoError


def free_ports(count):
    held = [socket.socket() for _ in range(count)]
    for sock in held:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in held]
    for sock in held:
        sock.close()
    return ports


class Cluster:
    def __init__(self):
        self.root = tempfile.TemporaryDirectory(prefix="ordo-py-cluster-")
        ports = free_ports(6)
        self.client_addrs = [f"127.0.0.1:{ports[2 * i]}" for i in range(3)]
        raft = [f"127.0.0.1:{ports[2 * i + 1]}" for i in range(3)]
        cluster = ",".join(f"{i + 1}={raft[i]}/{self.client_addrs[i]}" for i in range(3))
        env = _clean_env()
        env["ORDO_CLUSTER_SECRET"] = CLUSTER_SECRET
        self.procs = []
        for i in range(3):
            proc = subprocess.Popen(
                [ordo_bin(), "serve", "--node-id", str(i + 1), "--cluster", cluster,
                 "--listen", self.client_addrs[i], "--admin-token", ADMIN, "--partitions", "1",
                 "--data", os.path.join(self.root.name, f"node{i + 1}")],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )
            for raw in proc.stdout:
                if raw.startswith(b"ordo serve: listening on "):
                    break
            else:
                raise RuntimeError(f"node {i + 1} exited at start")
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            self.procs.append(proc)

    def role(self, index):
        try:
            with Client(self.client_addrs[index], reconnect_attempts=0, connect_timeout=0.5,
                        request_timeout=1) as client:
                return client.status().role
        except OrdoError:
            return None

    def leader(self, among=(0, 1, 2), within=20.0):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for index in among:
                if self.role(index) == "leader":
                    return index
            time.sleep(0.1)
        raise AssertionError("no leader elected")

    def kill(self, index):
        self.procs[index].kill()
        self.procs[index].wait()

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.root.cleanup()


@pytest.fixture
def cluster():
    made = Cluster()
    yield made
    made.close()


def test_the_client_follows_the_leader_and_fails_over(cluster):
    leader = cluster.leader()
    followers = [i for i in range(3) if i != leader]
    # A follower first: its NotLeader names the leader's client address.
    servers = [cluster.client_addrs[i] for i in followers] + [cluster.client_addrs[leader]]
    with Client(servers, admin_token=ADMIN) as client:
        assert client.connected_addr == cluster.client_addrs[followers[0]]
        client.deploy("kv", wasm("kv"))
        assert client.connected_addr == cluster.client_addrs[leader]
        assert client.call("incr", {"key": "k", "by": 1}) == 1
        # Any member answers a stale read, and never with an older state.
        with Client(cluster.client_addrs[followers[0]]) as reader:
            reader.observe_position(client.observed_position)
            assert reader.read("get", {"key": "k"}) == 1

        cluster.kill(leader)
        started = time.monotonic()
        assert client.call("incr", {"key": "k", "by": 1}) == 2
        failover = time.monotonic() - started
        assert client.connected_addr in [cluster.client_addrs[i] for i in followers]
        assert failover < 15, failover
        assert client.read("get", {"key": "k"}, stale=False) == 2
