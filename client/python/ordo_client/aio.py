"""The asyncio client: one connection, pipelined. Any number of coroutines
may call at once; their requests share the connection, and one task owns
it: it reads every answer and hands it to its waiting caller by request
id, and when the connection is lost (or stalls, or a follower answers
`NotLeader`) it reconnects, to the next server or to the leader named, and
resends every waiting request with the same client id and request id.
"""

from __future__ import annotations

import asyncio
import os
import ssl
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


async def _read_frame(reader: asyncio.StreamReader, frame_bytes_max: int) -> bytes:
    header = await reader.readexactly(wire.FRAME_HEADER_BYTES)
    length = wire.frame_payload_bytes(header, frame_bytes_max)
    return await reader.readexactly(length)


async def open_connection(addr, client_id, token, ssl_context, timeout) -> tuple:
    """Connects and performs the handshake; (reader, writer, position)."""
    host, port = wire.split_addr(addr)

    async def connect():
        try:
            return await asyncio.open_connection(
                host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
            )
        except ssl.SSLCertVerificationError as err:
            raise TlsError(addr, f"TLS handshake failed: {err.verify_message or err}; check the CA file and that the certificate names {host}") from None
        except ssl.SSLError as err:
            raise TlsError(addr, f"TLS handshake failed: {err}; does the server serve TLS (`ordo serve --tls-cert`)?") from None
        except OSError as err:
            raise ConnectError(addr, str(err) or type(err).__name__) from None

    async def handshake(reader, writer):
        try:
            hello = wire.frame(wire.encode_hello(client_id, token), wire.HANDSHAKE_FRAME_BYTES_MAX)
        except FrameTooLarge:
            raise HandshakeError(addr, "the hello is over 4 KiB (is the token too long?)") from None
        try:
            writer.write(hello)
            await writer.drain()
            payload = await _read_frame(reader, wire.HANDSHAKE_FRAME_BYTES_MAX)
        except asyncio.IncompleteReadError:
            raise HandshakeError(addr, "the server closed the connection before welcoming us") from None
        except (FrameTooLarge, MalformedFrame) as err:
            raise HandshakeError(addr, str(err)) from None
        except OSError as err:
            raise HandshakeError(addr, str(err)) from None
        return _core.welcome_or_raise(addr, payload)

    deadline = now() + timeout
    try:
        reader, writer = await asyncio.wait_for(connect(), timeout)
    except asyncio.TimeoutError:
        raise ConnectError(addr, f"no connection within {timeout:g} s") from None
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        position = await asyncio.wait_for(handshake(reader, writer), max(deadline - now(), 0.001))
    except asyncio.TimeoutError:
        writer.close()
        raise HandshakeError(addr, f"no welcome within {timeout:g} s") from None
    except BaseException:
        writer.close()
        raise
    return reader, writer, position


class _Pending:
    __slots__ = ("frame", "future", "sent_at")

    def __init__(self, frame: bytes, future: asyncio.Future):
        self.frame = frame
        self.future = future
        self.sent_at: Optional[float] = None  # set once handed to a connection


class _Conn:
    def __init__(self, reader, writer, addr):
        self.reader = reader
        self.writer = writer
        self.addr = addr
        self.answered = False
        self.received_at = now()
        self.leave = False  # asked to move to the next server (Behind)

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


class AsyncClient:
    """The asyncio twin of :class:`ordo_client.Client`, with the same
    arguments; create it with ``await AsyncClient.connect(...)`` or
    ``async with AsyncClient(...) as client``."""

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
        self._stall = (
            stall_timeout
            if stall_timeout and len(self.servers) > 1 and reconnect_attempts > 0
            else None
        )
        self.register_session = register_session
        self.frame_bytes_max = frame_bytes_max
        self.client_id = _core.fresh_client_id(register_session)
        self._next_request_id = 1
        self._in_flight: dict = {}
        self._observed = 0
        self._registered = False
        self._session_expired = False
        self._session_lock: Optional[asyncio.Lock] = None
        self._conn: Optional[_Conn] = None
        self._route: Optional[Route] = None
        self._wanted: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._closed = False

    @classmethod
    async def connect(cls, servers="127.0.0.1:7878", **options) -> "AsyncClient":
        client = cls(servers, **options)
        await client.open()
        return client

    async def open(self) -> None:
        """Opens the first connection (each server once, in order)."""
        if self._task is not None:
            return
        last: Optional[OrdoError] = None
        for index, addr in enumerate(self.servers):
            try:
                reader, writer, position = await open_connection(
                    addr, self.client_id, self.token, self._ssl, self.connect_timeout
                )
            except OrdoError as err:
                last = err
                continue
            self._route = Route(self.servers, index)
            t = now()
            for skipped in self.servers[:index]:
                self._route.avoid(skipped, t)
            self._conn = _Conn(reader, writer, addr)
            self.observe_position(position)
            self._session_lock = asyncio.Lock()
            self._wanted = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
            return
        assert last is not None
        if len(self.servers) == 1:
            raise last
        raise NoServerReachable(self.servers, last)

    async def __aenter__(self) -> "AsyncClient":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._fail_all(lambda sent: ConnectionLost(sent, "the client was closed"))

    # ------------------------------------------------------------ public

    @property
    def connected_addr(self) -> Optional[str]:
        return self._conn.addr if self._conn else None

    @property
    def observed_position(self) -> int:
        return self._observed

    def observe_position(self, position: int) -> None:
        self._observed = max(self._observed, position)

    async def call(self, procedure: str, args: Any = None) -> Any:
        return (await self.call_with_position(procedure, args)).value

    async def call_with_position(self, procedure: str, args: Any = None) -> Result:
        body = wire.body_call(procedure, wire.ENCODING_JSON, _core.encode_json_args(args))
        response = await self._request(body, logged=True)
        return _core.call_result(procedure, response)

    async def read(self, procedure: str, args: Any = None, *, stale: bool = True) -> Any:
        return (await self.read_with_position(procedure, args, stale=stale)).value

    async def read_with_position(self, procedure: str, args: Any = None, *, stale: bool = True) -> Result:
        if not stale:
            return await self.call_with_position(procedure, args)
        encoded = _core.encode_json_args(args)
        deadline = now() + self.request_timeout
        retries = 0
        while True:
            body = wire.body_read(procedure, wire.ENCODING_JSON, encoded, self._observed)
            response = await self._request(body, logged=False, deadline=deadline)
            if response.kind == "Behind":
                retries += 1
                wait = _core.backoff(retries)
                if now() + wait >= deadline:
                    raise Behind(response.applied, response.wanted)
                self._leave_node()
                await asyncio.sleep(wait)
                continue
            return _core.call_result(procedure, response)

    async def deploy(self, name: str, wasm: Union[bytes, str, os.PathLike], reset_tables: Iterable[str] = ()) -> Deployed:
        if not isinstance(wasm, (bytes, bytearray)):
            with open(wasm, "rb") as f:
                wasm = f.read()
        body = wire.body_deploy(name, bytes(wasm), self.admin_token, list(reset_tables))
        return _core.deployed_result(name, await self._request(body, logged=True))

    async def status(self) -> wire.StatusInfo:
        response = await self._request(wire.body_status(), logged=False)
        if response.kind == "Status":
            return response.status
        raise _core.other_error("status", "status", response)

    async def procedures(self) -> list:
        response = await self._request(wire.body_procedures(), logged=False)
        if response.kind == "Procedures":
            return response.procedures
        raise _core.other_error("procedures", "procedures", response)

    async def end_session(self) -> None:
        if self._registered and not self._session_expired:
            _core.session_result(await self._request(wire.body_session(wire.SESSION_END), logged=False))
        self._session_expired = True

    # ------------------------------------------------------------ requests

    async def _ensure_session(self) -> None:
        if self._session_expired:
            raise SessionExpired("an earlier request found it expired, or it was ended")
        if not self.register_session or self._registered:
            return
        async with self._session_lock:
            if not self._registered:
                _core.session_result(await self._request(wire.body_session(wire.SESSION_REGISTER), logged=False))
                self._registered = True

    async def _request(self, body: bytes, *, logged: bool, deadline: Optional[float] = None) -> wire.Response:
        if self._task is None or self._closed:
            raise ConnectionLost(False, "the client is not open (call open() or use `async with`)")
        if logged:
            await self._ensure_session()
        if deadline is None:
            deadline = now() + self.request_timeout
        request_id = self._next_request_id
        self._next_request_id += 1
        acked_below = min(self._in_flight, default=request_id)
        frame = wire.frame(wire.encode_request(request_id, acked_below, body), self.frame_bytes_max)
        pending = _Pending(frame, asyncio.get_running_loop().create_future())
        self._in_flight[request_id] = pending
        try:
            if self._conn is not None:
                self._write(self._conn, pending)
            else:
                self._wanted.set()
            try:
                response = await asyncio.wait_for(
                    asyncio.shield(pending.future), max(deadline - now(), 0.001)
                )
            except asyncio.TimeoutError:
                raise Timeout(self.request_timeout, pending.sent_at is not None) from None
        finally:
            self._in_flight.pop(request_id, None)
        if response.kind == "Aborted" and response.fields["kind"] == "session_expired":
            self._session_expired = True
        return response

    def _write(self, conn: _Conn, pending: _Pending) -> None:
        try:
            conn.writer.write(pending.frame)
        except Exception:
            # The connection is going; the owner task resends on the next.
            return
        pending.sent_at = now()

    def _leave_node(self) -> None:
        if len(self.servers) > 1 and self._conn is not None:
            self._conn.leave = True
            self._conn.close()

    def _fail_all(self, error) -> None:
        for pending in list(self._in_flight.values()):
            if not pending.future.done():
                pending.future.set_exception(error(pending.sent_at is not None))
        self._in_flight.clear()

    # ------------------------------------------------- the connection's owner

    async def _run(self) -> None:
        try:
            await self._own_connection()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # a bug here must not leave callers waiting
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            detail = f"the connection task failed: {err!r}"
            self._fail_all(lambda sent: ConnectionLost(sent, detail))
            raise

    async def _own_connection(self) -> None:
        while not self._closed:
            conn = self._conn
            if conn is None:
                if not self._in_flight:
                    self._wanted.clear()
                    await self._wanted.wait()
                    continue
                await self._reconnect()
                continue
            outcome, detail = await self._read_answers(conn)
            self._conn = None
            conn.close()
            if outcome == "protocol":
                self._route.lost(conn.answered)
                self._fail_all(lambda sent: detail)
            elif outcome == "not_leader":
                if self.reconnect_attempts == 0:
                    self._fail_all(lambda sent: NotLeader(detail))
                else:
                    self._route.not_leader(conn.answered, detail)
            else:  # lost, stalled or left
                if outcome == "stalled":
                    self._route.avoid(conn.addr, now())
                self._route.lost(conn.answered or conn.leave)
                if self.reconnect_attempts == 0:
                    self._fail_all(lambda sent: ConnectionLost(sent))

    def _stall_wait(self, conn: _Conn) -> Optional[float]:
        if self._stall is None:
            return None
        sent = [p.sent_at for p in self._in_flight.values() if p.sent_at is not None]
        if not sent:
            return self._stall
        return max(min(sent), conn.received_at) + self._stall - now()

    async def _read_answers(self, conn: _Conn) -> tuple:
        """Hands out answers until the connection ends; returns why it did:
        ("lost" | "stalled" | "protocol" | "not_leader", detail)."""
        read = None
        try:
            while True:
                if read is None:
                    read = asyncio.ensure_future(_read_frame(conn.reader, self.frame_bytes_max))
                wait = self._stall_wait(conn)
                if wait is not None and wait <= 0:
                    return "stalled", None
                # The read is never cancelled while the connection lives
                # (a cut frame would desynchronise it): only waited on.
                done, _ = await asyncio.wait({read}, timeout=wait)
                if not done:
                    continue  # look at the stall clock again
                task, read = read, None
                try:
                    payload = task.result()
                    conn.received_at = now()
                    response = wire.decode_response(payload)
                except (asyncio.IncompleteReadError, OSError):
                    return "lost", None
                except ProtocolViolation as err:
                    return "protocol", err
                if response.kind == "NotLeader":
                    leader = response.leader if response.leader and response.leader.strip() else None
                    return "not_leader", leader
                conn.answered = True
                position = _core.answer_position(response)
                if position is not None:
                    self.observe_position(position)
                pending = self._in_flight.pop(response.request_id, None)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(response)
        finally:
            if read is not None:
                read.cancel()

    async def _reconnect(self) -> None:
        for _ in range(max(self.reconnect_attempts, 0)):
            if not self._in_flight:
                return
            addr, wait = self._route.next(now())
            if wait:
                await asyncio.sleep(wait)
            try:
                reader, writer, position = await open_connection(
                    addr, self.client_id, self.token, self._ssl, self.connect_timeout
                )
            except OrdoError:
                self._route.failed(addr, now())
                continue
            self._route.connected(addr)
            self.observe_position(position)
            conn = _Conn(reader, writer, addr)
            self._conn = conn
            for request_id in sorted(self._in_flight):
                self._write(conn, self._in_flight[request_id])
            return
        self._fail_all(lambda sent: ConnectionLost(sent))
