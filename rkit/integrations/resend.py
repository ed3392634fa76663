"""Resend: a durable, batched, rate-limited outbox for transactional email with
delivery tracking (spec resend.md).

``send_email`` writes the email to Redis (one script) and returns its id at once. A
batcher job on the instance's workpool (kind ``resend``) groups waiting emails into
batches of up to 100, reserves a slot of the API rate limit (``rkit.rate_limit``, a
fixed window of one call per ``api_interval_ms``) and queues one send job per batch;
the send job posts the batch to ``POST /emails/batch`` with the batch id as
``Idempotency-Key`` (the same on every attempt, so a retried batch is never sent
twice), retries transient failures with exponential backoff and records the Resend
id of every email. Signed webhooks (Svix scheme, verified here so the App's clock is
honoured) move each email through the status machine of spec §4.7, deduplicated by
``svix-id``; events that beat the batch result are parked and applied once the
Resend id is recorded; ``on_email_event`` runs on a second pool (kind
``resend_events``).

Keys: ``app.keys.tag("resend", instance) + ":m:..."`` (see ``lua/resend/_lib.lua``);
every state change is one script in ``lua/resend/``.

The REST API is called with a plain ``httpx.AsyncClient``: the status code and the
``retry-after`` header drive the permanent/transient split, and the official SDK
is configured through module globals (``resend.api_key``, ``resend.api_url``), which
cannot serve two keys in one process. The SDK remains the tool inside
``send_email_manually`` callbacks (``Emails.send_async(params, {"idempotency_key":
email_id})``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NewType, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import ResponseError

from .. import codec, scripts
from ..clock import argv_now
from ..errors import ConfigError, RkitError
from ..keys import check_part
from ..operator import Panel, Section, operator_hooks
from ..rate_limit import FixedWindow, RateLimiter
from ..registry import Cron
from ..workpool import (
    Canceled,
    Failed,
    NotFound,
    OnCompleteArgs,
    PoolKind,
    RetryBehavior,
    Workpool,
    _runtime,
)

if TYPE_CHECKING:
    import httpx

    from ..app import App

__all__ = [
    "Attachment",
    "Email",
    "EmailAlreadySent",
    "EmailEvent",
    "EmailEventHandler",
    "EmailId",
    "EmailNotFound",
    "EmailStatus",
    "Header",
    "InvalidEmail",
    "QueueInfo",
    "Resend",
    "ResendComponentError",
    "ResendConfigError",
    "Status",
    "Template",
    "TestModeViolation",
    "WebhookResponse",
    "build_payload",
    "is_test_address",
]

logger = logging.getLogger("rkit.resend")

EmailId = NewType("EmailId", str)
Status = Literal[
    "waiting", "queued", "cancelled", "sent", "delivered", "delivery_delayed", "bounced", "failed"
]
STATUSES: tuple[str, ...] = get_args(Status)
EventType = Literal[
    "email.sent",
    "email.delivered",
    "email.delivery_delayed",
    "email.complained",
    "email.bounced",
    "email.opened",
    "email.clicked",
    "email.failed",
]
EVENT_TYPES = frozenset(get_args(EventType))
PERMANENT = frozenset(
    {400, 401, 403, 404, 405, 406, 407, 408, 410, 411, 413, 414, 415, 416, 418, 421, 422, 426}
    | {427, 428, 431}
)
"""HTTP statuses that fail a batch at once; every other error is retried (spec §4.4)."""
DAY_MS = 86_400_000.0
MAX_BATCH = 100
TEST_MODE_MESSAGE = (
    "Test mode is enabled, but email address is not a valid resend test address. "
    "Did you want to set testMode: false in your ResendOptions?"
)
_TEST_ADDRESS = re.compile(r"^(delivered|bounced|complained)(\+[a-zA-Z0-9_-]*)?@resend\.dev$")
_MAX_ID_BYTES = 200
_MAX_ORPHANS = 100
_MAX_ERROR_CHARS = 2000
_FLUSHES_IN_FLIGHT = 2
"""Group-commit writes of send_email in flight at once (per instance and process)."""
_LOST_CALLBACK_RETRIES = 5
# crash recovery of the pipeline's own jobs (a lost worker, a Redis blip); API
# failures are retried by the send job itself with the configured backoff
_JOB_RETRY = RetryBehavior(max_attempts=20, initial_backoff_ms=1000, base=2, max_backoff_ms=60_000)


# -- errors ---------------------------------------------------------------------------


class ResendComponentError(RkitError):
    """Base class of the Resend integration's errors."""


class ResendConfigError(ResendComponentError, ConfigError):
    """The integration is not configured for the call (``API key is not set``)."""


class TestModeViolation(ResendComponentError, ConfigError):
    """Test mode is on and a recipient is not a Resend test address."""

    __test__ = False


class InvalidEmail(ResendComponentError, ConfigError):
    """The email's content, template, subject or attachments are invalid."""


class EmailNotFound(ResendComponentError, LookupError):
    """No email with this id (``Email not found``)."""


class EmailAlreadySent(ResendComponentError):
    """The email can no longer be cancelled (``Email has already been sent``)."""


# -- models ---------------------------------------------------------------------------


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    variables: dict[str, str | int | float] | None = None


class Header(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    value: str


class Attachment(BaseModel):
    """An attachment: base64 ``content`` or a ``path`` (URL) Resend fetches."""

    model_config = ConfigDict(extra="forbid")
    filename: str
    content: str | None = None
    path: str | None = None
    content_type: str | None = None


class EmailStatus(BaseModel):
    status: Status
    error_message: str | None
    bounced: bool
    complained: bool
    failed: bool
    delivery_delayed: bool
    opened: bool
    clicked: bool


class Email(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: EmailId
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str] | None = None
    bcc: list[str] | None = None
    subject: str | None = None
    reply_to: list[str] = []
    headers: list[Header] | None = None
    template: Template | None = None
    html: str | None = None
    text: str | None = None
    attachments: list[Attachment] | None = None
    tags: list[dict[str, str]] | None = None
    status: Status
    error_message: str | None = None
    bounced: bool = False
    complained: bool = False
    failed: bool = False
    delivery_delayed: bool = False
    opened: bool = False
    clicked: bool = False
    resend_id: str | None = None
    created_at: int
    finalized_at: int | None = None
    manual: bool = False


class EmailEvent(BaseModel):
    """A webhook event (lenient: unknown fields are kept and passed to the callback)."""

    model_config = ConfigDict(extra="allow")
    type: EventType
    created_at: str
    data: dict[str, Any]


EmailEventHandler = Callable[[EmailId, EmailEvent], Awaitable[None]]


@dataclass(frozen=True)
class WebhookResponse:
    """What the webhook route answers: 201 with an empty body on success."""

    status_code: int
    body: str = ""


@dataclass(frozen=True)
class QueueInfo:
    waiting: int
    batches_pending: int
    batches_inflight: int
    next_run_ms: float | None
    scheduled: int
    by_status: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "batches_pending": self.batches_pending,
            "batches_inflight": self.batches_inflight,
            "next_run_ms": self.next_run_ms,
            "scheduled": self.scheduled,
            "by_status": self.by_status,
        }


# -- pure helpers ---------------------------------------------------------------------


def is_test_address(address: str) -> bool:
    """A Resend test address (spec §4.6, the documented strict pattern, R7)."""
    return bool(_TEST_ADDRESS.match(address))


def _addresses(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, str | Sequence):
        raise InvalidEmail(f"{what} must be an address or a list of addresses")
    items = [value] if isinstance(value, str) else list(value)
    for a in items:
        if not isinstance(a, str) or not a:
            raise InvalidEmail(f"{what} must be non-empty address strings, got {a!r:.80}")
    return items


def _headers(headers: Sequence[Header | Mapping[str, Any]] | None) -> list[Header] | None:
    if headers is None:
        return None
    if isinstance(headers, str | bytes | Mapping):
        raise InvalidEmail("headers must be a list of {name, value}")
    try:
        return [h if isinstance(h, Header) else Header.model_validate(h) for h in headers]
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise InvalidEmail(f"headers must be {{name, value}} strings: {msg}") from None


def build_payload(email: Email) -> dict[str, Any]:
    """The JSON entry of one email in a batch request (spec §4.5), or the body of a
    single ``POST /emails`` when it has attachments or tags."""
    return _payload(
        email.from_,
        email.to,
        email.cc,
        email.bcc,
        email.subject,
        email.reply_to,
        email.headers,
        email.template,
        email.html,
        email.text,
        email.attachments,
        email.tags,
    )


def _payload(
    from_: str,
    to: Sequence[str],
    cc: Sequence[str] | None,
    bcc: Sequence[str] | None,
    subject: str | None,
    reply_to: Sequence[str],
    headers: Sequence[Header] | None,
    template: Template | None,
    html: str | None,
    text: str | None,
    attachments: Sequence[Attachment] | None,
    tags: Sequence[Mapping[str, str]] | None,
) -> dict[str, Any]:
    p: dict[str, Any] = {"from": from_, "to": list(to)}
    if bcc is not None:
        p["bcc"] = list(bcc)
    if cc is not None:
        p["cc"] = list(cc)
    p["reply_to"] = list(reply_to)
    if headers is not None:
        p["headers"] = {h.name: h.value for h in headers}
    if template is not None:
        p["template"] = template.model_dump(exclude_none=True)
        if subject:
            p["subject"] = subject
    else:
        if subject is not None:
            p["subject"] = subject
        if html is not None:
            p["html"] = html
        if text is not None:
            p["text"] = text
    if attachments:
        p["attachments"] = [a.model_dump(exclude_none=True) for a in attachments]
    if tags:
        p["tags"] = [dict(t) for t in tags]
    return p


def _svix_key(secret: str) -> bytes:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode("utf-8")


def _svix_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = msg_id.encode("utf-8") + b"." + timestamp.encode("utf-8") + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())


def _check_ms(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _int(x: Any) -> int:
    return int(float(x))


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


# -- the pool kinds -------------------------------------------------------------------

RESEND_KIND = PoolKind(kind="resend", logger="rkit.resend", default_max_parallelism=4)
"""The pool of batcher and send jobs (parallelism 4 by default, spec §2.3)."""
RESEND_EVENTS_KIND = PoolKind(kind="resend_events", logger="rkit.resend", default_max_parallelism=4)
"""The pool running ``on_email_event`` callbacks."""


class _EventsPool:
    """The registry entry of an instance's callback pool (kind ``resend_events``)."""

    def __init__(self, owner: Resend, workpool: Workpool) -> None:
        self.owner = owner
        self.workpool = workpool


def _instance(app: App, name: str) -> Resend:
    found = app.components.get_or_create(RESEND_KIND.kind, name)
    if not isinstance(found, Resend):  # pragma: no cover - the factory builds one
        raise ConfigError(f"no Resend instance {name!r}")
    return found


def _register_actions(app: App) -> None:
    """The pipeline's jobs, as App actions the workpool runs (once per App)."""
    if "resend_send_batch" in app.actions:
        return

    @app.action(name="resend_make_batch")
    async def resend_make_batch(instance: str, cutoff: float, reloop: bool) -> str:
        return await _instance(app, instance)._make_batch(cutoff, reloop)

    @app.action(name="resend_send_batch")
    async def resend_send_batch(instance: str, batch_id: str, attempt: int) -> str:
        return await _instance(app, instance)._send_batch(batch_id, attempt)

    @app.action(name="resend_send_done")
    async def resend_send_done(args: OnCompleteArgs) -> None:
        # the work id is "s.<batch id>.<attempt>"
        head, _, attempt = str(args.work_id).rpartition(".")
        await _instance(app, args.context["instance"])._send_done(head[2:], int(attempt), args)

    @app.action(name="resend_email_event_callback")
    async def resend_email_event_callback(
        instance: str, email_id: str, event: dict[str, Any], call_id: str = ""
    ) -> None:
        await _instance(app, instance)._run_callback(email_id, event, call_id)


class Resend:
    """The Resend outbox of one ``instance`` on an App (see the module docstring).

    ``api_key`` / ``webhook_secret`` default to ``RESEND_API_KEY`` /
    ``RESEND_WEBHOOK_SECRET`` (configuration stays in the process: nothing secret is
    written to Redis, R3). ``api_interval_ms=None`` sends without a rate limit.
    ``http_client`` (an ``httpx.AsyncClient``) is created on first use otherwise."""

    def __init__(
        self,
        app: App,
        *,
        instance: str = "default",
        api_key: str | None = None,
        webhook_secret: str | None = None,
        test_mode: bool = True,
        initial_backoff_ms: float = 30_000,
        retry_attempts: int = 5,
        on_email_event: EmailEventHandler | None = None,
        callback_max_attempts: int = 1,
        batch_size: int = MAX_BATCH,
        batches_per_round: int = 8,
        batch_delay_ms: float = 1_000,
        settle_ms: float = 250,
        api_interval_ms: float | None = 600,
        api_base: str = "https://api.resend.com",
        http_client: httpx.AsyncClient | None = None,
        http_timeout_s: float = 30.0,
        webhook_tolerance_s: int = 300,
        webhook_dedupe_ttl_ms: int = 3 * 86_400_000,
        orphan_ttl_ms: int = 600_000,
        max_webhook_bytes: int = 256 << 10,
        max_attachment_bytes: int = 10 << 20,
        max_parallelism: int = 4,
        callback_parallelism: int = 4,
        lease_ms: float = 5_000,
        finalized_retention_ms: float = 7 * DAY_MS,
        abandoned_retention_ms: float = 30 * DAY_MS,
        cleanup_cron: bool = True,
        watchdog_grace_ms: float = 60_000,
        rng: Callable[[], float] = random.random,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ConfigError("batch_size must be an int in 1..100")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError("batch_size must be an int in 1..100")
        if not isinstance(batches_per_round, int) or not 1 <= batches_per_round <= 64:
            raise ConfigError("batches_per_round must be an int in 1..64")
        if isinstance(retry_attempts, bool) or not isinstance(retry_attempts, int):
            raise ConfigError("retry_attempts must be an int >= 1")
        if retry_attempts < 1:
            raise ConfigError("retry_attempts must be an int >= 1")
        if not isinstance(callback_max_attempts, int) or callback_max_attempts < 1:
            raise ConfigError("callback_max_attempts must be an int >= 1")
        if api_interval_ms is not None:
            _check_ms("api_interval_ms", api_interval_ms, positive=True)
        for name, v, hi in (
            ("webhook_tolerance_s", webhook_tolerance_s, 86_400),
            ("max_webhook_bytes", max_webhook_bytes, 1 << 29),
            ("max_attachment_bytes", max_attachment_bytes, 1 << 29),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ConfigError(f"{name} must be an int in 1..{hi}, got {v!r}")
        if _check_ms("http_timeout_s", http_timeout_s, positive=True) > 290:
            raise ConfigError("http_timeout_s must be at most 290 (the send job's timeout)")
        if on_email_event is not None and not callable(on_email_event):
            raise ConfigError("on_email_event must be an async callable (email_id, event)")
        check_part(instance, "Resend instance")
        existing = app.components.get(RESEND_KIND.kind, instance)
        if existing is not None:  # before the limiter and pools register themselves
            raise ConfigError(
                f"this App already has a resend named {instance!r} ({existing!r}); "
                "use that instance (or another name)"
            )
        self.app = app
        self.instance = instance
        self.api_key = api_key if api_key is not None else os.environ.get("RESEND_API_KEY", "")
        self.webhook_secret = (
            webhook_secret
            if webhook_secret is not None
            else os.environ.get("RESEND_WEBHOOK_SECRET", "")
        )
        self.test_mode = bool(test_mode)
        self.initial_backoff_ms = _check_ms("initial_backoff_ms", initial_backoff_ms)
        self.retry_attempts = retry_attempts
        self.on_email_event = on_email_event
        self.batch_size = batch_size
        self.batches_per_round = batches_per_round
        self.batch_delay_ms = _check_ms("batch_delay_ms", batch_delay_ms)
        self.settle_ms = _check_ms("settle_ms", settle_ms)
        self.api_interval_ms = api_interval_ms
        self.api_base = api_base.rstrip("/")
        self.http_timeout_s = http_timeout_s
        self._http = http_client
        self._own_http = http_client is None
        self.webhook_tolerance_s = webhook_tolerance_s
        self.webhook_dedupe_ttl_ms = int(_check_ms("webhook_dedupe_ttl_ms", webhook_dedupe_ttl_ms))
        self.orphan_ttl_ms = int(_check_ms("orphan_ttl_ms", orphan_ttl_ms, positive=True))
        self.max_webhook_bytes = max_webhook_bytes
        self.max_attachment_bytes = max_attachment_bytes
        self.finalized_retention_ms = _check_ms("finalized_retention_ms", finalized_retention_ms)
        self.abandoned_retention_ms = _check_ms("abandoned_retention_ms", abandoned_retention_ms)
        self.watchdog_grace_ms = _check_ms("watchdog_grace_ms", watchdog_grace_ms)
        self.rng = rng
        self.id_factory = id_factory or (lambda: uuid.uuid4().hex)
        self.key = app.keys.tag("resend", instance) + ":m"
        self._queue: list[tuple[str, str, str, list[str], str, asyncio.Future[str]]] = []
        self._flush_soon = False
        self._flushes: set[asyncio.Task[None]] = set()
        self.limiter: RateLimiter | None = None
        if api_interval_ms is not None:
            self.limiter = RateLimiter(
                app,
                {"resend_api": FixedWindow(rate=1, period=api_interval_ms, start=0)},
                name=f"resend:{instance}",
            )
        self.workpool = Workpool(
            app,
            instance,
            kind=RESEND_KIND,
            max_parallelism=max_parallelism,
            lease_ms=lease_ms,
            timeout_ms=max(60_000.0, 2 * http_timeout_s * 1000),
            rng=rng,
        )
        self.events_pool = Workpool(
            app,
            instance,
            kind=RESEND_EVENTS_KIND,
            max_parallelism=callback_parallelism,
            lease_ms=lease_ms,
            rng=rng,
        )
        self.callback_max_attempts = callback_max_attempts
        # handler failures are counted apart (cb_fail.lua): the extra attempts are for
        # a worker lost inside the handler, always retried (at least once)
        self._callback_retry = RetryBehavior(
            max_attempts=callback_max_attempts + _LOST_CALLBACK_RETRIES,
            initial_backoff_ms=1000,
            base=2,
        )
        self._s = {
            op: scripts.load("resend", op)
            for op in (
                "enqueue",
                "take_batch",
                "batch_begin",
                "batch_result",
                "cancel",
                "apply_event",
                "hook_done",
                "cb_fail",
                "manual_update",
                "cleanup",
                "get",
                "info",
                "list",
                "watchdog",
            )
        }
        app.components.add(RESEND_KIND.kind, instance, self)
        app.components.add(RESEND_EVENTS_KIND.kind, instance, _EventsPool(self, self.events_pool))
        operator_hooks(app).add_panel(Panel("resend", "Resend", _resend_panel, order=90))
        app.components.set_factory(RESEND_KIND.kind, lambda n: Resend(app, instance=n))
        app.components.set_factory(
            RESEND_EVENTS_KIND.kind,
            lambda n: _EventsPool(_instance(app, n), _instance(app, n).events_pool),
        )
        app.components.add_router("/admin/resend", "rkit.api.resend:router")
        app.components.add_router("/resend", "rkit.api.webhooks.resend:router", public=True)
        app.components.add_cron(
            Cron(f"resend_watchdog:{instance}", lambda _app: self.watchdog(), second=frozenset({7}))
        )
        if cleanup_cron:
            app.components.add_cron(
                Cron(
                    f"resend_cleanup:{instance}",
                    lambda _app: self._cleanup_both(),
                    second=frozenset({0}),
                    minute=frozenset({0}),
                )
            )
        _register_actions(app)

    @classmethod
    def view(cls, app: App, instance: str = "default") -> Resend:
        """The App's registered instance (built with default options if none)."""
        return _instance(app, instance)

    def __repr__(self) -> str:
        return f"Resend(instance={self.instance!r})"

    # -- plumbing -----------------------------------------------------------------------

    async def _call(self, op: str, *args: Any) -> Any:
        argv = [argv_now(self.app.clock), *args]
        return await self._s[op](self.app.redis, [self.key], argv)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=self.http_timeout_s)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client this instance created (one passed in is yours)."""
        if self._http is not None and self._own_http:
            await self._http.aclose()
            self._http = None

    def _check_id(self, email_id: Any) -> str | None:
        if not isinstance(email_id, str) or not email_id:
            return None
        if len(email_id.encode("utf-8", "replace")) > _MAX_ID_BYTES:
            return None
        return email_id

    # -- sending ------------------------------------------------------------------------

    async def send_email(
        self,
        *,
        from_: str,
        to: str | Sequence[str],
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
        template: Template | Mapping[str, Any] | None = None,
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        reply_to: Sequence[str] | None = None,
        headers: Sequence[Header | Mapping[str, Any]] | None = None,
        attachments: Sequence[Attachment | Mapping[str, Any]] | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        idempotency_key: str | None = None,
        scheduled_at_ms: float | None = None,
    ) -> EmailId:
        """Queue an email; returns its id once it is durable in Redis. Validation
        (nothing is written on failure): API key, test mode, content (spec §3.2).
        ``scheduled_at_ms`` (epoch ms, the App's clock) holds the email until then."""
        idem = ""
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not idempotency_key:
                raise InvalidEmail("idempotency_key must be a non-empty string")
            try:
                check_part(idempotency_key, "idempotency_key", 256)
            except ConfigError as exc:
                raise InvalidEmail(str(exc)) from None
            idem = base64.urlsafe_b64encode(idempotency_key.encode()).decode().rstrip("=")
            # a live email of this key: its id, and nothing else happens (the new
            # arguments are not even checked); the enqueue script checks again
            existing = await self.app.redis.get(f"{self.key}:idem:{idem}")
            if existing is not None:
                return EmailId(_s(existing))
        if not self.api_key:
            raise ResendConfigError("API key is not set")
        at = ""
        if scheduled_at_ms is not None:
            if isinstance(scheduled_at_ms, bool) or not isinstance(scheduled_at_ms, int | float):
                raise InvalidEmail("scheduled_at_ms must be a finite number of epoch ms")
            if not math.isfinite(scheduled_at_ms) or not 0 <= scheduled_at_ms < 1e15:
                raise InvalidEmail("scheduled_at_ms must be a finite number of epoch ms")
            at = codec.fmt_num(scheduled_at_ms)
        if not isinstance(from_, str) or not from_:
            raise InvalidEmail("from_ must be a non-empty address string")
        to_l = _addresses(to, "to")
        if not to_l:
            raise InvalidEmail("to must name at least one address")
        cc_l, bcc_l = _addresses(cc, "cc"), _addresses(bcc, "bcc")
        if self.test_mode:
            for a in [*to_l, *(cc_l or []), *(bcc_l or [])]:
                if not is_test_address(a):
                    raise TestModeViolation(TEST_MODE_MESSAGE)
        tpl: Template | None = None
        if template is not None:
            try:
                tpl = (
                    template
                    if isinstance(template, Template)
                    else Template.model_validate(template)
                )
            except ValidationError as exc:
                raise InvalidEmail(f"template is invalid: {exc.errors()[0]['msg']}") from None
        has_content = html is not None or text is not None
        if not has_content and tpl is None:
            raise InvalidEmail("Either html/text or template must be provided")
        if has_content and tpl is not None:
            raise InvalidEmail("Cannot provide both html/text and template")
        if tpl is None and subject is None:
            raise InvalidEmail("Subject is required when not using a template")
        for name, v in (("subject", subject), ("html", html), ("text", text)):
            if v is not None and not isinstance(v, str):
                raise InvalidEmail(f"{name} must be a string")
        reply = _addresses(reply_to, "reply_to") if reply_to is not None else []
        if isinstance(reply_to, str):
            raise InvalidEmail("reply_to must be a list of addresses")
        hdrs = _headers(headers)
        atts: list[Attachment] | None = None
        if attachments is not None:
            try:
                atts = [
                    a if isinstance(a, Attachment) else Attachment.model_validate(a)
                    for a in attachments
                ]
            except ValidationError as exc:
                raise InvalidEmail(f"attachments are invalid: {exc.errors()[0]['msg']}") from None
            size = sum(len(a.content or "") for a in atts)
            if size > self.max_attachment_bytes:
                raise InvalidEmail(
                    f"attachments are {size} bytes, above max_attachment_bytes "
                    f"({self.max_attachment_bytes})"
                )
        tag_l: list[dict[str, str]] | None = None
        if tags is not None:
            if isinstance(tags, str | bytes) or not all(isinstance(t, Mapping) for t in tags):
                raise InvalidEmail("tags must be {name, value} strings")
            tag_l = [dict(t) for t in tags]
            if not all(
                set(t) == {"name", "value"} and all(isinstance(v, str) for v in t.values())
                for t in tag_l
            ):
                raise InvalidEmail("tags must be {name, value} strings")
        # the record keeps the email as the API payload it is sent as (one field: a
        # batch is the payloads joined, nothing decoded and encoded again per send)
        payload = _payload(
            from_, to_l, cc_l, bcc_l, subject, reply or [], hdrs, tpl, html, text, atts, tag_l
        )
        fields: list[str] = ["p", codec.dumps(payload)]
        if tpl is not None and subject is not None and not subject:
            fields += ["subject", subject]  # kept for get(); the API is not sent an empty one
        if atts or tag_l:
            fields += ["single", "1"]  # the batch endpoint has no attachments or tags
        return await self._create(fields, idem, manual=False, at=at)

    async def _create(self, fields: list[str], idem: str, *, manual: bool, at: str = "") -> EmailId:
        """Write one email, in a group commit with the other ``send_email`` calls of
        this moment: the emails queued while the writes in flight are pending share the
        next script call (up to 256 emails or 4 MB of arguments); each call returns once
        its email is in Redis. Two writes may be in flight at once, so this process
        prepares the next group while Redis runs the last."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        self._queue.append((self.id_factory(), idem, "1" if manual else "0", fields, at, fut))
        self._want_flush(loop)
        return EmailId(await fut)

    def _want_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._queue and not self._flush_soon and len(self._flushes) < _FLUSHES_IN_FLIGHT:
            self._flush_soon = True
            loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_soon = False
        if not self._queue:
            return
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        try:
            self._want_flush(asyncio.get_running_loop())
        except RuntimeError:  # the loop is closing
            pass

    async def _flush(self) -> None:
        """Write one group of queued emails (one script call)."""
        n = 0
        size = 0
        queue = self._queue
        while n < len(queue) and n < 256 and (n == 0 or size < 4_000_000):
            size += sum(len(f) for f in queue[n][3])
            n += 1
        chunk = queue[:n]
        del queue[:n]
        argv: list[str] = []
        for email_id, idem, manual, fields, at, _ in chunk:
            argv += [email_id, idem, manual, at, str(len(fields) // 2)]
            argv += fields
        try:
            must, now, rows = await self._call(
                "enqueue", codec.fmt_num(self.batch_delay_ms), len(chunk), *argv
            )
            if int(must):
                await self._schedule_make(float(now), self.batch_delay_ms)
            for due in sorted({_s(row[2]) for row in rows if _s(row[2])}):
                await self._schedule_at(float(due))
        except BaseException as exc:
            for *_, fut in chunk:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (email_id, *_, fut), row in zip(chunk, rows, strict=True):
            if fut.done():
                continue
            if int(row[1]) < 0:
                fut.set_exception(ConfigError(f"email id already exists: {email_id}"))
            else:
                fut.set_result(_s(row[0]))

    async def _schedule_make(self, now: float, delay: float, *, reloop: bool = False) -> None:
        cutoff = now + self.batch_delay_ms - self.settle_ms
        await self.workpool.enqueue(
            "resend_make_batch",
            {"instance": self.instance, "cutoff": cutoff, "reloop": reloop},
            run_after=delay,
            retry_behavior=_JOB_RETRY,
        )
        self._wake(delay)

    async def _schedule_at(self, due: float) -> None:
        """A batcher run at ``due`` for the emails scheduled then (one job per due
        time: its work id dedupes)."""
        try:
            await self.workpool.enqueue_batch(
                "resend_make_batch",
                [{"instance": self.instance, "cutoff": due, "reloop": False}],
                run_at=due,
                retry_behavior=_JOB_RETRY,
                ids=[f"at.{int(due)}"],
            )
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise
        now = self.app.clock.now_ms()
        if now is not None:
            self._wake(due - now)

    def _wake(self, delay_ms: float) -> None:
        """A job deferred by ``delay_ms``: have this process's workpool pump (when it
        runs one: a worker) dispatch it on time rather than after its idle sleep."""
        if delay_ms > 0:
            _runtime(self.app).wake_in(delay_ms)

    async def _reserve(self) -> float:
        """Reserve one API call slot; the ms to wait for it (0 = now)."""
        if self.limiter is None:
            return 0.0
        r = await self.limiter.limit("resend_api", key=self.instance, reserve=True)
        if r.retry_after is None:
            return 0.0
        return float(r.retry_after) + self.rng() * 100

    async def _enqueue_sends(self, batch_ids: list[str], waits: list[float]) -> None:
        """The first attempts of new batches: one enqueue per distinct delay."""
        by_wait: dict[float, list[str]] = {}
        for bid, wait in zip(batch_ids, waits, strict=True):
            by_wait.setdefault(wait, []).append(bid)
        for wait, bids in by_wait.items():
            if len(bids) == 1:
                await self._enqueue_send(bids[0], 1, wait)
                continue
            await self.workpool.enqueue_batch(
                "resend_send_batch",
                [{"instance": self.instance, "batch_id": b, "attempt": 1} for b in bids],
                run_after=max(0.0, wait),
                retry_behavior=_JOB_RETRY,
                on_complete="resend_send_done",
                context={"instance": self.instance},
                ids=[f"s.{b}.1" for b in bids],
            )
            self._wake(wait)

    async def _enqueue_send(self, batch_id: str, attempt: int, delay: float) -> None:
        wid = f"s.{batch_id}.{attempt}"
        try:
            await self.workpool.enqueue_batch(
                "resend_send_batch",
                [{"instance": self.instance, "batch_id": batch_id, "attempt": attempt}],
                run_after=max(0.0, delay),
                retry_behavior=_JOB_RETRY,
                on_complete="resend_send_done",
                context={"instance": self.instance},
                ids=[wid],
            )
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise
        self._wake(delay)

    async def _make_batch(self, cutoff: float, reloop: bool) -> str:
        """The batcher job (spec §7.4)."""
        reply = await self._call(
            "take_batch",
            codec.fmt_num(cutoff),
            "1" if reloop else "0",
            self.batch_size,
            codec.fmt_num(self.batch_delay_ms),
            self.batches_per_round,
        )
        verdict = _s(reply[0])
        if verdict == "TAKEN":
            batches = [_s(b[0]) for b in reply[2]]
            waits = [await self._reserve() for _ in batches]  # one API slot per batch
            await self._enqueue_sends(batches, waits)
            await self.workpool.enqueue(
                "resend_make_batch",
                {"instance": self.instance, "cutoff": cutoff, "reloop": True},
                retry_behavior=_JOB_RETRY,
            )
            return f"TAKEN {len(batches)}"
        if verdict == "RESCHEDULE":
            await self._schedule_make(float(reply[1]), self.batch_delay_ms)
        return verdict

    async def _send_batch(self, batch_id: str, attempt: int) -> str:
        """One attempt of a batch (spec §7.5)."""
        reply = await self._call("batch_begin", batch_id, attempt)
        verdict = _s(reply[0])
        if verdict != "GO":
            return verdict
        attempts, endpoint, rows = int(reply[1]), _s(reply[2]), reply[3]
        ids = [_s(r[0]) for r in rows]
        single = endpoint == "single"
        url = f"{self.api_base}/emails" if single else f"{self.api_base}/emails/batch"
        body = _s(rows[0][1]) if single else "[" + ",".join(_s(r[1]) for r in rows) + "]"
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Idempotency-Key": batch_id,
            "Content-Type": "application/json",
        }
        import httpx

        try:
            resp = await self._client().post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return await self._transient(
                batch_id, attempts, f"Resend API error: {str(exc) or type(exc).__name__}", None
            )
        body = resp.text[:_MAX_ERROR_CHARS]  # an error page must not bloat the records
        if 200 <= resp.status_code < 300:
            rids = _resend_ids(resp, single, len(ids))
            if rids is None:
                return await self._transient(
                    batch_id, attempts, "Resend API error: No data returned", None
                )
            pairs = [x for pair in zip(ids, rids, strict=True) for x in pair]
            out = await self._call("batch_result", batch_id, attempts, "sent", *pairs)
            await self._callbacks(out)
            return "SENT"
        if resp.status_code in PERMANENT:
            message = f"Resend API error: {resp.status_code} {resp.reason_phrase} {body}"
            logger.error("Resend batch %s failed permanently: %s", batch_id, message[:500])
            await self._call("batch_result", batch_id, attempts, "failed", message)
            return "FAILED"
        retry_after = _retry_after_s(resp)
        return await self._transient(batch_id, attempts, f"Resend API error: {body}", retry_after)

    async def _transient(
        self, batch_id: str, attempts: int, message: str, retry_after_s: float | None
    ) -> str:
        if attempts >= self.retry_attempts:
            logger.error(
                "Resend batch %s failed after %d attempts: %s", batch_id, attempts, message
            )
            await self._call("batch_result", batch_id, attempts, "failed", message)
            return "FAILED"
        backoff = self.initial_backoff_ms * 2 ** (attempts - 1) * (0.5 + self.rng())
        if retry_after_s is not None:
            backoff = max(backoff, retry_after_s * 1000)
        wait = await self._reserve()
        logger.warning("Resend batch %s attempt %d: %s", batch_id, attempts, message[:500])
        await self._call("batch_result", batch_id, attempts, "retry")
        await self._enqueue_send(batch_id, attempts + 1, max(backoff, wait))
        return "RETRY"

    async def _send_done(self, batch_id: str, attempt: int, args: OnCompleteArgs) -> None:
        """The send job's on_complete: a job that failed for good (not an API error:
        those are handled inside) fails the batch; a cancelled one cancels it."""
        if isinstance(args.result, Failed):
            await self._call(
                "batch_result",
                batch_id,
                attempt,
                "failed",
                f"Resend send job failed: {args.result.error}",
            )
        elif isinstance(args.result, Canceled):
            await self._call(
                "batch_result", batch_id, attempt, "cancelled", "Resend API batch job was cancelled"
            )

    # -- manual sends -------------------------------------------------------------------

    async def send_email_manually(
        self,
        *,
        from_: str,
        to: str | Sequence[str],
        subject: str,
        send: Callable[[EmailId], Awaitable[str]],
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        reply_to: Sequence[str] | None = None,
        headers: Sequence[Header | Mapping[str, Any]] | None = None,
    ) -> EmailId:
        """Record an email sent by ``await send(email_id)`` (which returns Resend's id;
        pass the email id as ``Idempotency-Key``). No test-mode or API-key check."""
        if not isinstance(from_, str) or not from_:
            raise InvalidEmail("from_ must be a non-empty address string")
        to_l = _addresses(to, "to")
        if not to_l:
            raise InvalidEmail("to must name at least one address")
        if not isinstance(subject, str):
            raise InvalidEmail("subject must be a string")
        if not callable(send):
            raise InvalidEmail("send must be an async callable (email_id) -> resend id")
        cc_l, bcc_l = _addresses(cc, "cc"), _addresses(bcc, "bcc")
        reply = _addresses(reply_to, "reply_to") if reply_to is not None else []
        hdrs = _headers(headers)
        payload = _payload(
            from_, to_l, cc_l, bcc_l, subject, reply or [], hdrs, None, None, None, None, None
        )
        email_id = await self._create(["p", codec.dumps(payload)], "", manual=True)
        try:
            rid = await send(email_id)
        except Exception as exc:
            erid = getattr(exc, "resend_id", None)
            out = await self._call(
                "manual_update",
                email_id,
                "failed",
                erid if isinstance(erid, str) else "",
                str(exc) or repr(exc),
            )
            await self._callbacks(out)
            raise
        if not isinstance(rid, str) or not rid:
            out = await self._call(
                "manual_update", email_id, "failed", "", f"send returned {rid!r}, not a Resend id"
            )
            raise InvalidEmail(f"send must return the Resend id (a str), got {rid!r:.80}")
        out = await self._call("manual_update", email_id, "sent", rid, "")
        await self._callbacks(out)
        return email_id

    # -- control and reads ----------------------------------------------------------------

    async def cancel_email(self, email_id: str) -> None:
        """Cancel a waiting email (or a queued one before its batch's first attempt)."""
        eid = self._check_id(email_id)
        if eid is None:
            raise EmailNotFound("Email not found")
        reply = _s(await self._call("cancel", eid))
        if reply == "NOT_FOUND":
            raise EmailNotFound("Email not found")
        if reply == "ALREADY_SENT":
            raise EmailAlreadySent("Email has already been sent")

    async def resend_email(self, email_id: str) -> EmailId:
        """Queue a copy of a ``failed`` or ``cancelled`` batched email under a new id
        (a new id, so a new idempotency key: the copy is really sent)."""
        e = await self.get(email_id)
        if e is None:
            raise EmailNotFound("Email not found")
        if e.manual:
            raise InvalidEmail("a manually sent email cannot be resent by rkit")
        if e.status not in ("failed", "cancelled"):
            raise EmailAlreadySent(
                f"Email is {e.status}; only failed or cancelled emails are resent"
            )
        return await self.send_email(
            from_=e.from_,
            to=e.to,
            subject=e.subject,
            html=e.html,
            text=e.text,
            template=e.template,
            cc=e.cc,
            bcc=e.bcc,
            reply_to=e.reply_to,
            headers=e.headers,
            attachments=e.attachments,
            tags=e.tags,
        )

    async def _record(self, email_id: str) -> tuple[dict[str, str], list[str]] | None:
        eid = self._check_id(email_id)
        if eid is None:
            return None
        flat, events = await self._call("get", eid)
        if not flat:
            return None
        it = iter(_s(x) for x in flat)
        return dict(zip(it, it, strict=True)), [_s(e) for e in events]

    async def status(self, email_id: str) -> EmailStatus | None:
        found = await self._record(email_id)
        return None if found is None else _status_of(found[0])

    async def get(self, email_id: str) -> Email | None:
        found = await self._record(email_id)
        return None if found is None else _email_of(email_id, found[0])

    async def list_delivery_events(self, email_id: str) -> list[dict[str, Any]]:
        found = await self._record(email_id)
        return [] if found is None else [codec.loads(e) for e in found[1]]

    async def list_emails(self, status: str, *, limit: int = 100, offset: int = 0) -> list[Email]:
        """Emails of one status, newest first (admin view)."""
        if status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}")
        if not (isinstance(limit, int) and 1 <= limit <= 1000 and isinstance(offset, int)):
            raise ConfigError("limit must be in 1..1000 and offset an int >= 0")
        if offset < 0:
            raise ConfigError("limit must be in 1..1000 and offset an int >= 0")
        ids = [_s(i) for i in await self._call("list", status, offset, limit)]
        out = []
        for i in ids:
            e = await self.get(i)
            if e is not None:
                out.append(e)
        return out

    async def queue_info(self) -> QueueInfo:
        r = await self._call("info", *STATUSES)
        batches, inflight = int(r[1]), int(r[2])
        return QueueInfo(
            waiting=int(r[0]),
            batches_pending=batches - inflight,
            batches_inflight=inflight,
            next_run_ms=float(r[3]) if _s(r[3]) else None,
            scheduled=int(r[4]),
            by_status={s: int(n) for s, n in zip(STATUSES, r[5:], strict=True)},
        )

    # -- webhooks -------------------------------------------------------------------------

    async def handle_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """Verify a Resend (Svix-signed) webhook request and apply its event."""
        if not self.webhook_secret:
            return WebhookResponse(500, "Webhook secret is not set")
        if len(body) > self.max_webhook_bytes:
            return WebhookResponse(413, "Webhook body too large")
        h = {k.lower(): v for k, v in headers.items()}
        msg_id = h.get("svix-id") or h.get("webhook-id") or ""
        ts = h.get("svix-timestamp") or h.get("webhook-timestamp") or ""
        sigs = h.get("svix-signature") or h.get("webhook-signature") or ""
        if not msg_id or not ts or not sigs:
            return WebhookResponse(400, "Missing required webhook headers")
        if len(msg_id) > _MAX_ID_BYTES:
            return WebhookResponse(400, "Invalid webhook id")
        try:
            when = int(ts)
        except ValueError:
            return WebhookResponse(400, "Invalid signature headers")
        expected = _svix_signature(_svix_key(self.webhook_secret), msg_id, ts, body)
        ok = False
        for entry in sigs.split(" "):
            version, _, sig = entry.partition(",")
            if version == "v1" and hmac.compare_digest(sig.encode(), expected):
                ok = True
        if not ok:
            return WebhookResponse(400, "No matching signature found")
        try:
            raw = codec.loads(body)
        except ValueError:
            return WebhookResponse(400, "Webhook body is not JSON")
        event = _parse_event(raw)
        if event is None:
            # (a valid event's timestamp is checked by its script: one round trip)
            stale = self._stale(when, await self.app.server_time())
            if stale is not None:
                return stale
            logger.warning(
                "Ignoring an invalid or unsupported Resend webhook event (%s); "
                "unsubscribe from event types rkit does not handle",
                (raw.get("type") if isinstance(raw, dict) else type(raw).__name__),
            )
            return WebhookResponse(201)
        verdict = await self._apply(event, msg_id, when)
        if verdict == "STALE old":
            return WebhookResponse(400, "Message timestamp too old")
        if verdict == "STALE new":
            return WebhookResponse(400, "Message timestamp too new")
        return WebhookResponse(201)

    def _stale(self, when_s: int, now_ms: float) -> WebhookResponse | None:
        if when_s < now_ms / 1000.0 - self.webhook_tolerance_s:
            return WebhookResponse(400, "Message timestamp too old")
        if when_s > now_ms / 1000.0 + self.webhook_tolerance_s:
            return WebhookResponse(400, "Message timestamp too new")
        return None

    def router(self, *, path: str = "/resend-webhook") -> Any:
        """A FastAPI ``APIRouter`` with this instance's webhook at ``POST {path}``, for
        mounting in your own FastAPI app (``create_api`` already serves
        ``/resend/webhook``)."""
        from fastapi import APIRouter, Request, Response

        r = APIRouter(tags=["resend webhooks"])

        async def resend_webhook(request: Request) -> Response:
            out = await self.handle_webhook(await request.body(), dict(request.headers))
            media = None if out.status_code == 201 else "text/plain"
            return Response(content=out.body, status_code=out.status_code, media_type=media)

        # this module's annotations are strings and fastapi is imported lazily here
        resend_webhook.__annotations__ = {"request": Request, "return": Response}
        r.add_api_route(path, resend_webhook, methods=["POST"], status_code=201)
        return r

    async def _apply(self, event: EmailEvent, svix_id: str, when_s: int) -> str:
        data = event.data
        rid = data["email_id"]
        msg = ""
        for k, f in (("bounce", "message"), ("failed", "reason")):
            sub = data.get(k)
            if isinstance(sub, dict) and isinstance(sub.get(f), str):
                msg = sub[f]
        raw = codec.dumps(event.model_dump(mode="json"))
        reply = await self._call(
            "apply_event",
            svix_id,
            self.webhook_dedupe_ttl_ms,
            self.orphan_ttl_ms,
            event.type,
            event.created_at,
            rid,
            msg,
            raw,
            _MAX_ORPHANS,
            when_s * 1000,
            self.webhook_tolerance_s * 1000,
            "1" if self.on_email_event is not None else "0",
        )
        verdict = _s(reply[0])
        email_id: str | None = None
        if verdict == "STALE":
            return f"STALE {_s(reply[1])}"
        if verdict == "APPLIED":
            email_id = _s(reply[1])
        elif verdict == "DUPLICATE" and _s(reply[1]).startswith("a:"):
            email_id = _s(reply[1])[2:]  # applied, callback not confirmed queued: queue it
        if email_id is None:
            return verdict
        if self.on_email_event is not None:
            await self._enqueue_callback(email_id, raw, "cb." + _digest(svix_id))
            await self._call("hook_done", svix_id, self.webhook_dedupe_ttl_ms)
        return verdict

    async def _enqueue_callback(self, email_id: str, event_json: str, work_id: str) -> None:
        try:
            await self.events_pool.enqueue_batch(
                "resend_email_event_callback",
                [
                    {
                        "instance": self.instance,
                        "email_id": email_id,
                        "event": codec.loads(event_json),
                        "call_id": work_id,
                    }
                ],
                retry_behavior=self._callback_retry,
                ids=[work_id],
            )
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise

    async def _callbacks(self, reply: Any) -> None:
        """Queue the callbacks of parked events a script just applied."""
        if self.on_email_event is None or _s(reply[0]) != "OK":
            return
        flat = [_s(x) for x in reply[1]]
        for i in range(0, len(flat), 2):
            await self._enqueue_callback(flat[i], flat[i + 1], "cb." + uuid.uuid4().hex)

    async def _run_callback(self, email_id: str, event: dict[str, Any], call_id: str) -> None:
        """Run ``on_email_event``. A raising handler is retried (with backoff) until it
        has failed ``callback_max_attempts`` times, then logged and dropped; an
        attempt whose worker died is always retried."""
        handler = self.on_email_event
        if handler is None:
            logger.warning("Resend %s: no on_email_event handler in this process", self.instance)
            return
        try:
            await handler(EmailId(email_id), EmailEvent.model_validate(event))
        except Exception:
            failures = int(await self._call("cb_fail", call_id or uuid.uuid4().hex, int(DAY_MS)))
            if failures < self.callback_max_attempts:
                logger.warning(
                    "on_email_event failed for email %s (failure %d of %d): retrying",
                    email_id,
                    failures,
                    self.callback_max_attempts,
                    exc_info=True,
                )
                raise
            logger.exception(
                "on_email_event failed for email %s (%d failures): giving up", email_id, failures
            )

    # -- maintenance ----------------------------------------------------------------------

    async def cleanup_old_emails(self, older_than_ms: float | None = None) -> int:
        """Delete emails finalized more than ``older_than_ms`` ago (default 7 days),
        with their events and Resend-id mapping; returns how many."""
        age = self.finalized_retention_ms if older_than_ms is None else older_than_ms
        return await self._cleanup("fin", _check_ms("older_than_ms", age), 100)

    async def cleanup_abandoned_emails(self, older_than_ms: float | None = None) -> int:
        """Delete emails created more than ``older_than_ms`` ago (default 30 days),
        whatever their status (R16: a still-queued one is skipped by its batch)."""
        age = self.abandoned_retention_ms if older_than_ms is None else older_than_ms
        return await self._cleanup("created", _check_ms("older_than_ms", age), 500)

    async def _cleanup(self, index: str, age: float, limit: int) -> int:
        total = 0
        while True:
            n = int(await self._call("cleanup", index, codec.fmt_num(age), limit))
            total += n
            if n < limit:
                return total

    async def _cleanup_both(self) -> int:
        return await self.cleanup_old_emails() + await self.cleanup_abandoned_emails()

    async def watchdog(self) -> int:
        """Schedule a batcher run when emails wait with none scheduled, and queue the
        send job of any batch unchanged for ``watchdog_grace_ms`` whose job is gone
        (a process died between a script and the enqueue). Returns jobs queued."""
        must, now, stale = await self._call(
            "watchdog",
            codec.fmt_num(self.batch_delay_ms),
            codec.fmt_num(self.watchdog_grace_ms),
            100,
        )
        queued = 0
        if int(must):
            await self._schedule_make(float(now), 0)
            queued += 1
        for bid_b, state_b, attempts_b in stale:
            bid, state, attempts = _s(bid_b), _s(state_b), int(attempts_b)
            attempt = attempts + 1 if state == "pending" else attempts
            if isinstance(await self.workpool.status(f"s.{bid}.{attempt}"), NotFound):
                logger.warning("Resend batch %s had no send job; queueing attempt %d", bid, attempt)
                await self._enqueue_send(bid, attempt, 0)
                queued += 1
        return queued


# -- decoding -------------------------------------------------------------------------


def _digest(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def _resend_ids(resp: Any, single: bool, n: int) -> list[str] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    if single:
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return [body["id"]]
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != n:
        return None
    ids = [d.get("id") if isinstance(d, dict) else None for d in data]
    if not all(isinstance(i, str) and i for i in ids):
        return None
    return [str(i) for i in ids]


def _retry_after_s(resp: Any) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= 3600 else None


def _parse_event(raw: Any) -> EmailEvent | None:
    if not isinstance(raw, dict) or raw.get("type") not in EVENT_TYPES:
        return None
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("email_id"), str):
        return None
    if not data["email_id"] or len(data["email_id"]) > _MAX_ID_BYTES:
        return None
    try:
        return EmailEvent.model_validate(raw)
    except ValidationError:
        return None


def _flag(h: Mapping[str, str], name: str) -> bool:
    return h.get(name) == "1"


def _status_of(h: Mapping[str, str]) -> EmailStatus:
    return EmailStatus(
        status=h["status"],  # type: ignore[arg-type]
        error_message=h.get("error_message"),
        bounced=_flag(h, "bounced"),
        complained=_flag(h, "complained"),
        failed=_flag(h, "failed"),
        delivery_delayed=_flag(h, "delivery_delayed"),
        opened=_flag(h, "opened"),
        clicked=_flag(h, "clicked"),
    )


def _content_of(h: Mapping[str, str]) -> dict[str, Any]:
    """An email's content fields from its record's API payload ``p``."""
    p = codec.loads(h["p"]) if h.get("p") else {}
    hdrs = p.get("headers")
    return {
        "from": p.get("from", ""),
        "to": p.get("to", []),
        "cc": p.get("cc"),
        "bcc": p.get("bcc"),
        "subject": h.get("subject", p.get("subject")),
        "reply_to": p.get("reply_to", []),
        "headers": None if hdrs is None else [{"name": k, "value": v} for k, v in hdrs.items()],
        "template": p.get("template"),
        "html": p.get("html"),
        "text": p.get("text"),
        "attachments": p.get("attachments"),
        "tags": p.get("tags"),
    }


def _email_of(email_id: str, h: Mapping[str, str]) -> Email:
    fin = h.get("finalized_ms")
    return Email.model_validate(
        {
            "id": email_id,
            **_content_of(h),
            **_status_of(h).model_dump(),
            "resend_id": h.get("resend_id"),
            "created_at": _int(h.get("created_ms", 0)),
            "finalized_at": None if fin is None else _int(fin),
            "manual": h.get("manual") == "1",
        }
    )


async def _resend_panel(app: App) -> list[Section]:
    """Dashboard panel: per instance the outbox (waiting, batches, scheduled) and the
    emails by status."""
    out = []
    for r in app.components.of_kind(RESEND_KIND.kind, Resend):
        q = await r.queue_info()
        out.append(
            Section(
                f"instance {r.instance}",
                stats={
                    "waiting": q.waiting,
                    "batches pending": q.batches_pending,
                    "batches in flight": q.batches_inflight,
                    "scheduled": q.scheduled,
                    **{f"status {k}": v for k, v in q.by_status.items()},
                },
            )
        )
    return out
