"""The admin token as configured: surrounding white space (a token file's trailing
newline) is not part of it; a token of only white space means none (routes refuse)."""

from __future__ import annotations

import httpx
import pytest
from rkit.api import create_api

from rkit import App


async def status_with(api: object, header: str | None) -> int:
    transport = httpx.ASGITransport(app=api)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        headers = {} if header is None else {"Authorization": header}
        return (await client.get("/workpools", headers=headers)).status_code


@pytest.mark.parametrize("configured", ["s3cret\n", "  s3cret", "s3cret \t"])
async def test_surrounding_white_space_is_not_part_of_the_token(configured: str) -> None:
    api = create_api(App(), admin_token=configured)
    assert await status_with(api, "Bearer s3cret") == 200
    assert await status_with(api, "Bearer wrong") == 401


async def test_an_env_token_from_a_file_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIT_ADMIN_TOKEN", "from-file\n")
    assert await status_with(create_api(App()), "Bearer from-file") == 200


async def test_a_blank_token_means_no_token() -> None:
    api = create_api(App(), admin_token=" \n")
    assert await status_with(api, "Bearer  ") == 403
    assert await status_with(api, None) == 403
