"""Lua script loading: one file per atomic operation, ``lua/<component>/<op>.lua``,
with ``lua/_lib.lua`` and ``lua/<component>/_lib.lua`` prepended. Scripts run by
EVALSHA; after a script-cache flush (NOSCRIPT) the body is sent once with EVAL,
which also re-caches it on the node that owns the keys (Cluster-safe)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.exceptions import NoScriptError

_ROOT = files("rkit._lua")


def _read(*parts: str) -> str:
    node = _ROOT.joinpath(*parts)
    return node.read_text(encoding="utf-8") if node.is_file() else ""


class Script:
    """One loaded Lua operation."""

    __slots__ = ("body", "name", "sha")

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body
        self.sha = hashlib.sha1(body.encode("utf-8")).hexdigest()

    async def __call__(
        self, client: Any, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.body, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:10]})"


@cache
def load(component: str, op: str) -> Script:
    """The script ``lua/<component>/<op>.lua`` with the shared libraries prepended."""
    body = _read(component, f"{op}.lua")
    if not body:
        raise FileNotFoundError(f"no Lua script lua/{component}/{op}.lua in the rkit package")
    parts = [_read("_lib.lua"), _read(component, "_lib.lua"), body]
    return Script(f"{component}/{op}", "\n".join(p for p in parts if p))
