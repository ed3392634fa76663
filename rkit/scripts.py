"""Lua script loading: one file per atomic operation, ``lua/<component>/<op>.lua``,
with ``lua/_lib.lua`` and ``lua/<component>/_lib.lua`` prepended. Scripts run by
EVALSHA; after a script-cache flush (NOSCRIPT) the body is sent once with EVAL,
which also re-caches it on the node that owns the keys (Cluster-safe).

Of the libraries' top-level ``local function`` blocks only those the script uses
(directly or through another kept function) are prepended: Redis runs the whole
chunk on every call, so each unused definition would cost a closure per call."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.exceptions import NoScriptError

_ROOT = files("rkit._lua")


# a top-level function: "local function name(" at column 0 up to the first "end" at column 0
_FUNC = re.compile(r"^local function (\w+)\(.*?^end$\n?", re.S | re.M)
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.S)
_NAME = re.compile(r"[A-Za-z_]\w*")


def _names(code: str) -> set[str]:
    return set(_NAME.findall(_COMMENT.sub("", code)))


def _shake(libs: str, body: str) -> str:
    """``libs`` without the top-level functions that ``body`` cannot reach."""
    funcs = {m.group(1): m for m in _FUNC.finditer(libs)}
    if any("\nlocal function " in m.group(0) for m in funcs.values()):
        return libs  # a block we cannot delimit: keep everything
    rest = _FUNC.sub("", libs)  # the libraries' other top-level code always runs
    used: set[str] = set()
    todo = _names(body) | _names(rest)
    while todo:
        name = todo.pop()
        if name in funcs and name not in used:
            used.add(name)
            todo |= _names(funcs[name].group(0))
    return _FUNC.sub(lambda m: m.group(0) if m.group(1) in used else "", libs)


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
        try:  # what client.evalsha does, two Python calls shorter (this is every hot path)
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
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
    libs = "\n".join(p for p in (_read("_lib.lua"), _read(component, "_lib.lua")) if p)
    parts = [_shake(libs, body), body]
    return Script(f"{component}/{op}", "\n".join(p for p in parts if p))
