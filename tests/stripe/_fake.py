"""A local fake of the Stripe API for the tests: a small ASGI app served by uvicorn on
a loopback port, which the real ``stripe`` SDK (its ``HTTPXClient``) is pointed at
with ``base_addresses``. It answers canned JSON per (method, path), records every
request (form-decoded body, headers) and replays a POST's first answer for a
repeated ``Idempotency-Key``, as Stripe does."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

Answer = tuple[int, Any]
Handler = Callable[["Recorded"], Answer]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeStripe:
    url: str = ""
    routes: dict[tuple[str, str], Handler | Answer] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    delay_s: float = 0.0
    _idem: dict[str, Answer] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()
        self._idem.clear()
        self.delay_s = 0.0

    def on(self, method: str, path: str, answer: Handler | Answer) -> None:
        self.routes[(method, path)] = answer

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def _default(self, req: Recorded) -> Answer:
        if req.method == "POST" and req.path == "/v1/customers":
            cid = f"cus_fake{next(self._ids)}"
            return 200, {"id": cid, "object": "customer", "email": req.form.get("email")}
        if req.method == "POST" and req.path == "/v1/checkout/sessions":
            return 200, {"id": "cs_fake_1", "object": "checkout.session", "url": "https://co/1"}
        if req.method == "POST" and req.path == "/v1/billing_portal/sessions":
            return 200, {"id": "bps_1", "object": "billing_portal.session", "url": "https://bp/1"}
        return 404, {"error": {"type": "invalid_request_error", "message": f"No route {req.path}"}}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        raw = body.decode() if body else scope.get("query_string", b"").decode()
        req = Recorded(scope["method"], scope["path"], headers, dict(parse_qsl(raw)))
        self.requests.append(req)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        key = headers.get("idempotency-key")
        if key and req.method == "POST" and key in self._idem:
            status, payload = self._idem[key]
        else:
            route = self.routes.get((req.method, req.path))
            if route is None:
                status, payload = self._default(req)
            elif callable(route):
                status, payload = route(req)
            else:
                status, payload = route
            if key and req.method == "POST":
                self._idem[key] = (status, payload)
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeServer:
    """The fake served by uvicorn in a thread (one per test session)."""

    def __init__(self) -> None:
        self.fake = FakeStripe()
        port = free_port()
        self.fake.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self.fake, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.time() + 10
        while not self.server.started:
            if time.time() > end:
                raise RuntimeError("the fake Stripe server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
