"""The dashboard panels and actions of the components on main: workpools, retriers,
rate limits, presence, aggregates and the action cache. They use the same hooks
(:mod:`rkit.operator`) that components landing later register themselves.

Panels read a bounded amount per poll (first rows of each list); actions validate
their arguments before anything is written."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from rkit import App, ConfigError
from rkit.action_cache import _Store, cache_names
from rkit.aggregate import Aggregate, ns_member
from rkit.operator import Panel, RowAction, Section, operator_hooks
from rkit.presence import Presence
from rkit.rate_limit import RateLimiter, read_counts
from rkit.retrier import ActionRetrier
from rkit.workpool import Workpool, check_work_id, pool_names

from .validation import MAX_NAME

__all__ = ["register_builtins"]

ROWS = 50
"""Rows each list shows (running, pending, runs, rooms, ...)."""
PENDING_SCAN = 200
"""Pending items read to count those waiting for a retry."""


def _text(args: Mapping[str, Any], field: str, *, optional: bool = False) -> Any:
    v = args.get(field)
    if v is None and optional:
        return None
    if type(v) is not str or not v or len(v) > MAX_NAME:
        raise ConfigError(f"{field} must be a non-empty string of at most {MAX_NAME} characters")
    return v


def _only(args: Mapping[str, Any], *fields: str) -> None:
    extra = sorted(set(args) - set(fields))
    if extra:
        raise ConfigError(f"unexpected argument(s): {', '.join(extra)}")


# -- workpools ---------------------------------------------------------------------------


async def workpool_sections(app: App) -> list[Section]:
    """One section per pool (and one for its dead letters when it has some); the
    pools are read concurrently."""
    found = await asyncio.gather(*(_pool_sections(app, n) for n in await pool_names(app)))
    return [section for sections in found for section in sections]


async def _pool_sections(app: App, name: str) -> list[Section]:
    out: list[Section] = []
    pool = Workpool.view(app, name)
    d, cfg, running, pending = await asyncio.gather(
        pool.diagnostics(),
        pool.get_config(),
        pool.running(limit=ROWS),
        pool.pending(limit=PENDING_SCAN),
    )
    retrying = sum(1 for p in pending if p["previous_attempts"] > 0)
    stats: dict[str, Any] = {
        "running": d.running,
        "pending": d.waiting,
        "due": d.due,
        "retrying": retrying,
        "dead_letters": d.dlq,
        "slots": cfg.max_parallelism,
        "completed": d.stats.get("completed", 0),
        "succeeded": d.stats.get("succeeded", 0),
        "failed": d.stats.get("failed", 0),
        "canceled": d.stats.get("canceled", 0),
    }
    rows: list[dict[str, Any]] = []
    acts: list[list[RowAction]] = []
    for r in running:
        rows.append(
            {
                "work_id": r.work_id,
                "fn_name": r.fn_name,
                "state": r.state,
                "attempts": r.attempts,
                "worker": r.worker or "",
            }
        )
    for p in pending[: max(0, ROWS - len(rows))]:
        rows.append(
            {
                "work_id": p["work_id"],
                "fn_name": p["fn_name"],
                "state": "retrying" if p["previous_attempts"] else "pending",
                "attempts": p["previous_attempts"],
                "worker": "",
            }
        )
    for row in rows:
        args = {"pool": name, "work_id": row["work_id"]}
        acts.append([RowAction("cancel", "workpool.cancel", args, confirm="Cancel this work?")])
    out.append(
        Section(
            title=name,
            stats=stats,
            columns=["work_id", "fn_name", "state", "attempts", "worker"],
            rows=rows,
            row_actions=acts,
            series=["completed"],
            note=f"retrying counts the first {PENDING_SCAN} pending items",
        )
    )
    if d.dlq:
        dead = await pool.dead_letters(limit=ROWS)
        out.append(
            Section(
                title=f"{name} · dead letters",
                columns=["work_id", "fn_name", "on_complete", "error"],
                rows=[
                    {
                        "work_id": x.work_id,
                        "fn_name": x.fn_name,
                        "on_complete": x.on_complete,
                        "error": x.error,
                    }
                    for x in dead
                ],
                row_actions=[
                    [RowAction("replay", "workpool.replay", {"pool": name, "work_id": x.work_id})]
                    for x in dead
                ],
            )
        )
    return out


async def _pool(app: App, args: Mapping[str, Any]) -> tuple[Workpool, str]:
    _only(args, "pool", "work_id")
    name = _text(args, "pool")
    work_id = check_work_id(_text(args, "work_id"))
    if name not in await pool_names(app):
        raise LookupError(f"no workpool named {name!r}")
    return Workpool.view(app, name), work_id


async def workpool_cancel(app: App, args: dict[str, Any]) -> dict[str, Any]:
    pool, work_id = await _pool(app, args)
    outcome = await pool.cancel(work_id)
    if outcome == "NOT_FOUND":
        raise LookupError(f"no work {work_id!r} in workpool {pool.name!r}")
    return {"work_id": work_id, "outcome": outcome.lower()}


async def workpool_replay(app: App, args: dict[str, Any]) -> dict[str, Any]:
    pool, work_id = await _pool(app, args)
    return {"work_id": work_id, "replayed": await pool.replay_dead_letter(work_id)}


# -- retriers ----------------------------------------------------------------------------


async def retrier_sections(app: App) -> list[Section]:
    out = []
    for retrier in app.components.of_kind("retrier", ActionRetrier):
        stats = await retrier.stats()
        runs = await retrier.list_runs(limit=ROWS)
        out.append(
            Section(
                title=retrier.namespace,
                stats={
                    k: stats.get(k, 0)
                    for k in ("in_progress", "running", "scheduled", "succeeded", "failed")
                },
                columns=["run_id", "fn_name", "state", "attempt", "last_error"],
                rows=[
                    {
                        "run_id": r.run_id,
                        "fn_name": r.fn_name,
                        "state": r.state,
                        "attempt": r.attempt,
                        "last_error": r.last_error or "",
                    }
                    for r in runs
                ],
                row_actions=[
                    [
                        RowAction(
                            "cancel",
                            "retrier.cancel",
                            {"namespace": retrier.namespace, "run_id": r.run_id},
                            confirm="Cancel this run?",
                        )
                    ]
                    for r in runs
                ],
                series=["succeeded"],
            )
        )
    return out


async def retrier_cancel(app: App, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "namespace", "run_id")
    ns, run_id = _text(args, "namespace"), _text(args, "run_id")
    found = app.components.get("retrier", ns)
    if not isinstance(found, ActionRetrier):
        raise LookupError(f"no retrier {ns!r} in this process")
    check_work_id(run_id)
    return {"run_id": run_id, "canceled": await found.cancel(run_id)}


# -- rate limits -------------------------------------------------------------------------


async def rate_limit_sections(app: App) -> list[Section]:
    out = []
    limiters = app.components.of_kind("rate_limit", RateLimiter)
    for limiter in limiters:
        await limiter.flush_counts()
    counts = await read_counts(app) if limiters else {}
    for limiter in limiters:
        rows = []
        acts = []
        for name, cfg in list(limiter.limits.items())[:ROWS]:
            v = await limiter.get_value(name)
            f = cfg.filled()
            rows.append(
                {
                    "name": name,
                    "kind": f.kind,
                    "rate": f.rate,
                    "period_ms": f.period,
                    "capacity": f.effective_capacity,
                    "value": round(v.value, 3),
                    "allowed": counts.get(name, (0, 0))[0],
                    "limited": counts.get(name, (0, 0))[1],
                }
            )
            acts.append(
                [
                    RowAction(
                        "reset",
                        "rate_limit.reset",
                        {"limiter": limiter.name, "name": name},
                        confirm=f"Reset the limit {name}?",
                    )
                ]
            )
        out.append(
            Section(
                title=limiter.name,
                stats={"limits": len(limiter.limits)},
                columns=[
                    "name",
                    "kind",
                    "rate",
                    "period_ms",
                    "capacity",
                    "value",
                    "allowed",
                    "limited",
                ],
                rows=rows,
                row_actions=acts,
                note="value: the unkeyed bucket's units now; allowed/limited: every "
                "process's limit() calls of the name",
            )
        )
    return out


async def rate_limit_reset(app: App, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "limiter", "name", "key")
    lname, name = _text(args, "limiter"), _text(args, "name")
    key = _text(args, "key", optional=True)
    found = app.components.get("rate_limit", lname)
    if not isinstance(found, RateLimiter) or name not in found.limits:
        raise LookupError(f"no rate limit {name!r} in limiter {lname!r}")
    await found.reset(name, key=key)
    return {"reset": True, "name": name, "key": key}


# -- presence, aggregates, action cache ---------------------------------------------------


async def presence_sections(app: App) -> list[Section]:
    out = []
    for presence in app.components.of_kind("presence", Presence):
        page, _ = await presence.rooms(cursor=0, count=ROWS)
        rows = []
        for i, room in enumerate(page[:ROWS]):
            who = ""
            if i < 10 and room.online:
                entries = await presence.list_room(room.room_id, True, 20)
                who = ", ".join(e.user_id for e in entries)
            rows.append(
                {
                    "room": room.room_id,
                    "online": room.online,
                    "users": room.users,
                    "sessions": room.sessions,
                    "who is online": who,
                }
            )
        out.append(
            Section(
                title=presence.name,
                stats={
                    "rooms shown": len(rows),
                    "online": sum(r.online for r in page),
                    "sessions": sum(r.sessions for r in page),
                },
                columns=["room", "online", "users", "sessions", "who is online"],
                rows=rows,
            )
        )
    return out


async def aggregate_sections(app: App) -> list[Section]:
    out = []
    for agg in app.components.of_kind("aggregate", Aggregate):
        rows = []
        for ns in (await agg.namespaces())[:20]:
            st = await agg.stats(ns)
            rows.append(
                {
                    "namespace": ns_member(ns),
                    "count": st["count"],
                    "sum": st["sum"],
                    "height": st["height"],
                }
            )
        out.append(
            Section(
                title=agg.name,
                stats={"trees": len(rows), "count": sum(r["count"] for r in rows)},
                columns=["namespace", "count", "sum", "height"],
                rows=rows,
            )
        )
    return out


async def cache_sections(app: App) -> list[Section]:
    rows = []
    for name in (await cache_names(app))[:ROWS]:
        s = await _Store(app, name).stats_of()
        rate = s.hit_rate
        rows.append(
            {
                "name": name,
                "entries": s.entries,
                "hits": s.hits,
                "misses": s.misses,
                "coalesced": s.coalesced,
                "hit rate": "" if rate is None else f"{rate:.1%}",
            }
        )
    if not rows:
        return []
    return [
        Section(
            title="cache names",
            stats={"names": len(rows)},
            columns=["name", "entries", "hits", "misses", "coalesced", "hit rate"],
            rows=rows,
        )
    ]


def register_builtins(app: App) -> None:
    """Add the built-in kinds' panels and actions to ``app``'s operator hooks."""
    hooks = operator_hooks(app)
    hooks.add_panel(Panel("workpool", "Workpools", workpool_sections, order=10))
    hooks.add_panel(Panel("retrier", "Action retriers", retrier_sections, order=20))
    hooks.add_panel(Panel("rate_limit", "Rate limits", rate_limit_sections, order=30))
    hooks.add_panel(Panel("presence", "Presence", presence_sections, order=40))
    hooks.add_panel(Panel("aggregate", "Aggregates", aggregate_sections, order=50))
    hooks.add_panel(Panel("action_cache", "Action cache", cache_sections, order=60))
    hooks.add_action("workpool.cancel", workpool_cancel)
    hooks.add_action("workpool.replay", workpool_replay)
    hooks.add_action("retrier.cancel", retrier_cancel)
    hooks.add_action("rate_limit.reset", rate_limit_reset)
