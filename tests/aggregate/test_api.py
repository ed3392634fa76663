"""Admin routes of the aggregate behind the bearer token: listing, stats, shape,
count/sum over bounds, at, pages, dump, validate, clear and the HTTP error statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import App
from rkit import keys as keyparts
from rkit.aggregate import DirectAggregate, Int64, ns_member

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


@pytest.fixture
async def board(app: App) -> DirectAggregate[object]:
    agg: DirectAggregate[object] = DirectAggregate(app, "board", default_max_node_size=4)
    await agg.insert_many([(k, f"u{k}", float(k)) for k in range(20)])
    await agg.insert_many([(k, f"g{k}", 1.0) for k in range(5)], namespace="g")
    await agg.insert(Int64(7), "big", namespace="g")
    return agg


async def test_needs_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/aggregates")).status_code == 401


async def test_list_namespaces_stats_shape(
    client: httpx.AsyncClient, board: DirectAggregate[object]
) -> None:
    r = await client.get("/aggregates", headers=AUTH)
    assert r.status_code == 200
    [row] = r.json()["aggregates"]
    assert row["name"] == "board" and row["trees"] == 2 and row["default_max_node_size"] == 4
    r = await client.get("/aggregates/board/namespaces", headers=AUTH)
    assert r.json()["namespaces"] == [
        {"ns": "~", "namespace": None},
        {"ns": ns_member("g"), "namespace": "g"},
    ]
    s = (await client.get("/aggregates/board/stats", headers=AUTH)).json()
    assert s["count"] == 20 and s["sum"] == 190.0 and s["height"] >= 2
    shape = (await client.get("/aggregates/board/shape", headers=AUTH)).json()
    assert shape["depth"] == s["height"] and sum(lv["items"] for lv in shape["levels"]) == 20
    g = (
        await client.get("/aggregates/board/stats", params={"ns": ns_member("g")}, headers=AUTH)
    ).json()
    assert g["count"] == 6
    assert (await client.get("/aggregates/nope/stats", headers=AUTH)).status_code == 404


async def test_count_sum_with_bounds(
    client: httpx.AsyncClient, board: DirectAggregate[object]
) -> None:
    r = await client.get(
        "/aggregates/board/count",
        params={"lower": "5", "upper": "10", "upper_inclusive": "false"},
        headers=AUTH,
    )
    assert r.json() == {"count": 5}
    r = await client.get("/aggregates/board/sum", params={"eq": "3"}, headers=AUTH)
    assert r.json() == {"sum": 3.0}
    r = await client.get("/aggregates/board/count", params={"prefix": "[]"}, headers=AUTH)
    assert r.json() == {"count": 0}
    r = await client.get("/aggregates/board/count", params={"lower": "{bad"}, headers=AUTH)
    assert r.status_code == 400
    r = await client.get("/aggregates/board/count", params={"ns": "!!"}, headers=AUTH)
    assert r.status_code == 400


async def test_at_page_dump_validate_clear(
    client: httpx.AsyncClient, board: DirectAggregate[object]
) -> None:
    r = await client.get("/aggregates/board/at/-1", headers=AUTH)
    assert r.json() == {"key": 19.0, "id": "u19", "sum_value": 19.0}
    assert (await client.get("/aggregates/board/at/20", headers=AUTH)).status_code == 404
    r = await client.get("/aggregates/board/at/0", params={"ns": ns_member("g")}, headers=AUTH)
    assert r.json()["key"] == {"$int64": "7"}
    p = (await client.get("/aggregates/board/page", params={"size": 15}, headers=AUTH)).json()
    assert len(p["items"]) == 15 and not p["is_done"]
    p2 = (
        await client.get(
            "/aggregates/board/page", params={"size": 15, "cursor": p["cursor"]}, headers=AUTH
        )
    ).json()
    assert [i["key"] for i in p2["items"]] == [15.0, 16.0, 17.0, 18.0, 19.0] and p2["is_done"]
    d = (await client.get("/aggregates/board/dump", headers=AUTH)).json()["dump"]
    assert d.startswith("[")
    assert (await client.post("/aggregates/board/validate", headers=AUTH)).json() == {"ok": True}
    r = await client.post("/aggregates/board/clear", json={"max_node_size": 5}, headers=AUTH)
    assert r.status_code == 400
    r = await client.post("/aggregates/board/clear", json={"namespace": "g"}, headers=AUTH)
    assert r.json() == {"cleared": True}
    assert await board.count(namespace="g") == 0 and await board.count() == 20


async def test_a_bad_ns_is_a_400_on_every_route(
    client: httpx.AsyncClient, board: DirectAggregate[object]
) -> None:
    """Not base64url, not a namespace's encoding, empty, or an encoding nested too deep."""
    for route in ["stats", "shape", "dump", "validate", "count", "sum", "at/0", "page"]:
        for ns in ["!!", "AAAA", "", keyparts.encode("\x0a" * 5000)]:
            send = client.post if route == "validate" else client.get
            r = await send(f"/aggregates/board/{route}", params={"ns": ns}, headers=AUTH)
            if len(ns) > 1024:  # beyond the API's length bound: refused before parsing
                assert r.status_code == 422, (route, r.text)
                continue
            assert r.status_code == 400, (route, ns, r.text)
            assert "ns must be the N(ns) form of a namespace" in r.json()["detail"]


async def test_bad_bounds_and_settings_are_400s(
    client: httpx.AsyncClient, board: DirectAggregate[object]
) -> None:
    too_deep_to_parse = "[" * 5000 + "]" * 5000
    too_deep_a_key = "[" * 150 + "]" * 150
    for params in [
        {"eq": too_deep_to_parse},
        {"lower": too_deep_a_key},
        {"prefix": f"[{too_deep_a_key}]"},
    ]:
        r = await client.get("/aggregates/board/count", params=params, headers=AUTH)
        # too long for the API's bound (422) or too deep to be a key (400)
        assert r.status_code in (400, 422), (params, r.text)
    r = await client.get("/aggregates/board/shape", params={"max_nodes": 0}, headers=AUTH)
    assert r.status_code in (400, 422) and "max_nodes" in r.text
    assert await board.count() == 20
