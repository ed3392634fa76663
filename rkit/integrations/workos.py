"""WorkOS AuthKit: a verified, ordered copy of the AuthKit user directory in Redis,
the app's handlers for any WorkOS event, signed AuthKit Actions verdicts, AuthKit
access-token checks, and a resumable user backfill (spec workos-authkit.md).

* **Webhooks** (``handle_webhook``): the ``WorkOS-Signature`` header is verified over
  the raw bytes on the App's clock (two-sided tolerance, 180 s) before anything is
  written; a forged, stale or malformed request is a 400 and writes nothing. Every
  delivered payload is processed directly (no re-fetch from the Events API). One
  script (``event_receive.lua``) deduplicates by event id (a duplicate answers 200),
  claims the event (a live claim elsewhere answers 409), applies its user change and
  records it as applied (exactly once), and finishes the event at once when no
  handler call is owed; otherwise the app's handler runs and ``event_mark.lua``
  finishes it. A handler error releases the claim and answers 500 so WorkOS
  redelivers: the sync is not repeated, the handler is (at least once, once in
  effect per successful delivery).
* **Ordering**: ``updated_at`` is parsed to ms; an update that is not newer is stale;
  a deletion leaves a tombstone (30 days) so no older create/update resurrects the user.
* **Actions** (``handle_action``): the signed request is verified (30 s), the app's
  ``authentication`` / ``user_registration`` handler decides, and the verdict is
  answered signed in WorkOS's wire format. A handler error or timeout answers 500
  (WorkOS then applies the endpoint's configured default verdict) unless
  ``action_fallback`` names a verdict to answer instead.
* **Outbound calls** (the reconcile pull from the Events API and the user backfill)
  run as jobs on a workpool of kind ``workos``: retried with backoff, durable across
  worker crashes; the backfill keeps its cursor and resumes after a failure. Secrets
  are never written to Redis or job arguments.

The REST calls go through the official SDK's async client (``workos.AsyncWorkOSClient``,
imported lazily) with its raw ``request`` method: the SDK's typed models drop unknown
user fields and reject payloads that lack a field, which is exactly the schema drift
the reference broke on, so rkit keeps the JSON as delivered.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import scripts
from ..clock import argv_now
from ..codec import fmt_num
from ..errors import ConfigError, KeyTooLong, RkitError
from ..keys import check_part, encode
from ..operator import Panel, Section, operator_hooks
from ..registry import Cron
from ..workpool import (
    Canceled,
    Failed,
    Finished,
    NotFound,
    OnCompleteArgs,
    PoolKind,
    RetryBehavior,
    WorkId,
    Workpool,
)

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "DEFAULT_EVENT_TYPES",
    "WORKOS_KIND",
    "ActionHandler",
    "ActionResponder",
    "ActionVerdict",
    "AmbiguousExternalId",
    "AuthKit",
    "AuthKitConfigError",
    "AuthKitEvent",
    "EventHandler",
    "InvalidToken",
    "JWKSUnavailable",
    "User",
    "WebhookResponse",
]

logger = logging.getLogger("rkit.workos")

KIND = "workos"
ENV_CLIENT_ID = "WORKOS_CLIENT_ID"
ENV_API_KEY = "WORKOS_API_KEY"
ENV_WEBHOOK_SECRET = "WORKOS_WEBHOOK_SECRET"
ENV_ACTION_SECRET = "WORKOS_ACTION_SECRET"
DEFAULT_EVENT_TYPES = ("user.created", "user.updated", "user.deleted")
PAGE_SIZE = 100
MAX_PAGES_PER_BATCH = 50
LOOKBACK_MS = 300_000
RECONCILE_LOCK_MS = 300_000
DAY_MS = 86_400_000
MAX_ID_BYTES = 1024
"""Event, user and external ids longer than this (UTF-8) are refused (400)."""

BACKFILL_RETRY = RetryBehavior(max_attempts=5, initial_backoff_ms=1_000, base=2)
RECONCILE_RETRY = RetryBehavior(max_attempts=3, initial_backoff_ms=1_000, base=2)

_PUBLIC_ROUTER = "rkit.api.webhooks.workos:router"
_BACKFILL_ACTION = "rkit.workos:backfill_users"
_BACKFILL_DONE_ACTION = "rkit.workos:backfill_done"
_RECONCILE_ACTION = "rkit.workos:reconcile_events"


@dataclass(frozen=True)
class WorkOSKind(PoolKind):
    """The pool kind of AuthKit's outbound work (reconcile pulls, backfill batches)."""

    kind: str = KIND
    logger: str = "rkit.workos"
    default_max_parallelism: int = 2


WORKOS_KIND = WorkOSKind()


# -- models -----------------------------------------------------------------------------


class User(BaseModel):
    """A synced AuthKit user: the wire (snake_case) fields; unknown fields are kept
    (``model_extra``) so a new WorkOS field never breaks ingestion."""

    model_config = ConfigDict(extra="allow")
    id: str
    email: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email_verified: bool = False
    profile_picture_url: str | None = None
    last_sign_in_at: str | None = None
    external_id: str | None = None
    metadata: dict[str, Any] = {}
    locale: str | None = None
    created_at: str
    updated_at: str


class AuthKitEvent(BaseModel):
    """A WorkOS event as delivered: ``data`` exactly as sent (with ``object``)."""

    model_config = ConfigDict(extra="allow")
    id: str
    event: str
    data: dict[str, Any]
    created_at: str | None = None
    context: dict[str, Any] | None = None


EventHandler = Callable[[AuthKitEvent], Awaitable[None]]
ActionKind = Literal["authentication", "user_registration"]


@dataclass(frozen=True)
class ActionVerdict:
    kind: ActionKind
    verdict: Literal["Allow", "Deny"]
    error_message: str | None = None


class ActionResponder:
    """Builds the verdict an action handler returns: ``allow()`` or ``deny(message)``."""

    def __init__(self, kind: ActionKind) -> None:
        self.kind: ActionKind = kind

    def allow(self) -> ActionVerdict:
        return ActionVerdict(self.kind, "Allow")

    def deny(self, error_message: str) -> ActionVerdict:
        return ActionVerdict(self.kind, "Deny", error_message)


ActionHandler = Callable[[dict[str, Any], ActionResponder], Awaitable[ActionVerdict]]


@dataclass(frozen=True)
class WebhookResponse:
    """What a webhook or action route answers (the FastAPI layer sends it as is)."""

    status_code: int
    body: str
    media_type: str = "text/plain"


class AuthKitConfigError(ConfigError):
    """A required setting is missing (``Missing environment variables: ...``)."""


class AmbiguousExternalId(RkitError, LookupError):
    """More than one synced user has the external id."""


class InvalidToken(RkitError, ValueError):
    """An AuthKit access token that does not verify (signature, issuer, expiry...)."""


class JWKSUnavailable(RkitError):
    """The JWKS endpoint could not be read (tokens cannot be checked right now)."""


class _BadRequest(Exception):
    pass


# -- helpers ----------------------------------------------------------------------------


def iso_ms_z(ms: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (what the Events API's ``range_start`` accepts)."""
    dt = datetime.fromtimestamp(int(ms) // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(ms) % 1000:03d}Z"


def parse_ms(value: Any) -> int:
    """An ISO-8601 timestamp (``Z`` accepted) as ms since the epoch; 0 if unparseable."""
    if not isinstance(value, str) or not value:
        return 0
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000 + (0.5 if dt.timestamp() >= 0 else -0.5))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """WorkOS's signature: hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with ``secret``."""
    return hmac.new(
        secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256"
    ).hexdigest()


def verify_signature(
    header: str, body: bytes, secret: str, tolerance_ms: float, now_ms: float
) -> bool:
    """The ``WorkOS-Signature`` check of the official SDKs, on the given clock: exactly
    ``t=<ms>, v1=<hex>``, ``|now - t| <= tolerance`` (both directions), constant-time
    compare of the HMAC over the raw bytes."""
    parts = header.split(", ")
    if len(parts) != 2 or not parts[0].startswith("t=") or not parts[1].startswith("v1="):
        return False
    ts, mac = parts[0][2:], parts[1][3:]
    if not (ts.isascii() and ts.isdigit() and len(ts) <= 16) or not mac.isascii():
        return False
    if abs(now_ms - int(ts)) > tolerance_ms:
        return False
    return hmac.compare_digest(mac.encode("ascii"), sign(secret, ts, body).encode("ascii"))


def _strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is not None:
        return found
    lower = name.lower()
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None


def _env(value: str | None, env: str) -> str | None:
    if value is None:
        value = os.environ.get(env)
    return value or None


def _check_path(path: Any, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
        raise ConfigError(f"{what} must look like '/a/b' (got {path!r})")
    segments = path[1:].split("/")
    if len(segments) < 2 or not all(segments):
        raise ConfigError(f"{what} needs at least two path segments, like '/workos/webhook'")
    return path


def _check_ms(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e12:
        raise ConfigError(f"{what} must be a number of ms in (0, 1e12], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Change:
    """The user change an event carries (or ``other`` for any other type)."""

    kind: Literal["created", "updated", "deleted", "other"]
    uid: str = ""
    json: str = ""
    upd: int = 0
    ext: str = ""


def _user_change(event_type: str, data: dict[str, Any]) -> _Change:
    """Validate a ``user.*`` payload (raises :class:`_BadRequest`) and encode it."""
    op = event_type[5:] if event_type.startswith("user.") else ""
    if op not in ("created", "updated", "deleted"):
        return _Change("other")
    uid = data.get("id")
    if not isinstance(uid, str) or not uid:
        raise _BadRequest(f"{event_type} without a user id")
    ext = data.get("external_id")
    if ext is not None and not isinstance(ext, str):
        raise _BadRequest("external_id must be a string or null")
    try:
        check_part(uid, "user id", MAX_ID_BYTES)
        if ext:
            check_part(ext, "external id", MAX_ID_BYTES)
    except (KeyTooLong, ConfigError) as exc:
        raise _BadRequest(str(exc)) from None
    stored = {k: v for k, v in data.items() if k != "object"}
    if op != "deleted":  # a stored user must read back as a User (a deletion needs the id)
        try:
            User.model_validate(stored)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()}))
            raise _BadRequest(f"invalid user fields: {fields}") from None
    kind: Literal["created", "updated", "deleted"] = op  # type: ignore[assignment]
    upd = parse_ms(data.get("updated_at"))
    return _Change(kind, uid, _dumps(stored), upd, encode(ext) if ext else "")


def _validate_event(event: Any) -> tuple[dict[str, Any], _Change]:
    if not isinstance(event, dict):
        raise _BadRequest("the event must be a JSON object")
    eid, etype, data = event.get("id"), event.get("event"), event.get("data")
    if not isinstance(eid, str) or not eid or not isinstance(etype, str) or not etype:
        raise _BadRequest("the event needs string 'id' and 'event' fields")
    if not isinstance(data, dict):
        raise _BadRequest("the event needs a 'data' object")
    context, created = event.get("context"), event.get("created_at")
    if context is not None and not isinstance(context, dict):
        raise _BadRequest("'context' must be an object")
    if created is not None and not isinstance(created, str):
        raise _BadRequest("'created_at' must be a string")
    try:
        check_part(eid, "event id", MAX_ID_BYTES)
    except (KeyTooLong, ConfigError) as exc:
        raise _BadRequest(str(exc)) from None
    return event, _user_change(etype, data)


# -- the component ----------------------------------------------------------------------


class AuthKit:
    """WorkOS AuthKit for one App (see the module docstring).

    ``client_id``, ``api_key`` and ``webhook_secret`` are required (arguments or the
    ``WORKOS_*`` environment variables); ``action_secret`` only for Actions.
    ``base_url`` points the SDK at another API host (tests: a local fake), else
    ``https://<api_hostname>`` when a custom AuthKit domain is set.
    """

    def __init__(
        self,
        app: App,
        *,
        client_id: str | None = None,
        api_key: str | None = None,
        webhook_secret: str | None = None,
        action_secret: str | None = None,
        api_hostname: str | None = None,
        base_url: str | None = None,
        http_client: Any | None = None,
        additional_event_types: Sequence[str] = (),
        webhook_path: str = "/workos/webhook",
        action_path: str = "/workos/action",
        webhook_tolerance_s: float = 180,
        action_tolerance_s: float = 30,
        action_timeout_s: float = 10,
        action_fallback: Literal["Allow", "Deny"] | None = None,
        action_fallback_message: str = "Sign-in is temporarily unavailable",
        event_retention_ms: float = 7 * DAY_MS,
        tombstone_ttl_ms: float = 30 * DAY_MS,
        lease_ms: float = 60_000,
        jwks_ttl_ms: float = 600_000,
        jwt_leeway_s: float = 0,
        max_parallelism: int = 2,
        max_body_bytes: int = 1 << 20,
        reconcile_cron: bool = True,
        instance: str = "default",
        rng: Callable[[], float] | None = None,
    ) -> None:
        client_id = _env(client_id, ENV_CLIENT_ID)
        api_key = _env(api_key, ENV_API_KEY)
        webhook_secret = _env(webhook_secret, ENV_WEBHOOK_SECRET)
        missing = [
            env
            for env, v in (
                (ENV_CLIENT_ID, client_id),
                (ENV_API_KEY, api_key),
                (ENV_WEBHOOK_SECRET, webhook_secret),
            )
            if v is None
        ]
        if missing:
            raise AuthKitConfigError(f"Missing environment variables: {', '.join(missing)}")
        assert client_id and api_key and webhook_secret
        if isinstance(additional_event_types, str) or not all(
            isinstance(t, str) and t for t in additional_event_types
        ):
            raise ConfigError("additional_event_types must be a sequence of event type names")
        if action_fallback not in (None, "Allow", "Deny"):
            raise ConfigError("action_fallback must be None, 'Allow' or 'Deny'")
        if app.components.get(KIND, instance) is not None:
            raise ConfigError(f"this App already has an AuthKit named {instance!r}")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ConfigError("max_body_bytes must be an int")
        self.app = app
        self.instance = instance
        self.max_body_bytes = max_body_bytes
        self.client_id = client_id
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._action_secret = _env(action_secret, ENV_ACTION_SECRET)
        self.api_hostname = api_hostname
        self.base_url = base_url or (f"https://{api_hostname}" if api_hostname else None)
        self._http_client = http_client
        self._client: Any | None = None
        self.event_types = [*DEFAULT_EVENT_TYPES, *additional_event_types]
        self.webhook_path = _check_path(webhook_path, "webhook_path")
        self.action_path = _check_path(action_path, "action_path")
        if self.webhook_path == self.action_path:
            raise ConfigError("webhook_path and action_path must differ")
        self.webhook_tolerance_ms = _check_ms(webhook_tolerance_s * 1000, "webhook_tolerance_s")
        self.action_tolerance_ms = _check_ms(action_tolerance_s * 1000, "action_tolerance_s")
        self.action_timeout_s = _check_ms(action_timeout_s * 1000, "action_timeout_s") / 1000
        self.action_fallback = action_fallback
        self.action_fallback_message = action_fallback_message
        self.event_retention_ms = _check_ms(event_retention_ms, "event_retention_ms")
        self.tombstone_ttl_ms = _check_ms(tombstone_ttl_ms, "tombstone_ttl_ms")
        self.lease_ms = _check_ms(lease_ms, "lease_ms")
        self.jwks_ttl_ms = _check_ms(jwks_ttl_ms, "jwks_ttl_ms")
        if isinstance(jwt_leeway_s, bool) or not isinstance(jwt_leeway_s, int | float):
            raise ConfigError("jwt_leeway_s must be a number of seconds")
        if not 0 <= jwt_leeway_s <= 3600:
            raise ConfigError("jwt_leeway_s must be between 0 and 3600")
        self.jwt_leeway_ms = float(jwt_leeway_s) * 1000
        self.reconcile_cron = reconcile_cron
        self._handlers: dict[str, EventHandler] = {}
        self._actions: dict[str, ActionHandler] = {}
        self._jwks: dict[str, Any] = {}
        self._jwks_at: float | None = None
        self._jwks_lock = asyncio.Lock()
        self._offset_ms = 0.0
        self._offset_at: float | None = None

        # the instance's workpool uses this tag's own keys (cfg, seq, ...): AuthKit's
        # state lives under ":ak" in the same slot
        tag = app.keys.tag(KIND, instance) + ":ak"
        self.prefix = tag
        self._k_seq = f"{tag}:seq"
        self._k_cursor = f"{tag}:cursor"
        self._k_backfill = f"{tag}:backfill"
        self._k_pending = f"{tag}:backfill:pending"
        self._k_lock = f"{tag}:reconcile"
        self._s = {
            op: scripts.load(KIND, op)
            for op in (
                "event_receive",
                "event_mark",
                "backfill_start",
                "backfill_page",
                "backfill_mark",
                "lock",
            )
        }
        for other in app.components.of_kind(KIND, AuthKit):
            if other.instance != instance and {other.webhook_path, other.action_path} & {
                self.webhook_path,
                self.action_path,
            }:
                raise ConfigError(f"another AuthKit on this App already serves {webhook_path}")
        prefixes = ["/" + p[1:].split("/")[0] for p in (self.webhook_path, self.action_path)]
        for path, prefix in zip((self.webhook_path, self.action_path), prefixes, strict=True):
            if app.components.public_routers().get(prefix, _PUBLIC_ROUTER) != _PUBLIC_ROUTER:
                raise ConfigError(f"{path}: another component's public routes own {prefix}/")
        self.workpool = Workpool(
            app,
            instance,
            kind=WORKOS_KIND,
            max_parallelism=max_parallelism,
            keep_result_ms=DAY_MS,
            rng=rng,
        )
        app.components.add(KIND, instance, self)
        _register_actions(app)
        operator_hooks(app).add_panel(Panel(KIND, "WorkOS AuthKit", _authkit_panel, order=90))
        app.components.add_router("/admin/workos", "rkit.api.workos:router")
        for prefix in prefixes:
            app.components.add_router(prefix, _PUBLIC_ROUTER, public=True)
        app.components.add_cron(
            Cron(
                "workos_reconcile",
                _cron_reconcile,
                second=frozenset({0}),
                minute=frozenset(range(0, 60, 5)),
            )
        )

    def __repr__(self) -> str:
        return f"AuthKit(instance={self.instance!r}, client_id={self.client_id!r})"

    # -- configuration ------------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        """Where AuthKit publishes its signing keys (always on api.workos.com)."""
        return f"https://api.workos.com/sso/jwks/{self.client_id}"

    def issuers(self) -> list[str]:
        host = self.api_hostname or "api.workos.com"
        return [f"https://{host}/", f"https://{host}/user_management/{self.client_id}"]

    def auth_config_providers(self) -> list[dict[str, str]]:
        """The two JWT provider descriptors of the reference (spec §3.2)."""
        first, second = self.issuers()
        return [
            {
                "type": "customJwt",
                "issuer": first,
                "algorithm": "RS256",
                "jwks": self.jwks_url,
                "applicationID": self.client_id,
            },
            {"type": "customJwt", "issuer": second, "algorithm": "RS256", "jwks": self.jwks_url},
        ]

    # -- handler registration -------------------------------------------------------------

    def on(self, event_type: str) -> Callable[[EventHandler], EventHandler]:
        """Register ``async def handler(event: AuthKitEvent)`` for one event type."""
        if not isinstance(event_type, str) or not event_type:
            raise ConfigError("event_type must be a non-empty string")

        def register(fn: EventHandler) -> EventHandler:
            if not callable(fn):
                raise ConfigError(f"the handler for {event_type} must be an async callable")
            self._handlers[event_type] = fn
            return fn

        return register

    def authentication_action(self, fn: ActionHandler) -> ActionHandler:
        """Register the handler deciding authentication actions."""
        self._actions["authentication"] = fn
        return fn

    def user_registration_action(self, fn: ActionHandler) -> ActionHandler:
        """Register the handler deciding user-registration actions."""
        self._actions["user_registration"] = fn
        return fn

    # -- reads ----------------------------------------------------------------------------

    def _user_key(self, uid: str) -> str:
        return f"{self.prefix}:u:{encode(uid)}"

    def _evt_key(self, eid: str) -> str:
        return f"{self.prefix}:evt:{encode(eid)}"

    async def get_auth_user(self, user_id: str) -> User | None:
        """The synced user (pass the access token's ``sub``), or ``None``."""
        if not isinstance(user_id, str) or not user_id:
            return None
        check_part(user_id, "user id", MAX_ID_BYTES)
        raw = await self._redis.hget(self._user_key(user_id), "json")
        return None if raw is None else User.model_validate_json(raw)

    async def get_auth_user_by_external_id(self, external_id: str) -> User | None:
        """The user with this external id; :class:`AmbiguousExternalId` if several."""
        check_part(external_id, "external id", MAX_ID_BYTES)
        ids = await self._redis.zrange(f"{self.prefix}:ix:ext:{encode(external_id)}", 0, 1)
        if len(ids) > 1:
            raise AmbiguousExternalId(f"more than one user has the external id {external_id!r}")
        return await self.get_auth_user(ids[0]) if ids else None

    async def list_users(self, *, after_rank: int = 0, limit: int = 100) -> list[User]:
        """Stored users in insertion order (rank), ``limit`` of them after
        ``after_rank`` (a page's last ``rank``: see :meth:`user_rank`)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ConfigError("limit must be an int between 1 and 1000")
        ids = await self._redis.zrangebyscore(
            f"{self.prefix}:all", f"({int(after_rank)}", "+inf", start=0, num=limit
        )
        found = [await self._redis.hget(self._user_key(u), "json") for u in ids]
        return [User.model_validate_json(raw) for raw in found if raw is not None]

    async def user_rank(self, user_id: str) -> int | None:
        """The user's insertion rank (the paging cursor of :meth:`list_users`)."""
        check_part(user_id, "user id", MAX_ID_BYTES)
        rank = await self._redis.zscore(f"{self.prefix}:all", user_id)
        return None if rank is None else int(rank)

    async def count_users(self) -> int:
        return int(await self._redis.zcard(f"{self.prefix}:all"))

    async def event_record(self, event_id: str) -> dict[str, str] | None:
        """The processed-event record (state, type, changed), or ``None``."""
        check_part(event_id, "event id", MAX_ID_BYTES)
        found: dict[str, str] = await self._redis.hgetall(self._evt_key(event_id))
        if not found:
            return None
        return {k: v for k, v in found.items() if k not in ("token", "lease_until")}

    async def cursor(self) -> str | None:
        """The last event id consumed by the reconcile pull."""
        value: str | None = await self._redis.get(self._k_cursor)
        return value

    async def now_ms(self) -> float:
        """The App's clock for signature, token and verdict timestamps: the injected
        clock, else Redis ``TIME`` (its offset from this host's clock re-read every
        10 s: tolerances are tens of seconds, so no round trip per request)."""
        now = self.app.clock.now_ms()
        if now is not None:
            return now
        local = time.time() * 1000
        if self._offset_at is None or not 0 <= local - self._offset_at < 10_000:
            self._offset_ms = await self.app.server_time() - time.time() * 1000
            self._offset_at = local
        return time.time() * 1000 + self._offset_ms

    # -- scripts --------------------------------------------------------------------------

    @property
    def _redis(self) -> Any:
        """The App's state client (reads; every write is a script)."""
        return self.app.redis

    async def _run(self, op: str, keys: Sequence[str], *args: Any) -> Any:
        argv = [argv_now(self.app.clock), self.prefix, *args]
        return await self._s[op](self.app.redis, keys, argv)

    # -- event processing -----------------------------------------------------------------

    async def handle_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """Verify, deduplicate, apply and hand one webhook delivery to its handler."""
        if len(body) > self.max_body_bytes:
            return WebhookResponse(413, "Payload too large")
        header = _header(headers, "WorkOS-Signature")
        if not header:
            return WebhookResponse(400, "No signature header")
        now = await self.now_ms()
        if not verify_signature(header, body, self._webhook_secret, self.webhook_tolerance_ms, now):
            return WebhookResponse(400, "Invalid signature")
        try:
            event, change = _validate_event(_strict_json(body))
        except (ValueError, _BadRequest) as exc:
            return WebhookResponse(400, f"Invalid payload: {exc}"[:300])
        try:
            outcome = await self._process(event, change)
        except (RedisConnectionError, RedisTimeoutError):
            raise  # Redis unreachable: the API layer answers 503 (WorkOS redelivers)
        except Exception:
            logger.exception(
                "WorkOS webhook %s (%s): processing failed", event["id"], event["event"]
            )
            return WebhookResponse(500, "Error processing webhook")
        if outcome == "busy":
            return WebhookResponse(409, "Event is being processed")
        return WebhookResponse(200, "OK")

    async def process_event(self, event: dict[str, Any]) -> Literal["done", "duplicate", "busy"]:
        """Claim, apply and hand an (already trusted) event to its handler; a handler
        error releases the claim and propagates. :class:`ConfigError` for a malformed
        event (nothing written)."""
        try:
            checked, change = _validate_event(event)
        except _BadRequest as exc:
            raise ConfigError(f"invalid WorkOS event: {exc}") from None
        return await self._process(checked, change)

    async def _process(
        self, event: dict[str, Any], change: _Change, cursor: str = ""
    ) -> Literal["done", "duplicate", "busy"]:
        eid, etype = event["id"], event["event"]
        ekey = self._evt_key(eid)
        token = uuid.uuid4().hex
        handler = self._handlers.get(etype)
        uenc = encode(change.uid) if change.uid else ""
        status, *_ = await self._run(
            "event_receive",
            [
                ekey,
                f"{self.prefix}:u:{uenc}",
                f"{self.prefix}:tomb:{uenc}",
                self._k_seq,
                self._k_cursor,
            ],
            fmt_num(self.lease_ms),
            token,
            etype,
            str(int(self.event_retention_ms)),
            change.kind,
            change.uid,
            change.json,
            fmt_num(change.upd),
            change.ext,
            str(int(self.tombstone_ttl_ms)),
            "0" if handler is None else "1",
            cursor,
        )
        logger.debug("WorkOS event %s (%s): %s", eid, etype, status)
        if status == "DUP":
            return "duplicate"
        if status == "BUSY":
            return "busy"
        if status == "DONE" or handler is None:
            return "done"
        try:
            await handler(AuthKitEvent.model_validate(event))
        except BaseException:
            await self._run("event_mark", [ekey, self._k_cursor], "release", token, "1", "")
            raise
        await self._run(
            "event_mark",
            [ekey, self._k_cursor],
            "done",
            token,
            str(int(self.event_retention_ms)),
            cursor,
        )
        return "done"

    # -- actions --------------------------------------------------------------------------

    async def handle_action(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """Verify an AuthKit Actions request and answer the handler's signed verdict."""
        secret = self._action_secret
        if not secret:
            return WebhookResponse(500, "Action secret not configured")
        if len(body) > self.max_body_bytes:
            return WebhookResponse(413, "Payload too large")
        header = _header(headers, "WorkOS-Signature")
        if not header:
            return WebhookResponse(400, "No signature header")
        now = await self.now_ms()
        if not verify_signature(header, body, secret, self.action_tolerance_ms, now):
            return WebhookResponse(400, "Invalid signature")
        try:
            action = _strict_json(body)
        except ValueError as exc:
            return WebhookResponse(400, f"Invalid payload: {exc}"[:300])
        if not isinstance(action, dict):
            return WebhookResponse(400, "Invalid payload: the action must be a JSON object")
        kind: ActionKind = (
            "authentication"
            if action.get("object") == "authentication_action_context"
            else "user_registration"
        )
        handler = self._actions.get(kind)
        if handler is None:
            return WebhookResponse(500, f"No handler for {kind} actions")
        try:
            verdict = await asyncio.wait_for(
                handler(action, ActionResponder(kind)), self.action_timeout_s
            )
            if not isinstance(verdict, ActionVerdict) or verdict.verdict not in ("Allow", "Deny"):
                raise TypeError(f"the {kind} handler must return respond.allow() or respond.deny()")
        except Exception:
            logger.exception("WorkOS %s action %s: handler failed", kind, action.get("id"))
            if self.action_fallback is None:
                return WebhookResponse(500, "Error processing action")
            verdict = ActionVerdict(kind, self.action_fallback, self.action_fallback_message)
        logger.debug("WorkOS %s action %s: %s", kind, action.get("id"), verdict.verdict)
        return self.signed_verdict(kind, verdict, await self.now_ms())

    def signed_verdict(
        self, kind: ActionKind, verdict: ActionVerdict, now_ms: float
    ) -> WebhookResponse:
        """The action response WorkOS expects: the payload and its signature over
        ``<timestamp>.<compact JSON payload>`` (non-ASCII kept raw, like JavaScript)."""
        secret = self._action_secret
        if not secret:
            return WebhookResponse(500, "Action secret not configured")
        ts = int(now_ms)
        payload: dict[str, Any] = {"timestamp": ts, "verdict": verdict.verdict}
        if verdict.verdict == "Deny" and verdict.error_message:
            payload["error_message"] = verdict.error_message
        text = _dumps(payload)
        signature = sign(secret, str(ts), text.encode("utf-8"))
        body = {"object": f"{kind}_action_response", "payload": payload, "signature": signature}
        return WebhookResponse(200, _dumps(body), "application/json")

    # -- access tokens --------------------------------------------------------------------

    async def _signing_key(self, kid: str | None) -> Any:
        """The JWKS key ``kid``: cached ``jwks_ttl_ms``; an unknown kid refetches the
        set (key rotation), at most once every 30 s (forged kids cannot flood WorkOS)."""
        async with self._jwks_lock:
            now = await self.now_ms()
            age = None if self._jwks_at is None else now - self._jwks_at
            fresh = age is not None and age < self.jwks_ttl_ms
            if not (fresh and kid in self._jwks) and (not fresh or age >= 30_000):  # type: ignore[operator]
                await self._fetch_jwks(now)
        if kid not in self._jwks:
            raise InvalidToken("unknown signing key")
        return self._jwks[kid]

    async def _fetch_jwks(self, now: float) -> None:
        import jwt

        try:
            doc = await self.client().request("get", ("sso", "jwks", self.client_id))
        except Exception as exc:
            raise JWKSUnavailable(f"cannot read the JWKS: {type(exc).__name__}: {exc}") from exc
        keys: dict[str, Any] = {}
        for k in (doc or {}).get("keys", []):
            try:
                jwk = jwt.PyJWK(k)
            except jwt.PyJWTError:
                continue
            keys[str(k.get("kid"))] = jwk
        self._jwks, self._jwks_at = keys, now

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid AuthKit access token (RS256, a key from the JWKS
        endpoint, one of :meth:`issuers`, not expired on the App's clock, ``aud`` if
        present naming the client id); :class:`InvalidToken` otherwise."""
        import jwt

        if not isinstance(token, str) or not token or len(token) > 16_384:
            raise InvalidToken("no token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise InvalidToken("the token must be signed with RS256")
        key = await self._signing_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "require": ["sub", "exp", "iss"],
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if claims.get("iss") not in self.issuers():
            raise InvalidToken("unexpected issuer")
        now = await self.now_ms()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or exp * 1000 + self.jwt_leeway_ms <= now:
            raise InvalidToken("the token has expired")
        if isinstance(nbf, int | float) and nbf * 1000 - self.jwt_leeway_ms > now:
            raise InvalidToken("the token is not valid yet")
        aud = claims.get("aud")
        if aud is not None:
            auds = [aud] if isinstance(aud, str) else aud
            if not isinstance(auds, list) or self.client_id not in auds:
                raise InvalidToken("the token is for another client")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("the token has no subject")
        return claims

    async def user_from_token(self, token: str) -> User | None:
        """The synced user of a valid access token (``None`` if not synced yet)."""
        claims = await self.verify_access_token(token)
        return await self.get_auth_user(claims["sub"])

    # -- the WorkOS API -------------------------------------------------------------------

    def client(self) -> Any:
        """The SDK's ``AsyncWorkOSClient`` (created on first use, no SDK retries: the
        workpool retries on the App's clock)."""
        if self._client is None:
            from workos import AsyncWorkOSClient

            self._client = AsyncWorkOSClient(
                api_key=self._api_key,
                client_id=self.client_id,
                base_url=self.base_url,
                http_client=self._http_client,
                max_retries=0,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the SDK client (and the HTTP client it created; one passed in is
        left open)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _list(
        self, path: tuple[str, ...], params: dict[str, Any]
    ) -> tuple[list[Any], str | None]:
        page = await self.client().request("get", path, params=params)
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise RuntimeError(f"unexpected list response from WorkOS /{'/'.join(path)}")
        after = (page.get("list_metadata") or {}).get("after")
        return page["data"], after if isinstance(after, str) and after else None

    # -- reconcile pull -------------------------------------------------------------------

    async def start_reconcile(self) -> WorkId:
        """Queue one reconcile pull on the workpool (what the 5-minute cron does)."""
        return await self.workpool.enqueue(
            _RECONCILE_ACTION, {"instance": self.instance}, retry=RECONCILE_RETRY
        )

    async def reconcile(self) -> int:
        """Pull the Events API from the cursor (or the last 5 minutes) and process
        every event like a verified webhook; returns how many events were consumed.
        One run at a time (a lease lock); a handler error stops the run (raised) with
        the cursor at the last success. Only this moves ``P:cursor``."""
        token = uuid.uuid4().hex
        if not await self._run("lock", [self._k_lock], "acquire", token, RECONCILE_LOCK_MS):
            logger.info("WorkOS reconcile: another run holds the lock")
            return 0
        try:
            return await self._reconcile_pages()
        finally:
            await self._run("lock", [self._k_lock], "release", token, RECONCILE_LOCK_MS)

    async def _reconcile_pages(self) -> int:
        cursor = await self.cursor()
        range_start = None
        if cursor is None:
            range_start = iso_ms_z(await self.now_ms() - LOOKBACK_MS)
        consumed = 0
        while True:
            params: dict[str, Any] = {"events": self.event_types, "limit": PAGE_SIZE}
            if cursor is not None:
                params["after"] = cursor
            if range_start is not None:
                params["range_start"] = range_start
            events, after = await self._list(("events",), params)
            for raw in events:
                try:
                    event, change = _validate_event(raw)
                except _BadRequest as exc:
                    logger.error("WorkOS reconcile: skipping a malformed event: %s", exc)
                    continue
                outcome = await self._process(event, change, cursor=event["id"])
                if outcome == "busy":
                    raise RuntimeError(f"event {event['id']} is being processed; retrying later")
                consumed += 1
            if after is None:
                return consumed
            cursor, range_start = after, None

    # -- backfill -------------------------------------------------------------------------

    async def start_backfill(self) -> Literal["started", "resumed", "busy"]:
        """Start the user backfill (or resume a failed one from its cursor); ``busy``
        while one runs. A running record whose job is gone is taken over."""
        wid = self.workpool.id_factory()
        status, current = await self._run("backfill_start", [self._k_backfill], wid, "")
        if status == "BUSY" and current:
            if isinstance(await self.workpool.status(current), NotFound | Finished):
                status, current = await self._run(
                    "backfill_start", [self._k_backfill], wid, current
                )
        if status == "BUSY":
            return "busy"
        await self._enqueue_backfill(wid)
        return "started" if status == "STARTED" else "resumed"

    async def _enqueue_backfill(self, wid: str) -> None:
        await self.workpool.enqueue_batch(
            _BACKFILL_ACTION,
            [{"instance": self.instance, "work_id": wid}],
            retry=BACKFILL_RETRY,
            on_complete=_BACKFILL_DONE_ACTION,
            context={"instance": self.instance, "work_id": wid},
            ids=[wid],
        )

    async def backfill_status(self) -> dict[str, Any] | None:
        """The running or failed backfill (state, cursor, pages, inserted, error,
        started_at, pending), or ``None``."""
        found: dict[str, str] = await self._redis.hgetall(self._k_backfill)
        if not found:
            return None
        return {
            "state": found.get("state"),
            "cursor": found.get("cursor") or None,
            "pages": int(found.get("pages") or 0),
            "inserted": int(found.get("inserted") or 0),
            "error": found.get("error") or None,
            "started_at": float(found.get("started_at") or 0),
            "pending": int(await self._redis.scard(self._k_pending)),
        }

    async def _backfill_batch(self, work_id: str) -> dict[str, Any]:
        """One backfill job: drain owed handler calls, then up to 50 pages."""
        info: dict[str, str] = await self._redis.hgetall(self._k_backfill)
        if info.get("state") != "running" or info.get("work_id") != work_id:
            return {"stale": True}
        await self._drain_pending([])
        cursor = info.get("cursor") or None
        for _ in range(MAX_PAGES_PER_BATCH):
            params: dict[str, Any] = {"limit": PAGE_SIZE, "order": "asc"}
            if cursor is not None:
                params["after"] = cursor
            users, after = await self._list(("user_management", "users"), params)
            argv: list[Any] = [work_id, after or ""]
            for u in users:
                try:
                    change = _user_change("user.created", u if isinstance(u, dict) else {})
                except _BadRequest as exc:  # one bad record must not block the backfill
                    logger.error("WorkOS backfill: skipping a malformed user: %s", exc)
                    continue
                argv += [
                    change.uid,
                    encode(change.uid),
                    change.json,
                    fmt_num(change.upd),
                    change.ext,
                ]
            inserted = await self._run(
                "backfill_page", [self._k_backfill, self._k_pending, self._k_seq], *argv
            )
            if inserted and inserted[0] == "STALE":
                return {"stale": True}
            await self._drain_pending(list(inserted))
            cursor = after
            if cursor is None:
                totals = await self.backfill_status() or {}
                await self._run(
                    "backfill_mark", [self._k_backfill, self._k_pending], "finish", work_id, ""
                )
                logger.info(
                    "WorkOS backfill finished: %s pages, %s users inserted",
                    totals.get("pages"),
                    totals.get("inserted"),
                )
                return {"done": True, **{k: totals.get(k) for k in ("pages", "inserted")}}
        nxt = self.workpool.id_factory()
        status, _ = await self._run("backfill_start", [self._k_backfill], nxt, work_id)
        if status == "RESUMED":
            await self._enqueue_backfill(nxt)
        return {"done": False, "cursor": cursor}

    async def _drain_pending(self, first: list[str]) -> None:
        """Call the ``user.created`` handler for every user whose call is still owed:
        ``first`` in order, then any left over from an earlier attempt (by rank)."""
        pending = set(await self._redis.smembers(self._k_pending))
        if not pending:
            return
        rest = sorted(pending - set(first))
        ranks = [await self._redis.hget(self._user_key(u), "rank") for u in rest]
        rest = [u for _, u in sorted(zip((int(r or 0) for r in ranks), rest, strict=True))]
        handler = self._handlers.get("user.created")
        for uid in [u for u in first if u in pending] + rest:
            raw = await self._redis.hget(self._user_key(uid), "json")
            if raw is not None and handler is not None:
                data = {**json.loads(raw), "object": "user"}
                await handler(AuthKitEvent(id=f"backfill:{uid}", event="user.created", data=data))
            await self._run(
                "backfill_mark", [self._k_backfill, self._k_pending], "handled", "", uid
            )

    async def _backfill_failed(self, work_id: str, error: str) -> None:
        await self._run(
            "backfill_mark", [self._k_backfill, self._k_pending], "fail", work_id, error[:2000]
        )


# -- jobs (registered once per App as actions; they find the instance in the registry) --


def _instance(app: App, instance: str) -> AuthKit:
    found = app.components.get(KIND, instance)
    if not isinstance(found, AuthKit):
        raise RuntimeError(f"this App has no AuthKit instance {instance!r}")
    return found


def _register_actions(app: App) -> None:
    if _BACKFILL_ACTION in app.actions:
        return

    @app.action(name=_BACKFILL_ACTION)
    async def backfill_users(instance: str, work_id: str) -> dict[str, Any]:
        return await _instance(app, instance)._backfill_batch(work_id)

    @app.action(name=_BACKFILL_DONE_ACTION)
    async def backfill_done(args: OnCompleteArgs) -> None:
        ctx = args.context
        if isinstance(args.result, Failed | Canceled):
            error = args.result.error if isinstance(args.result, Failed) else "canceled"
            await _instance(app, ctx["instance"])._backfill_failed(ctx["work_id"], error)

    @app.action(name=_RECONCILE_ACTION)
    async def reconcile_events(instance: str) -> int:
        return await _instance(app, instance).reconcile()


async def _cron_reconcile(app: App) -> None:
    for authkit in app.components.of_kind(KIND, AuthKit):
        if authkit.reconcile_cron:
            await authkit.start_reconcile()


async def _authkit_panel(app: App) -> list[Section]:
    """Dashboard panel: per instance the synced users and the user backfill."""
    out = []
    for ak in app.components.of_kind(KIND, AuthKit):
        backfill = await ak.backfill_status()
        stats: dict[str, Any] = {"users": await ak.count_users()}
        if backfill is not None:
            stats.update(
                {
                    "backfill": backfill["state"],
                    "backfill pages": backfill["pages"],
                    "backfill inserted": backfill["inserted"],
                }
            )
        out.append(Section(f"instance {ak.instance}", stats=stats))
    return out
