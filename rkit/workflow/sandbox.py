"""The deterministic environment of a handler (spec §7.7): inside a poll (and only
there: a ``ContextVar`` selects it, concurrent code is unaffected) ``random.random``
is the workflow's seeded PRNG, ``time.time`` the replayed clock, and
``asyncio.sleep`` with a positive delay raises (use ``ctx.sleep``)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from .executor import CURRENT
from .types import WorkflowSandboxError

_installed = False
_real_random = random.random
_real_time = time.time
_real_sleep = asyncio.sleep


def _random() -> float:
    ex = CURRENT.get()
    return _real_random() if ex is None else ex.rand.random()


def _time() -> float:
    ex = CURRENT.get()
    return _real_time() if ex is None else ex.now() / 1000.0


async def _sleep(delay: float, result: Any = None) -> Any:
    if delay > 0 and CURRENT.get() is not None:
        raise WorkflowSandboxError(
            "asyncio.sleep inside a workflow handler is not durable: use await ctx.sleep(ms)"
        )
    return await _real_sleep(delay, result)


def install() -> None:
    """Patch the module attributes once per process (idempotent)."""
    global _installed
    if _installed:
        return
    random.random = _random
    time.time = _time
    asyncio.sleep = _sleep
    _installed = True
