"""Issue 16 (production readiness): processes refuse a private embedded Redis and say
which Redis they use (password masked); `rkit api` warns without a token; /health
checks both Redis roles and reveals hosts only with the token; an unreachable Redis
is a 503, not a 500; a prebuilt state client must decode; both URLs are parsed the
same way (a rediss:// CA file reaches the queue connection)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from rkit.api import add_redis_error_handlers, create_api

from rkit import App, ConfigError
from rkit.connections import mask_url

from ._servers import Server, free_port, start_server, stop_server

SERVICE = """
from rkit import App

app = App(namespace="prod")


@app.action(name="noop")
async def noop() -> None:
    pass
"""


@pytest.fixture
def service(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "prodsvc.py").write_text(SERVICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKIT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    return tmp_path, env


def rkit(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rkit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["worker", "api"])
def test_process_without_a_redis_url_exits_with_a_clear_message(
    command: str, service: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = service
    proc = rkit([command, "prodsvc:app"], cwd, env)
    assert proc.returncode != 0
    assert "has no Redis URL" in proc.stderr and "RKIT_REDIS_URL" in proc.stderr
    assert "--embedded" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def password_server() -> Iterator[Server]:
    from .conftest import _need_redis_server

    _need_redis_server()
    server = start_server()
    redis.Redis(port=server.port).config_set("requirepass", "s3cret-pw")
    yield server
    stop_server(server)


@pytest.mark.slow
def test_worker_start_line_names_the_redis_with_the_password_masked(
    service: tuple[Path, dict[str, str]], password_server: Server
) -> None:
    cwd, env = service
    url = f"redis://:s3cret-pw@127.0.0.1:{password_server.port}/0"
    proc = rkit(["worker", "prodsvc:app", "--burst", "--redis-url", url], cwd, env)
    assert proc.returncode == 0, proc.stderr
    line = proc.stderr.splitlines()[0]
    assert line.startswith("rkit worker: app prodsvc:app (namespace 'prod') on redis ")
    assert f"redis://:***@127.0.0.1:{password_server.port}/0" in line
    assert "s3cret-pw" not in proc.stderr


@pytest.mark.slow
def test_embedded_worker_only_when_asked(service: tuple[Path, dict[str, str]]) -> None:
    cwd, env = service
    proc = rkit(["worker", "prodsvc:app", "--burst", "--embedded"], cwd, env)
    assert proc.returncode == 0, proc.stderr
    assert "on redis embedded fakeredis" in proc.stderr


@pytest.mark.slow
def test_api_without_a_token_warns(
    service: tuple[Path, dict[str, str]], password_server: Server
) -> None:
    cwd, env = service
    url = f"redis://:s3cret-pw@127.0.0.1:{password_server.port}/0"
    env = {**env, "RKIT_REDIS_URL": url}
    cmd = [sys.executable, "-m", "rkit.cli", "api", "prodsvc:app", "--port", str(free_port())]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
    finally:
        proc.terminate()
        proc.wait(10)
    assert lines[0].startswith("rkit api: app prodsvc:app") and "***" in lines[0]
    assert "no admin token" in lines[1] and "every admin route will refuse" in lines[1]


# -- /health and 503 ---------------------------------------------------------------


async def _get(api: FastAPI, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        return await c.get(path, headers=headers)


async def test_health_checks_both_roles_and_hides_hosts_without_the_token(
    redis_url: str,
) -> None:
    app = App(redis_url)
    api = create_api(app, admin_token="tok")
    r = await _get(api, "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "state": "ok", "queue": "ok"}
    r = await _get(api, "/health", "tok")
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert r.json()["redis"] == {"state": redis_url, "queue": redis_url} and port in r.text
    await app.aclose()


async def test_health_down_is_503_and_names_no_host() -> None:
    port = free_port()
    app = App(f"redis://:pw@127.0.0.1:{port}/0?socket_connect_timeout=0.5")
    api = create_api(app, admin_token="tok")
    t0 = time.monotonic()
    r = await _get(api, "/health")
    assert time.monotonic() - t0 < 10
    assert r.status_code == 503
    assert r.json() == {"status": "error", "state": "down", "queue": "down"}
    assert str(port) not in r.text
    r = await _get(api, "/health", "tok")
    assert r.status_code == 503 and "Connection" in r.json()["errors"]["state"]
    assert "pw@" not in r.text and ":***@" in r.text
    await app.aclose()


async def test_a_route_failing_on_an_unreachable_redis_is_503() -> None:
    app = App(f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5")
    api = FastAPI()
    add_redis_error_handlers(api)

    @api.get("/count")
    async def count() -> int:
        return int(await app.redis.dbsize())

    r = await _get(api, "/count")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "127.0.0.1" not in r.text
    await app.aclose()


# -- clients and URLs --------------------------------------------------------------


def test_prebuilt_state_client_must_decode() -> None:
    with pytest.raises(ConfigError, match="decode_responses=True"):
        App(redis=aioredis.Redis())
    App(redis=aioredis.Redis(decode_responses=True), queue_redis=aioredis.Redis())


@pytest.mark.parametrize("url", ["localhost:6379", "http://x"])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        App(url)
    with pytest.raises(ConfigError, match="queue_url"):
        App("redis://localhost", queue_url=url)


async def test_rediss_query_parameters_reach_the_queue_connection(tmp_path: Path) -> None:
    from rkit.workers import worker_settings_class

    from rkit import _arq

    ca = tmp_path / "ca.pem"
    ca.write_text("not used before a connection")
    url = f"rediss://:pw@example.invalid:6380/2?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    app = App(url, namespace="tls")
    state = app.redis.connection_pool.connection_kwargs
    pool = await _arq.make_pool(app)
    queue = pool.connection_pool.connection_kwargs
    for kw in (state, queue):
        assert kw["ssl_ca_certs"] == str(ca) and kw["ssl_cert_reqs"] == "required"
        assert (kw["host"], kw["port"], kw["db"], kw["password"]) == (
            "example.invalid",
            6380,
            2,
            "pw",
        )
        assert kw["socket_connect_timeout"] == 2.0
    assert "SSL" in pool.connection_pool.connection_class.__name__
    settings = worker_settings_class(app).redis_settings  # type: ignore[attr-defined]
    assert settings.ssl and settings.ssl_ca_certs == str(ca) and settings.database == 2
    await pool.aclose()
    await app.aclose()


def test_url_query_overrides_the_client_defaults() -> None:
    app = App("redis://localhost/0?socket_timeout=12.5")
    assert app.redis.connection_pool.connection_kwargs["socket_timeout"] == 12.5


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h/1", "redis://user:***@h/1"),
        ("redis://pw@h/1", "redis://***@h/1"),
        (
            "rediss://h:6380/0?password=pw&ssl_ca_certs=/ca.pem",
            "rediss://h:6380/0?password=***&ssl_ca_certs=/ca.pem",
        ),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
