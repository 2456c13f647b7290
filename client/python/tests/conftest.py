"""Shared by the Python client's tests: real `ordo serve` processes on
loopback (ephemeral ports), and small fake servers for hostile bytes.

The binary is `ORDO_BIN` (default: the repository's target/debug/ordo);
the example modules come from `ORDO_WASM_DIR` (default: where the
repository's build puts them, target/wasm-procedures/.../release).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
try:
    import ordo_client  # noqa: F401  (installed: `pip install ./client/python`)
except ImportError:
    sys.path.insert(0, str(HERE.parent))  # straight from the source tree

from ordo_client import Client, wire  # noqa: E402

ADMIN = "admin-secret"
CLUSTER_SECRET = "python-test-cluster-secret-0123456789"


def ordo_bin() -> str:
    path = Path(os.environ.get("ORDO_BIN", REPO / "target" / "debug" / "ordo"))
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.exists():
        pytest.fail(f"no ordo binary at {path}; build it (cargo build --bin ordo) or set ORDO_BIN")
    return str(path)


def wasm(name: str) -> bytes:
    default = REPO / "target" / "wasm-procedures" / "wasm32-unknown-unknown" / "release"
    path = Path(os.environ.get("ORDO_WASM_DIR", default)) / f"ordo_example_{name}.wasm"
    if not path.exists():
        pytest.fail(f"no {path.name} in {path.parent}; build the workspace once or set ORDO_WASM_DIR")
    return path.read_bytes()


def _clean_env() -> dict:
    env = dict(os.environ)
    for key in ("ORDO_CLIENT_TOKEN", "ORDO_ADMIN_TOKEN", "ORDO_SERVER", "ORDO_CLUSTER_SECRET"):
        env.pop(key, None)
    return env


class Server:
    """A running `ordo serve` on 127.0.0.1:0; its address read from the
    line it prints."""

    def __init__(self, *extra: str):
        self.dir = tempfile.TemporaryDirectory(prefix="ordo-py-")
        self.proc = subprocess.Popen(
            [ordo_bin(), "serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN,
             "--data", self.dir.name, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_clean_env(),
        )
        self.addr = None
        for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line.startswith("ordo serve: listening on "):
                self.addr = line.removeprefix("ordo serve: listening on ")
                break
        if self.addr is None:
            self.proc.kill()
            raise RuntimeError("ordo serve exited before printing its address")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.dir.cleanup()


def dead_addr() -> str:
    """An address nothing listens on (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % sock.getsockname()[1]
    sock.close()
    return addr


@pytest.fixture(scope="session")
def server():
    """One server for the whole run, with the kv and bank examples."""
    srv = Server()
    with Client(srv.addr, admin_token=ADMIN) as client:
        client.deploy("kv", wasm("kv"))
        client.deploy("bank", wasm("bank"))
    yield srv
    srv.close()


@pytest.fixture
def unique_key(request):
    """A kv key no other test uses."""
    return f"{request.node.name}-{time.monotonic_ns()}"


# ------------------------------------------------------------ fake servers


class FakeServer:
    """Accepts connections; for each, reads the hello and then runs
    `script(conn, hello_payload)`, which writes whatever bytes it likes."""

    def __init__(self, script):
        self.script = script
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.connections = 0
        self.errors = []
        self._conns = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            header = recv_exact(conn, 4)
            hello = recv_exact(conn, int.from_bytes(header, "little"))
            assert hello[:4] == wire.MAGIC
            self.script(conn, hello)
        except Exception as err:  # noqa: BLE001 - reported through .errors
            self.errors.append(err)

    def close(self):
        self._stop = True
        self.listener.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass


def recv_exact(conn, count: int) -> bytes:
    out = b""
    while len(out) < count:
        chunk = conn.recv(count - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def welcome_accepted(position: int = 0) -> bytes:
    payload = wire.enc_u32(0) + wire.enc_u32(wire.PROTOCOL_VERSION) + wire.enc_u64(position) + b"\x00"
    return wire.frame(payload, wire.HANDSHAKE_FRAME_BYTES_MAX)


def read_request(conn) -> tuple:
    """(request_id, body variant, payload) of the next request frame."""
    header = recv_exact(conn, 4)
    payload = recv_exact(conn, int.from_bytes(header, "little"))
    request_id, _, variant = wire.decode_request(payload)
    return request_id, variant, payload


@pytest.fixture
def fake_server():
    made = []

    def make(script):
        fake = FakeServer(script)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


# ------------------------------------------------------------------ proxy


class CuttingProxy:
    """Forwards a client's connection to `upstream`, frame by frame, and
    on the first connection cuts both sides right after forwarding the
    `cut_at`-th call (body variant 0), before its answer (and any later
    one) can come back: the client must resend what is unanswered, with
    the same ids, on a new connection."""

    def __init__(self, upstream: str, cut_at: int = 1):
        self.upstream = wire.split_addr(upstream)
        self.cut_at = cut_at
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.calls = []  # (connection number, request id) of every call forwarded
        self.connections = 0
        self.cut = False
        self._socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            self._socks += [client, upstream]
            hold = threading.Event()  # set: answers are no longer passed on
            number = self.connections
            threading.Thread(target=self._up, args=(client, upstream, number, hold), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, hold), daemon=True).start()

    def _up(self, client, upstream, number, hold):
        try:
            # The hello, as it is.
            header = recv_exact(client, 4)
            upstream.sendall(header + recv_exact(client, int.from_bytes(header, "little")))
            while True:
                header = recv_exact(client, 4)
                payload = recv_exact(client, int.from_bytes(header, "little"))
                request_id, _, variant = wire.decode_request(payload)
                cutting = (
                    variant == wire.REQ_CALL
                    and not self.cut
                    and len(self.calls) + 1 >= self.cut_at
                )
                if cutting:
                    self.cut = True
                    hold.set()
                upstream.sendall(header + payload)
                if variant == wire.REQ_CALL:
                    self.calls.append((number, request_id))
                if cutting:
                    # Let the server run it, then lose its answer.
                    time.sleep(0.3)
                    for sock in (client, upstream):
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        sock.close()
                    return
        except (EOFError, OSError):
            pass

    def _down(self, upstream, client, hold):
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk or hold.is_set():
                    return
                client.sendall(chunk)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for sock in self._socks:
            try:
                sock.close()
            except OSError:
                pass
