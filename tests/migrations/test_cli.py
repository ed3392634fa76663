"""``rkit migrate APP NAME [--dry-run]`` (scenario 29): a dry run prints the JSON
report and writes nothing; ``--here`` runs the batches in the CLI process with a
live progress line and a final summary; invalid input exits 1."""

from __future__ import annotations

import io
import itertools
import json
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from rkit import App
from rkit.cli import main
from rkit.migrations.progress import migrate_command, progress_line
from rkit.testing import background_worker

from .conftest import make_world, seed

SERVICE = """
from rkit import App
from rkit.migrations import HashIndexSource, Migrations

app = App(namespace="cli")
migrations = Migrations(app)


def set_default(ctx, item):
    return None if "opt" in item[1] else {"opt": "default"}


migrations.define(source=HashIndexSource(app.redis, "items:idx"), migrate_one=set_default)
"""
_n = itertools.count()


@pytest.fixture
def service(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, sync_redis.Redis]:
    name = f"migsvc{next(_n)}"
    (tmp_path / f"{name}.py").write_text(SERVICE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RKIT_REDIS_URL", redis_url)
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    for i in range(10):
        r.hset(f"item:{i}", mapping={"id": str(i), **({"opt": "x"} if i % 2 else {})})
        r.zadd("items:idx", {f"item:{i}": 0})
    yield f"{name}:app", r
    sys.modules.pop(name, None)
    r.close()


def dump(r: sync_redis.Redis) -> dict[str, object]:
    return {k: (r.type(k), r.hgetall(k) if r.type(k) == "hash" else None) for k in r.keys("*")}


def test_dry_run_prints_a_report_and_writes_nothing(
    service: tuple[str, sync_redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    app, r = service
    before = dump(r)
    assert main(["migrate", app, "set_default", "--dry-run", "--batch-size", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["Status"] == "DRY RUN: Migration started." and report["processed"] == 4
    assert [c[0] for c in report["changes"]] == ["item:0", "item:2"]
    assert dump(r) == before


def test_here_runs_with_progress_and_a_summary(
    service: tuple[str, sync_redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    app, r = service
    assert main(["migrate", app, "set_default", "--here", "--batch-size", "3"]) == 0
    out = capsys.readouterr()
    assert "10/10" in out.err and "100%" in out.err
    report = json.loads(out.out)
    assert report["Status"] == "Migration already done." and report["processed"] == 10
    assert [r.hget(f"item:{i}", "opt") for i in range(10)] == ["default", "x"] * 5


def test_invalid_input_exits_1(
    service: tuple[str, sync_redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    app, r = service
    before = dump(r)
    assert main(["migrate", app, "set_default", "--batch-size", "0"]) == 1
    assert "Batch size must be greater than 0" in capsys.readouterr().err
    assert main(["migrate", app, "nope", "--dry-run"]) == 1
    assert "Can't find function nope" in capsys.readouterr().err
    assert dump(r) == before
    with pytest.raises(SystemExit, match="no Migrations named 'x'"):
        main(["migrate", app, "set_default", "--instance", "x"])


async def test_the_watch_loop_follows_a_background_run(queue_app: App) -> None:
    await seed(queue_app)
    w = make_world(queue_app)
    out, err = io.StringIO(), io.StringIO()
    async with background_worker(queue_app):
        code = await migrate_command(
            w.m, "set_default", batch_size=2, interval=0.01, out=out, err=err
        )
    assert code == 0
    assert json.loads(out.getvalue())["processed"] == 10
    assert "10/10" in err.getvalue()
    w.fail_on = {"item:3"}
    out = io.StringIO()
    async with background_worker(queue_app):
        code = await migrate_command(
            w.m, "set_default", reset=True, batch_size=2, interval=0.01, out=out, err=err
        )
    assert code == 1
    assert json.loads(out.getvalue())["Status"] == "Migration failed: boom on item:3"


def test_progress_line() -> None:
    assert (
        progress_line(5, 10, 2.0) == "[###############...............] 5/10  50%  2 items/s  ETA 2s"
    )
    assert progress_line(7, None, None) == "7 items"


def test_migrate_refuses_an_app_without_a_redis_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like ``rkit worker``: a private embedded fakeredis would migrate nothing real."""
    name = f"migsvc{next(_n)}"
    (tmp_path / f"{name}.py").write_text(SERVICE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("RKIT_REDIS_URL", raising=False)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["migrate", f"{name}:app", "set_default", "--dry-run"])
        assert "no Redis URL" in str(exc.value) and "--embedded" in str(exc.value)
    finally:
        sys.modules.pop(name, None)
