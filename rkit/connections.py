"""How rkit connects to Redis: one parser for every URL (state and queue alike, so a
``rediss://`` CA file or a timeout given in the query reaches both), the client
defaults (timeouts, bounded retries on connection errors), the check that a
prebuilt state client decodes replies, and URLs for logs with the password masked.

Defaults, each overridable in the URL's query (``?socket_timeout=10``):

* ``socket_timeout=5`` s: a stalled server fails a call after 5 s instead of
  blocking it for the whole stall (5 s is also Redis's own busy-script threshold);
* ``socket_connect_timeout=2`` s, ``socket_keepalive=true``,
  ``health_check_interval=15`` s (an idle connection is PINGed before reuse);
* a refused or dropped connection (a restarting server, ``LOADING``) is retried 3
  times with exponential backoff (50 ms, capped at 500 ms). A *timeout* is never
  retried: the command may still run when the server resumes, and a second copy
  could double its effect.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from .errors import ConfigError

SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 15
RETRIES = 3

_SCHEMES = ("redis", "rediss", "unix")


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES, (RedisConnectionError,))


def client_options(url: str) -> dict[str, Any]:
    """Connection options for ``url``: rkit's defaults; the URL's query wins."""
    check_url(url)
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": _retry(),
        "retry_on_error": [RedisConnectionError],
    }


def check_url(url: str, what: str = "redis_url") -> None:
    """A clear ``ConfigError`` for a URL redis-py cannot use, before any connection."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{what} must be a non-empty string like redis://host:6379/0")
    scheme = url.partition("://")[0].lower()
    if "://" not in url or scheme not in _SCHEMES:
        raise ConfigError(
            f"{what} must start with redis://, rediss:// or unix:// (got {mask_url(url)!r})"
        )


def state_client(url: str, *, cluster: bool = False) -> Any:
    """The state client for ``url`` (replies decoded to ``str``)."""
    opts = client_options(url)
    if cluster:
        # RedisCluster retries by itself (per node, with its own topology refresh)
        opts.pop("retry")
        opts.pop("retry_on_error")
        opts.pop("health_check_interval")
        return RedisCluster.from_url(url, decode_responses=True, **opts)
    return aioredis.from_url(url, decode_responses=True, **opts)  # type: ignore[no-untyped-call]


def queue_connection_pool(url: str) -> aioredis.ConnectionPool:
    """The queue's connection pool for ``url``: parsed exactly as the state URL
    (query parameters included), replies left as bytes (arq's format)."""
    opts = client_options(url)
    # no read timeout by default on arq's connection: cancelling arq's poll task in the
    # middle of a command read under a read timeout (a worker stopping) can leave
    # the task hanging on redis-py 5 / Python 3.11; while the queue is stalled
    # there is nothing to poll anyway (the state client, which fences, has one)
    opts["socket_timeout"] = None
    return aioredis.ConnectionPool.from_url(url, **opts)


def check_decoding(client: Any) -> None:
    """A prebuilt state client must decode replies (``decode_responses=True``):
    rkit's components compare and parse ``str`` replies."""
    get_encoder = getattr(client, "get_encoder", None)
    encoder = get_encoder() if callable(get_encoder) else getattr(client, "encoder", None)
    if encoder is not None and not getattr(encoder, "decode_responses", True):
        raise ConfigError(
            "the state client (redis=...) must be created with decode_responses=True, "
            "e.g. redis.asyncio.from_url(url, decode_responses=True); the queue client "
            "(queue_redis=...) is the one that keeps bytes"
        )


def mask_url(url: str) -> str:
    """``url`` with its password (user-info or ``?password=``) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        if sep:
            netloc = f"{user}:***@{hostport}"
        elif user:
            # redis://secret@host: redis-py reads a lone user-info as the password
            netloc = f"***@{hostport}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "password" for k, _ in query):
        query = [(k, "***" if k == "password" else v) for k, v in query]
        masked_query = urllib.parse.urlencode(query, safe="*/")
    else:
        masked_query = parts.query
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, masked_query, ""))


def describe(client: Any) -> str:
    """Where a client connects, for logs (no password): ``host:port/db`` or a socket."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() if hasattr(client, "get_nodes") else []
        first = f" {nodes[0].host}:{nodes[0].port}" if nodes else ""
        return f"Redis Cluster{first}"
    pool = getattr(client, "connection_pool", None)
    kw: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    if "path" in kw:
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    if "host" in kw:
        cls = getattr(pool, "connection_class", None)
        scheme = "rediss" if cls is not None and "SSL" in cls.__name__ else "redis"
        return f"{scheme}://{kw['host']}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    return type(client).__name__


def max_block_ms(client: Any, wanted_ms: int) -> int:
    """How long one blocking read (``XREAD BLOCK``) on ``client`` may block: at most
    ``wanted_ms``, and a second less than the client's socket timeout so that an
    idle read is not mistaken for a stalled server. Callers loop over reads."""
    pool = getattr(client, "connection_pool", client)  # RedisCluster keeps them itself
    kw: dict[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    timeout = kw.get("socket_timeout")
    if not timeout:
        return wanted_ms
    return max(1, min(wanted_ms, int(float(timeout) * 1000) - 1000))
