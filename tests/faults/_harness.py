"""The fault suite's fixtures of real processes: a redis-server with AOF that can be
killed, stopped and restarted on its port and data directory, `rkit worker`
subprocesses running a service whose bodies record each completion in a file
(outside Redis, so a completion is seen even while Redis is stalled or down), and
the checks every fault scenario ends with."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis as sync_redis

from rkit import App, Workpool

from .._servers import _wait_ping, free_port, redis_server_path, stop_workers

SERVICE = """
import asyncio
import os

from rkit import App, OnCompleteArgs, Workpool

app = App(namespace="ft")
pool = Workpool(app, "ft", max_parallelism=20)
LOG = os.environ["FT_LOG"]

EFFECT = '''
if redis.call('SETNX', KEYS[1] .. ARGV[1], 1) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
'''


def record(line: str) -> None:
    # one O_APPEND write per line: atomic between processes, survives a Redis outage
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.action(name="job")
async def job(i: int, sleep_ms: float) -> int:
    await app.redis.hincrby("ft:starts", str(i), 1)  # a Redis call inside the body
    await asyncio.sleep(sleep_ms / 1000)
    record(f"body {i} {os.getpid()}\\n")  # the body completed
    return i


@app.action(name="done")
async def done(args: OnCompleteArgs) -> None:
    assert type(args.result).__name__ == "Success", args.result
    i = args.result.return_value
    await app.redis.eval(EFFECT, 2, "ft:marker:", "ft:effects", str(i))
    record(f"oc {i} {os.getpid()}\\n")  # the handler completed
"""


@dataclass
class AofServer:
    """A redis-server with ``appendfsync always`` on a fixed port and directory."""

    port: int
    workdir: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = redis_server_path()
        assert exe, "redis-server not on PATH"
        cmd = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            self.workdir,
            "--daemonize",
            "no",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ping(self.port, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def aof_server() -> AofServer:
    port = free_port()
    server = AofServer(port, tempfile.mkdtemp(prefix=f"rkit-faults-{port}-"))
    server.start()
    return server


@dataclass
class Service:
    """The service module in a temporary directory and its `rkit worker` processes."""

    cwd: Path
    url: str
    log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RKIT_REDIS_URL": self.url,
            "FT_LOG": str(self.log),
            "PYTHONPATH": os.pathsep.join([str(self.cwd), *sys.path]),
        }

    def start_worker(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "rkit.cli", "worker", "ftsvc:app", "--max-jobs", "10"]
        err = open(self.cwd / f"worker-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=err, stderr=err)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        stop_workers(self.procs)

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}"
            for f in sorted(self.cwd.glob("worker-*.log"))
        )

    def lines(self, kind: str) -> list[tuple[int, int]]:
        """(i, pid) per ``body``/``oc`` line of the log."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            k, i, pid = line.split()
            if k == kind:
                out.append((int(i), int(pid)))
        return out


def make_service(tmp_path: Path, url: str) -> Service:
    (tmp_path / "ftsvc.py").write_text(SERVICE)
    return Service(tmp_path, url, tmp_path / "completions.log")


async def enqueue(url: str, n: int, sleep_ms: float) -> list[str]:
    app = App(url, namespace="ft")

    @app.action(name="job")
    async def job(i: int, sleep_ms: float) -> int:  # runs in the workers only
        raise AssertionError

    @app.action(name="done")
    async def done(args: object) -> None:
        raise AssertionError

    try:
        pool = Workpool(app, "ft", max_parallelism=20)
        return await pool.enqueue_batch(
            "job",
            [{"i": i, "sleep_ms": sleep_ms} for i in range(n)],
            on_complete="done",
            retry=True,
        )
    finally:
        await app.aclose()


def wait_until(cond: object, timeout: float, what: str) -> float:
    """Poll ``cond()`` (a callable) until true; returns when (time.time())."""
    end = time.time() + timeout
    while not cond():  # type: ignore[operator]
        if time.time() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
    return time.time()


@dataclass
class Figures:
    n: int
    lost: list[int]
    bodies_twice: dict[int, list[int]]  # i -> pids of its completions, when > 1
    oc_calls_twice: dict[int, int]
    effects_not_once: list[int]
    stats: dict[str, str]

    def line(self) -> str:
        return (
            f"{self.n} jobs: {len(self.lost)} lost, {len(self.bodies_twice)} bodies completed "
            f"more than once, {len(self.oc_calls_twice)} on_complete handlers completed more "
            f"than once, {len(self.effects_not_once)} on_complete effects not exactly once; "
            f"pool stats {self.stats}"
        )


def figures(svc: Service, n: int) -> Figures:
    r = sync_redis.Redis.from_url(svc.url, decode_responses=True)
    bodies: dict[int, list[int]] = collections.defaultdict(list)
    for i, pid in svc.lines("body"):
        bodies[i].append(pid)
    ocs = collections.Counter(i for i, _ in svc.lines("oc"))
    effects = r.hgetall("ft:effects")
    stats_key = Workpool(App(namespace="ft"), "ft").keys[7]
    stats = {k: v for k, v in r.hgetall(stats_key).items() if not k.startswith("r_")}
    stats.pop("last_report_ts", None)
    stats.pop("pump_at", None)
    effect_count = collections.Counter({int(k): int(v) for k, v in effects.items()})
    return Figures(
        n=n,
        lost=[i for i in range(n) if i not in bodies or effect_count[i] == 0],
        bodies_twice={i: pids for i, pids in bodies.items() if len(pids) > 1},
        oc_calls_twice={i: c for i, c in ocs.items() if c > 1},
        effects_not_once=[i for i in range(n) if effect_count[i] != 1],
        stats=stats,
    )


def run_enqueue(url: str, n: int, sleep_ms: float) -> None:
    asyncio.run(enqueue(url, n, sleep_ms))
