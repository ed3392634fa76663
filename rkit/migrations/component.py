"""The :class:`Migrations` component: durable state per migration (one hash per
name, changed only by the scripts in ``lua/migrations/``), batches run on a
workpool of the ``migrations`` kind (the one execution path).

A run: ``begin`` takes the migration's lease under a fresh token (a live lease of
another token is ``busy``: one runner per migration), the caller processes the
first batch itself (so an immediate failure is returned), then one workpool item
(``rkit_migrations_batch``) continues batch after batch for up to ``job_budget_ms``
and hands over to a fresh item. Every batch is ``claim`` (fenced by the token, it
starts at the *stored* cursor), page, ``migrate_one`` per item, patches applied in
one pipeline, ``commit`` (compare-and-set on token and start cursor). A worker
killed mid-batch leaves the cursor at that batch's start: the workpool retries the
item on another worker (its lease expired), which claims with the same token and
re-runs the batch. Batches are therefore at least once: ``migrate_one`` must be
idempotent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from redis.exceptions import ResponseError

from .. import codec, scripts
from ..clock import argv_now
from ..errors import ConfigError
from ..keys import check_part
from ..operator import Panel, Sample, Section, operator_hooks
from ..workpool import MAX_TIMEOUT_MS, Failed, PoolKind, RetryBehavior, RunResult, Workpool
from .dryrun import RecordingRedis
from .types import (
    DEFAULT_BATCH_SIZE,
    RESUME,
    CursorMismatch,
    DryRunReport,
    InvalidBatchSize,
    MigrateOne,
    MigrationBatchFailed,
    MigrationCtx,
    MigrationError,
    MigrationInProgress,
    MigrationNotFound,
    MigrationStatus,
    Source,
    SourcePage,
    UnknownMigration,
    _Resume,
)

if TYPE_CHECKING:
    from ..app import App

__all__ = ["MIGRATIONS", "Migration", "MigrationKind", "Migrations"]

logger = logging.getLogger("rkit.migrations")

T = TypeVar("T")
BATCH_JOB = "rkit_migrations_batch"
DONE_JOB = "rkit_migrations_done"
MAX_FAILED_KEPT = 1_000
"""Record-and-continue failures kept per migration (all are counted)."""
MAX_ERROR_CHARS = 2_000
JOB_RETRY = RetryBehavior(max_attempts=20, initial_backoff_ms=250, base=2, max_backoff_ms=30_000)
"""A batch item is retried when its worker died (lease expired) or it timed out; a
failing ``migrate_one`` is not an item failure (it fails the migration)."""
OnBatch = Callable[[MigrationStatus], Awaitable[None] | None]


@dataclass(frozen=True)
class MigrationKind(PoolKind):
    """The pool kind migration batches run on; ``on_complete`` handlers get
    ``context, result``."""

    kind: str = "migrations"
    logger: str = "rkit.migrations"
    default_max_parallelism: int = 10

    async def deliver(
        self, handler: Callable[..., Awaitable[Any]], work_id: Any, context: Any, result: RunResult
    ) -> None:
        await handler(context=context, result=result)


MIGRATIONS = MigrationKind()


@dataclass(frozen=True)
class Migration(Generic[T]):
    """A defined migration (see :meth:`Migrations.define`)."""

    name: str
    source: Source[T]
    migrate_one: MigrateOne
    batch_size: int | None = None
    parallelize: bool = False
    max_concurrency: int | None = None
    on_item_error: Literal["raise", "record"] = "raise"


@dataclass(frozen=True)
class _Claim:
    """A claimed batch: where it starts and the run's options."""

    cursor: str | None
    limit: int
    next: list[str]
    next_batch: int | None
    reset: bool


@dataclass(frozen=True)
class _Outcome:
    kind: str  # continue | done | canceled | stale | failed
    next: list[str]
    next_batch: int | None
    reset: bool
    error: str | None = None
    claim: _Claim | None = None
    """After ``continue``: the next batch, already claimed by the commit."""


def _check_batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidBatchSize(value)
    return value


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _iso(ms: float | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000.0, UTC).isoformat().replace("+00:00", "Z")


def _int(v: str | None) -> int:
    return int(float(v)) if v else 0


class Migrations:
    """Resumable batched migrations over Redis (or any paged) data, with durable
    progress, one runner per migration, dry runs, cancel and ordered series.

    One instance per ``name`` per App; a worker (or admin API) process that
    constructs the same instance and ``define``\\ s the same migrations runs their
    batches. ``lease_ms`` (default 5 min, renewed by every batch) must exceed the
    longest batch: a runner silent that long is presumed dead and a resume takes
    over."""

    def __init__(
        self,
        app: App,
        name: str = "default",
        *,
        default_batch_size: int = DEFAULT_BATCH_SIZE,
        location_prefix: str | None = None,
        lease_ms: float = 300_000,
        max_parallelism: int | None = None,
        job_budget_ms: float = 20_000,
        register: bool = True,
    ) -> None:
        _check_batch_size(default_batch_size)
        for what, v in (("lease_ms", lease_ms), ("job_budget_ms", job_budget_ms)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
                raise ConfigError(f"{what} must be a positive finite number of ms")
        if location_prefix is not None and (
            not isinstance(location_prefix, str) or not location_prefix
        ):
            raise ConfigError("location_prefix must be a non-empty string or None")
        self.app = app
        self.name = name
        self.default_batch_size = default_batch_size
        self.location_prefix = location_prefix
        self.lease_ms = float(lease_ms)
        self.job_budget_ms = float(job_budget_ms)
        self._defs: dict[str, Migration[Any]] = {}
        self._tag = app.keys.tag(MIGRATIONS.kind, name)
        self._reg = [f"{self._tag}:all", f"{self._tag}:seq"]
        self._s = {
            op: scripts.load("migrations", op)
            for op in ("begin", "claim", "commit", "fail", "cancel", "clear", "register")
        }
        self.workpool = Workpool(
            app,
            name,
            kind=MIGRATIONS,
            max_parallelism=max_parallelism,
            timeout_ms=MAX_TIMEOUT_MS,
            register=register,
        )
        if register:
            app.components.add(MIGRATIONS.kind, name, self)
            app.components.set_factory(MIGRATIONS.kind, lambda n: Migrations(app, n))
            app.components.add_router("/migrations", "rkit.api.migrations:router")
            _register_actions(app)
            hooks = operator_hooks(app)
            hooks.add_panel(Panel("migrations", "Migrations", _migrations_panel, order=75))
            hooks.add_metrics("migrations", _migrations_metrics)

    def __repr__(self) -> str:
        return f"Migrations({self.name!r}, {len(self._defs)} defined)"

    # -- definitions ------------------------------------------------------------------

    def full_name(self, name: str) -> str:
        """``name`` with the location prefix when it contains no ``":"`` (spec §4.8)."""
        if not isinstance(name, str) or not name:
            raise ConfigError("a migration name must be a non-empty string")
        check_part(name, "migration name")
        if self.location_prefix and ":" not in name:
            return self.location_prefix + name
        return name

    def define(
        self,
        *,
        source: Source[T],
        migrate_one: MigrateOne,
        name: str | None = None,
        batch_size: int | None = None,
        parallelize: bool = False,
        max_concurrency: int | None = None,
        on_item_error: Literal["raise", "record"] = "raise",
    ) -> Migration[T]:
        """Define a migration: ``migrate_one(ctx, item)`` (sync or async) runs for every
        item of ``source``; a returned mapping is applied as a patch by the source
        (hash sources: ``HSET``, ``None`` values ``HDEL``); ``None`` or ``{}`` writes
        nothing. ``name`` defaults to the function's name. It must be idempotent:
        a batch interrupted before its commit runs again."""
        if not callable(migrate_one):
            raise ConfigError("migrate_one must be a function (ctx, item)")
        for attr in ("fingerprint", "page", "item_id"):
            if not callable(getattr(source, attr, None)):
                raise ConfigError(f"source must be a migrations Source (no {attr}())")
        if batch_size is not None:
            _check_batch_size(batch_size)
        if max_concurrency is not None:
            _check_batch_size(max_concurrency)
        if on_item_error not in ("raise", "record"):
            raise ConfigError("on_item_error must be 'raise' or 'record'")
        fn_name = str(getattr(migrate_one, "__name__", ""))
        if name is None and (not fn_name or fn_name == "<lambda>"):
            raise ConfigError("define(name=...) is required when migrate_one has no name")
        full = self.full_name(fn_name if name is None else name)
        mig: Migration[T] = Migration(
            full, source, migrate_one, batch_size, bool(parallelize), max_concurrency, on_item_error
        )
        self._defs[full] = mig
        return mig

    def get(self, migration: Migration[Any] | str) -> Migration[Any]:
        """The definition of a migration (by object or name); unknown →
        :class:`UnknownMigration`."""
        name = self._name(migration)
        found = self._defs.get(name)
        if found is None:
            raise UnknownMigration(name)
        return found

    def defined(self) -> list[str]:
        return list(self._defs)

    def _name(self, migration: Migration[Any] | str) -> str:
        if isinstance(migration, Migration):
            return migration.name
        return self.full_name(migration)

    def _limit(self, mig: Migration[Any], batch_size: int | None) -> int:
        if batch_size is not None:
            return _check_batch_size(batch_size)
        return mig.batch_size or self.default_batch_size

    # -- scripts ----------------------------------------------------------------------

    def _keys(self, name: str) -> list[str]:
        s = self.app.keys.tag(MIGRATIONS.kind, self.name, name)
        return [s, s + ":failed"]

    async def _call(self, op: str, keys: Sequence[str], *args: str) -> Any:
        argv = [argv_now(self.app.clock), *args]
        try:
            return await self._s[op](self.app.redis, keys, argv)
        except ResponseError as exc:  # pragma: no cover - scripts raise no errors
            raise MigrationError(f"migrations/{op}: {exc}") from None

    async def _read(self, name: str) -> dict[str, str]:
        redis: Any = self.app.redis
        h: dict[str, str] = await redis.hgetall(self._keys(name)[0])
        return h

    def _status(self, name: str, h: Mapping[str, str], now: float) -> MigrationStatus:
        if not h:
            return MigrationStatus(name, None, 0, False, None, "unknown", 0.0, None)
        done = h.get("done") == "1"
        state = h.get("state", "idle")
        lease = float(h.get("lease") or 0)
        if done:
            st: Any = "success"
        elif state == "failed":
            st = "failed"
        elif state == "canceled" or h.get("cancel") == "1":
            st = "canceled"
        elif state == "running" and h.get("token") and lease > now:
            st = "inProgress"
        else:
            st = "unknown"
        nxt, batch = None, None
        if st == "inProgress":
            batch = _int(h.get("batch")) or None
            nxt = list(codec.loads(h["next"]).get("names", [])) if h.get("next") else []
        return MigrationStatus(
            name=name,
            cursor=None if done else h.get("cursor"),
            processed=_int(h.get("processed")),
            is_done=done,
            error=h.get("error") or None,
            state=st,
            latest_start=float(h.get("started") or 0),
            latest_end=float(h["ended"]) if h.get("ended") else None,
            batch_size=batch,
            next=nxt,
            failed_items=_int(h.get("failed_n")),
        )

    async def _now(self) -> float:
        return await self.app.server_time()

    async def _status_of(self, name: str) -> MigrationStatus:
        h = await self._read(name)
        return self._status(name, h, await self._now())

    # -- running ----------------------------------------------------------------------

    @overload
    async def run_one(
        self,
        migration: Migration[Any] | str,
        *,
        cursor: str | _Resume | None = RESUME,
        batch_size: int | None = None,
        dry_run: Literal[False] = False,
        reset: bool = False,
    ) -> MigrationStatus: ...

    @overload
    async def run_one(
        self,
        migration: Migration[Any] | str,
        *,
        cursor: str | _Resume | None = RESUME,
        batch_size: int | None = None,
        dry_run: Literal[True],
        reset: bool = False,
    ) -> DryRunReport: ...

    @overload
    async def run_one(
        self,
        migration: Migration[Any] | str,
        *,
        cursor: str | _Resume | None = RESUME,
        batch_size: int | None = None,
        dry_run: bool,
        reset: bool = False,
    ) -> MigrationStatus | DryRunReport: ...

    async def run_one(
        self,
        migration: Migration[Any] | str,
        *,
        cursor: str | _Resume | None = RESUME,
        batch_size: int | None = None,
        dry_run: bool = False,
        reset: bool = False,
    ) -> MigrationStatus | DryRunReport:
        """Start or resume one migration: its first batch runs here, the rest in the
        background. A migration already in progress is left alone (its status is
        returned); a done one runs nothing unless ``reset`` or a ``cursor`` is given
        (``None`` = from the beginning). ``dry_run`` runs one batch and writes
        nothing (a :class:`DryRunReport`)."""
        return await self._run(migration, (), cursor, batch_size, dry_run, reset)

    async def run_serially(
        self, migrations: Sequence[Migration[Any] | str]
    ) -> MigrationStatus | None:
        """Run a series: each starts when the previous one is done; a failure or
        cancel stops the series, and running it again skips the done ones and resumes
        where it stopped. ``[]`` → ``None``."""
        names = [self._name(m) for m in migrations]
        if not names:
            return None
        got = await self._run(names[0], names[1:], RESUME, None, False, False)
        assert isinstance(got, MigrationStatus)
        return got

    async def _run(
        self,
        migration: Migration[Any] | str,
        next_names: Sequence[str],
        cursor: str | _Resume | None,
        batch_size: int | None,
        dry_run: bool,
        reset: bool,
    ) -> MigrationStatus | DryRunReport:
        mig = self.get(migration)
        nxt = [self.get(n).name for n in next_names]  # every name known before any write
        limit = self._limit(mig, batch_size)
        if cursor is not RESUME and cursor is not None and not isinstance(cursor, str):
            raise ConfigError("cursor must be a string, None (the beginning) or RESUME")
        if dry_run:
            return await self._dry_run(mig, cursor, limit, reset, nxt)
        if not reset:  # the client-side guard (spec §4.3): any of the series in progress
            for n in [mig.name, *nxt]:
                st = await self._status_of(n)
                if st.state == "inProgress":
                    return st
        return await self._start(mig, nxt, cursor, batch_size, reset, inline=True)

    async def _begin(
        self,
        mig: Migration[Any],
        token: str,
        cursor: str | _Resume | None,
        limit: int,
        nxt: Sequence[str],
        next_batch: int | None,
        reset: bool,
    ) -> list[str]:
        explicit = reset or cursor is not RESUME
        cur = None if reset or isinstance(cursor, _Resume) else cursor
        reply = await self._call(
            "begin",
            self._keys(mig.name),
            "explicit" if explicit else "resume",
            "0" if cur is None else "1",
            cur or "",
            mig.source.fingerprint(),
            token,
            codec.fmt_num(self.lease_ms),
            str(limit),
            codec.dumps({"names": list(nxt), "batch": next_batch}),
            "1" if reset else "0",
        )
        out = [str(x) for x in reply]
        if out[0] == "go" and out[4] == "1":
            await self._call("register", self._reg, mig.name)
        if out[0] == "fp_mismatch":
            h = await self._read(mig.name)
            raise CursorMismatch(mig.name, h.get("fp", ""), mig.source.fingerprint())
        return out

    async def _start(
        self,
        mig: Migration[Any],
        nxt: Sequence[str],
        cursor: str | _Resume | None,
        batch_size: int | None,
        reset: bool,
        *,
        inline: bool,
    ) -> MigrationStatus:
        token = secrets.token_hex(8)
        limit = self._limit(mig, batch_size)
        reply = await self._begin(mig, token, cursor, limit, nxt, batch_size, reset)
        if reply[0] == "done":
            await self._start_next(list(nxt), batch_size, reset)
        elif reply[0] == "go":
            if inline:
                out = await self._batch(mig, token)
                await self._after(mig, token, out)
            else:
                await self._enqueue(mig.name, token)
        return await self._status_of(mig.name)

    async def _after(self, mig: Migration[Any], token: str, out: _Outcome) -> None:
        if out.kind == "continue":
            await self._enqueue(mig.name, token)
        elif out.kind == "done":
            await self._start_next(out.next, out.next_batch, out.reset)

    async def _start_next(self, nxt: list[str], batch_size: int | None, reset: bool) -> None:
        """Start the first migration of ``nxt`` in the background (a done one moves on
        to the rest, unless ``reset`` restarts it)."""
        if not nxt:
            return
        mig = self._defs.get(nxt[0])
        if mig is None:
            logger.error("Migration series: %s is not defined in this process", nxt[0])
            return
        logger.info("Migration series: starting %s", mig.name)
        await self._start(mig, nxt[1:], None if reset else RESUME, batch_size, reset, inline=False)

    async def _enqueue(self, name: str, token: str) -> None:
        ctx = {"instance": self.name, "name": name, "token": token}
        await self.workpool.enqueue(
            BATCH_JOB, ctx, retry_behavior=JOB_RETRY, on_complete=DONE_JOB, context=ctx
        )

    async def _job(self, name: str, token: str) -> None:
        """One workpool item: batches under ``token`` for up to ``job_budget_ms``, then
        a fresh item continues."""
        mig = self._defs.get(name)
        if mig is None:
            err = f"Can't find function {name} in the worker's App (define it there too)"
            await self._call("fail", self._keys(name), token, err)
            return
        deadline = time.monotonic() + self.job_budget_ms / 1000.0
        claim = None
        while True:
            out = await self._batch(mig, token, claim)
            if out.kind == "continue" and time.monotonic() < deadline:
                claim = out.claim
                continue
            await self._after(mig, token, out)
            return

    async def _batch(
        self, mig: Migration[Any], token: str, claimed: _Claim | None = None
    ) -> _Outcome:
        """Claim (unless the previous commit did), process and commit one batch
        under ``token``."""
        keys = self._keys(mig.name)
        if claimed is None:
            got = [str(x) for x in await self._call("claim", keys, token, str(self.lease_ms))]
            if got[0] != "ok":
                return _Outcome(got[0], [], None, False)
            nx = codec.loads(got[4]) if got[4] else {}
            claimed = _Claim(
                got[2] if got[1] == "1" else None,
                int(got[3] or self.default_batch_size),
                list(nx.get("names", [])),
                nx.get("batch"),
                got[5] == "1",
            )
        cursor, limit = claimed.cursor, claimed.limit
        names, nbatch, reset = claimed.next, claimed.next_batch, claimed.reset
        try:
            page = await mig.source.page(cursor, limit)
            failures = await self._apply(mig, page, cursor, None)
            if page.next_cursor == cursor and not page.is_done:
                raise MigrationError(
                    f"invariant: the source returned the same cursor {cursor!r} without "
                    "finishing (no progress)"
                )
        except Exception as exc:
            err = _error_text(exc)
            logger.error("Migration %s failed: %s", mig.name, err)
            await self._call("fail", keys, token, err)
            return _Outcome("failed", names, nbatch, reset, err)
        flat = [x for f in failures for x in f]
        reply = await self._call(
            "commit",
            keys,
            token,
            "0" if cursor is None else "1",
            cursor or "",
            "1",
            page.next_cursor,
            "1" if page.is_done else "0",
            str(len(page.items)),
            codec.fmt_num(self.lease_ms),
            str(MAX_FAILED_KEPT),
            *flat,
        )
        kind = str(reply[0])
        if kind == "done":
            logger.info("Migration %s done; next up: %s", mig.name, names or "nothing")
        after = replace(claimed, cursor=page.next_cursor) if kind == "continue" else None
        return _Outcome(kind, names, nbatch, reset, claim=after)

    async def _apply(
        self,
        mig: Migration[Any],
        page: SourcePage[Any],
        cursor: str | None,
        dry: RecordingRedis | None,
        changes: list[tuple[str, Any, Any]] | None = None,
    ) -> list[tuple[str, str]]:
        """Run ``migrate_one`` over a page and apply (or, dry, preview) the patches;
        returns the recorded item failures (record mode)."""
        ctx = MigrationCtx(
            redis=dry if dry is not None else self.app.redis,
            dry_run=dry is not None,
            name=mig.name,
            batch_cursor=cursor,
        )
        failures: list[tuple[str, str]] = []
        source = mig.source

        def failed(item: Any, exc: Exception) -> None:
            """Record mode: note the item's error; raise mode: log and fail the batch."""
            iid = source.item_id(item)
            if mig.on_item_error == "record":
                failures.append((iid, _error_text(exc)))
                return
            logger.error("Migration %s failed on item %s: %s", mig.name, iid, exc)
            raise exc

        def checked(item: Any, patch: Any) -> tuple[Any, Mapping[str, Any]] | None:
            if patch is None:
                return None
            if type(patch) is dict:  # the common case, without the ABC check
                return (item, patch) if patch else None
            if not isinstance(patch, Mapping):
                raise MigrationError(
                    f"migrate_one of {mig.name} must return a mapping (a patch) or None, "
                    f"got {type(patch).__name__}"
                )
            return (item, patch) if patch else None

        fn = mig.migrate_one
        results: list[tuple[Any, Mapping[str, Any]] | None] = []
        if mig.parallelize and len(page.items) > 1:
            sem = asyncio.Semaphore(mig.max_concurrency or len(page.items))

            async def bounded(item: Any) -> tuple[Any, Mapping[str, Any]] | None:
                async with sem:
                    try:
                        patch = fn(ctx, item)
                        if inspect.isawaitable(patch):
                            patch = await patch
                    except Exception as exc:
                        failed(item, exc)
                        return None
                    return checked(item, patch)

            try:
                async with asyncio.TaskGroup() as tg:  # the first failure cancels the rest
                    tasks = [tg.create_task(bounded(i)) for i in page.items]
            except ExceptionGroup as group:
                raise group.exceptions[0] from None
            results = [t.result() for t in tasks]
        else:  # sequential, without a coroutine per item (the hot path)
            for item in page.items:
                try:
                    patch = fn(ctx, item)
                    if type(patch) is not dict and inspect.isawaitable(patch):
                        patch = await patch
                except Exception as exc:
                    failed(item, exc)
                    continue
                if patch is not None:
                    results.append(checked(item, patch))
        patches = [r for r in results if r is not None]
        if dry is not None:
            for item, patch in patches:
                if changes is not None and len(changes) < 10:
                    before, after = source.preview(item, patch)
                    changes.append((source.item_id(item), before, after))
                dry.writes.append(("PATCH", source.item_id(item), codec.dumps(dict(patch))))
        elif patches:
            await source.apply_patches(patches)
        return failures

    async def _dry_run(
        self,
        mig: Migration[Any],
        cursor: str | _Resume | None,
        limit: int,
        reset: bool,
        nxt: list[str],
    ) -> DryRunReport:
        """One batch, nothing written (spec §4.5, §7.6, M2)."""
        h = await self._read(mig.name)
        now = await self._now()
        current = self._status(mig.name, h, now)
        explicit = reset or cursor is not RESUME
        if h.get("done") == "1" and not explicit:
            return DryRunReport(replace(current, batch_size=limit, next=nxt))
        if h and not explicit and h.get("fp") != mig.source.fingerprint():
            raise CursorMismatch(mig.name, h.get("fp", ""), mig.source.fingerprint())
        if reset or cursor is None:
            start = None
        elif isinstance(cursor, str):
            start = cursor
        else:
            start = h.get("cursor")
        fresh = explicit or not h
        base = 0 if fresh else _int(h.get("processed"))
        started = now if fresh else float(h.get("started") or now)
        proxy = RecordingRedis(self.app.redis)
        changes: list[tuple[str, Any, Any]] = []
        try:
            page = await mig.source.page(start, limit)
            failures = await self._apply(mig, page, start, proxy, changes)
        except Exception as exc:
            status = MigrationStatus(
                mig.name,
                start,
                base,
                False,
                _error_text(exc),
                "failed",
                started,
                None,
                limit,
                nxt,
            )
            return DryRunReport(status, changes, proxy.writes)
        done = page.is_done
        status = MigrationStatus(
            name=mig.name,
            cursor=None if done else page.next_cursor,
            processed=base + len(page.items),
            is_done=done,
            error=None,
            state="success" if done else "inProgress",
            latest_start=started,
            latest_end=now if done else None,
            batch_size=limit,
            next=nxt,
            failed_items=(0 if fresh else _int(h.get("failed_n"))) + len(failures),
        )
        return DryRunReport(status, changes, proxy.writes)

    async def run_to_completion(
        self,
        migration: Migration[Any] | str,
        *,
        cursor: str | _Resume | None = RESUME,
        batch_size: int | None = None,
        dry_run: bool = False,
        on_batch: OnBatch | None = None,
    ) -> MigrationStatus:
        """Run every batch here, now (tests, scripts): nothing is enqueued, and the
        lease is held throughout, so background starts are refused meanwhile (M7).
        A failed batch raises :class:`MigrationBatchFailed` (the state keeps the
        error; a later run resumes). ``on_batch(status)`` is called after each
        committed batch that did not finish."""
        mig = self.get(migration)
        limit = self._limit(mig, batch_size)
        if dry_run:
            return (await self._dry_run(mig, cursor, limit, False, [])).status
        token = secrets.token_hex(8)
        reply = await self._begin(mig, token, cursor, limit, [], None, False)
        if reply[0] == "busy":
            raise MigrationInProgress(f"Migration {mig.name} is already in progress")
        claim = None
        while reply[0] == "go":
            out = await self._batch(mig, token, claim)
            claim = out.claim
            if out.kind == "failed":
                raise MigrationBatchFailed(out.error or "batch failed")
            if out.kind == "stale":
                raise MigrationInProgress(f"Migration {mig.name}: another runner took over")
            if out.kind != "continue":
                break
            if on_batch is not None:
                got = on_batch(await self._status_of(mig.name))
                if inspect.isawaitable(got):
                    await got
        return await self._status_of(mig.name)

    # -- the runner and its report (spec §3.3, §3.6) ----------------------------------

    async def run(
        self,
        fn: Migration[Any] | str | None = None,
        *,
        next: Sequence[Migration[Any] | str] = (),
        cursor: str | _Resume | None = RESUME,
        batch_size: int | None = None,
        dry_run: bool = False,
        reset: bool = False,
    ) -> dict[str, Any]:
        """The runner: start or resume ``fn`` (then ``next`` in order) and return the
        report operators read (``Status``, ``Name``, ``lastStarted``, ``processed``,
        what is up next and the commands to cancel, monitor or start over)."""
        if fn is None:
            raise MigrationError(
                "Specify the migration to run: run('name') or run(migration), "
                f"one of {', '.join(self._defs) or '(none defined)'}"
            )
        mig = self.get(fn)
        nxt = [self._name(n) for n in next]
        before = await self._status_of(mig.name)
        got = await self._run(mig, nxt, cursor, batch_size, dry_run, reset)
        status = got.status if isinstance(got, DryRunReport) else got
        explicit = reset or cursor is not RESUME
        if status.state == "success":
            if (
                before.state == "success"
                and not explicit
                and status.latest_start == (before.latest_start)
            ):
                text = "Migration already done."
            elif status.latest_end == status.latest_start:
                text = "Migration was started and finished in one batch."
            else:
                text = "Migration completed with this batch."
        elif status.state == "failed":
            text = f"Migration failed: {status.error}"
        elif status.state == "canceled":
            text = "Migration is canceled."
        elif status.state == "inProgress":
            text = "Migration is running." if before.state == "inProgress" else "Migration started."
        else:
            text = "Migration state unknown."
        report: dict[str, Any] = {
            "Status": ("DRY RUN: " if dry_run else "") + text,
            "Name": status.name,
            "lastStarted": _iso(status.latest_start),
            "processed": status.processed,
        }
        if dry_run:
            report["DryRun"] = "Nothing was committed."
        if status.latest_end is not None:
            report["lastFinished"] = _iso(status.latest_end)
        if nxt:
            report["nextUp" if status.is_done else "nowUp"] = nxt
        quoted = status.name
        if status.state == "inProgress":
            report["toCancel"] = f"POST /migrations/{quoted}/cancel"
            report["toMonitorStatus"] = f"GET /migrations?names={quoted}"
        else:
            report["toStartOver"] = {
                "run": {"name": status.name, "reset": True, "next": nxt},
                "cli": f"rkit migrate APP {quoted} --reset",
            }
        if isinstance(got, DryRunReport):
            report["changes"] = [list(c) for c in got.changes]
        return report

    # -- observing and stopping -------------------------------------------------------

    async def names(self, *, limit: int | None = None) -> list[str]:
        """Names with state, oldest first (the ``limit`` most recent)."""
        if limit is None:
            got = await self.app.redis.zrange(self._reg[0], 0, -1)
        else:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ConfigError("limit must be an int >= 0")
            if limit == 0:
                return []
            got = await self.app.redis.zrange(self._reg[0], -limit, -1)
        return [str(n) for n in got]

    async def get_status(
        self, migrations: Sequence[Migration[Any] | str] | None = None, *, limit: int = 100
    ) -> list[MigrationStatus]:
        """Statuses of the named migrations in input order (unknown names:
        ``state "unknown"``), or of the ``limit`` most recently created, oldest first."""
        if migrations is None:
            names = await self.names(limit=limit)
        else:
            if isinstance(migrations, str | Migration):
                raise ConfigError("get_status takes a list of migrations")
            names = [self._name(m) for m in migrations]
        now = await self._now()
        out = []
        for n in names:
            out.append(self._status(n, await self._read(n), now))
        return out

    async def status(self, migration: Migration[Any] | str) -> MigrationStatus:
        return await self._status_of(self._name(migration))

    async def cancel(self, migration: Migration[Any] | str) -> MigrationStatus:
        """Cancel a running migration: a batch being processed still commits its
        progress, no batch follows it, and its series stops (resume with
        ``run_one``). Done or idle migrations are returned unchanged."""
        name = self._name(migration)
        reply = str(await self._call("cancel", self._keys(name)))
        if reply == "not_found":
            raise MigrationNotFound(name)
        if reply == "unchanged":
            logger.info("Migration %s not canceled: not running", name)
        return await self._status_of(name)

    async def cancel_all(self, *, since_ms: float | None = None) -> list[MigrationStatus]:
        """Cancel every unfinished migration (created at or after ``since_ms``);
        returns the statuses of those canceled."""
        out = []
        for n in await self.names():
            h = await self._read(n)
            if not h or h.get("done") == "1":
                continue
            if since_ms is not None and float(h.get("created") or 0) < since_ms:
                continue
            if str(await self._call("cancel", self._keys(n))) == "canceled":
                out.append(await self._status_of(n))
        return out

    async def clear_all(self, *, before_ms: float | None = None) -> int:
        """Delete the state (not the data) of migrations created at or before
        ``before_ms`` (default now); returns how many."""
        before = await self._now() if before_ms is None else float(before_ms)
        n = 0
        for name in await self.names():
            if int(await self._call("clear", self._keys(name), codec.fmt_num(before))):
                await self.app.redis.zrem(self._reg[0], name)
                n += 1
        return n

    async def failed_items(self, migration: Migration[Any] | str) -> dict[str, str]:
        """Record-and-continue failures: item id → error (at most 1,000 kept)."""
        redis: Any = self.app.redis
        got: dict[str, str] = await redis.hgetall(self._keys(self._name(migration))[1])
        return got

    async def progress(self, migration: Migration[Any] | str) -> dict[str, Any]:
        """``processed``, the source's ``estimate`` of the total (``None`` if unknown),
        the average ``rate`` (items/s since the run started) and ``eta_s``."""
        name = self._name(migration)
        h = await self._read(name)
        if not h:
            raise MigrationNotFound(name)
        now = await self._now()
        st = self._status(name, h, now)
        mig = self._defs.get(name)
        total = await mig.source.estimate_total() if mig is not None else None
        end = st.latest_end if st.latest_end is not None else now
        elapsed = max(0.0, (end - st.latest_start) / 1000.0)
        rate = st.processed / elapsed if elapsed > 0 else None
        eta = None
        if total is not None and rate and not st.is_done:
            eta = max(0.0, (total - st.processed) / rate)
        return {
            "name": name,
            "state": st.state,
            "processed": st.processed,
            "estimate": total,
            "rate": rate,
            "eta_s": 0.0 if st.is_done else eta,
        }


def _register_actions(app: App) -> None:
    """The batch job and its completion handler, once per App."""
    if BATCH_JOB in app.actions:
        return

    def component(instance: str) -> Migrations:
        found = app.components.get_or_create(MIGRATIONS.kind, instance)
        if not isinstance(found, Migrations):  # pragma: no cover - the kind is ours
            raise MigrationError(f"no migrations component named {instance!r}")
        return found

    async def batch_job(instance: str, name: str, token: str) -> None:
        await component(instance)._job(name, token)

    async def batch_done(context: Any, result: RunResult) -> None:
        if isinstance(result, Failed):  # the item gave up (e.g. its workers kept dying)
            m = component(context["instance"])
            err = f"batch job failed: {result.error}"
            await m._call("fail", m._keys(context["name"]), context["token"], err)

    app.action(name=BATCH_JOB)(batch_job)
    app.action(name=DONE_JOB)(batch_done)


async def _migrations_panel(app: App) -> list[Section]:
    """Dashboard panel: per instance the latest migrations, each with a progress bar
    (processed of the source's estimate)."""
    out = []
    for m in app.components.of_kind(MIGRATIONS.kind, Migrations):
        statuses = await m.get_status(limit=20)
        bars: dict[str, tuple[float, float]] = {}
        for st in statuses:
            mig = m._defs.get(st.name)
            if mig is not None:  # the status is read already: only the estimate is owed
                estimate = await mig.source.estimate_total()
                total = float(estimate) if estimate else float(max(st.processed, 1))
                bars[st.name] = (float(st.processed), max(total, float(st.processed)))
        rows = [
            {
                "name": st.name,
                "state": st.state,
                "processed": st.processed,
                "failed items": st.failed_items,
                "error": st.error,
            }
            for st in statuses
        ]
        out.append(
            Section(
                f"instance {m.name}",
                stats={"migrations": len(statuses)},
                columns=["name", "state", "processed", "failed items", "error"],
                rows=rows,
                progress=bars,
            )
        )
    return out


async def _migrations_metrics(app: App) -> list[Sample]:
    """/metrics: items processed per migration (the committed count in Redis)."""
    out = []
    for m in app.components.of_kind(MIGRATIONS.kind, Migrations):
        for st in await m.get_status(limit=100):
            out.append(
                Sample(
                    "rkit_migration_processed",
                    "counter",
                    "Items a migration processed (committed batches)",
                    {"instance": m.name, "migration": st.name, "state": st.state},
                    st.processed,
                )
            )
    return out
