"""rkit's FastAPI admin API.

``create_api(app)`` returns a FastAPI application with ``/health`` (open) and the
admin routes of every component, each protected by a bearer token. The token is
``admin_token=`` or ``RKIT_ADMIN_TOKEN``; with neither, admin routes refuse every
request (403) — the API is never open by default.
"""

from .app import add_redis_error_handlers, create_api

__all__ = ["add_redis_error_handlers", "create_api"]
