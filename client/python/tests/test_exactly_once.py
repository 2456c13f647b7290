"""A request resent with the same ids runs once, against a real server."""

import asyncio
import secrets
import socket

from conftest import CuttingProxy, recv_exact
from ordo_client import AsyncClient, Client, wire


def _raw_connect(addr: str, client_id: int) -> socket.socket:
    sock = socket.create_connection(wire.split_addr(addr))
    sock.sendall(wire.frame(wire.encode_hello(client_id, None), wire.HANDSHAKE_FRAME_BYTES_MAX))
    header = recv_exact(sock, 4)
    welcome = wire.decode_welcome(recv_exact(sock, int.from_bytes(header, "little")))
    assert welcome.accepted and welcome.version == wire.PROTOCOL_VERSION
    return sock


def _raw_request(sock, request_id: int, body: bytes) -> wire.Response:
    sock.sendall(wire.frame(wire.encode_request(request_id, request_id, body), 1 << 20))
    header = recv_exact(sock, 4)
    return wire.decode_response(recv_exact(sock, int.from_bytes(header, "little")))


def test_the_same_request_id_on_a_new_connection_is_answered_not_rerun(server, unique_key):
    """The protocol itself, spoken by hand: a session, one call, and the
    same call again (same client id, same request id) on a second
    connection."""
    client_id = (wire.SESSION_CLIENT_ID_TAG << 64) | secrets.randbits(64)
    args = b'{"key": "%s", "by": 10}' % unique_key.encode()
    call = wire.body_call("incr", wire.ENCODING_JSON, args)
    with _raw_connect(server.addr, client_id) as first:
        registered = _raw_request(first, 1, wire.body_session(wire.SESSION_REGISTER))
        assert registered.kind == "Committed" and registered.result == b""
        original = _raw_request(first, 2, call)
    assert original.kind == "Committed" and original.result == b"10"
    with _raw_connect(server.addr, client_id) as second:
        retried = _raw_request(second, 2, call)
        assert retried.kind == "Committed"
        assert (retried.seq, retried.result) == (original.seq, original.result)
        # And the same id on the same connection again.
        again = _raw_request(second, 2, call)
        assert (again.seq, again.result) == (original.seq, original.result)
        fresh = _raw_request(second, 3, call)
        assert fresh.result == b"20" and fresh.seq > original.seq
    with Client(server.addr) as check:
        assert check.read("get", {"key": unique_key}) == 20


def test_sync_client_resends_after_a_lost_answer(server, unique_key):
    proxy = CuttingProxy(server.addr)
    try:
        with Client(proxy.addr) as client:
            result = client.call_with_position("incr", {"key": unique_key, "by": 1})
            # The server ran it on the first connection; the answer was
            # cut; the client reconnected and resent the same request id,
            # and got the original outcome back.
            assert result.value == 1
            assert proxy.connections == 2
            assert len(proxy.calls) == 2
            (conn1, id1), (conn2, id2) = proxy.calls
            assert (conn1, conn2) == (1, 2) and id1 == id2
            assert client.call("incr", {"key": unique_key, "by": 1}) == 2
        with Client(server.addr) as check:
            assert check.read("get", {"key": unique_key}) == 2
    finally:
        proxy.close()


def test_async_client_resends_after_a_lost_answer(server, unique_key):
    proxy = CuttingProxy(server.addr)

    async def run():
        async with AsyncClient(proxy.addr) as client:
            result = await client.call_with_position("incr", {"key": unique_key, "by": 5})
            assert result.value == 5
            assert await client.call("incr", {"key": unique_key, "by": 5}) == 10

    try:
        asyncio.run(run())
        assert proxy.connections == 2
        ids = [request_id for _, request_id in proxy.calls]
        assert ids[0] == ids[1] and len(ids) == 3
        with Client(server.addr) as check:
            assert check.read("get", {"key": unique_key}) == 10
    finally:
        proxy.close()


def test_async_pipelined_calls_resent_after_a_cut_run_once_each(server, unique_key):
    """Twenty calls in flight at once; the connection is cut after the
    fifth reached the server (some ran, their answers lost). Every one is
    resent with its own id and each runs exactly once."""
    proxy = CuttingProxy(server.addr, cut_at=5)

    async def run():
        async with AsyncClient(proxy.addr) as client:
            results = await asyncio.gather(
                *[client.call_with_position("incr", {"key": unique_key, "by": 1}) for _ in range(20)]
            )
            return sorted(r.value for r in results), len({r.seq for r in results})

    try:
        values, distinct_seqs = asyncio.run(run())
        assert values == list(range(1, 21)) and distinct_seqs == 20
        assert proxy.connections == 2
        first = [request_id for number, request_id in proxy.calls if number == 1]
        second = [request_id for number, request_id in proxy.calls if number == 2]
        assert len(first) == 5 and set(first) & set(second)
        with Client(server.addr) as check:
            assert check.read("get", {"key": unique_key}) == 20
    finally:
        proxy.close()
