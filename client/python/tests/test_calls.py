"""Calls, reads, deploys and every error kind, against a real server."""

import pytest

from conftest import ADMIN, Server, wasm
from ordo_client import (
    Aborted,
    BadArguments,
    Client,
    OrdoError,
    Result,
    Unauthorized,
    UnknownProcedure,
)


def test_a_call_returns_its_result_and_seq(server, unique_key):
    with Client(server.addr) as client:
        assert client.call("incr", {"key": unique_key, "by": 1}) == 1
        first = client.call_with_position("incr", {"key": unique_key, "by": 2})
        assert isinstance(first, Result)
        assert first.value == 3
        second = client.call_with_position("incr", {"key": unique_key, "by": -3})
        assert second.value == 0
        # Sequence numbers are the log's: strictly increasing.
        assert second.seq > first.seq > 0
        # The fuel each call used comes with its result.
        assert first.fuel_used > 0 and second.fuel_used > 0
        assert client.observed_position >= second.seq
        assert client.status().position >= second.seq
        # A `()` result is JSON null.
        assert client.call("put", {"key": unique_key, "value": 42}) is None
        assert client.read("get", {"key": unique_key}) == 42


def test_arguments_may_be_json_text(server, unique_key):
    with Client(server.addr) as client:
        assert client.call("incr", '{"key": "%s", "by": 5}' % unique_key) == 5
        assert client.call("incr", b'{"key": "%s", "by": 5}' % unique_key.encode()) == 10


def test_one_connection_is_reused(server, unique_key):
    with Client(server.addr) as client:
        sock = client._conn.sock
        port = sock.getsockname()[1]
        for _ in range(20):
            client.call("incr", {"key": unique_key, "by": 1})
        assert client._conn.sock is sock and sock.getsockname()[1] == port
        assert client.read("get", {"key": unique_key}) == 20


def test_stale_and_linearizable_reads(server, unique_key):
    with Client(server.addr) as client:
        wrote = client.call_with_position("incr", {"key": unique_key, "by": 7})
        stale = client.read_with_position("get", {"key": unique_key})
        assert stale.value == 7
        # Never before what this client has seen (its own write).
        assert stale.position >= wrote.seq
        linear = client.read_with_position("get", {"key": unique_key}, stale=False)
        assert linear.value == 7 and linear.seq > wrote.seq
        # A stale read logs nothing.
        before = client.status().position
        client.read("get", {"key": unique_key})
        assert client.status().position == before
        assert client.read("get", {"key": unique_key + "-absent"}) is None


def test_unknown_procedure(server):
    with Client(server.addr) as client:
        with pytest.raises(UnknownProcedure) as caught:
            client.call("no_such_procedure", {})
        err = caught.value
        assert isinstance(err, Aborted) and isinstance(err, OrdoError)
        assert err.procedure == "no_such_procedure" and err.kind == "unknown_procedure"
        assert err.seq > 0 and not err.retryable


def test_bad_arguments(server, unique_key):
    with Client(server.addr) as client:
        with pytest.raises(BadArguments) as caught:
            client.call("incr", {"key": 1, "by": 1})
        assert "key" in str(caught.value)
        # Refused against the schema before it was logged.
        assert caught.value.seq is None and not caught.value.retryable
        with pytest.raises(BadArguments, match="by"):
            client.call("incr", {"key": unique_key})
        with pytest.raises(BadArguments):
            client.call("incr", "not json at all")


def test_a_procedure_abort(server, unique_key):
    with Client(server.addr) as client:
        client.call("put", {"key": unique_key, "value": 2**63 - 1})
        with pytest.raises(Aborted) as caught:
            client.call("incr", {"key": unique_key, "by": 1})
        err = caught.value
        assert type(err) is Aborted
        assert err.kind == "user" and "overflows" in err.message and err.seq > 0
        # It wrote nothing.
        assert client.read("get", {"key": unique_key}) == 2**63 - 1
        # The bank refuses to overdraw.
        client.call("open", {"id": 9_000_001, "balance": 5})
        with pytest.raises(Aborted) as overdrawn:
            client.call("transfer", {"from": 9_000_001, "to": 9_000_002, "amount": 6})
        assert overdrawn.value.kind == "user"


def test_a_stale_read_of_a_writing_procedure_is_refused(server, unique_key):
    with Client(server.addr) as client:
        with pytest.raises(Aborted) as caught:
            client.read("incr", {"key": unique_key, "by": 1})
        assert caught.value.kind == "not_read_only"
        assert client.read("get", {"key": unique_key}) is None


def test_admin_token(server):
    kv = wasm("kv")
    with Client(server.addr) as without:
        with pytest.raises(Unauthorized):
            without.deploy("kv", kv)
    with Client(server.addr, admin_token="wrong") as wrong:
        with pytest.raises(Unauthorized) as caught:
            wrong.deploy("kv", kv)
        assert not caught.value.retryable
    with Client(server.addr, admin_token=ADMIN) as admin:
        deployed = admin.deploy("kv", kv)
        assert deployed.name == "kv" and "incr" in deployed.procedures
        assert len(deployed.sha256) == 64 and deployed.seq > 0


def test_procedures_lists_parameters(server):
    with Client(server.addr) as client:
        procedures = {p.name: p for p in client.procedures()}
        assert procedures["incr"].module == "kv"
        assert procedures["incr"].params == [("key", "String"), ("by", "i64")]
        assert procedures["get"].read_only and not procedures["incr"].read_only


def test_client_token():
    srv = Server("--client-token", "client-secret")
    try:
        with pytest.raises(Unauthorized):
            Client(srv.addr)
        with pytest.raises(Unauthorized):
            Client(srv.addr, token="wrong")
        with Client(srv.addr, token="client-secret", admin_token=ADMIN) as client:
            client.deploy("kv", wasm("kv"))
            assert client.call("incr", {"key": "k", "by": 4}) == 4
    finally:
        srv.close()


def test_ended_session_fails_later_calls(server, unique_key):
    from ordo_client import SessionExpired

    with Client(server.addr) as client:
        client.call("incr", {"key": unique_key, "by": 1})
        client.end_session()
        with pytest.raises(SessionExpired):
            client.call("incr", {"key": unique_key, "by": 1})
        # Reads log nothing and need no session.
        assert client.read("get", {"key": unique_key}) == 1


def test_one_sync_client_is_shared_by_threads(server, unique_key):
    from concurrent.futures import ThreadPoolExecutor

    with Client(server.addr) as client:
        with ThreadPoolExecutor(4) as pool:
            values = list(pool.map(lambda _: client.call("incr", {"key": unique_key, "by": 1}), range(40)))
        assert sorted(values) == list(range(1, 41))
