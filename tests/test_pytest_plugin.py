"""The ``rkit.pytest`` plugin in a user's project: the service's module-level App
works in every test although pytest-asyncio gives each test its own event loop
(without the plugin the second test fails with "bound to a different event loop"),
the clock is a TestClock, and no warning of rkit's (arq's deprecated ``close()``)
reaches the user's suite (run with ``-W error``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SERVICE = """
from rkit import SECOND, App, RateLimiter, TokenBucket, Workpool

app = App(namespace="svc")  # the README's pattern: a module-level App
limiter = RateLimiter(app, {"cooldown": TokenBucket(rate=1, period=SECOND)})
emails = Workpool(app, "emails")
sent: list[str] = []


@app.action(name="send")
async def send(to: str) -> None:
    sent.append(to)
"""

TESTS = """
from rkit import App, TestClock
from rkit.testing import run_until_idle

from svc import emails, limiter, send, sent


async def test_first(rkit_app: App, rkit_clock: TestClock) -> None:
    assert await limiter.limit("cooldown")
    assert not await limiter.limit("cooldown")
    rkit_clock.advance(1_000)
    assert await limiter.limit("cooldown")
    await emails.enqueue(send, {"to": "ada"})
    await run_until_idle(rkit_app)
    assert sent == ["ada"]


async def test_second_loop_fresh_state(rkit_app: App, rkit_clock: TestClock) -> None:
    assert rkit_app.clock is rkit_clock
    assert await limiter.limit("cooldown")  # a fresh Redis: the bucket is full again
    await emails.enqueue(send, {"to": "bob"})
    await run_until_idle(rkit_app)
    assert sent == ["ada", "bob"]
"""

WITHOUT_PLUGIN = """
from svc import app, limiter


async def test_first() -> None:
    assert await limiter.limit("cooldown")


async def test_second() -> None:
    await limiter.limit("cooldown")
"""


def run_pytest(tmp_path: Path, tests: str, *plugins: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "svc.py").write_text(SERVICE)
    (tmp_path / "test_svc.py").write_text(tests)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        + ("rkit_app = svc:app\n" if plugins else "")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKIT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # exactly the plugins named here
    args = [a for p in ("pytest_asyncio.plugin", *plugins) for a in ("-p", p)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_module_level_app_in_every_test_with_the_plugin(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, TESTS, "rkit.pytest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout and "warning" not in proc.stdout.lower()


def test_without_the_plugin_the_second_loop_fails(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, WITHOUT_PLUGIN)
    assert proc.returncode == 1
    assert "1 failed, 1 passed" in proc.stdout
    assert "different event loop" in proc.stdout or "attached to a different loop" in proc.stdout
