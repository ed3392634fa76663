"""Input hygiene of the admin API: request bodies are checked before any route runs,
and validation errors are answered without echoing the input.

* :class:`BodyGuard` (ASGI middleware) reads each request body once, bounded by
  ``max_body_bytes`` (413), and lets it through only when it is JSON (415
  otherwise), UTF-8 and strictly JSON: ``NaN``, ``Infinity`` and numbers beyond the
  float range such as ``1e999`` (which Python's ``json`` turns into infinity) are a
  422. Without a valid admin token the request is refused (401/403) before its body
  is judged, as the routes' guard would.
* :func:`validation_error_handler` replaces FastAPI's default handler, which
  echoes the offending input back (and fails with a 500 on raw bytes, infinity or
  NaN): errors keep only ``type``, ``loc`` (bounded) and ``msg``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import RequireAdmin

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024
"""Largest admin request body (every admin body is a few small fields)."""
MAX_NAME = 1024
"""Longest name, key, id or namespace accepted in a path, query or body."""
MAX_LOC = 64

# path and query parameters naming things: bounded, never empty
Name = Annotated[str, Path(min_length=1, max_length=MAX_NAME)]
QueryName = Annotated[str | None, Query(max_length=MAX_NAME)]
QueryStr = Annotated[str, Query(max_length=MAX_NAME)]


class _NotStrictJSON(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotStrictJSON("not-a-number and infinite constants are not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJSON("a number is beyond the float range")
    return value


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` and non-finite numbers."""
    return json.loads(text, parse_constant=_constant, parse_float=_finite)


def _error(type_: str, msg: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": [{"type": type_, "loc": ["body"], "msg": msg}]}, status)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class BodyGuard:
    """ASGI middleware: admin request bodies must be small, UTF-8, strict JSON."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: RequireAdmin,
        open_paths: Collection[str] = (),
        open_prefixes: tuple[str, ...] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.guard = guard
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = open_prefixes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        too_large = False
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                too_large = True
                break
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = self._judge(scope, body, too_large)
        if problem is not None:
            refusal = None
            if not self._is_open(scope.get("path", "")):
                refusal = self.guard.refusal(_header(scope, b"authorization"))
            if refusal is not None:
                problem = JSONResponse(
                    {"detail": refusal.detail}, refusal.status_code, headers=refusal.headers
                )
            await problem(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def _judge(self, scope: Scope, body: bytes, too_large: bool) -> JSONResponse | None:
        """The answer refusing this body, or ``None`` when it may reach the route."""
        if too_large:
            return JSONResponse({"detail": f"request body above {self.max_body_bytes} bytes"}, 413)
        if not body:
            return None
        content_type = _header(scope, b"content-type")
        if content_type is not None and not _is_json(content_type):
            return JSONResponse({"detail": "request bodies must be application/json"}, 415)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error("json_invalid", "request body is not UTF-8")
        try:
            strict_json(text)
        except _NotStrictJSON as exc:
            return _error("finite_number", f"request body holds a number that is not finite: {exc}")
        except json.JSONDecodeError as exc:
            return _error("json_invalid", f"request body is not JSON: {exc.msg} at {exc.pos}")
        except (ValueError, RecursionError):  # e.g. an int of too many digits, deep nesting
            return _error("json_invalid", "request body is not acceptable JSON")
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _bounded(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean_loc(part: Any) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    return _bounded(part if isinstance(part, str) else repr(part), MAX_LOC)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 listing what failed and where, never the input itself."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "type": str(e.get("type", "invalid")),
            "loc": [_clean_loc(p) for p in e.get("loc", ())],
            "msg": _bounded(str(e.get("msg", "invalid input"))),
        }
        for e in errors
    ]
    return JSONResponse({"detail": detail}, 422)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's handler, except that a 422 whose detail is a message gets the
    documented shape of 422s (a list of errors), as a route's own ``ValueError``
    mapped to 422 would otherwise contradict the OpenAPI schema."""
    if (
        isinstance(exc, StarletteHTTPException)
        and exc.status_code == 422
        and isinstance(exc.detail, str)
    ):
        error = {"type": "value_error", "loc": [], "msg": _bounded(exc.detail)}
        return JSONResponse({"detail": [error]}, 422, headers=exc.headers)
    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


async def config_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """400 for input a component refused (:class:`rkit.ConfigError`) before touching
    Redis: a route that did not map it itself still answers a client error."""
    return JSONResponse({"detail": _bounded(str(exc))}, 400)


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_NAME",
    "BodyGuard",
    "Name",
    "QueryName",
    "QueryStr",
    "config_error_handler",
    "http_error_handler",
    "strict_json",
    "validation_error_handler",
]
