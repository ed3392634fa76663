"""Lua script loading: one file per atomic operation, ``lua/<component>/<op>.lua``,
with ``lua/_lib.lua`` and ``lua/<component>/_lib.lua`` prepended. Scripts run by
EVALSHA; after a script-cache flush (NOSCRIPT) the body is sent once with EVAL,
which also re-caches it on the node that owns the keys (Cluster-safe).

Of the libraries' top-level ``local function`` blocks only those the script uses
(directly or through another kept function) are prepended: Redis runs the whole
chunk on every call, so each unused definition would cost a closure per call."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis._parsers.base import _AsyncRESPBase
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

_ROOT = files("rkit._lua")


# a top-level function: "local function name(" at column 0 up to the first "end" at column 0
_FUNC = re.compile(r"^local function (\w+)\(.*?^end$\n?", re.S | re.M)
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.S)
_NAME = re.compile(r"[A-Za-z_]\w*")


def _names(code: str) -> set[str]:
    return set(_NAME.findall(_COMMENT.sub("", code)))


def _shake(libs: str, body: str) -> str:
    """``libs`` without the top-level functions that ``body`` cannot reach."""
    funcs = {m.group(1): m for m in _FUNC.finditer(libs)}
    if any("\nlocal function " in m.group(0) for m in funcs.values()):
        return libs  # a block we cannot delimit: keep everything
    rest = _FUNC.sub("", libs)  # the libraries' other top-level code always runs
    used: set[str] = set()
    todo = _names(body) | _names(rest)
    while todo:
        name = todo.pop()
        if name in funcs and name not in used:
            used.add(name)
            todo |= _names(funcs[name].group(0))
    return _FUNC.sub(lambda m: m.group(0) if m.group(1) in used else "", libs)


def _read(*parts: str) -> str:
    node = _ROOT.joinpath(*parts)
    return node.read_text(encoding="utf-8") if node.is_file() else ""


def _fast_pool(client: Any) -> Any:
    """``client``'s pool when :func:`_evalsha` may run on it, else ``None``: a plain
    ``redis.asyncio.Redis`` (not a subclass such as fakeredis', not Cluster, not a
    single-connection client) on a plain ``ConnectionPool``, with no response
    callback for EVALSHA."""
    if type(client) is not aioredis.Redis or client.single_connection_client:
        return None
    pool = client.connection_pool
    if type(pool) is not aioredis.ConnectionPool or "EVALSHA" in client.response_callbacks:
        return None
    return pool


def _clean(conn: Any) -> bool | None:
    """redis-py's ``can_read_destructive()`` check of a pooled connection, answered
    from what the connection already holds: no buffered reply or unread bytes, no
    EOF or error (``None``: a parser this does not know). redis-py also waits one
    event-loop turn for bytes still in flight (with hiredis: a zero-timeout read
    that costs a timer, a task cancellation and a loop iteration on every
    command); a reply can only be in flight on a connection released mid-command,
    which redis-py disconnects instead of releasing."""
    parser = conn._parser
    if type(parser) is _AsyncHiredisParser:
        if parser._reader is None or parser._reader.gets() is not NOT_ENOUGH_DATA:
            return False
    elif isinstance(parser, _AsyncRESPBase):
        if parser._buffer:
            return False
    else:
        return None
    stream: Any = parser._stream  # an asyncio.StreamReader: its buffer and EOF flag
    if not getattr(parser, "_connected", False) or stream is None:
        return False
    return not (stream._buffer or stream._eof or stream.exception() is not None)


async def _send_read(conn: Any, packed: bytes) -> Any:
    await conn.send_packed_command(packed)
    return await conn.read_response()


async def _evalsha(
    pool: Any, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int | float]
) -> Any:
    """``client.execute_command("EVALSHA", ...)`` on a plain pool: the same
    pool, retry and disconnect rules, minus the per-command zero-timeout probe of
    the connection (see :func:`_clean`) and redis-py's generic argument packing."""
    async with pool._lock:  # ConnectionPool.get_connection, minus ensure_connection
        conn = pool.get_available_connection()
    try:
        if not conn.is_connected:
            await conn.connect()
        clean = _clean(conn)
        if clean is None:
            await pool.ensure_connection(conn)  # a parser we don't know: redis-py's probe
        elif not clean:  # ConnectionPool.ensure_connection's recovery
            await conn.disconnect()
            await conn.connect()
            if await conn.can_read_destructive():
                raise RedisConnectionError("Connection not ready")
        packed = script._pack(conn.encoder, keys, args)
        return await conn.retry.call_with_retry(
            lambda: _send_read(conn, packed), lambda error: _disconnect_raise(conn, error)
        )
    finally:
        await pool.release(conn)


async def _disconnect_raise(conn: Any, error: BaseException) -> None:
    """``Redis._disconnect_raise``: disconnect; re-raise unless the error is retried."""
    await conn.disconnect()
    if conn.retry_on_error is None or not isinstance(error, tuple(conn.retry_on_error)):
        raise error


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


class Script:
    """One loaded Lua operation."""

    __slots__ = ("_head", "body", "name", "sha")

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body
        self.sha = hashlib.sha1(body.encode("utf-8")).hexdigest()
        self._head = _bulk(b"EVALSHA") + _bulk(self.sha.encode("ascii"))

    async def __call__(
        self, client: Any, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Any:
        try:
            pool = _fast_pool(client)
            if pool is not None:  # every hot path: skip redis-py's generic layers
                return await _evalsha(pool, self, keys, args)
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.body, len(keys), *keys, *args)

    def _pack(
        self,
        encoder: Any,
        keys: Sequence[str],
        args: Sequence[str | bytes | int | float],
    ) -> bytes:
        """The RESP request ``EVALSHA sha numkeys keys... args...``, each argument
        encoded as redis-py's ``pack_command`` does (the connection's encoder; a str,
        the common case, directly with its encoding)."""
        encode: Callable[[Any], bytes] = encoder.encode
        charset, errors = encoder.encoding, encoder.encoding_errors
        parts = [b"*%d\r\n" % (3 + len(keys) + len(args)), self._head, _bulk(b"%d" % len(keys))]
        append = parts.append
        for a in (*keys, *args):
            b: bytes
            if isinstance(a, str) and type(a) is str:
                b = a.encode(charset, errors)
            elif type(a) is bytes:
                b = a
            else:
                b = encode(a)
            if len(b) < 4096:
                append(b"$%d\r\n%b\r\n" % (len(b), b))
            else:  # no copy of a large argument before the join
                append(b"$%d\r\n" % len(b))
                append(b)
                append(b"\r\n")
        return b"".join(parts)

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:10]})"


@cache
def load(component: str, op: str) -> Script:
    """The script ``lua/<component>/<op>.lua`` with the shared libraries prepended."""
    body = _read(component, f"{op}.lua")
    if not body:
        raise FileNotFoundError(f"no Lua script lua/{component}/{op}.lua in the rkit package")
    libs = "\n".join(p for p in (_read("_lib.lua"), _read(component, "_lib.lua")) if p)
    parts = [_shake(libs, body), body]
    return Script(f"{component}/{op}", "\n".join(p for p in parts if p))
