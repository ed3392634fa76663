"""``rkit.App``: one per service — Redis connections, namespace, clock, actions."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, overload

from redis.asyncio.cluster import RedisCluster

from . import connections
from .clock import Clock, ServerClock
from .codec import dumps
from .errors import ActionNotFound, ConfigError
from .keys import KeySpace
from .registry import Registry

if TYPE_CHECKING:
    import redis.asyncio

    #: the state client: redis-py's asyncio ``Redis`` or ``RedisCluster`` (``str`` replies)
    StateRedis: TypeAlias = "redis.asyncio.Redis | RedisCluster"
else:
    StateRedis = Any

ActionFn = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=ActionFn)

ENV_URL = "RKIT_REDIS_URL"
ENV_QUEUE_URL = "RKIT_QUEUE_URL"


class Transport(Protocol):
    """The queue transport (arq today, in :mod:`rkit._arq`, which registers itself
    with :func:`use_transport` when imported): the core never imports it."""

    async def connect(self, app: App) -> Any: ...

    async def enqueue_action(
        self, conn: Any, queue_name: str, name: str, args: list[Any], kwargs: dict[str, Any]
    ) -> str: ...

    async def job_result(
        self, conn: Any, queue_name: str, job_id: str, timeout: float | None
    ) -> Any: ...


_transport: Transport | None = None


def use_transport(transport: Transport) -> None:
    """Install the queue transport every App uses (done by ``rkit._arq``)."""
    global _transport
    _transport = transport


def transport() -> Transport:
    if _transport is None:  # pragma: no cover - importing rkit installs arq's
        raise ConfigError("no queue transport installed (import rkit)")
    return _transport


@dataclass(frozen=True)
class Action:
    """A registered ``async def``; work items refer to it by ``name``."""

    name: str
    fn: ActionFn


class App:
    """The runtime of one service.

    ``App()`` with no URL (and no ``RKIT_REDIS_URL`` in the environment) runs on an
    embedded in-process fakeredis (``pip install 'rkit[dev]'``): good for development
    and tests, not shared between processes (``rkit worker``/``rkit api`` refuse it).
    ``redis_url`` is the *state* Redis (standalone, or Cluster with ``cluster=True``);
    ``queue_url`` is arq's transport (standalone only) and defaults to ``redis_url``.
    Both URLs are parsed the same way (:mod:`rkit.connections`: timeouts and TLS
    options in the query). Prebuilt clients may be passed instead of URLs; the state
    client must decode replies (``decode_responses=True``).
    """

    redis: StateRedis

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        queue_url: str | None = None,
        namespace: str = "default",
        clock: Clock | None = None,
        cluster: bool = False,
        redis: Any | None = None,
        queue_redis: Any | None = None,
    ) -> None:
        self.keys = KeySpace(namespace)
        self.namespace = namespace
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock must have a now_ms() method returning float or None")
        self.clock: Clock = clock or ServerClock()
        self.actions: dict[str, Action] = {}
        # components register themselves here; workers and the admin API read it
        self.components = Registry()
        self._fake_server: Any | None = None  # fakeredis.FakeServer when embedded

        if redis is None:
            redis_url = redis_url or os.environ.get(ENV_URL) or None
            queue_url = queue_url or os.environ.get(ENV_QUEUE_URL) or None
        # bad input is refused before any client exists
        if redis_url is not None:
            connections.check_url(redis_url, "redis_url")
        if queue_url is not None:
            connections.check_url(queue_url, "queue_url")
        if redis is not None:
            connections.check_decoding(redis)
        self.redis_url = redis_url
        self.queue_url = queue_url or redis_url
        self.cluster = cluster
        if redis is not None:
            self.redis = redis
        elif redis_url is None:
            fakeredis = _import_fakeredis()
            self._fake_server = fakeredis.FakeServer()
            self.redis = fakeredis.FakeAsyncRedis(server=self._fake_server, decode_responses=True)
        else:
            self.redis = connections.state_client(redis_url, cluster=cluster)
        if queue_redis is None and self.queue_url is None and redis is not None:
            if isinstance(redis, RedisCluster):
                raise ConfigError("a Cluster state client needs queue_url or queue_redis for arq")
            queue_redis = redis
        self._queue_redis = queue_redis
        self._queue_pool: Any | None = None

    @property
    def embedded(self) -> bool:
        """True when running on the in-process fakeredis default."""
        return self._fake_server is not None

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.redis, RedisCluster)

    @property
    def queue_name(self) -> str:
        return f"rkit:{self.namespace}:queue"

    # -- actions ---------------------------------------------------------------------

    @overload
    def action(self, fn: F, /) -> F: ...
    @overload
    def action(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def action(self, fn: Any = None, /, *, name: str | None = None) -> Any:  # type: ignore[misc]
        """Register an ``async def`` as an action (default name ``module:qualname``)."""

        def register(f: Any) -> Any:
            if not inspect.iscoroutinefunction(f):
                raise ConfigError(f"action {f!r} must be an async def function")
            action_name = name or f"{f.__module__}:{f.__qualname__}"
            if not isinstance(action_name, str) or not action_name:
                raise ConfigError("action name must be a non-empty string")
            existing = self.actions.get(action_name)
            if existing is not None and existing.fn is not f:
                raise ConfigError(f"action name {action_name!r} is already registered")
            self.actions[action_name] = Action(action_name, f)
            return f

        return register(fn) if fn is not None else register

    def action_name(self, action: str | ActionFn) -> str:
        """The registered name of ``action`` (a name or a registered function)."""
        if isinstance(action, str):
            if action not in self.actions:
                raise ActionNotFound(action)
            return action
        for registered in self.actions.values():
            if registered.fn is action:
                return registered.name
        raise ActionNotFound(getattr(action, "__qualname__", repr(action)))

    def get_action(self, name: str) -> Action:
        try:
            return self.actions[name]
        except KeyError:
            raise ActionNotFound(name) from None

    async def enqueue(self, action: str | ActionFn, *args: Any, **kwargs: Any) -> str:
        """Queue one run of a registered action on the workers; returns the job id.

        Arguments must be JSON values (checked here, before anything is queued).
        """
        name = self.action_name(action)
        dumps([args, kwargs], what=f"arguments of action {name!r}")
        pool = await self.queue_pool()
        return await transport().enqueue_action(pool, self.queue_name, name, list(args), kwargs)

    async def job_result(self, job_id: str, *, timeout: float | None = None) -> Any:
        """Wait for a queued action's outcome record (``{"ok": ..., ...}``)."""
        return await transport().job_result(
            await self.queue_pool(), self.queue_name, job_id, timeout
        )

    async def queue_pool(self) -> Any:
        """The arq connection (created on first use)."""
        if self._queue_pool is None:
            self._queue_pool = await transport().connect(self)
        return self._queue_pool

    async def server_time(self) -> float:
        """Redis server time in ms (or the injected clock's time)."""
        now = self.clock.now_ms()
        if now is not None:
            return now
        sec, usec = await self.redis.time()
        return float(sec) * 1000.0 + float(usec) / 1000.0

    async def aclose(self) -> None:
        if self._queue_pool is not None and self._queue_pool is not self.redis:
            await self._queue_pool.aclose(close_connection_pool=self._queue_redis is None)
        self._queue_pool = None
        await self.redis.aclose()

    def describe_redis(self) -> tuple[str, str]:
        """(state, queue): where this App's Redis connections go, for logs — URLs with
        the password masked, ``"embedded fakeredis"``, or a prebuilt client's address."""
        if self.embedded:
            return "embedded fakeredis", "embedded fakeredis"
        state = (
            connections.mask_url(self.redis_url)
            if self.redis_url is not None
            else connections.describe(self.redis)
        )
        if self._queue_redis is not None:
            queue = connections.describe(self._queue_redis)
        elif self.queue_url is not None:
            queue = connections.mask_url(self.queue_url)
        else:
            queue = state
        return state, queue

    def __repr__(self) -> str:
        return f"App(namespace={self.namespace!r}, redis={self.describe_redis()[0]})"


def _import_fakeredis() -> Any:
    """fakeredis is the embedded default's server, an optional dependency."""
    try:
        import fakeredis
    except ImportError:  # pragma: no cover - the test extras install it
        raise ConfigError(
            "App() without a Redis URL runs on an embedded fakeredis, which is not "
            "installed: pip install 'rkit[dev]', or pass App('redis://host:6379/0') "
            f"or set {ENV_URL}"
        ) from None
    return fakeredis
