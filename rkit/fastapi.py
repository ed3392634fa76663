"""FastAPI integration: a rate-limit dependency, a 429 exception handler and a
lifespan that opens and closes the App.

    api = FastAPI(lifespan=lifespan(app))
    add_exception_handlers(api)

    @api.get("/search", dependencies=[Depends(limit("search", key=client_ip))])
    async def search(q: str) -> dict[str, str]: ...

A limited request is answered ``429`` with ``Retry-After`` (whole seconds, at least
1) and ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset`` /
``RateLimit-Policy`` headers; an allowed one carries ``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset`` (read from the same script call as the
decision: ``limit(..., detail=True)``) and ``RateLimit-Policy``. The handler also
answers :class:`~rkit.RateLimited` raised by your own
``limiter.limit(..., throws=True)`` calls.
"""

from __future__ import annotations

import inspect
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .app import App
from .errors import ConfigError, RateLimited
from .rate_limit import FixedWindow, RateLimiter, RateLimitResult, TokenBucket

__all__ = [
    "add_exception_handlers",
    "client_ip",
    "lifespan",
    "limit",
    "rate_limit_headers",
    "rate_limited_handler",
    "rkit_app",
]

KeyFunc = Callable[[Request], Awaitable[str | None] | str | None]
"""Which bucket a request spends from: ``key(request)`` (sync or async)."""


def client_ip(request: Request) -> str:
    """The peer address of the request (behind a proxy, run uvicorn with
    ``--proxy-headers`` so this is the client's, not the proxy's)."""
    return request.client.host if request.client is not None else "unknown"


def rkit_app(request: Request) -> App:
    """The rkit App serving this FastAPI app (set by :func:`lifespan` or by
    ``rkit.api.create_api``) as ``api.state.rkit``."""
    found = getattr(request.app.state, "rkit", None)
    if not isinstance(found, App):
        raise RuntimeError(
            "no rkit App on this FastAPI app: use FastAPI(lifespan=rkit.fastapi.lifespan(app)) "
            "or set api.state.rkit = app"
        )
    return found


def _limiter_for(app: App, name: str) -> RateLimiter | None:
    for limiter in reversed(app.components.of_kind("rate_limit", RateLimiter)):
        if name in limiter.limits:
            return limiter
    return None


def _seconds(ms: float) -> int:
    """Whole seconds to wait for ``ms`` milliseconds: rounded up, at least 1."""
    if not math.isfinite(ms):
        return 1
    return max(1, math.ceil(ms / 1000 - 1e-9))


def rate_limit_headers(
    config: TokenBucket | FixedWindow | None, retry_after_ms: float | None = None
) -> dict[str, str]:
    """The ``RateLimit-*`` headers of a limit (and, when limited, ``Retry-After``)."""
    out: dict[str, str] = {}
    if config is not None:
        capacity = config.effective_capacity
        cap = str(int(capacity)) if float(capacity).is_integer() else repr(capacity)
        out["RateLimit-Limit"] = cap
        out["RateLimit-Policy"] = f"{cap};w={_seconds(config.period)}"
    if retry_after_ms is not None:
        wait = str(_seconds(retry_after_ms))
        out["Retry-After"] = wait
        out["RateLimit-Remaining"] = "0"
        out["RateLimit-Reset"] = wait
    return out


def limit(
    name: str,
    *,
    key: KeyFunc | str | None = None,
    count: float = 1,
    limiter: RateLimiter | None = None,
) -> Callable[[Request, Response], Awaitable[RateLimitResult]]:
    """A FastAPI dependency spending ``count`` units of the named limit per request;
    when none are left it raises :class:`~rkit.RateLimited` (mapped to a 429 by
    :func:`add_exception_handlers`) before the route runs.

    ``key``: a fixed key, or a function of the request (e.g. :func:`client_ip`, a
    user id from a header); ``None`` = one bucket for everyone. ``limiter``: the
    :class:`~rkit.RateLimiter` defining ``name`` (default: the App's limiter that
    defines it, found at request time)."""
    if type(name) is not str or not name:
        raise ConfigError("limit(name): name must be a non-empty str")
    if key is not None and not isinstance(key, str) and not callable(key):
        raise ConfigError("limit(key=...): a str, a function of the request, or None")

    found_for: weakref.WeakKeyDictionary[App, RateLimiter] = weakref.WeakKeyDictionary()
    headers_for: dict[int, tuple[Any, dict[str, str]]] = {}  # id(config) -> (config, headers)

    async def dependency(request: Request, response: Response) -> RateLimitResult:
        lim = limiter
        if lim is None:
            app = rkit_app(request)
            lim = found_for.get(app)
            if lim is None:
                lim = _limiter_for(app, name)
                if lim is None:
                    raise RuntimeError(f"no RateLimiter of this App defines the limit {name!r}")
                found_for[app] = lim
        if callable(key):
            got = key(request)
            k = await got if inspect.isawaitable(got) else got
        else:
            k = key
        result = await lim.limit(name, key=k, count=count, detail=not lim.spread_shards)
        if not result.ok:
            raise RateLimited(name, result.retry_after if result.retry_after is not None else 0.0)
        config = lim.limits.get(name)
        cached = headers_for.get(id(config))
        if cached is None or cached[0] is not config:
            cached = headers_for[id(config)] = (config, rate_limit_headers(config))
        response.headers.update(cached[1])
        if result.remaining is not None and result.reset_at is not None:
            now = lim.app.clock.now_ms()
            now = time.time() * 1000 if now is None else now  # the server clock: ~this host's
            response.headers["RateLimit-Remaining"] = str(int(result.remaining))
            response.headers["RateLimit-Reset"] = str(
                max(0, math.ceil((result.reset_at - now) / 1000 - 1e-9))
            )
        return result

    return dependency


async def rate_limited_handler(request: Request, exc: Exception) -> Response:
    """``RateLimited`` -> ``429 Too Many Requests`` with ``Retry-After`` and the
    ``RateLimit-*`` headers of the limit (when the App defines it by name)."""
    if not isinstance(exc, RateLimited):  # pragma: no cover - registered for RateLimited
        raise exc
    found = getattr(request.app.state, "rkit", None)
    lim = _limiter_for(found, exc.name) if isinstance(found, App) else None
    config = lim.limits.get(exc.name) if lim is not None else None
    headers = rate_limit_headers(config, exc.retry_after)
    body = {"detail": "rate limited", "limit": exc.name, "retry_after": int(headers["Retry-After"])}
    return JSONResponse(body, status_code=429, headers=headers)


def add_exception_handlers(api: FastAPI) -> None:
    """Map :class:`~rkit.RateLimited` to 429 on ``api``."""
    api.add_exception_handler(RateLimited, rate_limited_handler)


def lifespan(
    app: App | Callable[[], App], *, close: bool = True
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI ``lifespan``: at startup build ``app`` (an App or a function making
    one), check that Redis answers (fail at startup, not at the first request), set
    ``api.state.rkit``; at shutdown close it (``close=False`` leaves that to you)."""

    @asynccontextmanager
    async def run(api: FastAPI) -> AsyncIterator[None]:
        the_app = app if isinstance(app, App) else app()
        if not isinstance(the_app, App):
            raise ConfigError(f"lifespan(app): expected an rkit App, got {type(the_app)!r}")
        try:
            await the_app.redis.ping()
            api.state.rkit = the_app
            yield
        finally:
            if close:
                await the_app.aclose()

    return run
