"""Crons benchmark: fire lag (due time -> action start) p50/p99 with 1,000 registered
crons on 2 worker processes (each running the cron scheduler and executing), against
bare arq deferred jobs (``enqueue_job(..., _defer_until=due)``) run by the same
worker processes on the same redis-server in the same window.

Each cron fires every ``--interval-ms`` (default 60 s: about 17 fires/s on average,
in bursts as registered); the arq peer gets one deferred job per cron and period, due
half a period after the cron's tick, so both load the workers equally. The action
records ``start - due`` (wall clock of one host; the due times come from the Redis
server's clock). The scheduler's own lag (due -> enqueue, from the ``fired`` events)
is printed too.

    python bench/crons.py [--crons 1000] [--workers 2] [--seconds 120] [--interval-ms 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis

from rkit import App, Crons, Interval

SERVICE = """
import time

from rkit import App, Crons
from rkit.crons import current_tick

app = App(namespace="bench")
crons = Crons(app)


@app.action(name="cron_lag")
async def cron_lag() -> None:
    now = time.time() * 1000
    tick = current_tick()
    assert tick is not None
    await app.redis.rpush("bench:cron_lag", repr(now - tick[1]))


@app.action(name="arq_lag")
async def arq_lag(due: float) -> None:
    await app.redis.rpush("bench:arq_lag", repr(time.time() * 1000 - due))
"""


def start_workers(url: str, n: int) -> list[subprocess.Popen[bytes]]:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "bench_crons_svc.py").write_text(SERVICE)
    path = os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "RKIT_REDIS_URL": url, "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "bench_crons_svc:app"]
    return [
        subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=None)
        for _ in range(n)
    ]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def main(args: argparse.Namespace, url: str) -> None:
    app = App(url, namespace="bench")
    for name in ("cron_lag", "arq_lag"):

        async def stub(**kwargs: object) -> None:  # runs in the workers only
            raise AssertionError

        app.action(name=name)(stub)
    crons = Crons(app, register=False)
    await asyncio.sleep(2.0)  # workers start
    t0 = time.time()
    ticks: list[int] = []
    for i in range(args.crons):
        cid = await crons.register(Interval(args.interval_ms), "cron_lag", name=f"b{i}")
        d = await crons.details(id=cid)
        assert d is not None and d.next_run_ms is not None
        ticks.append(int(d.next_run_ms))
    print(f"registered {args.crons} crons in {time.time() - t0:.1f} s", flush=True)
    # the peer: one arq job per cron and period, deferred to half a period after it
    pool = await app.queue_pool()
    rounds = int(args.seconds * 1000 // args.interval_ms)
    for k in range(rounds):
        for t in ticks:
            due = t + args.interval_ms // 2 + k * args.interval_ms
            await pool.enqueue_job(
                "rkit_run_action",
                "arq_lag",
                [],
                {"due": due},
                _defer_until=datetime.fromtimestamp(due / 1000, UTC),
                _queue_name=app.queue_name,
            )
    end = ticks[0] + rounds * args.interval_ms
    await asyncio.sleep(max(0.0, end / 1000 - time.time()))
    for info in await crons.list():
        await crons.pause(id=info.id)
    await asyncio.sleep(args.interval_ms / 1000 / 2 + 2)
    r = app.redis
    cron_lag = [float(x) for x in await r.lrange("bench:cron_lag", 0, -1)]
    arq_lag = [float(x) for x in await r.lrange("bench:arq_lag", 0, -1)]
    tag = app.keys.tag("cron", "default")
    sched = [
        float(json.loads(f["e"])["lag_ms"])
        for _, f in await r.xrange(f"{tag}:cr:events")
        if json.loads(f["e"])["event"] == "fired"
    ]
    stats = await crons.stats()
    await app.aclose()
    print(
        f"crons bench: {args.crons} crons every {args.interval_ms} ms, "
        f"{args.workers} worker processes, {rounds} periods"
    )
    print(f"{'variant':44} {'runs':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [
        ("rkit crons: due -> action start", cron_lag),
        ("bare arq deferred job: due -> start", arq_lag),
        ("rkit scheduler only: due -> enqueue", sched),
    ]
    for label, xs in rows:
        print(f"{label:44} {len(xs):6d} {pct(xs, 50):8.1f} {pct(xs, 99):8.1f} {max(xs):8.1f}")
    print(
        f"ratio rkit / arq: p50 {pct(cron_lag, 50) / pct(arq_lag, 50):.2f}x, "
        f"p99 {pct(cron_lag, 99) / pct(arq_lag, 99):.2f}x; fired {stats.get('fired', 0)}, "
        f"skipped {stats.get('skipped', 0)}, misfired {stats.get('misfired', 0)}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--crons", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--interval-ms", type=int, default=60_000)
    ap.add_argument("--redis-url")
    args = ap.parse_args()
    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    workers = start_workers(url, args.workers)
    try:
        asyncio.run(main(args, url))
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
            w.wait(timeout=20)
        if proc is not None:
            proc.terminate()
            proc.wait()
