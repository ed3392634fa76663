"""Fixtures: every component test runs on fakeredis and a real redis-server; the Lua
also runs on a local 3-node Redis Cluster (marker ``cluster``).

redis-server comes from PATH. Without it the real-Redis and Cluster variants are
skipped locally, but fail under CI=true (CI must install it)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from rkit import App, TestClock

from ._servers import (
    Cluster,
    Server,
    in_ci,
    redis_server_path,
    start_cluster,
    start_server,
    stop_cluster,
    stop_server,
)

BACKENDS = ["fake", "redis", pytest.param("cluster", marks=pytest.mark.cluster)]
_ns = itertools.count()


def _need_redis_server() -> None:
    if redis_server_path() is None:
        if in_ci():
            pytest.fail("redis-server is not on PATH; CI must install it")
        pytest.skip("redis-server not on PATH")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    _need_redis_server()
    server = start_server()
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    _need_redis_server()
    cluster = start_cluster(3)
    yield cluster
    stop_cluster(cluster)


@pytest.fixture
def redis_url(redis_server: Server) -> Iterator[str]:
    """A clean real redis-server for one test."""
    redis.Redis(port=redis_server.port).flushall()
    yield redis_server.url


async def make_app(
    backend: str, request: pytest.FixtureRequest, clock: TestClock | None = None
) -> App:
    ns = f"t{next(_ns)}"
    if backend == "fake":
        return App(namespace=ns, clock=clock)
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        return App(url, namespace=ns, clock=clock)
    if backend == "cluster":
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster.from_url(cluster.url, decode_responses=True)
        return App(
            namespace=ns,
            clock=clock,
            redis=client,
            queue_redis=fakeredis.FakeAsyncRedis(),
        )
    raise ValueError(backend)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(1_700_000_040_000)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def app(backend: str, clock: TestClock, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    """An App on each backend with a frozen TestClock at T0."""
    a = await make_app(backend, request, clock)
    yield a
    await a.aclose()


@pytest.fixture(params=["fake", "redis"])
async def queue_app(request: pytest.FixtureRequest, clock: TestClock) -> AsyncIterator[App]:
    """An App whose queue (arq) runs on fakeredis or real Redis (no Cluster: arq can't)."""
    a = await make_app(str(request.param), request, clock)
    yield a
    await a.aclose()
