"""The component registry of an App: every component instance by (kind, name), and
what the runtime must run for them.

A component registers itself when constructed (``app.components.add(...)``) and, on
the first instance of its kind, what that kind needs from the process around it:
job handlers (the transport calls them by name), crons (maintenance ticks such as the
presence sweep), services (long-running loops such as the workpool pump, started and
stopped with a worker) and admin routers (referenced as ``"module:function"`` so the
core never imports the API). Workers and the admin API read the registry; they never
import a component.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["Cron", "Job", "JobHandler", "Registry", "Service"]

C = TypeVar("C")
JobHandler = Callable[..., Awaitable[Any]]
"""``async def handler(app, *args)``: runs one transport job of its name."""

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Job:
    """A transport job kind: ``await handler(app, *args)`` runs one job of ``name``.
    ``timeout_s`` bounds one job; ``max_tries`` is how often the transport may
    deliver it again after a worker stopped mid-job (the handler fences itself);
    ``keep_result_s`` keeps the transport's own result record (0 = none)."""

    name: str
    handler: JobHandler
    timeout_s: float | None = None
    max_tries: int = 1
    keep_result_s: float | None = None


@dataclass(frozen=True)
class Cron:
    """A maintenance tick: ``await run(app)`` on one worker at the given seconds/minutes/
    hours (UTC; ``None`` = every), like a crontab line."""

    name: str
    run: Callable[[Any], Awaitable[Any]]
    second: frozenset[int] | None = None
    minute: frozenset[int] | None = None
    hour: frozenset[int] | None = None


@dataclass(frozen=True)
class Service:
    """A long-running loop of a worker process: ``start(app)`` when the worker starts,
    ``await stop(app)`` when it stops."""

    name: str
    start: Callable[[Any], None]
    stop: Callable[[Any], Awaitable[None]]


@dataclass
class _Kind:
    factory: Callable[[str], Any] | None = None
    instances: dict[str, Any] = field(default_factory=dict)


class Registry:
    """``app.components``: the App's component instances and their runtime needs."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = {}
        self._jobs: dict[str, Job] = {}
        self._crons: dict[str, Cron] = {}
        self._services: dict[str, Service] = {}
        self._routers: dict[str, str] = {}
        self._public_routers: dict[str, str] = {}
        self._state: dict[str, Any] = {}

    # -- instances ------------------------------------------------------------------

    def add(self, kind: str, name: str, component: Any) -> None:
        """Register ``component`` as the instance ``name`` of ``kind``; a second
        instance of one kind under one name on one App is an error."""
        if not _KIND_RE.match(kind):
            raise ConfigError(f"component kind must match {_KIND_RE.pattern}, got {kind!r}")
        slot = self._kinds.setdefault(kind, _Kind())
        existing = slot.instances.get(name)
        if existing is not None and existing is not component:
            raise ConfigError(
                f"this App already has a {kind} named {name!r} ({existing!r}); "
                f"use that instance (or another name)"
            )
        slot.instances[name] = component

    def get(self, kind: str, name: str) -> Any | None:
        """The registered instance, or ``None``."""
        slot = self._kinds.get(kind)
        return None if slot is None else slot.instances.get(name)

    def of_kind(self, kind: str, cls: type[C] | None = None) -> list[C]:
        """Every registered instance of ``kind`` (of class ``cls`` when given)."""
        slot = self._kinds.get(kind)
        found = [] if slot is None else list(slot.instances.values())
        return [c for c in found if cls is None or isinstance(c, cls)]

    def kinds(self) -> list[str]:
        return sorted(k for k, slot in self._kinds.items() if slot.instances)

    def __iter__(self) -> Iterator[tuple[str, str, Any]]:
        for kind, slot in list(self._kinds.items()):
            for name, component in list(slot.instances.items()):
                yield kind, name, component

    def __len__(self) -> int:
        return sum(len(slot.instances) for slot in self._kinds.values())

    def __repr__(self) -> str:
        return f"Registry({', '.join(f'{k}:{n}' for k, n, _ in self)})"

    # -- per-kind factories (instances the runtime creates on demand) ---------------

    def set_factory(self, kind: str, factory: Callable[[str], Any]) -> None:
        """How to build an instance of ``kind`` with default options for a name this
        process has not constructed (e.g. a worker running a pool it only knows from
        the pool index). Set by the kind's first instance."""
        self._kinds.setdefault(kind, _Kind()).factory = factory

    def get_or_create(self, kind: str, name: str) -> Any | None:
        """The registered instance, else one built by the kind's factory, else ``None``
        (this App has no component of that kind)."""
        found = self.get(kind, name)
        if found is not None:
            return found
        slot = self._kinds.get(kind)
        if slot is None or slot.factory is None:
            return None
        return slot.factory(name)

    # -- what the runtime runs ------------------------------------------------------

    def add_job(self, job: Job) -> None:
        """The transport runs jobs called ``job.name`` with ``job.handler``."""
        self._jobs.setdefault(job.name, job)

    def job(self, name: str) -> Job | None:
        return self._jobs.get(name)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def add_cron(self, cron: Cron) -> None:
        self._crons.setdefault(cron.name, cron)

    def crons(self) -> list[Cron]:
        return list(self._crons.values())

    def add_service(self, service: Service) -> None:
        self._services.setdefault(service.name, service)

    def services(self) -> list[Service]:
        return list(self._services.values())

    def add_router(self, prefix: str, ref: str, *, public: bool = False) -> None:
        """A router for the API: ``ref`` is ``"module:function"``, a function of the
        App returning a FastAPI ``APIRouter``, mounted at ``prefix`` behind the admin
        token, or, with ``public=True`` (vendor webhooks, which verify the vendor's
        own signature instead), without it."""
        if not prefix.startswith("/") or ":" not in ref:
            raise ConfigError("add_router(prefix='/x', ref='package.module:function')")
        (self._public_routers if public else self._routers).setdefault(prefix, ref)

    def routers(self) -> dict[str, str]:
        """The admin routers (behind the admin token), by prefix."""
        return dict(self._routers)

    def public_routers(self) -> dict[str, str]:
        """The public routers (webhooks: no admin token), by prefix."""
        return dict(self._public_routers)

    # -- per-App state of a kind (e.g. the workpool's per-process runtime) -----------

    def state(self, key: str, factory: Callable[[], C]) -> C:
        """A per-App object kept for a component kind, created on first use."""
        if key not in self._state:
            self._state[key] = factory()
        value: C = self._state[key]
        return value
