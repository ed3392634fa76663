"""Real faults under real processes (redis-server with AOF, 2 `rkit worker`
processes, 1,000 workpool jobs of 40 ms, each with an on_complete): a redis-server
SIGKILL and restart, a redis-server stalled by SIGSTOP for 8 s, and a worker
SIGKILLed twice. Each asserts no job lost, every on_complete effect exactly once,
and no body completed twice except where a worker was killed between a body's end
and its report (at-least-once for a dead process, never for a Redis fault); the
figures are printed (`pytest -s tests/faults`)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from .._servers import in_ci, redis_server_path
from ._harness import AofServer, Service, aof_server, figures, make_service, run_enqueue, wait_until

pytestmark = pytest.mark.slow

N, SLEEP_MS = 1_000, 40


@pytest.fixture
def server() -> Iterator[AofServer]:
    if redis_server_path() is None:
        if in_ci():
            pytest.fail("redis-server is not on PATH; CI must install it")
        pytest.skip("redis-server not on PATH")
    s = aof_server()
    yield s
    s.close()


@pytest.fixture
def svc(tmp_path: Path, server: AofServer) -> Iterator[Service]:
    service = make_service(tmp_path, server.url)
    yield service
    service.stop()


def effects(svc: Service) -> int:
    try:
        return int(sync_redis.Redis.from_url(svc.url, socket_timeout=1).hlen("ft:effects"))
    except sync_redis.exceptions.RedisError:
        return -1


def start(svc: Service, workers: int = 2) -> None:
    for _ in range(workers):
        svc.start_worker()
    run_enqueue(svc.url, N, SLEEP_MS)


def bodies(svc: Service) -> int:
    return len(svc.lines("body"))


def finish(svc: Service, timeout: float = 45, n: int = N) -> float:
    try:
        return wait_until(lambda: effects(svc) >= n, timeout, f"{n} on_complete effects")
    except AssertionError:
        print(svc.worker_logs())
        raise


def test_redis_restart_under_running_workers(svc: Service, server: AofServer) -> None:
    """redis-server SIGKILLed mid-run and restarted 1 s later on its AOF: both workers
    keep running (reconnect with backoff), every job done once."""
    start(svc)
    wait_until(lambda: bodies(svc) >= 200, 30, "200 bodies")
    server.kill()
    killed_at = time.time()
    done_at_kill = bodies(svc)
    time.sleep(1.0)
    server.start()
    back_at = time.time()
    resumed = wait_until(lambda: bodies(svc) > done_at_kill + 20, 30, "bodies after restart")
    done = finish(svc)
    alive = [p.poll() is None for p in svc.procs]
    f = figures(svc, N)
    print(
        f"\nredis-server SIGKILL + restart (AOF, appendfsync always): down "
        f"{back_at - killed_at:.2f} s; work resumed {resumed - back_at:.2f} s after the "
        f"restart; all done {done - back_at:.2f} s after it; workers alive {alive}\n"
        f"  {f.line()}"
    )
    assert all(alive), svc.worker_logs()
    assert f.lost == [] and f.effects_not_once == []
    assert f.bodies_twice == {} and f.oc_calls_twice == {}


def test_redis_stalled_by_sigstop(svc: Service, server: AofServer) -> None:
    """redis-server SIGSTOPped for 8 s mid-run (longer than the 5 s lease): workers
    fence their attempts on time and hand them back; bodies that finished during the
    stall are reported once Redis resumes; no body completes twice."""
    start(svc)
    wait_until(lambda: bodies(svc) >= 200, 30, "200 bodies")
    server.stop_signal(signal.SIGSTOP)
    stopped_at = time.time()
    time.sleep(8.0)
    server.stop_signal(signal.SIGCONT)
    resumed_at = time.time()
    done = finish(svc)
    alive = [p.poll() is None for p in svc.procs]
    f = figures(svc, N)
    print(
        f"\nredis-server SIGSTOP {resumed_at - stopped_at:.1f} s: all done "
        f"{done - resumed_at:.2f} s after SIGCONT; workers alive {alive}\n  {f.line()}"
    )
    assert all(alive), svc.worker_logs()
    assert f.lost == [] and f.effects_not_once == []
    assert f.bodies_twice == {}, "a stall ran a body twice"
    assert f.oc_calls_twice == {}


def running_on(r: sync_redis.Redis, pool: Any, pid: int) -> int:
    """How many of the pool's running attempts belong to the worker process ``pid``."""
    base = pool.keys[0][: -len(":cfg")]
    ids = r.zrange(pool.keys[3], 0, -1)
    workers = [r.hget(f"{base}:w:{i}", "worker") or "" for i in ids]
    return sum(1 for w in workers if f":{pid}:" in w)


def test_worker_sigkilled_twice(svc: Service, server: AofServer) -> None:
    """A worker SIGKILLed twice (a replacement started each time), each time while it
    runs attempts: its attempts are reaped and retried, nothing lost, every
    on_complete effect once; a body completes twice only when its first run was in a
    killed worker (ended, not yet reported)."""
    n = 1_500  # enough work left for the second kill after the first recovery (5 s)
    for _ in range(2):
        svc.start_worker()
    run_enqueue(svc.url, n, SLEEP_MS)
    killed: list[int] = []
    recoveries: list[float] = []
    r = sync_redis.Redis.from_url(svc.url, decode_responses=True)
    from rkit import App, Workpool

    pool = Workpool(App(namespace="ft"), "ft")
    stats_key = pool.keys[7]
    for k in range(2):
        at = bodies(svc) + (200 if k == 0 else 100)
        wait_until(lambda at=at: bodies(svc) >= at, 30, f"{at} bodies")  # type: ignore[misc]
        victim = next(p for p in svc.procs if p.poll() is None)
        wait_until(lambda v=victim: running_on(r, pool, v.pid) > 0, 10, "the victim running")  # type: ignore[misc]
        lost_before = int(r.hget(stats_key, "lost") or 0)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        t = time.time()
        killed.append(victim.pid)
        svc.start_worker()
        reaped = wait_until(
            lambda lb=lost_before: int(r.hget(stats_key, "lost") or 0) > lb, 20, "lost attempts"
        )
        recoveries.append(reaped - t)
    done = finish(svc, n=n)
    f = figures(svc, n)
    print(
        f"\nworker SIGKILL x2: lost attempts reaped {', '.join(f'{x:.2f}' for x in recoveries)} s "
        f"after each kill; all done {done - t:.2f} s after the second\n  {f.line()}"
    )
    assert f.lost == [] and f.effects_not_once == []
    assert all(pids[0] in killed for pids in f.bodies_twice.values()), f.bodies_twice
    assert len(f.bodies_twice) <= 2 * 10  # at most the killed workers' slots


def test_a_worker_cut_off_from_redis_stops_its_attempts_before_they_expire(
    svc: Service, server: AofServer
) -> None:
    """Issue 18 item 1, deterministic: worker A reaches Redis through a proxy that then
    stalls (every call of A hangs, nothing raises) while worker B reaches Redis
    directly. A's 6 s bodies need no Redis to finish; B's pump reaps A's leases after
    5 s and re-runs them. A must stop them before that (fence on time): each body
    completes once (the old worker, fencing only when a call raised, completed them
    on A at 6 s and again on B)."""
    from ._proxy import StallProxy

    proxy = StallProxy(server.port)
    try:
        direct = svc.url
        svc.url = proxy.url
        a = svc.start_worker()
        svc.url = direct
        run_enqueue(svc.url, 6, 6_000)  # 6 jobs of 6 s: all start on A (B not up yet)
        r = sync_redis.Redis.from_url(direct, decode_responses=True)
        wait_until(lambda: r.hlen("ft:starts") == 6, 30, "6 bodies started on A")
        proxy.paused.set()
        stalled_at = time.time()
        svc.start_worker()  # B
        done = finish(svc, timeout=40, n=6)
    finally:
        proxy.paused.clear()
        proxy.close()
    f = figures(svc, 6)
    on_a = [i for i, pid in svc.lines("body") if pid == a.pid]
    print(
        f"\none worker's connection stalled: all 6 jobs done {done - stalled_at:.2f} s after "
        f"the stall, {len(on_a)} completed on the stalled worker\n  {f.line()}"
    )
    assert f.lost == [] and f.effects_not_once == []
    assert f.bodies_twice == {}, "a stalled worker's body ran beside its re-run"
    assert on_a == []
