"""``/metrics``: Prometheus text format, read from Redis at scrape time.

Every counter here is a total kept in Redis by the components' own scripts (a
workpool's stats hash, a cache name's hit/miss hash), so a scrape of any process
counts every worker's work exactly once; gauges are read the same way (queue depth,
slots in use, presence sessions, aggregate sizes). Components that land later add
their own with :meth:`rkit.operator.OperatorHooks.add_metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rkit import App
from rkit.action_cache import _Store, cache_names
from rkit.aggregate import Aggregate, ns_member
from rkit.operator import Sample, operator_hooks
from rkit.presence import Presence
from rkit.rate_limit import RateLimiter, read_counts
from rkit.retrier import ActionRetrier
from rkit.workpool import Workpool, pool_names

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format: every Prometheus server (and agent) reads it."""

__all__ = ["CONTENT_TYPE", "builtin_samples", "collect_samples", "render", "router"]

logger = logging.getLogger("rkit.api.metrics")

MAX_PRESENCE_ROOMS = 10_000
"""Rooms a scrape reads per presence instance (the gauges cover the first ones)."""
MAX_AGGREGATE_TREES = 100
"""Trees (namespaces) a scrape reads per aggregate."""

# stats-hash field of a workpool -> (metric name, help)
_POOL_COUNTERS = {
    "enqueued": ("rkit_workpool_jobs_enqueued", "Work items enqueued"),
    "started": ("rkit_workpool_jobs_started", "Attempts dispatched to a worker"),
    "succeeded": ("rkit_workpool_jobs_succeeded", "Work items that finished with a result"),
    "failed": ("rkit_workpool_jobs_failed", "Work items that failed for good"),
    "retries": ("rkit_workpool_jobs_retried", "Failed attempts scheduled for a retry"),
    "canceled": ("rkit_workpool_jobs_canceled", "Work items canceled"),
    "lost": ("rkit_workpool_lease_reaps", "Attempts whose lease expired (a worker died)"),
    "redispatched": ("rkit_workpool_jobs_redispatched", "Dispatches announced again"),
    "oc_dead": ("rkit_workpool_callbacks_dead_lettered", "Callbacks that went to the DLQ"),
}


def _g(name: str, help: str, value: float, /, **labels: str) -> Sample:
    return Sample(name, "gauge", help, labels, float(value))


def _c(name: str, help: str, value: float, /, **labels: str) -> Sample:
    return Sample(name, "counter", help, labels, float(value))


async def _pool_samples(pool: Workpool, kind: str, capped: bool) -> list[Sample]:
    if capped:
        d, cfg = await asyncio.gather(pool.diagnostics(), pool.get_config())
    else:
        d, cfg = await pool.diagnostics(), None
    lab = {"pool": pool.name, "kind": kind}
    out = [
        _c(metric, help, d.stats.get(field, 0), **lab)
        for field, (metric, help) in _POOL_COUNTERS.items()
    ]
    out += [
        _g("rkit_workpool_queue_depth", "Work items waiting (due or scheduled)", d.waiting, **lab),
        _g("rkit_workpool_due", "Work items due now and not yet dispatched", d.due, **lab),
        _g("rkit_workpool_running", "Slots in use (dispatched or running)", d.running, **lab),
        _g("rkit_workpool_dead_letters", "Callbacks in the dead-letter queue", d.dlq, **lab),
        _g(
            "rkit_workpool_oldest_pending_age_seconds",
            "Age of the oldest due item (0 = none)",
            (d.oldest_pending_age_ms or 0.0) / 1000,
            **lab,
        ),
    ]
    if cfg is not None:
        out.append(_g("rkit_workpool_slots", "max_parallelism (slots)", cfg.max_parallelism, **lab))
    return out


async def builtin_samples(app: App) -> list[Sample]:
    """The samples of the components on main: workpools (every pool in the
    namespace's index), retriers, action cache names, presence instances, aggregates
    and rate limits constructed on ``app``."""
    out: list[Sample] = []
    # independent reads run concurrently (one round trip each, over the pool)
    reads = [_pool_samples(Workpool.view(app, n), "workpool", True) for n in await pool_names(app)]
    reads += [
        _pool_samples(r.workpool, "retrier", False)
        for r in app.components.of_kind("retrier", ActionRetrier)
    ]
    for found in await asyncio.gather(*reads):
        out += found
    names = await cache_names(app)
    stats = await asyncio.gather(*(_Store(app, n).stats_of() for n in names))
    for cname, s in zip(names, stats, strict=True):
        out += [
            _c("rkit_cache_hits", "Fetches answered from the cache", s.hits, cache=cname),
            _c("rkit_cache_misses", "Fetches that ran the action", s.misses, cache=cname),
            _c(
                "rkit_cache_coalesced",
                "Fetches that waited on another caller's run (single flight)",
                s.coalesced,
                cache=cname,
            ),
            _g("rkit_cache_entries", "Live cache entries", s.entries, cache=cname),
        ]
    for presence in app.components.of_kind("presence", Presence):
        rooms = online = sessions = 0
        cursor = 0
        while True:
            page, cursor = await presence.rooms(cursor=cursor, count=1000)
            for r in page:
                rooms += 1
                online += r.online
                sessions += r.sessions
            if cursor == 0 or rooms >= MAX_PRESENCE_ROOMS:
                break
        lab = {"instance": presence.name}
        out += [
            _g("rkit_presence_rooms", "Rooms with presence records", rooms, **lab),
            _g("rkit_presence_users_online", "Users online (summed over rooms)", online, **lab),
            _g("rkit_presence_sessions", "Live presence sessions", sessions, **lab),
        ]
    for agg in app.components.of_kind("aggregate", Aggregate):
        for ns in (await agg.namespaces())[:MAX_AGGREGATE_TREES]:
            st = await agg.stats(ns)
            lab = {"aggregate": agg.name, "ns": ns_member(ns)}
            out += [
                _g("rkit_aggregate_items", "Items in the tree", st["count"], **lab),
                _g("rkit_aggregate_sum", "Sum of the tree's values", st["sum"], **lab),
                _g("rkit_aggregate_height", "Height of the tree", st["height"], **lab),
            ]
    limiters = app.components.of_kind("rate_limit", RateLimiter)
    for limiter in limiters:
        await limiter.flush_counts()  # this process's own, not yet written
    for lname, (allowed, limited) in (await read_counts(app)).items():
        lab = {"name": lname or "(other)"}
        out += [
            _c("rkit_rate_limit_allowed", "limit() calls allowed", allowed, **lab),
            _c("rkit_rate_limit_limited", "limit() calls refused", limited, **lab),
        ]
    for limiter in limiters:
        for lname, cfg in limiter.limits.items():
            f = cfg.filled()
            lab = {"limiter": limiter.name, "name": lname}
            out.append(
                _g("rkit_rate_limit_capacity", "Configured capacity", f.effective_capacity, **lab)
            )
    return out


async def collect_samples(app: App) -> list[Sample]:
    """Built-in samples plus every collector registered with ``add_metrics``. A
    failing collector is logged and reported by ``rkit_metrics_collector_errors``;
    the others still answer."""
    t0 = time.perf_counter()
    out = await builtin_samples(app)
    errors = 0
    for name, collect in sorted(operator_hooks(app).metrics().items()):
        try:
            out += list(await collect(app))
        except Exception:
            errors += 1
            logger.exception("metrics collector %s failed", name)
    out.append(_g("rkit_metrics_collector_errors", "Collectors that failed this scrape", errors))
    out.append(
        _g("rkit_metrics_scrape_seconds", "Time to read the metrics", time.perf_counter() - t0)
    )
    return out


class _Static:
    """A prometheus-client collector over one scrape's samples."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def families(samples: Sequence[Sample]) -> list[Metric]:
    """Group samples into metric families (one type and help per name; the first
    sample of a name decides them)."""
    fams: dict[str, Any] = {}
    labelnames: dict[str, list[str]] = {}
    for s in samples:
        fam = fams.get(s.name)
        if fam is None:
            labelnames[s.name] = sorted(s.labels)
            cls = CounterMetricFamily if s.type == "counter" else GaugeMetricFamily
            fam = fams[s.name] = cls(s.name, s.help, labels=labelnames[s.name])
        names = labelnames[s.name]
        if sorted(s.labels) != names:
            logger.warning("metric %s: labels %s differ from %s; skipped", s.name, s.labels, names)
            continue
        fam.add_metric([str(s.labels[n]) for n in names], s.value)
    return list(fams.values())


def render(samples: Sequence[Sample]) -> bytes:
    """The Prometheus text exposition of ``samples``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families(samples)))
    return generate_latest(registry)


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["metrics"])

    @r.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        body = render(await collect_samples(app))
        return Response(body, media_type=CONTENT_TYPE)

    return r
