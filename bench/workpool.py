"""Workpool benchmark: no-op jobs/s and enqueue->start latency (p50/p99) for
bare arq (``app.enqueue`` -> ``rkit_run_action``), the rkit workpool (parallelism
cap + ``on_complete``) and the action retrier, with the same worker processes on
the same redis-server, variants interleaved, medians of the rounds.

Two throughput figures: end to end (enqueue included: arq's ``enqueue_job`` per
job vs one script per 256 items) and drain (jobs enqueued ahead, due at one
instant; only execution counted). Every variant does one ``INCR`` per job (bare
arq: in the job; workpool and retrier: in the ``on_complete`` callback), which is
how completion is observed.
Latency is measured at idle (one job at a time): the job records
``start - enqueue`` from the enqueuer's timestamp. Retry start lag: a job that
fails once with a 100 ms backoff; lag = second start - the retry's due time (the
item's ``due``), one at a time at idle.

    python bench/workpool.py [--jobs 2000] [--workers 2] [--max-jobs 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis

from rkit import App, RetryBehavior, Workpool
from rkit.retrier import ActionRetrier

SERVICE = """
import time

from rkit import App, Workpool
from rkit.retrier import ActionRetrier

app = App(namespace="bench")
pool = Workpool(app, "bench")
retrier = ActionRetrier(app, namespace="bench")
lag_pool = Workpool(app, "lag", keep_result_ms=600_000)


@app.action(name="fail_once")
async def fail_once(k: str) -> None:
    if await app.redis.hincrby("bench:tries", k, 1) == 1:
        raise RuntimeError("the first attempt fails")
    await app.redis.hset("bench:second", k, repr(time.time()))


@app.action(name="noop")
async def noop(t: float = 0.0, count: bool = False) -> None:
    if t:
        await app.redis.rpush("bench:lat", repr(time.time() - t))
    if count:
        await app.redis.incr("bench:done")


@app.action(name="count")
async def count(*args: object, **kwargs: object) -> None:
    await app.redis.incr("bench:done")
"""


def build_app(url: str) -> tuple[App, Workpool, ActionRetrier]:
    app = App(url, namespace="bench")

    @app.action(name="noop")
    async def noop(t: float = 0.0, count: bool = False) -> None:  # runs in workers
        raise AssertionError

    @app.action(name="count")
    async def count(*args: object, **kwargs: object) -> None:
        raise AssertionError

    @app.action(name="fail_once")
    async def fail_once(k: str) -> None:
        raise AssertionError

    return app, Workpool(app, "bench"), ActionRetrier(app, namespace="bench")


async def retry_lag(url: str, samples: int) -> list[float]:
    """ms from a retry's due time (100 ms backoff) to its start, at idle."""
    app, _, _ = build_app(url)
    lag = Workpool(app, "lag", keep_result_ms=600_000)
    r = app.redis
    await r.delete("bench:tries", "bench:second")
    once = RetryBehavior(max_attempts=2, initial_backoff_ms=100, base=1)
    out: list[float] = []
    try:
        for i in range(samples):
            wid = await lag.enqueue("fail_once", {"k": str(i)}, retry=once)
            second = None
            for _ in range(5000):  # 10 s at most
                if (second := await r.hget("bench:second", str(i))) is not None:
                    break
                await asyncio.sleep(0.002)
            assert second is not None, "retry never ran"
            item = await lag.item(wid)
            assert item is not None
            out.append(float(second) * 1000 - float(item["due"]))
            await asyncio.sleep(0.05)
        return out
    finally:
        await app.aclose()


async def wait_done(r: aioredis.Redis, n: int, timeout: float = 120.0) -> None:
    end = time.perf_counter() + timeout
    while int(await r.get("bench:done") or 0) < n:
        if time.perf_counter() > end:
            raise SystemExit(f"timed out: {await r.get('bench:done')} of {n} done")
        await asyncio.sleep(0.002)


async def throughput(variant: str, url: str, n: int, cap: int) -> float:
    app, pool, retrier = build_app(url)
    r = app.redis
    await r.delete("bench:done")
    try:
        t0 = time.perf_counter()
        if variant == "arq":
            for i in range(0, n, 200):
                await asyncio.gather(
                    *(app.enqueue("noop", count=True) for _ in range(min(200, n - i)))
                )
        elif variant == "workpool":
            pool.max_parallelism = cap
            await pool.enqueue_batch("noop", [{}] * n, on_complete="count")
        else:
            await retrier.run_batch("noop", [{}] * n, on_complete="count")
        await wait_done(r, n)
        return n / (time.perf_counter() - t0)
    finally:
        await app.aclose()


async def drain(variant: str, url: str, n: int, cap: int, lead_s: float = 3.0) -> float:
    """Jobs/s from the moment all ``n`` jobs become due (enqueue cost excluded)."""
    import datetime

    from rkit import _arq

    app, pool, retrier = build_app(url)
    r = app.redis
    await r.delete("bench:done")
    try:
        sec, usec = await r.time()
        due_ms = (sec + lead_s) * 1000 + usec / 1000
        if variant == "arq":
            q = await app.queue_pool()
            when = datetime.datetime.fromtimestamp(due_ms / 1000, tz=datetime.UTC)
            for i in range(0, n, 200):
                await asyncio.gather(
                    *(
                        q.enqueue_job(
                            _arq.JOB_FUNCTION,
                            "noop",
                            [],
                            {"count": True},
                            _queue_name=app.queue_name,
                            _defer_until=when,
                        )
                        for _ in range(min(200, n - i))
                    )
                )
        elif variant == "workpool":
            pool.max_parallelism = cap
            await pool.enqueue_batch("noop", [{}] * n, on_complete="count", run_at=due_ms)
        else:
            await retrier.run_batch("noop", [{}] * n, on_complete="count", _run_at=due_ms)
        sec, usec = await r.time()
        wait = due_ms / 1000 - (sec + usec / 1e6)
        if wait < 0.5:
            raise SystemExit("enqueue took longer than the lead time; raise lead_s")
        await asyncio.sleep(wait)
        t0 = time.perf_counter()
        await wait_done(r, n)
        return n / (time.perf_counter() - t0)
    finally:
        await app.aclose()


async def latency(variant: str, url: str, samples: int, cap: int) -> list[float]:
    app, pool, retrier = build_app(url)
    r = app.redis
    await r.delete("bench:lat")
    try:
        for i in range(samples):
            args = {"t": time.time(), "count": False}
            if variant == "arq":
                await app.enqueue("noop", **args)
            elif variant == "workpool":
                pool.max_parallelism = cap
                await pool.enqueue("noop", args)
            else:
                await retrier.run("noop", args)
            while True:
                if await r.llen("bench:lat") > i:
                    break
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.005)
        return [float(x) * 1000 for x in await r.lrange("bench:lat", 0, -1)]
    finally:
        await app.aclose()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def start_workers(url: str, n: int, max_jobs: int) -> list[subprocess.Popen[bytes]]:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "bench_svc.py").write_text(SERVICE)
    path = os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "RKIT_REDIS_URL": url, "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "bench_svc:app"]
    cmd += ["--max-jobs", str(max_jobs)]
    return [
        subprocess.Popen(
            cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(n)
    ]


async def main(args: argparse.Namespace, url: str, workers: list[subprocess.Popen[bytes]]) -> None:
    cap = args.workers * args.max_jobs
    variants = ["arq", "workpool", "retrier"]
    try:
        await asyncio.sleep(2.0)  # workers start
        for v in variants:  # warm-up
            await throughput(v, url, 200, cap)
        tput: dict[str, list[float]] = {v: [] for v in variants}
        dr: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                tput[v].append(await throughput(v, url, args.jobs, cap))
                dr[v].append(await drain(v, url, args.jobs, cap))
        lat = {v: await latency(v, url, args.samples, cap) for v in variants}
        lags = await retry_lag(url, args.retry_samples)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
    names = {
        "arq": "bare arq",
        "workpool": f"rkit workpool (cap {cap} + on_complete)",
        "retrier": "rkit action retrier (+ on_complete)",
    }
    base = statistics.median(tput["arq"])
    dbase = statistics.median(dr["arq"])
    print(
        f"workpool bench: {args.workers} worker processes x max_jobs {args.max_jobs}, "
        f"{args.jobs} no-op jobs x {args.rounds} rounds (median), "
        f"{args.samples} idle latency samples"
    )
    print(
        f"{'variant':40} {'jobs/s':>7} {'vs arq':>7} {'drain/s':>8} {'vs arq':>7}"
        f" {'start p50':>10} {'start p99':>10}"
    )
    for v in variants:
        t, d = statistics.median(tput[v]), statistics.median(dr[v])
        print(
            f"{names[v]:40} {t:7.0f} {t / base:6.2f}x {d:8.0f} {d / dbase:6.2f}x "
            f"{pct(lat[v], 50):8.1f}ms {pct(lat[v], 99):8.1f}ms"
        )
    print(
        f"retry start lag (100 ms backoff, {len(lags)} samples): "
        f"p50 {pct(lags, 50):.1f} ms, p99 {pct(lags, 99):.1f} ms"
    )
    print(
        "jobs/s: enqueue of all jobs to last completion; drain/s: from the moment all "
        "jobs are due (enqueue excluded); start: enqueue -> job start at idle"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-jobs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--retry-samples", type=int, default=50)
    ap.add_argument("--redis-url")
    args = ap.parse_args()
    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    workers = start_workers(url, args.workers, args.max_jobs)
    try:
        asyncio.run(main(args, url, workers))
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
            w.wait(timeout=20)
        if proc is not None:
            proc.terminate()
            proc.wait()
