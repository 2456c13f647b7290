"""The asyncio client against a real server."""

import asyncio

import pytest

from conftest import ADMIN, wasm
from ordo_client import (
    Aborted,
    AsyncClient,
    BadArguments,
    ConnectionLost,
    Unauthorized,
    UnknownProcedure,
)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_async_calls_and_reads(server, unique_key):
    async def main():
        client = await AsyncClient.connect(server.addr)
        try:
            first = await client.call_with_position("incr", {"key": unique_key, "by": 2})
            assert first.value == 2 and first.seq > 0
            read = await client.read_with_position("get", {"key": unique_key})
            assert read.value == 2 and read.position >= first.seq
            linear = await client.read_with_position("get", {"key": unique_key}, stale=False)
            assert linear.value == 2 and linear.seq > first.seq
            assert (await client.status()).position >= linear.seq
            assert "incr" in {p.name for p in await client.procedures()}
        finally:
            await client.close()

    run(main())


def test_async_pipelines_concurrent_calls_on_one_connection(server, unique_key):
    async def main():
        async with AsyncClient(server.addr) as client:
            conn = client._conn
            results = await asyncio.gather(
                *[client.call_with_position("incr", {"key": unique_key, "by": 1}) for _ in range(200)]
            )
            assert client._conn is conn
            assert sorted(r.value for r in results) == list(range(1, 201))
            assert len({r.seq for r in results}) == 200
            return await client.read("get", {"key": unique_key})

    assert run(main()) == 200


def test_async_errors(server, unique_key):
    async def main():
        async with AsyncClient(server.addr) as client:
            with pytest.raises(UnknownProcedure):
                await client.call("nope", {})
            with pytest.raises(BadArguments):
                await client.call("incr", {"key": unique_key})
            await client.call("put", {"key": unique_key, "value": 2**63 - 1})
            with pytest.raises(Aborted) as caught:
                await client.call("incr", {"key": unique_key, "by": 1})
            assert caught.value.kind == "user"
            with pytest.raises(Unauthorized):
                await client.deploy("kv", wasm("kv"))
            # The client is still fine after all that.
            assert await client.read("get", {"key": unique_key}) == 2**63 - 1
        async with AsyncClient(server.addr, admin_token=ADMIN) as admin:
            assert "incr" in (await admin.deploy("kv", wasm("kv"))).procedures

    run(main())


def test_async_client_must_be_opened(server):
    async def main():
        client = AsyncClient(server.addr)
        with pytest.raises(ConnectionLost) as caught:
            await client.call("incr", {"key": "k", "by": 1})
        assert not caught.value.outcome_unknown

    run(main())
