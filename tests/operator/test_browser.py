"""The dashboard in a real browser (headless Chromium driven by selenium): without
the token the page shows the login form and no data; after signing in it shows a
pool's running and pending counts change while work runs, cancels a pending item
with its button, and saves a screenshot as a test artefact
(``$RKIT_ARTIFACTS_DIR``, default ``artifacts/`` at the repository root).

Chromium and chromedriver come from Debian's ``chromium`` and ``chromium-driver``
(``.ci/run`` installs them); without them the test is skipped locally and fails
under CI."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from rkit.api import create_api

from rkit import App, Workpool
from rkit.testing import background_worker

from .._servers import free_port, in_ci

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _driver() -> Any:
    if not (CHROMIUM and DRIVER):
        if in_ci():
            pytest.fail("chromium and chromedriver are not installed; .ci/run must install them")
        pytest.skip(
            "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,1000")
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


@pytest.fixture
async def served(queue_app: App) -> AsyncIterator[tuple[App, str]]:
    """The admin API of ``queue_app`` served by uvicorn on this event loop."""
    port = free_port()
    config = uvicorn.Config(
        create_api(queue_app, admin_token="s3cret-token"),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
        await asyncio.sleep(0.01)
    try:
        yield queue_app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` (a blocking selenium read, run in a thread so the server on this
    loop keeps answering) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.to_thread(check)
        except Exception as exc:  # the panels were just replaced: read again
            last = exc
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def stat(driver: Any, section: str, name: str) -> str:
    from selenium.webdriver.common.by import By

    el = driver.find_element(By.CSS_SELECTOR, f'[data-section="{section}"] [data-stat="{name}"]')
    return str(el.text)


async def test_dashboard_in_chromium(served: tuple[App, str]) -> None:
    app, base = served
    from selenium.webdriver.common.by import By

    gates = {i: asyncio.Event() for i in range(4)}

    @app.action(name="hold")
    async def hold(i: int) -> int:
        await gates[i].wait()
        return i

    pool = Workpool(app, "jobs", max_parallelism=2)
    ids = [await pool.enqueue("hold", {"i": i}) for i in range(4)]
    driver = await asyncio.to_thread(_driver)
    try:
        # no token: the login form, and none of the data
        await asyncio.to_thread(driver.get, f"{base}/dashboard?poll=300")
        body = await asyncio.to_thread(lambda: driver.find_element(By.TAG_NAME, "body").text)
        assert "Admin token" in body and "jobs" not in driver.page_source
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-section]")
        # a wrong token is refused on the page
        field = driver.find_element(By.ID, "token")
        await asyncio.to_thread(field.send_keys, "wrong\n")
        await until(
            lambda: driver.find_element(By.ID, "login-error").text == "Wrong token.", "refusal"
        )
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-section]")
        field = driver.find_element(By.ID, "token")
        await asyncio.to_thread(field.clear)
        await asyncio.to_thread(field.send_keys, "s3cret-token\n")
        sec = "workpool/jobs"
        async with background_worker(app):
            # two run (held), two wait
            await until(
                lambda: stat(driver, sec, "running") == "2" and stat(driver, sec, "pending") == "2",
                "2 running, 2 pending",
            )
            # one finishes, the pump dispatches the next: 2 running, 1 pending
            gates[0].set()
            await asyncio.wait_for(succeeded(pool, 1), 10)
            await pool.pump()
            await until(
                lambda: (
                    stat(driver, sec, "pending") == "1" and stat(driver, sec, "completed") == "1"
                ),
                "1 pending, 1 completed",
            )
            # cancel the pending item with its button (confirm dialog accepted)
            row = f'[data-section="{sec}"] button[data-action="workpool.cancel"]'
            row += f'[data-args*="{ids[3]}"]'

            def click() -> bool:
                """Click and accept the confirm dialog; a click that landed as a poll
                replaced the panels brings no dialog: False, click again."""
                from selenium.common.exceptions import TimeoutException
                from selenium.webdriver.support import expected_conditions
                from selenium.webdriver.support.ui import WebDriverWait

                driver.find_element(By.CSS_SELECTOR, row).click()
                try:
                    WebDriverWait(driver, 1).until(expected_conditions.alert_is_present())
                except TimeoutException:
                    return False
                driver.switch_to.alert.accept()
                return True

            await until(click, "the cancel button and its dialog")
            await until(
                lambda: (
                    stat(driver, sec, "pending") == "0" and stat(driver, sec, "canceled") == "1"
                ),
                "canceled",
            )
            await until(lambda: "canceled" in driver.find_element(By.ID, "flash").text, "flash")
            for i in (1, 2):
                gates[i].set()
            await until(lambda: stat(driver, sec, "running") == "0", "all done")
            assert stat(driver, sec, "completed") == "4"  # 3 succeeded + 1 canceled
            assert driver.find_elements(
                By.CSS_SELECTOR, f'svg[data-spark="{sec}#completed"] polyline'
            )
            shot = artefact(f"dashboard-{app.namespace}.png")
            assert await asyncio.to_thread(driver.save_screenshot, str(shot))
            assert shot.stat().st_size > 1000
        d = await pool.diagnostics()
        assert d.stats["succeeded"] == 3 and d.stats["canceled"] == 1
    finally:
        for g in gates.values():
            g.set()
        await asyncio.to_thread(driver.quit)


async def succeeded(pool: Workpool, n: int) -> None:
    while (await pool.diagnostics()).stats.get("succeeded", 0) < n:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def artefact(name: str) -> Path:
    out = Path(os.environ.get("RKIT_ARTIFACTS_DIR", ROOT / "artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out / name
