"""Bearer-token auth for admin routes."""

from __future__ import annotations

import hmac
import os

from fastapi import HTTPException, Request, status

ENV_TOKEN = "RKIT_ADMIN_TOKEN"


def resolve_token(admin_token: str | None) -> str | None:
    """The configured token (argument, else ``RKIT_ADMIN_TOKEN``) without surrounding
    white space — a token read from a file usually ends in a newline, and a header
    can never carry it — or ``None`` when none is configured."""
    token = admin_token if admin_token is not None else os.environ.get(ENV_TOKEN)
    token = (token or "").strip()
    return token or None


class RequireAdmin:
    """FastAPI dependency: the request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token else None

    async def __call__(self, request: Request) -> None:
        refusal = self.refusal(request.headers.get("authorization"))
        if refusal is not None:
            raise refusal

    def refusal(self, authorization: str | None) -> HTTPException | None:
        """The error refusing a request with this ``Authorization`` header, if any."""
        if self._token is None:
            return HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"admin API disabled: no admin token configured (set {ENV_TOKEN})",
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), self._token
        ):
            return HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None
