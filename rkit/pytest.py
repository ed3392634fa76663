"""rkit's pytest plugin (registered by the package: ``pip install 'rkit[dev]'``).

Fixtures, each fresh per test (pytest-asyncio gives every test its own event loop):

* ``rkit_clock`` — a :class:`~rkit.clock.TestClock` (``rkit_clock.advance(ms)``);
* ``rkit_app`` — the App under test on that clock, closed after the test: your
  service's module-level App when the ini option ``rkit_app`` names it
  (``rkit_app = myservice.tasks:app``), rebound to this test's loop on a fresh
  embedded fakeredis (or on its own Redis URL); otherwise a new
  :func:`~rkit.testing.create_test_app`.

Run queued work with :func:`rkit.testing.run_until_idle` as usual.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import pytest

from .app import App
from .clock import TestClock


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "rkit_app",
        "import path of the App that the rkit_app fixture rebinds (module:attribute)",
        default="",
    )


@pytest.fixture
def rkit_clock() -> TestClock:
    """A frozen test clock at 2023-11-14T22:14:00Z; move it with ``advance(ms)``."""
    return TestClock()


def _configured_app(path: str) -> App:
    module, _, attr = path.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, App):
        raise pytest.UsageError(f"rkit_app = {path!r} is not an rkit.App")
    return obj


@pytest.fixture
async def rkit_app(request: pytest.FixtureRequest, rkit_clock: TestClock) -> AsyncIterator[App]:
    """The App under test, on ``rkit_clock`` and this test's event loop."""
    from .testing import create_test_app, rebind

    path = str(request.config.getini("rkit_app") or "")
    if path:
        app = _configured_app(path)
        previous = app.clock
        rebind(app, clock=rkit_clock)
        try:
            yield app
        finally:
            await app.aclose()
            app.clock = previous
    else:
        app = create_test_app(clock=rkit_clock)
        try:
            yield app
        finally:
            await app.aclose()
