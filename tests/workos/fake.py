"""A fake WorkOS API on a loopback HTTP server (pytest-httpserver): the users list,
the Events API and the JWKS endpoint, with the real wire shapes; every request is
recorded, failures can be injected. Plus WorkOS's signature scheme and RS256 access
tokens signed with a test RSA key served from the fake JWKS."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

CLIENT_ID = "client_test"
API_KEY = "sk_test"
KID = "key_1"


def sign_header(body: bytes, t_ms: int, secret: str) -> str:
    """A ``WorkOS-Signature`` header exactly as WorkOS sends it."""
    mac = hmac.new(secret.encode(), f"{t_ms}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t_ms}, v1={mac}"


def user(uid: str, updated_at: str, **kw: Any) -> dict[str, Any]:
    """A wire user object (spec §8 ``user(...)``)."""
    return {
        "object": "user",
        "id": uid,
        "email": kw.pop("email", f"{uid}@example.com"),
        "email_verified": True,
        "metadata": {},
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": updated_at,
        **kw,
    }


class FakeWorkOS:
    """The fake API's state. ``users`` in creation order; ``events`` oldest first."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.key = _KEY
        self.lock = threading.Lock()
        self.reset()
        server.expect_request("/user_management/users", method="GET").respond_with_handler(
            self._users
        )
        server.expect_request("/events", method="GET").respond_with_handler(self._events)
        server.expect_request(f"/sso/jwks/{CLIENT_ID}", method="GET").respond_with_handler(
            self._jwks
        )

    def reset(self) -> None:
        self.users: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.fail_users_after: str | None = "never"  # 500 for pages after this cursor
        self.jwks_hits = 0
        self.page_size: int | None = None

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def _record(self, request: Request) -> dict[str, list[str]] | Response:
        query = {k: request.args.getlist(k) for k in request.args}
        with self.lock:
            self.requests.append((request.path, query))
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return Response('{"message":"Unauthorized"}', 401, content_type="application/json")
        return query

    def _page(self, items: list[dict[str, Any]], after: str | None, limit: int) -> Response:
        start = 0
        if after is not None:
            ids = [i["id"] for i in items]
            start = ids.index(after) + 1 if after in ids else len(items)
        page = items[start : start + limit]
        more = start + limit < len(items)
        body = {
            "object": "list",
            "data": page,
            "list_metadata": {"before": None, "after": page[-1]["id"] if more else None},
        }
        return Response(json.dumps(body), 200, content_type="application/json")

    def _users(self, request: Request) -> Response:
        query = self._record(request)
        if isinstance(query, Response):
            return query
        after = request.args.get("after")
        if self.fail_users_after != "never" and after == self.fail_users_after:
            return Response('{"message":"boom"}', 500, content_type="application/json")
        limit = self.page_size or int(request.args.get("limit", "10"))
        return self._page(self.users, after, limit)

    def _events(self, request: Request) -> Response:
        query = self._record(request)
        if isinstance(query, Response):
            return query
        types = set(request.args.getlist("events"))
        start = request.args.get("range_start")
        items = [
            e
            for e in self.events
            if (not types or e["event"] in types) and (start is None or e["created_at"] >= start)
        ]
        limit = self.page_size or int(request.args.get("limit", "10"))
        return self._page(items, request.args.get("after"), limit)

    def _jwks(self, request: Request) -> Response:
        with self.lock:
            self.jwks_hits += 1
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
        return Response(json.dumps({"keys": [jwk]}), 200, content_type="application/json")

    def token(self, sub: str, *, exp_ms: float, key: Any = None, **claims: Any) -> str:
        """An AuthKit access token for ``sub`` signed by the fake's key (or ``key``)."""
        payload = {
            "sub": sub,
            "iss": f"https://api.workos.com/user_management/{CLIENT_ID}",
            "sid": "session_1",
            "exp": int(exp_ms // 1000),
            "iat": int(exp_ms // 1000) - 300,
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": KID})

    def requests_to(self, path: str) -> list[dict[str, list[str]]]:
        return [q for p, q in self.requests if p == path]


_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
