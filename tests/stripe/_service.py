"""The service the multi-process Stripe tests run under uvicorn: an App on the
redis-server of ``RKIT_REDIS_URL`` with one ``StripeSync`` whose ``on_event`` handler
counts its runs per event id in Redis (so the test sees every process's effects)."""

from __future__ import annotations

import os
from typing import Any

from rkit import App
from rkit.integrations.stripe import StripeSync

app = App(namespace=os.environ.get("STRIPE_TEST_NS", "sp"))
sync = StripeSync(
    app,
    secret_key="sk_test_123",
    webhook_secret="whsec_test",
    lease_ms=float(os.environ.get("STRIPE_TEST_LEASE_MS", "60000")),
)
RUNS = app.keys.tag("stripe_test", "runs")


@sync.on_event
async def count(event: dict[str, Any], s: StripeSync) -> None:
    await app.redis.hincrby(RUNS, event["id"], 1)


def _api() -> Any:
    from rkit.api import create_api  # alone in its block: sorts the same in any checkout

    return create_api(app, admin_token="tok")


api = _api()
