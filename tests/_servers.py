"""Start throwaway redis-server processes (standalone and a 3-node Cluster) on free
loopback ports for the test session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _wait_ping(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
        try:
            if redis.Redis(port=port, socket_timeout=0.5).ping():
                return
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not answer PING")


def start_server(*extra: str, port: int | None = None) -> Server:
    """A redis-server without persistence on a free port (or ``port``: e.g. to
    restart one, empty, where its clients expect it)."""
    exe = redis_server_path()
    assert exe, "redis-server not on PATH"
    want = port
    for _attempt in range(5):
        port = want or free_port()
        workdir = tempfile.mkdtemp(prefix=f"rkit-redis-{port}-")
        cmd = [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--daemonize",
            "no",
            *extra,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ping(port, proc)
            return Server(port, proc, workdir)
        except RuntimeError:
            proc.kill()
            proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError("could not start redis-server")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    shutil.rmtree(server.workdir, ignore_errors=True)


@dataclass
class Cluster:
    nodes: list[Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"


def start_cluster(n: int = 3) -> Cluster:
    cluster = Cluster()
    try:
        for _ in range(n):
            cluster.nodes.append(
                start_server(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                )
            )
        clients = [redis.Redis(port=s.port) for s in cluster.nodes]
        per = 16384 // n
        for i, c in enumerate(clients):
            lo = i * per
            hi = 16383 if i == n - 1 else (i + 1) * per - 1
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for c in clients[1:]:
            c.execute_command("CLUSTER", "MEET", "127.0.0.1", cluster.nodes[0].port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [c.execute_command("CLUSTER", "INFO") for c in clients]
            texts = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
            if all("cluster_state:ok" in t and f"cluster_known_nodes:{n}" in t for t in texts):
                return cluster
            time.sleep(0.1)
        raise RuntimeError("cluster did not reach cluster_state:ok")
    except BaseException:
        stop_cluster(cluster)
        raise


def stop_cluster(cluster: Cluster) -> None:
    for s in cluster.nodes:
        stop_server(s)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_pythonpath(*dirs: object) -> str:
    """PYTHONPATH for a subprocess (``rkit worker``): ``dirs`` (its service module)
    and this checkout, so the child runs the rkit under test, not another install."""
    return os.pathsep.join([*map(str, dirs), ROOT])


_LOGS: dict[int, str] = {}


def spawn(cmd: list[str], cwd: object, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A subprocess (an ``rkit worker``) whose stderr goes to a file in ``cwd``: a pipe
    nobody drains fills at 64 KiB and then blocks the process at its next log line
    (a worker logs every failed attempt with its traceback). :func:`stderr_of` reads it."""
    with tempfile.NamedTemporaryFile(dir=str(cwd), prefix="stderr-", delete=False) as log:
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=log)
    _LOGS[proc.pid] = log.name
    return proc


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then wait for each (15 s, then SIGKILL)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            p.kill()
            p.wait()


def stderr_of(proc: subprocess.Popen[bytes], tail: int = 3000) -> str:
    """The last ``tail`` characters a :func:`spawn`-ed process wrote to stderr."""
    with open(_LOGS[proc.pid], "rb") as f:
        return f.read().decode(errors="replace")[-tail:]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
