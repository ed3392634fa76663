"""Malformed input on every admin mutation route: non-finite numbers, bodies that are
not UTF-8 or not JSON, wrong content types, oversized bodies. Each gets a 4xx whose
JSON never echoes the input, and nothing is written to Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from rkit.api import create_api

from rkit import App

from ._world import AUTH, TOKEN, fill, seed, snapshot

MUTATING = {"post", "patch", "put", "delete"}


def _mutation_routes() -> list[tuple[str, str]]:
    api = create_api(App(namespace="routes"), admin_token=TOKEN)
    return sorted(
        (method.upper(), path)
        for path, item in api.openapi()["paths"].items()
        for method in item
        if method in MUTATING
    )


ROUTES = _mutation_routes()

NON_FINITE = [  # 1e999 is what Python's json turns into infinity
    b'{"before": 1e999}',
    b'{"before": -1e999}',
    b'{"key": NaN}',
    b'{"args": {"x": Infinity}}',
    b'{"namespace": [1, {"deep": -Infinity}]}',
    b"1e999",
]
NOT_UTF8 = [
    (b"\xff\xfe\x00garbage", None),
    (b'{"key": "\xff\xfe"}', "application/json"),
    (b'{"key": "\xed\xa0\x80"}', "application/json"),  # an encoded surrogate
    (b"\x80\x81", "application/json; charset=utf-8"),
]
NOT_JSON = [
    (b"{'key': 1}", "application/json", 422),
    (b'{"key": "a"', None, 422),
    (b"[" * 10_000 + b"]" * 10_000, "application/json", 422),
    (b"key=a", "application/x-www-form-urlencoded", 415),
    (b"hello", "text/plain", 415),
]


@pytest.fixture
async def world(app: App) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    names = await seed(app)
    transport = httpx.ASGITransport(app=create_api(app, admin_token=TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, names


async def _refused(
    app: App,
    world: tuple[httpx.AsyncClient, dict[str, str]],
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    *,
    headers: dict[str, str] = AUTH,
) -> httpx.Response:
    """One refused request: a 4xx whose JSON echoes none of the input. The caller
    checks that nothing was written (one snapshot around all its requests)."""
    client, names = world
    h = dict(headers)
    if content_type is not None:
        h["content-type"] = content_type
    r = await client.request(method, fill(path, names), content=body, headers=h)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    payload = r.json()  # JSON, whatever went wrong
    assert "detail" in payload
    text = r.text
    assert "\ufffd" not in text and "\\u00ff" not in text.lower()  # no raw bytes echoed
    for token in ("1e999", "NaN", "Infinity", "garbage", "hello", "deep"):
        assert token not in text
    return r


def test_every_mutation_route_is_covered() -> None:
    assert len(ROUTES) == 19
    assert ("POST", "/rate-limits/clear-all") in ROUTES
    assert ("PATCH", "/workpools/{pool}/config") in ROUTES


async def test_malformed_bodies_are_a_4xx_and_write_nothing(app: App, world: Any) -> None:
    """Every mutation route, one App per backend (the routes share it: nothing may be
    written by any of them, checked once around all the requests)."""
    before = await snapshot(app)
    big = b'{"key": "' + b"a" * (64 * 1024) + b'"}'
    for method, path in ROUTES:
        route = f"{method} {path}"
        for body in NON_FINITE:
            r = await _refused(app, world, method, path, body, "application/json")
            assert r.status_code == 422, (route, body)
            assert r.json()["detail"][0]["type"] == "finite_number", route
        for body, content_type in NOT_UTF8:
            r = await _refused(app, world, method, path, body, content_type)
            assert r.status_code == 422, (route, body)
            assert r.json()["detail"] == [
                {"type": "json_invalid", "loc": ["body"], "msg": "request body is not UTF-8"}
            ], route
        for body, content_type, status in NOT_JSON:
            r = await _refused(app, world, method, path, body, content_type)
            assert r.status_code == status, (route, body[:20])
        r = await _refused(app, world, method, path, big, "application/json")
        assert r.status_code == 413, route
    assert await snapshot(app) == before  # nothing was written


async def test_without_the_token_malformed_bodies_are_refused_first(app: App, world: Any) -> None:
    """The token is checked before the body: a stranger learns nothing from it."""
    before = await snapshot(app)
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for body in (b'{"before": 1e999}', b"\xff\xfe", b"x" * (70 * 1024)):
                r = await _refused(app, world, method, path, body, None, headers=headers)
                assert r.status_code == 401, (method, path)
                assert r.json() == {"detail": "missing or wrong bearer token"}
    assert await snapshot(app) == before


WRONG_BODIES = [
    ("POST", "/rate-limits/send/reset", {"key": 1}),
    ("POST", "/rate-limits/send/reset", {"key": "k", "extra": 1}),
    ("POST", "/rate-limits/send/reset", {"key": "k" * 1025}),
    ("POST", "/rate-limits/clear-all", {"before": "1"}),
    ("POST", "/rate-limits/clear-all", {"before": True}),
    ("POST", "/rate-limits/clear-all", {"before": -1}),
    ("POST", "/action-cache/remove-all", {"before": "soon"}),
    ("DELETE", "/action-cache/sq/entry", {"args": [1]}),
    ("DELETE", "/action-cache/sq/entry", {"args": {"x": 1}, "name": "sq"}),
    ("POST", "/aggregates/board/clear", {"max_node_size": 3}),
    ("POST", "/aggregates/board/clear", {"root_lazy": "yes"}),
    ("PATCH", "/workpools/emails/config", {"max_parallelism": 1.5}),
    ("PATCH", "/workpools/emails/config", {"log_level": "LOUD"}),
    ("POST", "/workpools/emails/cancel-all", {"limit": 0}),
    ("POST", "/workpools/emails/cancel-all", {"limit": 10**30}),
]


async def test_wrong_types_unknown_fields_and_bounds_are_a_422(app: App, world: Any) -> None:
    import json

    before = await snapshot(app)
    for method, path, body in WRONG_BODIES:
        r = await _refused(app, world, method, path, json.dumps(body).encode(), "application/json")
        assert r.status_code == 422, (method, path, body)
        (error,) = r.json()["detail"]
        assert set(error) == {"type", "loc", "msg"}  # no "input": never echoed
        assert error["loc"][0] == "body"
    assert await snapshot(app) == before


OUT_OF_BOUNDS = [
    "/rate-limits/" + "n" * 1025 + "/value",
    "/rate-limits/send/value?key=" + "k" * 1025,
    "/presence/rooms?cursor=18446744073709551616",
    "/presence/rooms?instance=",
    "/aggregates/board/count?ns=" + "~" * 1025,
    "/aggregates/board/shape?max_nodes=0",
    "/workpools/" + "p" * 1025,
]


async def test_parameters_out_of_bounds_are_a_422(app: App, world: Any) -> None:
    client, _ = world
    before = await snapshot(app)
    for path in OUT_OF_BOUNDS:
        r = await client.get(path, headers=AUTH)
        assert r.status_code == 422, (path[:48], r.text)
        assert all(set(e) == {"type", "loc", "msg"} for e in r.json()["detail"])
    assert await snapshot(app) == before


async def test_config_errors_of_components_are_a_400(app: App, world: Any) -> None:
    """A component's own input check (ConfigError) is a client error, not a 500."""
    client, _ = world
    r = await client.get("/aggregates/board/stats?ns=not-a-namespace", headers=AUTH)
    assert r.status_code == 400
    assert "N(ns) form" in r.json()["detail"]


async def test_valid_bodies_still_work(app: App, world: Any) -> None:
    client, _ = world
    r = await client.post("/rate-limits/clear-all", json={"before": 1e12}, headers=AUTH)
    assert r.status_code == 200
    r = await client.post(
        "/rate-limits/send/reset",
        content=b'{"key": "caf\xc3\xa9"}',
        headers={**AUTH, "content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 204
    r = await client.request(
        "DELETE", "/action-cache/sq/entry", json={"args": {"x": 2.0}}, headers=AUTH
    )
    assert r.json() == {"deleted": True}
