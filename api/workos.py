"""WorkOS AuthKit: the admin routes (``/admin/workos``, behind the admin token) and
the ``get_auth_user`` FastAPI dependency for an application's own routes.

Admin: ``GET /users/{user_id}``, ``GET /users?external_id=`` (or a page in insertion
order: ``?after_rank=&limit=``), ``GET /events/{event_id}``,
``POST /backfill`` (started/resumed/busy), ``GET /backfill``, ``POST /reconcile``
(queues one pull on the workpool). ``?instance=`` picks an AuthKit (default
``default``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status

from rkit import App
from rkit.errors import ConfigError
from rkit.integrations.workos import (
    KIND,
    AmbiguousExternalId,
    AuthKit,
    InvalidToken,
    JWKSUnavailable,
    User,
)

from .lookup import registered

__all__ = ["AuthUser", "auth_user", "get_auth_user", "router"]


def _authkit(app: App, instance: str) -> AuthKit:
    return registered(app, KIND, instance, AuthKit, "AuthKit instance")


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["workos"])

    @r.get("/users/{user_id}")
    async def user(user_id: str, instance: str = "default") -> dict[str, Any]:
        try:
            found = await _authkit(app, instance).get_auth_user(user_id)
        except ConfigError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
        return found.model_dump()

    @r.get("/users")
    async def users(
        external_id: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
        after_rank: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        instance: str = "default",
    ) -> dict[str, Any]:
        """``?external_id=``: the user with it; else a page in insertion order
        (``next_after_rank`` pages on)."""
        authkit = _authkit(app, instance)
        if external_id is not None:
            try:
                found = await authkit.get_auth_user_by_external_id(external_id)
            except AmbiguousExternalId as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
            return {"users": [] if found is None else [found.model_dump()]}
        page = await authkit.list_users(after_rank=after_rank, limit=limit)
        last = await authkit.user_rank(page[-1].id) if len(page) == limit else None
        return {
            "users": [u.model_dump() for u in page],
            "total": await authkit.count_users(),
            "next_after_rank": last,
        }

    @r.get("/events/{event_id}")
    async def event(event_id: str, instance: str = "default") -> dict[str, Any]:
        try:
            found = await _authkit(app, instance).event_record(event_id)
        except ConfigError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such event")
        return {"id": event_id, **found}

    @r.post("/backfill")
    async def start_backfill(instance: str = "default") -> dict[str, str]:
        return {"status": await _authkit(app, instance).start_backfill()}

    @r.get("/backfill")
    async def backfill(instance: str = "default") -> dict[str, Any]:
        return {"backfill": await _authkit(app, instance).backfill_status()}

    @r.post("/reconcile")
    async def reconcile(instance: str = "default") -> dict[str, Any]:
        authkit = _authkit(app, instance)
        return {"work_id": await authkit.start_reconcile(), "cursor": await authkit.cursor()}

    return r


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a Bearer access token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


async def _user(authkit: AuthKit, authorization: str | None) -> User:
    try:
        found = await authkit.user_from_token(_bearer(authorization))
    except JWKSUnavailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "access tokens cannot be checked right now"
        ) from None
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid access token: {exc}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the token's user is not synced")
    return found


def auth_user(authkit: AuthKit) -> Callable[..., Awaitable[User]]:
    """A dependency returning the synced :class:`User` of the request's AuthKit
    access token (``Authorization: Bearer ...``), else 401."""

    async def dependency(authorization: Annotated[str | None, Header()] = None) -> User:
        return await _user(authkit, authorization)

    return dependency


async def get_auth_user(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> User:
    """``Depends(get_auth_user)``: the synced user of the request's access token, for
    the App of ``create_api`` (``api.state.rkit``) and its ``default`` AuthKit."""
    app = getattr(request.app.state, "rkit", None)
    found = app.components.get(KIND, "default") if isinstance(app, App) else None
    if not isinstance(found, AuthKit):
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "no AuthKit configured")
    return await _user(found, authorization)


AuthUser = Annotated[User, Depends(get_auth_user)]
