"""Admin routes of the aggregate: list aggregates and their trees (namespaces),
count/sum/at/page over bounds, inspect a tree's shape, validate, clear. Namespaces in
URLs are the ``N(ns)`` form (``~`` = the default partition)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from rkit import App
from rkit.aggregate import Aggregate, Bound, Bounds, Eq, Int64, Item, Prefix, Range, ns_member
from rkit.aggregate import ns_from_member as _ns_from_member
from rkit.errors import (
    ConfigError,
    KeyExistsError,
    OffsetOutOfRange,
    PendingOperationsError,
    TreeAlreadyInitialized,
    TreeCorrupted,
)

from .validation import Name, QueryName, QueryStr


class ClearBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    namespace: Any = None
    max_node_size: int | None = Field(default=None, ge=4, le=2**31)
    root_lazy: bool | None = None


def jsonable(v: Any) -> Any:
    """A key as JSON: Int64 → ``{"$int64": "n"}``, bytes → ``{"$bytes": b64}``,
    non-finite floats → ``{"$float": "nan" | "inf" | "-inf"}``."""
    if isinstance(v, Int64):
        return {"$int64": str(v.value)}
    if isinstance(v, bytes):
        return {"$bytes": base64.b64encode(v).decode("ascii")}
    if isinstance(v, float) and not math.isfinite(v):
        return {"$float": repr(v)}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def _item(it: Item[Any]) -> dict[str, Any]:
    return {"key": jsonable(it.key), "id": it.id, "sum_value": it.sum_value}


def _value(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise ConfigError(f"{what} must be JSON, got {raw!r}") from None


def _namespace(ns: str) -> Any:
    try:
        return _ns_from_member(ns)
    except Exception:
        raise ConfigError(f"ns must be the N(ns) form of a namespace, got {ns!r}") from None


def _bounds(
    lower: str | None,
    upper: str | None,
    lower_inclusive: bool,
    upper_inclusive: bool,
    prefix: str | None,
    eq: str | None,
) -> Bounds | None:
    if eq is not None:
        return Eq(_value(eq, "eq"))
    if prefix is not None:
        return Prefix(_value(prefix, "prefix"))
    if lower is None and upper is None:
        return None
    return Range(
        None if lower is None else Bound(_value(lower, "lower"), lower_inclusive),
        None if upper is None else Bound(_value(upper, "upper"), upper_inclusive),
    )


async def _guard(call: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``call`` (parsing of the request's values included) and map aggregate errors
    onto HTTP statuses (400 / 404 / 409)."""
    try:
        return await call()
    except OffsetOutOfRange as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except (KeyExistsError, PendingOperationsError, TreeAlreadyInitialized) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None


def make_router(
    aggregates: Mapping[str, Aggregate[Any]] | Callable[[], Mapping[str, Aggregate[Any]]],
) -> APIRouter:
    """Routes over ``aggregates`` (a mapping, or a function returning the current one)."""
    r = APIRouter(tags=["aggregate"])

    def known(name: str) -> Aggregate[Any]:
        found = (aggregates() if callable(aggregates) else aggregates).get(name)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no aggregate named {name!r}")
        return found

    @r.get("")
    async def list_aggregates() -> dict[str, Any]:
        out = []
        for name, agg in sorted((aggregates() if callable(aggregates) else aggregates).items()):
            out.append(
                {
                    "name": name,
                    "kind": type(agg).__name__,
                    "default_max_node_size": agg.default_max_node_size,
                    "default_root_lazy": agg.default_root_lazy,
                    "hash_tag": agg.hash_tag,
                    "notify": agg.notify,
                    "trees": len(await agg.namespaces()),
                }
            )
        return {"aggregates": out}

    @r.get("/{name}/namespaces")
    async def namespaces(name: Name) -> dict[str, Any]:
        agg = known(name)
        return {
            "namespaces": [
                {"ns": ns_member(ns), "namespace": jsonable(ns)} for ns in await agg.namespaces()
            ]
        }

    @r.get("/{name}/stats")
    async def stats(name: Name, ns: QueryStr = "~") -> dict[str, Any]:
        agg = known(name)
        out: dict[str, Any] = await _guard(lambda: agg.stats(_namespace(ns)))
        return out

    @r.get("/{name}/shape")
    async def shape(
        name: Name, ns: QueryStr = "~", max_nodes: int = Query(10_000, ge=1, le=1_000_000)
    ) -> dict[str, Any]:
        """Depth and per-level node sizes, for debugging a tree's balance."""
        agg = known(name)
        out: dict[str, Any] = await _guard(lambda: agg.shape(_namespace(ns), max_nodes=max_nodes))
        return out

    def total_route(which: Literal["count", "sum"]) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def route(
            name: Name,
            ns: QueryStr = "~",
            lower: QueryName = None,
            upper: QueryName = None,
            lower_inclusive: bool = True,
            upper_inclusive: bool = True,
            prefix: QueryName = None,
            eq: QueryName = None,
        ) -> dict[str, Any]:
            agg = known(name)

            async def run() -> dict[str, Any]:
                b = _bounds(lower, upper, lower_inclusive, upper_inclusive, prefix, eq)
                read = agg.count if which == "count" else agg.sum
                return {which: await read(bounds=b, namespace=_namespace(ns))}

            out: dict[str, Any] = await _guard(run)
            return out

        return route

    for which in ("count", "sum"):
        r.add_api_route(f"/{{name}}/{which}", total_route(which), methods=["GET"])

    @r.get("/{name}/at/{offset}")
    async def at(name: Name, offset: int, ns: QueryStr = "~") -> dict[str, Any]:
        agg = known(name)

        async def run() -> dict[str, Any]:
            return _item(await agg.at(offset, namespace=_namespace(ns)))

        out: dict[str, Any] = await _guard(run)
        return out

    @r.get("/{name}/page")
    async def page(
        name: Name,
        ns: QueryStr = "~",
        cursor: QueryName = None,
        size: int = Query(100, ge=1, le=10_000),
        order: Literal["asc", "desc"] = "asc",
    ) -> dict[str, Any]:
        agg = known(name)

        async def run() -> dict[str, Any]:
            p = await agg.paginate(
                cursor=cursor, page_size=size, order=order, namespace=_namespace(ns)
            )
            return {"items": [_item(i) for i in p.items], "cursor": p.cursor, "is_done": p.is_done}

        out: dict[str, Any] = await _guard(run)
        return out

    @r.get("/{name}/dump")
    async def dump(name: Name, ns: QueryStr = "~") -> dict[str, str]:
        agg = known(name)
        text: str = await _guard(lambda: agg.dump(_namespace(ns)))
        return {"dump": text}

    @r.post("/{name}/validate")
    async def validate(name: Name, ns: QueryStr = "~") -> dict[str, Any]:
        agg = known(name)
        try:
            await _guard(lambda: agg.validate(_namespace(ns)))
        except TreeCorrupted as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True}

    @r.post("/{name}/clear")
    async def clear(name: Name, body: ClearBody | None = None) -> dict[str, Any]:
        agg = known(name)
        b = body or ClearBody()
        await _guard(
            lambda: agg.clear(
                namespace=b.namespace, max_node_size=b.max_node_size, root_lazy=b.root_lazy
            )
        )
        return {"cleared": True}

    return r


def router(app: App) -> APIRouter:
    """Routes over every aggregate constructed on ``app`` (found at request time)."""
    return make_router(lambda: {a.name: a for a in app.components.of_kind("aggregate", Aggregate)})
