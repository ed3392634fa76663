"""Property-based fuzz of the whole admin API (schemathesis over ``create_api``'s
OpenAPI, in-process through httpx's ASGI transport).

With the token no generated request may get a 5xx, and every answer must match the
schema; without it every admin route must refuse. The App holds every component,
with data, and path parameters are drawn either freely or from the names that exist
so the fuzz reaches the components, not only their 404s."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rkit.api import create_api
from schemathesis import GenerationMode
from schemathesis.checks import (  # the public registry of checks
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
)

from rkit import App, TestClock

from ..conftest import make_app
from ._world import AUTH, TOKEN, known, seed

# examples per operation and mode (free / known path parameters); the whole fuzz
# stays well under a minute on two cores
EXAMPLES = int(os.environ.get("RKIT_FUZZ_EXAMPLES", "20"))
NEGATIVE_EXAMPLES = max(EXAMPLES // 3, 1)  # invalid data is slower to generate


class Fuzz:
    """One App with every component, its admin API, and an event loop to call it."""

    def __init__(self, backend: str, request: pytest.FixtureRequest) -> None:
        self.runner = asyncio.Runner()
        self.app: App = self.runner.run(make_app(backend, request, TestClock()))
        self.names = self.runner.run(seed(self.app))
        self.api = create_api(self.app, admin_token=TOKEN)
        self.schema = schemathesis.openapi.from_dict(self.api.openapi())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.api), base_url="http://rkit.test"
        )
        self.sent = 0

    def operations(self) -> Iterator[Any]:
        for result in self.schema.get_all_operations():
            yield result.ok()

    def send(self, case: Any, headers: dict[str, str]) -> httpx.Response:
        kw = case.as_transport_kwargs(base_url="http://rkit.test", headers=headers)
        body: dict[str, Any] = {}
        if "json" in kw:
            body["json"] = kw["json"]
        elif kw.get("data") is not None:
            body["content"] = kw["data"]
        self.sent += 1
        note(f"request: {kw['method']} {kw['url']} params={kw.get('params')} {body}")
        return self.runner.run(
            self.client.request(
                kw["method"], kw["url"], params=kw.get("params"), headers=kw["headers"], **body
            )
        )

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.run(self.app.aclose())
        self.runner.close()


pytestmark = pytest.mark.slow  # ~30 s for the whole module on two cores


@pytest.fixture(params=["fake", "redis"])
def fuzz(request: pytest.FixtureRequest) -> Iterator[Fuzz]:
    f = Fuzz(str(request.param), request)
    yield f
    f.close()


def _strategy(fuzz: Fuzz, op: Any, mode: GenerationMode = GenerationMode.POSITIVE) -> Any:
    free = op.as_strategy(mode)
    found = known(op.path, fuzz.names)
    return st.one_of(free, op.as_strategy(mode, path_parameters=found)) if found else free


def _fuzz(strategy: Any, examples: int, check: Callable[[Any], None]) -> None:
    """Run ``check`` on up to ``examples`` cases drawn from ``strategy``."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        check(case)

    run()


def test_fuzz_with_token_no_5xx_and_schema_conformance(fuzz: Fuzz) -> None:
    ops = list(fuzz.operations())
    assert len(ops) >= 40  # every component's routes are in the schema

    def check(case: Any) -> None:
        response = fuzz.send(case, AUTH)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    for op in ops:
        _fuzz(_strategy(fuzz, op), EXAMPLES, check)
    print(f"\n[fuzz with token] {fuzz.sent} requests over {len(ops)} operations")
    assert fuzz.sent >= len(ops) * 4  # hypothesis stops early only on tiny input spaces


def test_fuzz_invalid_input_with_token_is_a_4xx(fuzz: Fuzz) -> None:
    """Negative mode: data that breaks the schema (wrong types, out-of-range numbers,
    unknown fields, missing fields) must be refused with a 4xx, never a 5xx."""
    ops = [op for op in fuzz.operations() if op.path != "/health"]

    def check(case: Any) -> None:
        response = fuzz.send(case, AUTH)
        case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])

    for op in ops:
        try:
            _fuzz(_strategy(fuzz, op, GenerationMode.NEGATIVE), NEGATIVE_EXAMPLES, check)
        except Unsatisfiable:  # an operation without inputs has no invalid variant
            pass
    print(f"\n[fuzz invalid input] {fuzz.sent} requests over {len(ops)} operations")
    assert fuzz.sent >= len(ops) * 4


WRONG_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer nope"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
]


def test_fuzz_without_token_every_admin_route_refuses(fuzz: Fuzz) -> None:
    ops = list(fuzz.operations())
    for op in ops:
        admin = op.path != "/health"

        def check(pair: Any, admin: bool = admin, label: str = op.label) -> None:
            case, headers = pair
            response = fuzz.send(case, headers)
            if admin:
                assert response.status_code == 401, (label, response.text)
            else:
                assert response.status_code < 500

        strategy = st.tuples(_strategy(fuzz, op), st.sampled_from(WRONG_AUTH))
        _fuzz(strategy, NEGATIVE_EXAMPLES, check)
    print(f"\n[fuzz without token] {fuzz.sent} requests over {len(ops)} operations")
    assert fuzz.sent >= len(ops) * 4
