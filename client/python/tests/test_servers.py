"""Server lists, leader following, stalls, and hostile servers."""

import asyncio
import time
import tracemalloc

import pytest

from conftest import dead_addr, read_request, welcome_accepted
from ordo_client import (
    AsyncClient,
    Client,
    ConnectError,
    FrameTooLarge,
    HandshakeError,
    MalformedFrame,
    NoServerReachable,
    NotLeader,
    ProtocolViolation,
    wire,
)


def response_frame(request_id: int, body: bytes) -> bytes:
    return wire.frame(wire.enc_u64(request_id) + body, 1 << 20)


def not_leader_body(leader):
    return wire.enc_u32(6) + wire.enc_opt_str(leader)


# ------------------------------------------------------------ server lists


def test_a_dead_first_server_is_skipped(server, unique_key):
    dead = dead_addr()
    with Client(f"{dead}, {server.addr}") as client:
        assert client.connected_addr == server.addr
        assert client.call("incr", {"key": unique_key, "by": 1}) == 1
    with Client([dead, server.addr]) as client:
        assert client.call("incr", {"key": unique_key, "by": 1}) == 2


def test_async_dead_first_server_is_skipped(server, unique_key):
    async def run():
        async with AsyncClient([dead_addr(), server.addr]) as client:
            assert client.connected_addr == server.addr
            return await client.call("incr", {"key": unique_key, "by": 3})

    assert asyncio.run(run()) == 3


def test_no_server_reachable():
    with pytest.raises(ConnectError) as one:
        Client(dead_addr())
    assert one.value.retryable and type(one.value) is ConnectError
    with pytest.raises(NoServerReachable) as many:
        Client([dead_addr(), dead_addr()])
    assert len(many.value.tried) == 2 and many.value.retryable
    with pytest.raises(ValueError):
        Client(" , ")


def test_lost_connection_moves_to_the_next_server(server, fake_server, unique_key):
    """A server that welcomes and then hangs up on every request: the
    client moves to the next in the list and resends there."""

    def hang_up(conn, hello):
        conn.sendall(welcome_accepted())
        read_request(conn)
        conn.close()

    fake = fake_server(hang_up)
    with Client([fake.addr, server.addr]) as client:
        assert client.connected_addr == fake.addr
        assert client.call("incr", {"key": unique_key, "by": 1}) == 1
        assert client.connected_addr == server.addr


@pytest.fixture
def follower(fake_server):
    """A fake follower that answers every request NotLeader, naming
    `follower.leader`."""
    state = {"leader": None, "asked": 0}

    def script(conn, hello):
        conn.sendall(welcome_accepted())
        while True:
            request_id, _, _ = read_request(conn)
            state["asked"] += 1
            conn.sendall(response_frame(request_id, not_leader_body(state["leader"])))

    fake = fake_server(script)
    fake.state = state
    return fake


def test_not_leader_is_followed_to_the_named_leader(server, follower, unique_key):
    follower.state["leader"] = server.addr
    with Client(follower.addr) as client:
        assert client.connected_addr == follower.addr
        # The session registration and the call both reach the leader.
        assert client.call("incr", {"key": unique_key, "by": 2}) == 2
        assert client.connected_addr == server.addr
        assert follower.state["asked"] == 1


def test_async_not_leader_is_followed(server, follower, unique_key):
    follower.state["leader"] = server.addr

    async def run():
        async with AsyncClient(follower.addr) as client:
            values = await asyncio.gather(
                *[client.call("incr", {"key": unique_key, "by": 1}) for _ in range(10)]
            )
            assert client.connected_addr == server.addr
            return sorted(values)

    assert asyncio.run(run()) == list(range(1, 11))


def test_not_leader_without_reconnects_raises(follower):
    follower.state["leader"] = "10.9.9.9:7878"
    with Client(follower.addr, reconnect_attempts=0) as client:
        with pytest.raises(NotLeader) as caught:
            client.call("incr", {"key": "k", "by": 1})
        assert caught.value.leader == "10.9.9.9:7878" and caught.value.retryable


def test_no_leader_named_tries_the_next_server(server, follower, unique_key):
    # An election: the follower names nobody; the client asks the next.
    with Client([follower.addr, server.addr]) as client:
        assert client.call("incr", {"key": unique_key, "by": 1}) == 1
        assert client.connected_addr == server.addr


def test_a_silent_server_is_left_after_the_stall_timeout(server, fake_server, unique_key):
    """Welcomes, then never answers (a frozen leader): with a list, the
    client leaves it after stall_timeout and avoids it."""

    def frozen(conn, hello):
        conn.sendall(welcome_accepted())
        time.sleep(10)

    fake = fake_server(frozen)
    with Client([fake.addr, server.addr], stall_timeout=0.3) as client:
        started = time.monotonic()
        assert client.call("incr", {"key": unique_key, "by": 1}) == 1
        assert time.monotonic() - started < 3
        assert client.connected_addr == server.addr
        assert client._route.is_avoided(fake.addr, time.monotonic())


def test_async_silent_server_is_left(server, fake_server, unique_key):
    def frozen(conn, hello):
        conn.sendall(welcome_accepted())
        time.sleep(10)

    fake = fake_server(frozen)

    async def run():
        async with AsyncClient([fake.addr, server.addr], stall_timeout=0.3) as client:
            value = await asyncio.wait_for(client.call("incr", {"key": unique_key, "by": 1}), 5)
            return value, client.connected_addr

    assert asyncio.run(run()) == (1, server.addr)


# --------------------------------------------------------- hostile servers


def _serve_after_welcome(fake_server, payload_bytes: bytes):
    def script(conn, hello):
        conn.sendall(welcome_accepted())
        read_request(conn)
        conn.sendall(payload_bytes)
        time.sleep(2)

    return fake_server(script)


def test_an_oversized_frame_is_refused_without_allocating(fake_server):
    # Claims 4 GiB - 1, sends 3 bytes.
    fake = _serve_after_welcome(fake_server, b"\xff\xff\xff\xff" + b"abc")
    with Client(fake.addr, reconnect_attempts=0) as client:
        tracemalloc.start()
        try:
            with pytest.raises(FrameTooLarge) as caught:
                client.status()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert caught.value.size == 2**32 - 1
        assert caught.value.limit == wire.FRAME_BYTES_MAX_DEFAULT
        assert caught.value.outcome_unknown
        assert peak < 1 << 20, f"allocated {peak} bytes"
        assert client.connected_addr is None  # the connection was closed


def test_a_frame_over_a_lowered_limit(fake_server):
    fake = _serve_after_welcome(fake_server, (2000).to_bytes(4, "little") + b"\x00" * 2000)
    with Client(fake.addr, frame_bytes_max=1024, reconnect_attempts=0) as client:
        with pytest.raises(FrameTooLarge, match="2000 bytes"):
            client.status()


def test_async_oversized_frame(fake_server):
    fake = _serve_after_welcome(fake_server, b"\x00\x00\x00\x7f")

    async def run():
        async with AsyncClient(fake.addr, reconnect_attempts=0) as client:
            with pytest.raises(FrameTooLarge):
                await client.status()

    asyncio.run(run())


@pytest.mark.parametrize(
    "payload, needle",
    [
        # request id 1, response variant 99
        (b"\x01\x63", "unknown response variant"),
        # Committed, seq 5, result of 1000 bytes announced, 2 present
        (b"\x01\x00\x05\xe8\x07ab", "announced"),
        # Aborted with a kind that is not UTF-8
        (b"\x01\x01\x05\x02\xff\xfe\x00", "UTF-8"),
        # a varint longer than a u64 can be
        (b"\x01\x00" + b"\xff" * 11, "varint"),
        # a varint whose last byte overflows u64
        (b"\x01\x00" + b"\xff" * 9 + b"\x7f\x00", "overflows"),
        # trailing bytes after a whole Behind
        (b"\x01\x0b\x01\x02\x00", "trailing"),
        # a Procedures list claiming 2^40 entries
        (b"\x01\x04" + wire.enc_u64(1 << 40), "sequence"),
        # an Option tag of 2
        (b"\x01\x06\x02", "Option"),
        # empty payload
        (b"", "past the end"),
    ],
)
def test_malformed_payloads_raise_a_clean_error(fake_server, payload, needle):
    fake = _serve_after_welcome(fake_server, wire.frame(payload, 1 << 20))
    with Client(fake.addr, reconnect_attempts=0) as client:
        with pytest.raises(MalformedFrame, match=needle) as caught:
            client.status()
        assert isinstance(caught.value, ProtocolViolation)


def test_a_hostile_welcome(fake_server):
    def oversized(conn, hello):
        conn.sendall((5000).to_bytes(4, "little"))

    def garbage(conn, hello):
        conn.sendall(wire.frame(b"\x07\x07", 100))

    def old_version(conn, hello):
        conn.sendall(wire.frame(wire.enc_u32(0) + wire.enc_u32(3) + b"\x00\x00", 100))

    def hang_up(conn, hello):
        conn.close()

    for script, needle in [
        (oversized, "5000 bytes"),
        (garbage, "does not decode"),
        (old_version, "version 3"),
        (hang_up, "closed the connection"),
    ]:
        fake = fake_server(script)
        with pytest.raises(HandshakeError, match=needle):
            Client(fake.addr)


def test_the_hello_is_protocol_5(fake_server):
    seen = {}

    def script(conn, hello):
        seen["hello"] = hello
        conn.sendall(welcome_accepted())
        time.sleep(1)

    fake = fake_server(script)
    client = Client(fake.addr, token="tok")
    client.close()
    hello = seen["hello"]
    reader = wire.Reader(hello)
    assert reader.take(4) == b"ORDO"
    assert reader.u32() == wire.PROTOCOL_VERSION
    client_id = reader.varint(128)
    assert client_id == client.client_id and client_id >> 64 == wire.SESSION_CLIENT_ID_TAG
    assert reader.opt_string() == "tok"
    reader.end()
