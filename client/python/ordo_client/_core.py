"""What the sync and the asyncio client share: configuration, where to
connect next, and how an answer becomes a value or an exception."""

from __future__ import annotations

import json
import os
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

from . import wire
from .errors import (
    DecodeError,
    HandshakeError,
    MalformedFrame,
    SignatureMismatch,
    UnexpectedResponse,
    Unauthorized,
    ConnectionRefusedByServer,
    abort_error,
    refusal_error,
)

CONNECT_TIMEOUT_DEFAULT = 5.0
CLUSTER_CONNECT_TIMEOUT_DEFAULT = 1.0
REQUEST_TIMEOUT_DEFAULT = 30.0
RECONNECT_ATTEMPTS_DEFAULT = 20
STALL_TIMEOUT_DEFAULT = 1.0
#: How long an address that stalled or failed a connection attempt is
#: avoided (not dialled again, nor followed when a follower names it).
AVOID_AFTER_FAILURE = 2.0
AVOIDED_ADDRS_MAX = 16
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 0.5
ELECTION_POLL_MAX = 0.1


@dataclass(frozen=True)
class Result:
    """A procedure's decoded result and the sequence number it committed at
    (for a stale read: the position the node read at; `position` is the
    same number)."""

    value: Any
    seq: int
    #: Fuel the procedure's call used (0 for a stale read, which does not
    #: report it).
    fuel_used: int = 0

    @property
    def position(self) -> int:
        return self.seq


@dataclass(frozen=True)
class Deployed:
    seq: int
    name: str
    sha256: str
    procedures: list


def parse_servers(servers: Union[str, Iterable[str]]) -> list:
    """`"A,B,C"` or a list of `host:port`; spaces and empty items ignored."""
    if isinstance(servers, str):
        items = servers.split(",")
    else:
        items = [item for entry in servers for item in str(entry).split(",")]
    out = [item.strip() for item in items if item.strip()]
    if not out:
        raise ValueError(f"no server address in {servers!r}; give host:port, or a list of them")
    for addr in out:
        wire.split_addr(addr)
    return out


def fresh_client_id(register_session: bool) -> int:
    low = secrets.randbits(64)
    if register_session:
        return (wire.SESSION_CLIENT_ID_TAG << 64) | low
    return secrets.randbits(128)


def make_ssl_context(tls: Union[None, bool, str, ssl.SSLContext]) -> Optional[ssl.SSLContext]:
    """`tls` as given to a client: None/False for plain TCP, a CA file path,
    True for the system's CAs, or a ready SSLContext."""
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return ssl.create_default_context()
    if isinstance(tls, (str, os.PathLike)):
        return ssl.create_default_context(cafile=os.fspath(tls))
    raise TypeError("tls must be None, True, a CA file path or an ssl.SSLContext")


def backoff(streak: int) -> float:
    if streak <= 0:
        return 0.0
    return min(BACKOFF_FIRST * (1 << min(streak - 1, 16)), BACKOFF_MAX)


class Route:
    """Where the next connection attempt goes and how long to wait first:
    the leader a follower named (unless avoided), else the next server in
    the list that is not avoided; waits grow with failures in a row (none,
    then 50 ms doubling to 500 ms; 100 ms at most during an election)."""

    def __init__(self, servers: list, cursor: int = -1):
        self.servers = servers
        self.cursor = cursor % len(servers) if cursor >= 0 else len(servers) - 1
        self.leader: Optional[str] = None
        self.streak = 0
        self.redirects = 0
        self.avoided: list = []  # [(addr, until)]
        self.electing = False

    def settle(self, answered: bool) -> None:
        if answered:
            self.streak = 0
            self.redirects = 0

    def lost(self, answered: bool) -> None:
        self.settle(answered)
        self.electing = False
        if not answered:
            self.streak += 1

    def not_leader(self, answered: bool, leader: Optional[str]) -> None:
        self.settle(answered)
        self.streak += 1
        if leader:
            self.redirects += 1
        self.electing = not leader
        self.leader = leader or None

    def failed(self, addr: str, now: float) -> None:
        self.streak += 1
        self.avoid(addr, now)

    def connected(self, addr: str) -> None:
        self.avoided = [(a, u) for a, u in self.avoided if a != addr]
        if addr in self.servers:
            self.cursor = self.servers.index(addr)

    def avoid(self, addr: str, now: float) -> None:
        self.avoided = [(a, u) for a, u in self.avoided if a != addr]
        if len(self.avoided) >= AVOIDED_ADDRS_MAX:
            self.avoided.pop(0)
        self.avoided.append((addr, now + AVOID_AFTER_FAILURE))

    def is_avoided(self, addr: str, now: float) -> bool:
        return any(a == addr and until > now for a, until in self.avoided)

    def next(self, now: float) -> tuple:
        self.avoided = [(a, u) for a, u in self.avoided if u > now]
        leader, self.leader = self.leader, None
        if leader is not None:
            if not self.is_avoided(leader, now):
                if leader in self.servers:
                    self.cursor = self.servers.index(leader)
                wait = 0.0 if self.redirects <= 1 else backoff(self.streak)
                return leader, wait
            # The follower still names the server that just failed: ask
            # the others until they elect another.
            self.electing = True
            self.redirects = max(0, self.redirects - 1)
        count = len(self.servers)
        usable = None
        for step in range(1, count + 1):
            index = (self.cursor + step) % count
            if not self.is_avoided(self.servers[index], now):
                usable = index
                break
        self.cursor = usable if usable is not None else (self.cursor + 1) % count
        wait = backoff(self.streak)
        if self.electing:
            wait = min(wait, ELECTION_POLL_MAX)
        return self.servers[self.cursor], wait


def now() -> float:
    return time.monotonic()


def encode_json_args(args: Any) -> bytes:
    """Arguments as the JSON text the server checks against the
    procedure's parameters: an object keyed by parameter name (None is
    `{}`), or a string that already holds JSON text, or bytes of it."""
    if args is None:
        args = {}
    if isinstance(args, (bytes, bytearray)):
        return bytes(args)
    if isinstance(args, str):
        return args.encode("utf-8")
    return json.dumps(args, separators=(",", ":")).encode("utf-8")


def decode_json_result(procedure: str, seq: int, result: bytes) -> Any:
    if not result:
        return None
    try:
        return json.loads(result.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DecodeError(procedure, seq, str(err)) from None


def welcome_or_raise(addr: str, payload: bytes) -> int:
    """The position a welcome carries; raises for a refusal or garbage."""
    try:
        welcome = wire.decode_welcome(payload)
    except MalformedFrame as err:
        raise HandshakeError(addr, f"the welcome does not decode: {err.detail}") from None
    if welcome.accepted:
        if welcome.version != wire.PROTOCOL_VERSION:
            raise HandshakeError(
                addr,
                f"the server welcomed us with protocol version {welcome.version}, this client speaks {wire.PROTOCOL_VERSION}",
            )
        return welcome.position
    if welcome.reason == "Unauthorized":
        raise Unauthorized(welcome.message)
    raise ConnectionRefusedByServer(welcome.reason, welcome.message)


def answer_position(response: wire.Response) -> Optional[int]:
    if response.kind in ("Committed", "Aborted", "Deployed"):
        return response.seq
    if response.kind == "ReadDone":
        return response.position
    if response.kind == "Status":
        return response.status.position
    return None


def call_result(procedure: str, response: wire.Response) -> Result:
    kind = response.kind
    if kind == "Committed":
        return Result(
            decode_json_result(procedure, response.seq, response.result),
            response.seq,
            response.fuel_used,
        )
    if kind == "ReadDone":
        return Result(decode_json_result(procedure, response.position, response.result), response.position)
    raise other_error(procedure, "call", response)


def other_error(procedure: str, expected: str, response: wire.Response) -> Exception:
    kind = response.kind
    if kind == "Aborted":
        # `response.kind` is the variant; the abort's own kind is a field.
        f = response.fields
        return abort_error(procedure, f["seq"], f["kind"], f["message"])
    if kind == "Refused":
        return refusal_error(response.reason, response.message)
    if kind == "SignatureMismatch":
        return SignatureMismatch(procedure, response.message)
    return UnexpectedResponse(expected, kind)


def deployed_result(name: str, response: wire.Response) -> Deployed:
    if response.kind == "Deployed":
        return Deployed(response.seq, response.name, response.sha256, list(response.procedures))
    raise other_error(name, "deploy", response)


def session_result(response: wire.Response) -> None:
    if response.kind == "Committed":
        return None
    raise other_error("session", "session", response)

