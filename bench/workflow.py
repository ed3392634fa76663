"""Workflow benchmark: 3-step no-op workflows/s end to end and step-start latency
(p50/p99 at idle), rkit on redis-server vs DBOS Transact on SQLite, same machine,
one run, ratio printed.

* rkit: a ``rkit worker`` process (``--max-jobs 10``; the workflow pool's cap is 10
  too) runs every step and poll; this process starts the workflows
  (``start_async=True``) and counts completions (an ``on_complete`` INCR). Redis
  keeps an append-only file: ``appendfsync everysec`` (the usual production
  setting) and ``appendfsync always`` (an fsync per write, DBOS's guarantee on
  SQLite), switched with CONFIG SET between rounds.
* DBOS: ``dbos`` from PyPI, system database on SQLite (a file in a temp dir), the
  same workflow (three ``@DBOS.step`` no-ops) with at most 10 workflows in flight
  (a semaphore), in one process: DBOS journals each step with a SQLite commit.
* Latency: one workflow at a time; each step records ``its start - the previous
  step's end`` (the first: ``- the start call``).

    python bench/workflow.py [--workflows 300] [--rounds 2] [--samples 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SERVICE = """
import time

from rkit import App
from rkit.workflow import WorkflowManager, WorkpoolOptions

app = App(namespace="wfbench")
wf = WorkflowManager(app, name="bench", workpool_options=WorkpoolOptions(max_parallelism=10))


@wf.function
async def noop(i: int) -> int:
    return i + 1


@wf.function
async def lat_step(prev: float) -> float:
    await app.redis.rpush("wfbench:lat", repr(time.time() - prev))
    return time.time()


@wf.define(name="three")
async def three(ctx, i: int) -> int:
    a = await ctx.run_action(noop, {"i": i}, name="noop")
    b = await ctx.run_action(noop, {"i": a}, name="noop")
    return await ctx.run_action(noop, {"i": b}, name="noop")


@wf.define(name="timed")
async def timed(ctx, t: float) -> float:
    a = await ctx.run_action(lat_step, {"prev": t}, name="lat")
    b = await ctx.run_action(lat_step, {"prev": a}, name="lat")
    return await ctx.run_action(lat_step, {"prev": b}, name="lat")


@app.action(name="bench_done")
async def bench_done(workflow_id, result, context) -> None:
    await app.redis.incr("wfbench:done")
"""


def start_redis(tmp: Path) -> tuple[int, subprocess.Popen[bytes]]:
    exe = shutil.which("redis-server")
    if not exe:
        raise SystemExit("redis-server not on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(tmp)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.025)
    return port, proc


def start_worker(tmp: Path, url: str) -> subprocess.Popen[bytes]:
    (tmp / "wfbench_svc.py").write_text(SERVICE)
    path = os.pathsep.join([str(tmp), *sys.path])
    env = {**os.environ, "RKIT_REDIS_URL": url, "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "wfbench_svc:app", "--max-jobs", "10"]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


class Rkit:
    def __init__(self, tmp: Path, url: str) -> None:
        sys.path.insert(0, str(tmp))
        os.environ["RKIT_REDIS_URL"] = url  # the service's App() reads it
        import wfbench_svc  # the same definitions as the worker's

        self.svc: Any = wfbench_svc
        self.r = redis.Redis.from_url(url)

    async def throughput(self, n: int) -> float:
        wf = self.svc.wf
        self.r.set("wfbench:done", 0)
        t0 = time.perf_counter()
        for chunk in range(0, n, 50):
            await asyncio.gather(
                *(
                    wf.start("three", {"i": i}, on_complete="bench_done", start_async=True)
                    for i in range(chunk, min(n, chunk + 50))
                )
            )
        end = time.time() + 600
        while int(self.r.get("wfbench:done") or 0) < n:
            if time.time() > end:
                raise SystemExit(f"rkit: only {self.r.get('wfbench:done')} of {n} done")
            await asyncio.sleep(0.005)
        return n / (time.perf_counter() - t0)

    async def latency(self, samples: int) -> list[float]:
        wf = self.svc.wf
        self.r.delete("wfbench:lat")
        for _ in range(samples):
            self.r.set("wfbench:done", 0)
            await wf.start("timed", {"t": time.time()}, on_complete="bench_done")
            while int(self.r.get("wfbench:done") or 0) < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
        return [float(x) * 1000 for x in self.r.lrange("wfbench:lat", 0, -1)]


DBOS_SCRIPT = """
import asyncio, json, sys, time
from dbos import DBOS

DBOS(config={"name": "wfbench", "system_database_url": "sqlite:///" + sys.argv[1],
             "log_level": "WARNING"})
LAT = []

@DBOS.step()
async def noop(i: int) -> int:
    return i + 1

@DBOS.step()
async def lat_step(prev: float) -> float:
    LAT.append(time.time() - prev)
    return time.time()

@DBOS.workflow()
async def three(i: int) -> int:
    a = await noop(i)
    b = await noop(a)
    return await noop(b)

@DBOS.workflow()
async def timed(t: float) -> float:
    a = await lat_step(t)
    b = await lat_step(a)
    return await lat_step(b)

async def main(n: int, rounds: int, samples: int) -> None:
    DBOS.launch()
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> int:
        async with sem:
            h = await DBOS.start_workflow_async(three, i)
            return await h.get_result()

    await asyncio.gather(*(one(i) for i in range(20)))  # warm-up
    tput = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        tput.append(n / (time.perf_counter() - t0))
    for _ in range(samples):
        h = await DBOS.start_workflow_async(timed, time.time())
        await h.get_result()
    print(json.dumps({"tput": tput, "lat": [x * 1000 for x in LAT]}))
    DBOS.destroy()

asyncio.run(main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def run_dbos(tmp: Path, n: int, rounds: int, samples: int) -> dict[str, list[float]]:
    import json

    script = tmp / "dbos_bench.py"
    script.write_text(DBOS_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp / "dbos.sqlite"), str(n), str(rounds), str(samples)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp,
    )
    if out.returncode != 0:
        raise SystemExit(f"DBOS run failed: {out.stderr[-2000:]}")
    result: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def bench_rkit(
    tmp: Path, url: str, n: int, rounds: int, samples: int
) -> dict[str, dict[str, list[float]]]:
    rk = Rkit(tmp, url)
    out: dict[str, dict[str, list[float]]] = {}
    await rk.throughput(100)  # warm-up
    for mode in ("everysec", "always"):
        rk.r.config_set("appendfsync", mode)
        tput = [await rk.throughput(n) for _ in range(rounds)]
        out[mode] = {"tput": tput, "lat": await rk.latency(samples)}
    rk.r.config_set("appendfsync", "everysec")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workflows", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=40)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wfbench"))
    port, server = start_redis(tmp)
    url = f"redis://127.0.0.1:{port}/0"
    worker = start_worker(tmp, url)
    try:
        time.sleep(2.0)  # the worker starts
        rk = asyncio.run(bench_rkit(tmp, url, args.workflows, args.rounds, args.samples))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        server.terminate()
        server.wait()
    db = run_dbos(tmp, args.workflows, args.rounds, args.samples)
    shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(db["tput"])
    print(
        f"workflow bench: {args.workflows} workflows of 3 no-op steps x {args.rounds} rounds "
        f"(median), 10 in flight / 10 worker slots, {args.samples} idle latency samples "
        f"({3 * args.samples} step starts)"
    )
    print(f"{'variant':44} {'wf/s':>7} {'vs DBOS':>8} {'step p50':>9} {'step p99':>9}")
    rows = [
        ("rkit, redis-server AOF everysec", rk["everysec"]),
        ("rkit, redis-server AOF always (fsync/write)", rk["always"]),
        ("DBOS Transact 3.x, SQLite", db),
    ]
    for name, d in rows:
        t = statistics.median(d["tput"])
        print(
            f"{name:44} {t:7.0f} {t / base:7.2f}x {pct(d['lat'], 50):7.1f}ms "
            f"{pct(d['lat'], 99):7.1f}ms"
        )


if __name__ == "__main__":
    main()
