"""The synchronous client: one TCP (or TLS) connection, reused for every
request, one request at a time (thread-safe: concurrent callers take
turns), with reconnect-and-resend for exactly-once and leader following.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from typing import Any, Iterable, Optional, Union

from . import _core, wire
from ._core import Deployed, Result, Route, now
from .errors import (
    Behind,
    ConnectError,
    ConnectionLost,
    FrameTooLarge,
    HandshakeError,
    MalformedFrame,
    NoServerReachable,
    NotLeader,
    OrdoError,
    ProtocolViolation,
    SessionExpired,
    Timeout,
    TlsError,
)


class _Lost(Exception):
    """The connection ended (or stalled); the request is resent elsewhere."""


class _Conn:
    def __init__(self, sock: socket.socket, addr: str):
        self.sock = sock
        self.addr = addr
        self.answered = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    """Exactly `count` bytes (the caller checked `count` against its
    limit); raises EOFError if the peer closes first."""
    buf = bytearray(count)
    view = memoryview(buf)
    got = 0
    while got < count:
        n = sock.recv_into(view[got:], count - got)
        if n == 0:
            raise EOFError("the server closed the connection")
        got += n
    return bytes(buf)


def read_frame(sock: socket.socket, frame_bytes_max: int) -> bytes:
    """One frame's payload, its length checked before it is read."""
    header = _recv_exact(sock, wire.FRAME_HEADER_BYTES)
    length = wire.frame_payload_bytes(header, frame_bytes_max)
    return _recv_exact(sock, length)


def open_connection(
    addr: str,
    client_id: int,
    token: Optional[str],
    ssl_context: Optional[ssl.SSLContext],
    timeout: float,
) -> tuple:
    """Connects to `addr`, performs the handshake; (socket, welcome position)."""
    host, port = wire.split_addr(addr)
    deadline = now() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as err:
        raise ConnectError(addr, str(err) or type(err).__name__) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as err:
                raise TlsError(addr, f"TLS handshake failed: {err.verify_message or err}; check the CA file and that the certificate names {host}") from None
            except (ssl.SSLError, OSError) as err:
                raise TlsError(addr, f"TLS handshake failed: {err}; does the server serve TLS (`ordo serve --tls-cert`)?") from None
        try:
            hello = wire.frame(wire.encode_hello(client_id, token), wire.HANDSHAKE_FRAME_BYTES_MAX)
        except FrameTooLarge:
            raise HandshakeError(addr, "the hello is over 4 KiB (is the token too long?)") from None
        try:
            sock.settimeout(max(deadline - now(), 0.001))
            sock.sendall(hello)
            payload = read_frame(sock, wire.HANDSHAKE_FRAME_BYTES_MAX)
        except socket.timeout:
            raise HandshakeError(addr, f"no welcome within {timeout:g} s") from None
        except EOFError:
            raise HandshakeError(addr, "the server closed the connection before welcoming us") from None
        except (FrameTooLarge, MalformedFrame) as err:
            raise HandshakeError(addr, str(err)) from None
        except OSError as err:
            raise HandshakeError(addr, str(err)) from None
        position = _core.welcome_or_raise(addr, payload)
        return sock, position
    except BaseException:
        sock.close()
        raise


class Client:
    """A connection to an ordo server, or to a cluster's leader.

    ``servers`` is ``"host:port"``, a comma-separated list, or a list of
    addresses. The first that accepts the handshake is kept; calls and
    deploys that reach a follower are moved to the leader it names. After
    a lost connection every request is resent with the same client id and
    request id, so the server runs it at most once.
    """

    def __init__(
        self,
        servers: Union[str, Iterable[str]] = "127.0.0.1:7878",
        *,
        token: Optional[str] = None,
        admin_token: Optional[str] = None,
        tls: Union[None, bool, str, ssl.SSLContext] = None,
        connect_timeout: Optional[float] = None,
        request_timeout: float = _core.REQUEST_TIMEOUT_DEFAULT,
        reconnect_attempts: int = _core.RECONNECT_ATTEMPTS_DEFAULT,
        stall_timeout: Optional[float] = _core.STALL_TIMEOUT_DEFAULT,
        register_session: bool = True,
        frame_bytes_max: int = wire.FRAME_BYTES_MAX_DEFAULT,
    ):
        self.servers = _core.parse_servers(servers)
        self.token = token
        self.admin_token = admin_token
        self._ssl = _core.make_ssl_context(tls)
        if connect_timeout is None:
            connect_timeout = (
                _core.CLUSTER_CONNECT_TIMEOUT_DEFAULT if len(self.servers) > 1 else _core.CONNECT_TIMEOUT_DEFAULT
            )
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.reconnect_attempts = reconnect_attempts
        # A single server is never left for being slow.
        self._stall = (
            stall_timeout
            if stall_timeout and len(self.servers) > 1 and reconnect_attempts > 0
            else None
        )
        self.register_session = register_session
        self.frame_bytes_max = frame_bytes_max
        self.client_id = _core.fresh_client_id(register_session)
        self._lock = threading.RLock()
        self._next_request_id = 1
        self._observed = 0
        self._registered = False
        self._session_expired = False
        self._conn: Optional[_Conn] = None
        self._connect_first()

    # ------------------------------------------------------------ public

    @property
    def connected_addr(self) -> Optional[str]:
        """The server connected to now (None between connections)."""
        conn = self._conn
        return conn.addr if conn else None

    @property
    def observed_position(self) -> int:
        """The highest position seen in any answer; stale reads ask for at
        least this one, so they never go back in time."""
        return self._observed

    def observe_position(self, position: int) -> None:
        """Raises observed_position (never lowers it)."""
        self._observed = max(self._observed, position)

    def call(self, procedure: str, args: Any = None) -> Any:
        """Calls `procedure` with JSON arguments (a dict keyed by parameter
        name); returns its decoded JSON result."""
        return self.call_with_position(procedure, args).value

    def call_with_position(self, procedure: str, args: Any = None) -> Result:
        """Like call(), returning Result(value, seq)."""
        body = wire.body_call(procedure, wire.ENCODING_JSON, _core.encode_json_args(args))
        response = self._request(body, logged=True)
        return _core.call_result(procedure, response)

    def read(self, procedure: str, args: Any = None, *, stale: bool = True) -> Any:
        """Runs the read-only `procedure`; see read_with_position()."""
        return self.read_with_position(procedure, args, stale=stale).value

    def read_with_position(self, procedure: str, args: Any = None, *, stale: bool = True) -> Result:
        """Runs the read-only `procedure`. ``stale=True`` runs it on the
        connected node at its position, without a log entry, but never
        before observed_position (a node behind waits or is retried);
        ``stale=False`` goes through the log like a call. Returns
        Result(value, position)."""
        encoded = _core.encode_json_args(args)
        if not stale:
            return self.call_with_position(procedure, args)
        deadline = now() + self.request_timeout
        retries = 0
        while True:
            body = wire.body_read(procedure, wire.ENCODING_JSON, encoded, self._observed)
            response = self._request(body, logged=False, deadline=deadline)
            if response.kind == "Behind":
                retries += 1
                wait = _core.backoff(retries)
                if now() + wait >= deadline:
                    raise Behind(response.applied, response.wanted)
                self._leave_node()
                time.sleep(wait)
                continue
            return _core.call_result(procedure, response)

    def deploy(self, name: str, wasm: Union[bytes, str, os.PathLike], reset_tables: Iterable[str] = ()) -> Deployed:
        """Deploys (or upgrades) module `name` from its .wasm bytes (or a
        path), with the admin token."""
        if not isinstance(wasm, (bytes, bytearray)):
            with open(wasm, "rb") as f:
                wasm = f.read()
        body = wire.body_deploy(name, bytes(wasm), self.admin_token, list(reset_tables))
        return _core.deployed_result(name, self._request(body, logged=True))

    def status(self) -> wire.StatusInfo:
        response = self._request(wire.body_status(), logged=False)
        if response.kind == "Status":
            return response.status
        raise _core.other_error("status", "status", response)

    def procedures(self) -> list:
        response = self._request(wire.body_procedures(), logged=False)
        if response.kind == "Procedures":
            return response.procedures
        raise _core.other_error("procedures", "procedures", response)

    def end_session(self) -> None:
        """Ends this client's session (its kept answers are freed); later
        logged requests fail with SessionExpired."""
        with self._lock:
            if self._registered and not self._session_expired:
                _core.session_result(self._request(wire.body_session(wire.SESSION_END), logged=False))
            self._session_expired = True

    def close(self) -> None:
        with self._lock:
            if self._conn:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(servers={self.servers!r}, client_id={self.client_id:032x})"

    # ----------------------------------------------------------- connection

    def _connect_first(self) -> None:
        last: Optional[OrdoError] = None
        for index, addr in enumerate(self.servers):
            try:
                sock, position = open_connection(addr, self.client_id, self.token, self._ssl, self.connect_timeout)
            except OrdoError as err:
                last = err
                continue
            self._route = Route(self.servers, index)
            t = now()
            for skipped in self.servers[:index]:
                self._route.avoid(skipped, t)
            self._conn = _Conn(sock, addr)
            self.observe_position(position)
            return
        assert last is not None
        if len(self.servers) == 1:
            raise last
        raise NoServerReachable(self.servers, last)

    def _drop(self) -> bool:
        """Closes the live connection; returns whether it answered anything."""
        conn, self._conn = self._conn, None
        if conn is None:
            return False
        conn.close()
        return conn.answered

    def _leave_node(self) -> None:
        if len(self.servers) > 1 and self._conn is not None:
            self._drop()
            # Like a loss after useful work: the next server, at once
            # (the read paces its own retries).
            self._route.lost(True)

    def _reconnect(self, deadline: float, sent: bool) -> None:
        for _ in range(self.reconnect_attempts):
            addr, wait = self._route.next(now())
            left = deadline - now()
            if wait >= left:
                raise Timeout(self.request_timeout, sent)
            if wait:
                time.sleep(wait)
            try:
                timeout = min(self.connect_timeout, max(deadline - now(), 0.001))
                sock, position = open_connection(addr, self.client_id, self.token, self._ssl, timeout)
            except OrdoError:
                self._route.failed(addr, now())
                if now() >= deadline:
                    raise Timeout(self.request_timeout, sent) from None
                continue
            self._route.connected(addr)
            self.observe_position(position)
            self._conn = _Conn(sock, addr)
            return
        raise ConnectionLost(sent)

    # ------------------------------------------------------------- requests

    def _ensure_session(self) -> None:
        if self._session_expired:
            raise SessionExpired("an earlier request found it expired, or it was ended")
        if self.register_session and not self._registered:
            _core.session_result(self._request(wire.body_session(wire.SESSION_REGISTER), logged=False))
            self._registered = True

    def _request(self, body: bytes, *, logged: bool, deadline: Optional[float] = None) -> wire.Response:
        with self._lock:
            if logged:
                self._ensure_session()
            if deadline is None:
                deadline = now() + self.request_timeout
            request_id = self._next_request_id
            self._next_request_id += 1
            # One request at a time: every earlier one is answered (or
            # given up on), so this is the smallest still waiting.
            payload = wire.encode_request(request_id, request_id, body)
            frame = wire.frame(payload, self.frame_bytes_max)
            response = self._exchange(request_id, frame, deadline)
            if response.kind == "Aborted" and response.fields["kind"] == "session_expired":
                self._session_expired = True
            return response

    def _exchange(self, request_id: int, frame: bytes, deadline: float) -> wire.Response:
        sent = False
        while True:
            if self._conn is None:
                if self.reconnect_attempts == 0 and sent:
                    raise ConnectionLost(True)
                self._reconnect(deadline, sent)
            conn = self._conn
            try:
                self._send(conn, frame, deadline)
                sent = True
                response = self._receive(conn, request_id, deadline)
            except _Lost:
                # Part of it may have gone out: the server may have it.
                sent = True
                continue
            except ProtocolViolation:
                self._drop()
                raise
            if response.kind == "NotLeader":
                answered = self._drop()
                leader = response.leader if response.leader and response.leader.strip() else None
                if self.reconnect_attempts == 0:
                    raise NotLeader(leader)
                self._route.not_leader(answered, leader)
                continue
            conn.answered = True
            position = _core.answer_position(response)
            if position is not None:
                self.observe_position(position)
            return response

    def _send(self, conn: _Conn, frame: bytes, deadline: float) -> None:
        try:
            conn.sock.settimeout(max(deadline - now(), 0.001))
            conn.sock.sendall(frame)
        except socket.timeout:
            self._drop()
            raise Timeout(self.request_timeout, True) from None
        except OSError:
            self._route.lost(self._drop())
            raise _Lost() from None

    def _receive(self, conn: _Conn, request_id: int, deadline: float) -> wire.Response:
        while True:
            left = deadline - now()
            if left <= 0:
                self._drop()
                raise Timeout(self.request_timeout, True)
            stalled = self._stall is not None and self._stall < left
            conn.sock.settimeout(self._stall if stalled else left)
            try:
                payload = read_frame(conn.sock, self.frame_bytes_max)
            except socket.timeout:
                if stalled:
                    # Silent with a request waiting: a frozen or hung
                    # node. Leave it and avoid it for a while.
                    self._route.avoid(conn.addr, now())
                    self._route.lost(self._drop())
                    raise _Lost() from None
                self._drop()
                raise Timeout(self.request_timeout, True) from None
            except (EOFError, OSError):
                self._route.lost(self._drop())
                raise _Lost() from None
            response = wire.decode_response(payload)
            if response.request_id == request_id:
                return response
            # An answer to a request given up on earlier: nobody waits.
