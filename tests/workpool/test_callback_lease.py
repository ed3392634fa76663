"""The callback claim lease follows the pool's lease: a callback claimed by a worker
that died (no ack, no failure report) is redelivered ``callback_lease_ms`` later
(default ``2 * lease_ms``, like the dispatch lease), not after a fixed 30 s. The
process test (a worker SIGKILLed inside its handler) is in test_processes.py."""

from __future__ import annotations

from typing import Any

import pytest

from rkit import App, ConfigError
from rkit.retrier import ActionRetrier
from rkit.testing import run_until_idle
from rkit.workpool import Workpool

from .test_scenarios import Env, pool


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


def dying_deliveries(p: Workpool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every delivery of ``p``'s callbacks claims and then never reports: what a
    worker killed inside its handler leaves behind."""
    seen: list[str] = []

    async def dies(work_id: str, *args: Any) -> None:
        seen.append(work_id)

    monkeypatch.setattr(p, "_deliver", dies)
    return seen


@pytest.mark.parametrize(("lease", "callback_lease"), [(2_000, None), (5_000, 1_000)])
async def test_unacknowledged_callback_is_redelivered_after_the_callback_lease(
    app: App, env: Env, monkeypatch: pytest.MonkeyPatch, lease: float, callback_lease: float | None
) -> None:
    p = pool(app, lease_ms=lease, callback_lease_ms=callback_lease)
    expected = 2 * lease if callback_lease is None else callback_lease
    assert p.callback_lease_ms == expected
    seen = dying_deliveries(p, monkeypatch)
    wid = await p.enqueue("add", {"x": 1}, on_complete="cb")
    await run_until_idle(app)  # the completing worker claims the callback at once
    assert seen == [wid]
    for _ in range(2):  # the first claim (completion), then the pump's claim
        app.clock.advance(expected - 1)  # type: ignore[attr-defined]
        assert (await p.pump()).callbacks == 0
        app.clock.advance(1)  # type: ignore[attr-defined]
        assert (await p.pump()).callbacks == 1
    assert seen == [wid] * 3
    assert env.callbacks == []


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "5000", True, 600_001])
async def test_bad_callback_lease_is_a_config_error(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="callback_lease_ms"):
        Workpool(app, "p", callback_lease_ms=bad)
    with pytest.raises(ConfigError, match="callback_lease_ms"):
        ActionRetrier(app, callback_lease_ms=bad)
    assert list(app.components) == []


async def test_retrier_passes_its_callback_lease_on(app: App) -> None:
    assert ActionRetrier(app, lease_ms=1_000).workpool.callback_lease_ms == 2_000
    r = ActionRetrier(app, namespace="n", callback_lease_ms=700)
    assert r.workpool.callback_lease_ms == 700
