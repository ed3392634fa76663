"""A fake Resend HTTP API on loopback (a thread running a stdlib HTTP server).

It answers ``POST /emails/batch`` with one ``re_<n>`` id per email in request order
and ``POST /emails`` with one id, or with the responses queued in ``script``. Like
Resend, it remembers the response to a successful request under its
``Idempotency-Key`` (same key and payload: the stored response, nothing sent again;
another payload, or the same key while the first request is in flight: 409).
``sent`` lists every email the fake accepted for delivery (replays excluded), so a
test can count exactly-once at the server."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeResend:
    requests: list[Request] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, Any, dict[str, str]] | None = None
    gate: threading.Event | None = None
    hold_after: int = 0
    """With a ``gate``: requests after the first ``hold_after`` wait for it."""
    arrived: threading.Event = field(default_factory=threading.Event)
    delay_s: float = 0.0
    _next_id: int = 0
    _idem: dict[str, tuple[str, int, Any]] = field(default_factory=dict)
    _inflight: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.script.clear()
            self.default = None
            self.gate = None
            self.hold_after = 0
            self.arrived.clear()
            self.delay_s = 0.0
            self._next_id = 0
            self._idem.clear()
            self._inflight.clear()

    @property
    def batch_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/emails/batch"]

    def handle(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"statusCode": 400, "name": "invalid_json", "message": "bad json"}, {}
        key = headers.get("idempotency-key", "")
        with self._lock:
            self.requests.append(Request(path, headers, body))
            hold = self.gate is not None and len(self.requests) > self.hold_after
            if key and key in self._inflight:
                return 409, {"name": "concurrent_idempotent_requests", "message": "in flight"}, {}
            if key and key in self._idem:
                payload, status, response = self._idem[key]
                if payload != raw.decode():
                    return 409, {"name": "invalid_idempotent_request", "message": "reused"}, {}
                return status, response, {}
            if key:
                self._inflight.add(key)
        try:
            if hold and self.gate is not None:
                self.arrived.set()
                self.gate.wait(10)
            if self.delay_s:
                threading.Event().wait(self.delay_s)
            with self._lock:
                if self.script:
                    return self.script.pop(0)
                if self.default is not None:
                    return self.default
                if path == "/emails/batch":
                    if not isinstance(body, list) or not 1 <= len(body) <= 100:
                        return 422, {"name": "validation_error", "message": "1..100 emails"}, {}
                    ids = []
                    for email in body:
                        ids.append(f"re_{self._next_id}")
                        self._next_id += 1
                        self.sent.append(email)
                    response: Any = {"data": [{"id": i} for i in ids]}
                elif path == "/emails":
                    response = {"id": f"re_s{self._next_id}"}
                    self._next_id += 1
                    self.sent.append(body)
                else:
                    return 404, {"name": "not_found", "message": path}, {}
                if key:
                    self._idem[key] = (raw.decode(), 200, response)
                return 200, response, {}
        finally:
            with self._lock:
                self._inflight.discard(key)


def start_fake() -> tuple[FakeResend, ThreadingHTTPServer]:
    fake = FakeResend()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(n)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, extra = fake.handle(self.path, headers, raw)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake, server


if __name__ == "__main__":  # a standalone fake for the benchmark and manual runs
    import sys
    import time

    f, _ = start_fake()
    print(f.url, flush=True)
    while sys.stdin.readline():
        time.sleep(0.01)
