"""The component a route acts on, looked up in the App's registry (a 404 when the App
has none of that kind and name: admin routes never create components)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import HTTPException, status

from rkit import App

T = TypeVar("T")


def registered(app: App, kind: str, name: str, cls: type[T], what: str) -> T:
    """The ``kind`` component named ``name`` in ``app``; a 404 "no <what> '<name>'"
    when there is none (or it is not a ``cls``)."""
    found = app.components.get(kind, name)
    if not isinstance(found, cls):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {what} {name!r}")
    return found
