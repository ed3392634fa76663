"""Script calls: the EVALSHA fast path on plain redis-py clients answers exactly like
``execute_command`` and keeps redis-py's connection rules (reconnect on a dirty or
closed pooled connection, NOSCRIPT fallback, error replies)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.exceptions import ResponseError
from redis.utils import HIREDIS_AVAILABLE

from rkit import scripts
from rkit.scripts import Script

ECHO = Script(
    "test/echo", "return {KEYS[1], ARGV[1], ARGV[2], ARGV[3], string.byte(ARGV[4], -1), #ARGV}"
)
FAIL = Script("test/fail", "return redis.error_reply('boom')")
ARGS: list[Any] = ["naïve ✓", 7, 0.1, b"\x00raw\xff"]


PARSERS = [pytest.param(_AsyncRESP2Parser, id="python-parser")]
if HIREDIS_AVAILABLE:
    PARSERS.append(pytest.param(_AsyncHiredisParser, id="hiredis"))


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(params=[True, False], ids=["decoded", "bytes"])
async def client(redis_url: str, parser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    c = aioredis.from_url(redis_url, decode_responses=request.param, parser_class=parser)
    yield c
    await c.aclose()


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls that took the fast path."""
    calls: list[int] = []
    real = scripts._evalsha

    async def spy(*a: Any) -> Any:
        calls.append(1)
        return await real(*a)

    monkeypatch.setattr(scripts, "_evalsha", spy)
    return calls


def _pooled(client: Any) -> Any:
    (conn,) = client.connection_pool._available_connections
    return conn


async def test_fast_path_answers_like_execute_command(client: Any, fast_calls: list[int]) -> None:
    await client.script_load(ECHO.body)
    want = await client.execute_command("EVALSHA", ECHO.sha, 1, "kë{y}", *ARGS)
    assert fast_calls == []
    got = await ECHO(client, ["kë{y}"], ARGS)
    assert fast_calls == [1]
    assert got == want
    assert want[1] in ("naïve ✓", "naïve ✓".encode()) and want[4:] == [255, 4]


async def test_noscript_falls_back_to_eval(client: Any, fast_calls: list[int]) -> None:
    await client.script_flush()
    assert (await ECHO(client, ["k"], ["a", "b", "c", "d"]))[5] == 4
    assert fast_calls == [1]
    assert await client.script_exists(ECHO.sha) == [True]


async def test_error_reply_raises_and_the_connection_stays_usable(
    client: Any, fast_calls: list[int]
) -> None:
    await client.script_load(FAIL.body)
    with pytest.raises(ResponseError, match="boom"):
        await FAIL(client, ["k"], [])
    assert (await ECHO(client, ["k"], ["a", "b", "c", "d"]))[5] == 4
    assert len(fast_calls) == 2


async def test_pooled_connection_with_stray_bytes_is_reconnected(
    client: Any, parser: Any, fast_calls: list[int]
) -> None:
    """A pooled connection holding unread bytes must not hand them out as the reply."""
    await client.script_load(ECHO.body)
    await ECHO(client, ["k"], ["a", "b", "c", "d"])
    conn = _pooled(client)
    conn._reader.feed_data(b"+STALE\r\n")  # as if a reply had been left unread
    got = await ECHO(client, ["k2"], ["a", "b", "c", "d"])
    assert got[0] in ("k2", b"k2")
    assert _pooled(client) is conn and len(fast_calls) == 2
    assert type(conn._parser) is parser


async def test_connection_closed_by_the_server_is_reconnected(
    client: Any, redis_url: str, fast_calls: list[int]
) -> None:
    await client.script_load(ECHO.body)
    await ECHO(client, ["k"], ["a", "b", "c", "d"])
    admin = aioredis.from_url(redis_url)
    try:
        killed = await admin.client_kill_filter(_type="normal", skipme=True)
    finally:
        await admin.aclose()
    assert killed >= 1
    await asyncio.sleep(0.05)  # the loop sees the EOF
    got = await ECHO(client, ["k3"], ["a", "b", "c", "d"])
    assert got[0] in ("k3", b"k3") and len(fast_calls) == 2


async def test_other_clients_keep_the_generic_path(fast_calls: list[int]) -> None:
    fake = fakeredis.FakeAsyncRedis(decode_responses=True)
    assert (await ECHO(fake, ["k"], ["a", "b", "c", "d"]))[5] == 4
    assert fast_calls == []
    assert scripts._fast_pool(fake) is None
    assert scripts._fast_pool(aioredis.Redis(single_connection_client=True)) is None
    blocking = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool())
    assert scripts._fast_pool(blocking) is None
    plain = aioredis.Redis()
    assert scripts._fast_pool(plain) is plain.connection_pool
    plain.set_response_callback("EVALSHA", lambda r, **kw: r)
    assert scripts._fast_pool(plain) is None


@pytest.mark.parametrize("encoding,errors", [("utf-8", "strict"), ("latin-1", "replace")])
def test_packing_matches_redis_py_byte_for_byte(encoding: str, errors: str) -> None:
    """The fast path packs EVALSHA itself (str arguments encoded directly): the bytes
    are the ones redis-py's pack_command sends, for every argument type and size."""
    from redis.asyncio.connection import Connection

    conn = Connection(encoding=encoding, encoding_errors=errors)
    args: list[Any] = [*ARGS, "", "x" * 5000, b"y" * 5000, -3, 1e300, "caf\u00e9"]
    want = b"".join(conn.pack_command("EVALSHA", ECHO.sha, 2, "k1", "k\u00e92", *args))
    assert ECHO._pack(conn.encoder, ["k1", "k\u00e92"], args) == want
