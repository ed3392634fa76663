"""``StripeSync``: the Stripe client methods, the signed-webhook pipeline and the
local queries of one Stripe account (an *instance*), on one App (spec stripe.md).

* Client methods call Stripe through the official SDK's async API
  (``stripe.StripeClient`` with its ``HTTPXClient``; the SDK retries network errors
  itself and sends an idempotency key with every POST), then write the result
  locally; a Stripe error propagates and nothing is written.
* Webhooks are verified with the SDK's own ``WebhookSignature.verify_header``; the
  timestamp tolerance is judged on the App's clock. Each event id is claimed once
  (``P:evt:<id>``): the default sync runs once, user handlers run until they
  succeed once, a redelivery of a finished event is a no-op (spec §7.4).
* Customers and subscriptions carry a watermark (the newest ``event.created``
  applied), so an older event never overwrites newer state (§7.3).
* The follow-up fetch of a subscription checkout's first invoice runs on a workpool
  of the ``stripe`` kind when the inline fetch fails: 5 attempts in all, then a
  dead-letter record (§7.5).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import stripe

from ...errors import ConfigError
from ...keys import check_part
from ...operator import Panel, Section, operator_hooks
from ...workpool import Failed, OnCompleteArgs, PoolKind, RetryBehavior, Workpool
from .extract import (
    build_checkout_session_params,
    checkout_fields,
    customer_fields,
    invoice_fields,
    invoice_subscription_id,
    jdump,
    linkage,
    obj_id,
    payment_fields,
    subscription_fields,
)
from .models import (
    CheckoutSession,
    CheckoutSessionResult,
    Customer,
    CustomerResult,
    Invoice,
    Payment,
    PortalSessionResult,
    StripeNotConfigured,
    StripeSyncError,
    Subscription,
    SubscriptionNotFound,
    WebhookResponse,
)
from .store import EventClaim, Plan, StripeStore

if TYPE_CHECKING:
    from ...app import App

__all__ = ["STRIPE", "EventHandler", "StripeSync"]

logger = logging.getLogger("rkit.stripe")

STRIPE = PoolKind(kind="stripe", logger="rkit.stripe", default_max_parallelism=10)
"""The pool kind Stripe's outbound follow-up calls run on."""

EventHandler = Callable[[dict[str, Any], "StripeSync"], Awaitable[None]]
ENV_SECRET_KEY = "STRIPE_SECRET_KEY"
ENV_WEBHOOK_SECRET = "STRIPE_WEBHOOK_SECRET"
DAY_MS = 86_400_000
SYNC_INVOICE_ACTION = "rkit.stripe:sync_latest_invoice"
FOLLOW_UP_DONE_ACTION = "rkit.stripe:follow_up_done"
PROCESS_EVENT_ACTION = "rkit.stripe:process_event"
QUEUED_ATTEMPTS = 10
"""Attempts of a queued delivery: 1 s, 2 s, ... 256 s apart (about 8.5 minutes in all,
beyond the 60 s lease of an event another process holds)."""
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_OK = WebhookResponse(200, b'{"received":true}', "application/json")
_INVOICE_UPSERT = frozenset(
    {
        "invoice.created",
        "invoice.finalized",
        "invoice.updated",
        "invoice.paid",
        "invoice.payment_succeeded",
    }
)


_NO_OP: Plan = ("", "", {"op": "none"})


def _row(
    policy: str,
    wm: int,
    set_: Mapping[str, str | bool],
    ins: Mapping[str, str | bool] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"op": "row", "policy": policy, "wm": wm, "set": dict(set_)}
    if ins:
        op["ins"] = dict(ins)
    return op


def _text(status: int, message: str) -> WebhookResponse:
    return WebhookResponse(status, message.encode("utf-8"), "text/plain")


def _dict(obj: Any) -> dict[str, Any]:
    """An SDK object (or a plain mapping) as a plain dict."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj) if isinstance(obj, Mapping) else {}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is not None:
        return found
    lower = name.lower()
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None


def _positive_ms(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of ms, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number of ms, got {value!r}")
    return float(value)


def _id_arg(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return check_part(value, name)


class StripeSync:
    """A Stripe account mirrored in Redis, with its client methods and webhook route.

    ``secret_key`` / ``webhook_secret`` default to the ``STRIPE_SECRET_KEY`` /
    ``STRIPE_WEBHOOK_SECRET`` environment variables, read when first needed.
    ``api_base`` points the SDK elsewhere (a local fake in tests). ``instance``
    separates accounts: each has its own hash tag, webhook route
    (``/stripe/webhook/<instance>``; ``default`` also at ``/stripe/webhook``) and pool.
    Each event's id is remembered ``event_retention_ms`` (7 days: a redelivery within
    it is a no-op) and its body ``event_body_retention_ms`` (1 day, for replay; 0 =
    not kept). ``register=False`` gives a read/admin handle that registers nothing."""

    def __init__(
        self,
        app: App,
        *,
        instance: str = "default",
        secret_key: str | None = None,
        webhook_secret: str | None = None,
        api_version: str | None = None,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        max_network_retries: int = 2,
        tolerance_s: int = 300,
        event_retention_ms: float = 7 * DAY_MS,
        event_body_retention_ms: float = DAY_MS,
        lease_ms: float = 60_000,
        lock_ttl_ms: int = 15_000,
        follow_up_attempts: int = 5,
        follow_up_backoff_ms: float = 1_000,
        rng: Callable[[], float] | None = None,
        queue_webhooks: bool = False,
        user_key: str = "userId",
        org_key: str = "orgId",
        register: bool = True,
    ) -> None:
        if not isinstance(instance, str) or not _INSTANCE_RE.match(instance):
            raise ConfigError(f"instance must match {_INSTANCE_RE.pattern}, got {instance!r}")
        if isinstance(tolerance_s, bool) or not isinstance(tolerance_s, int) or tolerance_s < 0:
            raise ConfigError(f"tolerance_s must be an int >= 0, got {tolerance_s!r}")
        if (
            isinstance(max_network_retries, bool)
            or not isinstance(max_network_retries, int)
            or max_network_retries < 0
        ):
            raise ConfigError("max_network_retries must be an int >= 0")
        if (
            isinstance(follow_up_attempts, bool)
            or not isinstance(follow_up_attempts, int)
            or not 1 <= follow_up_attempts <= 50
        ):
            raise ConfigError("follow_up_attempts must be an int between 1 and 50")
        self.app = app
        self.instance = instance
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.api_version = api_version
        self.api_base = api_base
        self.http_client = http_client
        self.max_network_retries = max_network_retries
        self.tolerance_s = tolerance_s
        self.event_retention_ms = _positive_ms("event_retention_ms", event_retention_ms)
        if event_body_retention_ms != 0:
            _positive_ms("event_body_retention_ms", event_body_retention_ms)
        self.event_body_retention_ms = float(event_body_retention_ms)
        self.lease_ms = _positive_ms("lease_ms", lease_ms)
        self.lock_ttl_ms = int(_positive_ms("lock_ttl_ms", lock_ttl_ms))
        self.follow_up_attempts = follow_up_attempts
        self.follow_up_backoff_ms = _positive_ms("follow_up_backoff_ms", follow_up_backoff_ms)
        self.queue_webhooks = bool(queue_webhooks)
        self.user_key = user_key
        self.org_key = org_key
        self.store = StripeStore(app, instance)
        self._handlers: dict[str, EventHandler] = {}
        self._on_event: EventHandler | None = None
        self._client: stripe.StripeClient | None = None
        self._client_key: str | None = None
        self._http_made: stripe.HTTPXClient | None = None
        self.workpool = Workpool(
            app, instance, kind=STRIPE, rng=rng, keep_result_ms=0, register=register
        )
        if register:
            app.components.add(STRIPE.kind, instance, self)
            app.components.set_factory(STRIPE.kind, lambda n: StripeSync(app, instance=n))
            operator_hooks(app).add_panel(Panel("stripe", "Stripe", _stripe_panel, order=90))
            app.components.add_router("/stripe", "rkit.api.stripe:router")
            app.components.add_router(
                "/stripe/webhook", "rkit.api.webhooks.stripe:router", public=True
            )
            _register_actions(app)

    @classmethod
    def view(cls, app: App, instance: str) -> StripeSync:
        """The App's registered instance, else an unregistered handle (admin reads)."""
        found = app.components.get(STRIPE.kind, instance)
        if isinstance(found, StripeSync):
            return found
        return cls(app, instance=instance, register=False)

    def __repr__(self) -> str:
        return f"StripeSync(instance={self.instance!r})"

    # -- the SDK ------------------------------------------------------------------------

    def _secret_key(self) -> str | None:
        return self.secret_key or os.environ.get(ENV_SECRET_KEY) or None

    def _webhook_secret(self) -> str | None:
        return self.webhook_secret or os.environ.get(ENV_WEBHOOK_SECRET) or None

    @property
    def client(self) -> stripe.StripeClient:
        """The SDK client (built on first use; ``StripeNotConfigured`` without a key)."""
        key = self._secret_key()
        if not key:
            raise StripeNotConfigured(f"{ENV_SECRET_KEY} environment variable is not set")
        if self._client is None or self._client_key != key:
            kwargs: dict[str, Any] = {}
            if self.api_base:
                kwargs["base_addresses"] = {"api": self.api_base}
            http = self.http_client
            if http is None:
                if self._http_made is None:
                    self._http_made = stripe.HTTPXClient()
                http = self._http_made
            self._client = stripe.StripeClient(
                key,
                stripe_version=self.api_version,
                http_client=http,
                max_network_retries=self.max_network_retries,
                **kwargs,
            )
            self._client_key = key
        return self._client

    # -- client methods (spec §3.2) ------------------------------------------------------

    async def create_checkout_session(
        self,
        *,
        price_id: str,
        mode: Literal["payment", "subscription", "setup"],
        success_url: str,
        cancel_url: str,
        customer_id: str | None = None,
        quantity: int | None = None,
        metadata: dict[str, str] | None = None,
        subscription_metadata: dict[str, str] | None = None,
        payment_intent_metadata: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> CheckoutSessionResult:
        """``POST /v1/checkout/sessions`` with the §4.7 parameters; writes nothing."""
        if mode not in ("payment", "subscription", "setup"):
            raise ConfigError(f"mode must be payment, subscription or setup, got {mode!r}")
        body = build_checkout_session_params(
            price_id=price_id,
            mode=mode,
            success_url=success_url,
            cancel_url=cancel_url,
            customer_id=customer_id,
            quantity=quantity,
            metadata=metadata,
            subscription_metadata=subscription_metadata,
            payment_intent_metadata=payment_intent_metadata,
            params=params,
        )
        session = await self.client.v1.checkout.sessions.create_async(cast(Any, body))
        return CheckoutSessionResult(session_id=session.id, url=session.url)

    async def create_customer_portal_session(
        self, *, customer_id: str, return_url: str
    ) -> PortalSessionResult:
        _id_arg("customer_id", customer_id)
        session = await self.client.v1.billing_portal.sessions.create_async(
            {"customer": customer_id, "return_url": return_url}
        )
        return PortalSessionResult(url=session.url)

    async def create_customer(
        self,
        *,
        email: str | None = None,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> CustomerResult:
        """``POST /v1/customers`` (``Idempotency-Key: create_customer_<key>``), then
        the local upsert of the new customer."""
        params: dict[str, Any] = {}
        if email is not None:
            params["email"] = email
        if name is not None:
            params["name"] = name
        if metadata is not None:
            params["metadata"] = dict(metadata)
        options: dict[str, Any] = {}
        if idempotency_key is not None:
            options["idempotency_key"] = f"create_customer_{idempotency_key}"
        customer = await self.client.v1.customers.create_async(
            cast(Any, params), cast(Any, options)
        )
        await self.create_or_update_customer(
            stripe_customer_id=customer.id, email=email, name=name, metadata=metadata
        )
        return CustomerResult(customer_id=customer.id, is_new=True)

    async def _local_customer_for(self, user_id: str, email: str | None) -> str | None:
        found = await self.get_customer_by_user_id(user_id)
        if found is not None:
            return found.stripe_customer_id
        if email:
            # S5: only a customer nobody else owns
            for c in await self.store.by_index("cus", "cus:email", email):
                if c.user_id in (None, "", user_id):
                    return str(c.stripe_customer_id)
        subs = await self.store.by_index("sub", "sub:user", user_id, first=True)
        if subs is not None and subs.stripe_customer_id:
            return str(subs.stripe_customer_id)
        pay = await self.store.by_index("pay", "pay:user", user_id, first=True)
        if pay is not None and pay.stripe_customer_id:
            return str(pay.stripe_customer_id)
        return None

    async def get_or_create_customer(
        self, *, user_id: str, email: str | None = None, name: str | None = None
    ) -> CustomerResult:
        """The user's customer from the mirror, else one created in Stripe. A per-user
        lock in Redis makes concurrent callers (in any process) share one Stripe call;
        the Stripe idempotency key ``create_customer_<user_id>`` is still sent."""
        _id_arg("user_id", user_id)
        while True:
            found = await self._local_customer_for(user_id, email)
            if found is not None:
                return CustomerResult(customer_id=found, is_new=False)
            token = uuid.uuid4().hex
            if await self.store.lock(user_id, token, self.lock_ttl_ms):
                try:
                    found = await self._local_customer_for(user_id, email)
                    if found is not None:
                        return CustomerResult(customer_id=found, is_new=False)
                    return await self.create_customer(
                        email=email,
                        name=name,
                        metadata={self.user_key: user_id},
                        idempotency_key=user_id,
                    )
                finally:
                    await self.store.unlock(user_id, token)
            # another caller (maybe another process) holds the lock in Redis: poll
            # until it finishes or the lock expires, then start over
            while await self.store.locked(user_id):  # noqa: ASYNC110
                await asyncio.sleep(0.025)

    async def _client_sync(self, sub: Any) -> None:
        """Write a subscription returned by Stripe at once (no watermark involved)."""
        obj = _dict(sub)
        sub_id = obj_id(obj.get("id"))
        if not sub_id:
            return
        fields, insertable = subscription_fields(
            obj, mode="client", user_key=self.user_key, org_key=self.org_key
        )
        await self.store.apply(
            "sub", sub_id, policy="upsert" if insertable else "never", set=fields
        )

    async def cancel_subscription(
        self, *, subscription_id: str, cancel_at_period_end: bool = True
    ) -> None:
        """At period end (``POST`` with ``cancel_at_period_end=true``) or now
        (``DELETE``); the returned subscription is written locally at once."""
        _id_arg("subscription_id", subscription_id)
        subs = self.client.v1.subscriptions
        if cancel_at_period_end:
            sub = await subs.update_async(subscription_id, {"cancel_at_period_end": True})
        else:
            sub = await subs.cancel_async(subscription_id)
        await self._client_sync(sub)

    async def reactivate_subscription(self, *, subscription_id: str) -> None:
        _id_arg("subscription_id", subscription_id)
        sub = await self.client.v1.subscriptions.update_async(
            subscription_id, {"cancel_at_period_end": False}
        )
        await self._client_sync(sub)

    async def update_subscription_quantity(self, *, subscription_id: str, quantity: int) -> None:
        """Set the first item's quantity in Stripe, then the local ``quantity``."""
        _id_arg("subscription_id", subscription_id)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise ValueError(f"quantity must be an int >= 0, got {quantity!r}")
        sub = _dict(await self.client.v1.subscriptions.retrieve_async(subscription_id))
        items = sub.get("items")
        data = items.get("data") if isinstance(items, Mapping) else None
        first = data[0] if isinstance(data, list) and data else None
        item_id = obj_id(first) if isinstance(first, Mapping) else None
        if not item_id:
            raise StripeSyncError("Subscription has no items")
        await self.client.v1.subscription_items.update_async(item_id, {"quantity": quantity})
        await self.store.apply(
            "sub", subscription_id, policy="never", set={"quantity": str(quantity)}
        )

    async def resync_subscription(self, subscription_id: str) -> Subscription | None:
        """Fetch a subscription from Stripe and apply it as a client sync (backfill)."""
        _id_arg("subscription_id", subscription_id)
        await self._client_sync(await self.client.v1.subscriptions.retrieve_async(subscription_id))
        return await self.get_subscription(subscription_id)

    async def resync_customer(self, customer_id: str) -> Customer | None:
        """Fetch a customer from Stripe and apply it like ``customer.updated`` without
        a watermark (backfill of data created outside the app); a deleted customer is
        scrubbed."""
        _id_arg("customer_id", customer_id)
        obj = _dict(await self.client.v1.customers.retrieve_async(customer_id))
        if obj.get("deleted"):
            scrub: dict[str, str | bool] = {"email": False, "name": False, "metadata": "{}"}
            await self.store.apply("cus", customer_id, policy="never", set=scrub)
        else:
            user, _ = linkage(_dict(obj.get("metadata")), self.user_key, self.org_key)
            await self.store.apply(
                "cus",
                customer_id,
                set=customer_fields(obj),
                ins={"user_id": user} if user else None,
            )
        return await self.get_customer(customer_id)

    # -- local queries (spec §3.3) -------------------------------------------------------

    async def get_customer(self, stripe_customer_id: str) -> Customer | None:
        found: Customer | None = await self.store.get("cus", stripe_customer_id)
        return found

    async def get_customer_by_email(self, email: str) -> Customer | None:
        found: Customer | None = await self.store.by_index("cus", "cus:email", email, first=True)
        return found

    async def get_customer_by_user_id(self, user_id: str) -> Customer | None:
        found: Customer | None = await self.store.by_index("cus", "cus:user", user_id, first=True)
        return found

    async def get_subscription(self, stripe_subscription_id: str) -> Subscription | None:
        found: Subscription | None = await self.store.get("sub", stripe_subscription_id)
        return found

    async def _subs(self, index: str, value: str, status: str | None) -> list[Subscription]:
        rows: list[Subscription] = await self.store.by_index("sub", index, value)
        return [s for s in rows if status is None or s.status == status]

    async def list_subscriptions(
        self, stripe_customer_id: str, *, status: str | None = None
    ) -> list[Subscription]:
        return await self._subs("sub:cus", stripe_customer_id, status)

    async def get_subscription_by_org_id(self, org_id: str) -> Subscription | None:
        found: Subscription | None = await self.store.by_index("sub", "sub:org", org_id, first=True)
        return found

    async def list_subscriptions_by_org_id(
        self, org_id: str, *, status: str | None = None
    ) -> list[Subscription]:
        return await self._subs("sub:org", org_id, status)

    async def list_subscriptions_by_user_id(
        self, user_id: str, *, status: str | None = None
    ) -> list[Subscription]:
        return await self._subs("sub:user", user_id, status)

    async def get_payment(self, stripe_payment_intent_id: str) -> Payment | None:
        found: Payment | None = await self.store.get("pay", stripe_payment_intent_id)
        return found

    async def list_payments(self, stripe_customer_id: str) -> list[Payment]:
        rows: list[Payment] = await self.store.by_index("pay", "pay:cus", stripe_customer_id)
        return rows

    async def list_payments_by_user_id(self, user_id: str) -> list[Payment]:
        rows: list[Payment] = await self.store.by_index("pay", "pay:user", user_id)
        return rows

    async def list_payments_by_org_id(self, org_id: str) -> list[Payment]:
        rows: list[Payment] = await self.store.by_index("pay", "pay:org", org_id)
        return rows

    async def list_invoices(self, stripe_customer_id: str) -> list[Invoice]:
        rows: list[Invoice] = await self.store.by_index("inv", "inv:cus", stripe_customer_id)
        return rows

    async def list_invoices_by_user_id(self, user_id: str) -> list[Invoice]:
        rows: list[Invoice] = await self.store.by_index("inv", "inv:user", user_id)
        return rows

    async def list_invoices_by_org_id(self, org_id: str) -> list[Invoice]:
        rows: list[Invoice] = await self.store.by_index("inv", "inv:org", org_id)
        return rows

    async def get_invoice(self, stripe_invoice_id: str) -> Invoice | None:
        found: Invoice | None = await self.store.get("inv", stripe_invoice_id)
        return found

    async def get_checkout_session(self, stripe_checkout_session_id: str) -> CheckoutSession | None:
        found: CheckoutSession | None = await self.store.get("cs", stripe_checkout_session_id)
        return found

    async def list_checkout_sessions(self, stripe_customer_id: str) -> list[CheckoutSession]:
        rows: list[CheckoutSession] = await self.store.by_index("cs", "cs:cus", stripe_customer_id)
        return rows

    # -- local mutations (spec §3.4) -----------------------------------------------------

    async def create_or_update_customer(
        self,
        *,
        stripe_customer_id: str,
        email: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Insert the customer, or patch the fields passed (``None`` = not passed);
        ``metadata`` replaces the whole object and sets ``user_id`` from its user key."""
        _id_arg("stripe_customer_id", stripe_customer_id)
        fields: dict[str, str | bool] = {}
        if email is not None:
            fields["email"] = email
        if name is not None:
            fields["name"] = name
        if metadata is not None:
            fields["metadata"] = jdump(metadata)
            user, _org = linkage(metadata, self.user_key, self.org_key)
            if user:
                fields["user_id"] = user
        await self.store.apply("cus", stripe_customer_id, policy="upsert", set=fields)
        return stripe_customer_id

    async def update_subscription_metadata(
        self,
        *,
        stripe_subscription_id: str,
        metadata: dict[str, Any],
        org_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        """Replace the local metadata; set ``org_id`` / ``user_id`` when passed.
        Local only (Stripe is not updated)."""
        _id_arg("stripe_subscription_id", stripe_subscription_id)
        if not isinstance(metadata, dict):
            raise ConfigError("metadata must be a dict")
        fields: dict[str, str | bool] = {"metadata": jdump(metadata)}
        if org_id is not None:
            fields["org_id"] = org_id
        if user_id is not None:
            fields["user_id"] = user_id
        reply = await self.store.apply("sub", stripe_subscription_id, policy="never", set=fields)
        if reply == "MISSING":
            raise SubscriptionNotFound(stripe_subscription_id)

    # -- webhooks -----------------------------------------------------------------------

    def on(self, event_type: str) -> Callable[[EventHandler], EventHandler]:
        """Decorator: the handler of one event type (runs after ``on_event``)."""
        if not isinstance(event_type, str) or not event_type:
            raise ConfigError("event_type must be a non-empty string")

        def register(handler: EventHandler) -> EventHandler:
            self._handlers[event_type] = handler
            return handler

        return register

    def on_event(self, handler: EventHandler) -> EventHandler:
        """Decorator: the handler of every verified event (runs first)."""
        self._on_event = handler
        return handler

    async def handle_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """Verify, deduplicate and process one webhook delivery (spec §3.6, §7.4).
        Nothing is written before the signature and timestamp check passed."""
        secret = self._webhook_secret()
        if not secret:
            return _text(500, "Webhook secret not configured")
        signature = _header(headers, "Stripe-Signature")
        if not signature:
            return _text(400, "No signature provided")
        if not self._secret_key():
            return _text(500, "Stripe secret key not configured")
        try:
            event = await self._verify(body, signature, secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            return _text(400, f"Webhook signature verification failed: {exc}")
        timestamp, _ = stripe.WebhookSignature._get_timestamp_and_signatures(
            signature, stripe.WebhookSignature.EXPECTED_SCHEME
        )
        text = body.decode("utf-8")
        if self.queue_webhooks:
            return await self._queue_delivery(event, text, timestamp)
        return await self._deliver(event, text, timestamp, self.tolerance_s)

    async def _queue_delivery(
        self, event: dict[str, Any], text: str, timestamp: int
    ) -> WebhookResponse:
        """Queued mode: check the timestamp now, run the delivery on the workpool
        (retried with backoff: a failing handler, or another process holding the
        event, is retried by rkit instead of Stripe) and answer 200 at once."""
        now_s = await self.app.server_time() / 1000.0
        if self.tolerance_s and timestamp < now_s - self.tolerance_s:
            return _text(
                400,
                "Webhook signature verification failed: "
                f"Timestamp outside the tolerance zone ({timestamp})",
            )
        await self.workpool.enqueue(
            PROCESS_EVENT_ACTION,
            {"instance": self.instance, "body": text},
            retry_behavior=RetryBehavior(
                max_attempts=QUEUED_ATTEMPTS, initial_backoff_ms=1_000, base=2
            ),
            on_complete=FOLLOW_UP_DONE_ACTION,
            context={
                "job": "stripe_process_event",
                "args": {"instance": self.instance, "event_id": event["id"]},
            },
        )
        return _OK

    async def process_queued(self, text: str) -> None:
        """The queued delivery's job: the same steps as an inline delivery (the
        signature and timestamp were checked when it was received); raises when the
        delivery would not be a 200, so the workpool retries it."""
        event = json.loads(text)
        created = event.get("created")
        event["created"] = created if isinstance(created, int) else 0
        response = await self._deliver(event, text, 0, 0)
        if response.status_code != 200:
            raise StripeSyncError(
                f"event {event.get('id')}: {response.status_code} "
                f"{response.body.decode('utf-8', 'replace')}"
            )

    async def _deliver(
        self, event: dict[str, Any], text: str, timestamp: int, tolerance_s: int
    ) -> WebhookResponse:
        """Claim, sync, handlers and done mark of one verified event."""
        event_id: str = event["id"]
        # the tolerance is judged inside the claim, on the App's clock (the SDK's own
        # check would read this host's time.time())
        handlers = self._on_event is not None or event["type"] in self._handlers
        claim_args: dict[str, Any] = {
            "event_type": event["type"],
            "created": event["created"],
            "body": text,
            "lease_ms": self.lease_ms,
            "retention_ms": self.event_retention_ms,
            "timestamp": timestamp,
            "tolerance_s": tolerance_s,
            "body_retention_ms": self.event_body_retention_ms,
        }
        plan = self.plan(event)
        applied = False
        claim: EventClaim | None = None
        try:
            if plan is not None:  # claim, sync and mark in one script
                finish = "applied" if handlers else "done"
                claim = await self.store.claim_apply(event_id, plan, finish=finish, **claim_args)
                applied = True
            else:
                claim = await self.store.claim(event_id, **claim_args)
            refused = self._refusal(claim, timestamp)
            if refused is not None:
                return refused
            if plan is not None and not handlers:
                return _OK
            applied = claim.applied
            if not applied:
                await self.process_event(event)
                applied = True
                if handlers:  # a crash inside a handler must not re-run the sync
                    await self.store.mark(event_id, claim.token, "applied", self.event_retention_ms)
            await self._run_handlers(event)
        except Exception as exc:
            logger.exception("Error processing Stripe webhook %s (%s)", event_id, event["type"])
            if claim is not None and claim.state == "CLAIMED":
                await self.store.mark(
                    event_id,
                    claim.token,
                    "release",
                    self.event_retention_ms,
                    f"{type(exc).__name__}: {exc}"[:1000],
                    applied=applied,
                )
            return _text(500, "Error processing webhook")
        await self.store.mark(event_id, claim.token, "done", self.event_retention_ms)
        return _OK

    @staticmethod
    def _refusal(claim: EventClaim, timestamp: int) -> WebhookResponse | None:
        if claim.state == "TOO_OLD":
            return _text(
                400,
                "Webhook signature verification failed: "
                f"Timestamp outside the tolerance zone ({timestamp})",
            )
        if claim.state == "DONE":
            return _OK
        if claim.state == "BUSY":
            return _text(409, "Event is being processed")
        return None

    async def _verify(self, body: bytes, signature: str, secret: str) -> dict[str, Any]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("body is not UTF-8") from None
        # the SDK's own check of the scheme and the HMAC (any v1 may match)
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance=None)
        try:
            event = json.loads(text)
        except ValueError:
            raise ValueError("body is not JSON") from None
        if not isinstance(event, dict):
            raise ValueError("the event is not a JSON object")
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
            raise ValueError("the event has no id")
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("the event has no type")
        created = event.get("created")
        event["created"] = created if isinstance(created, int) else 0
        return event

    async def _run_handlers(self, event: dict[str, Any]) -> None:
        if self._on_event is not None:
            await self._on_event(event, self)
        handler = self._handlers.get(event["type"])
        if handler is not None:
            await handler(event, self)

    async def replay_event(self, event_id: str, *, handlers: bool = False) -> bool:
        """Apply a stored event again (the default sync is idempotent and
        watermarked; ``handlers=True`` also runs the user handlers). ``False`` when
        no event of that id is stored."""
        record = await self.store.event(event_id)
        if record is None or not isinstance(record.get("event"), dict):
            return False
        event: dict[str, Any] = record["event"]
        created = event.get("created")
        event["created"] = created if isinstance(created, int) else 0
        await self.process_event(event)
        if handlers:
            await self._run_handlers(event)
        return True

    def plan(self, event: Mapping[str, Any]) -> Plan | None:
        """The default sync of ``event`` as one Redis operation, or ``None`` when it
        needs Stripe calls first (a subscription checkout's first invoice, a
        PaymentIntent's invoice look-up)."""
        kind = event.get("type")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        row_id = obj_id(obj.get("id")) if isinstance(obj, Mapping) else None
        if not isinstance(obj, Mapping) or row_id is None:
            logger.info("Stripe event %s has no object with an id; ignored", event.get("id"))
            return _NO_OP
        created = event.get("created")
        wm = created if isinstance(created, int) and not isinstance(created, bool) else 0
        uk, ok = self.user_key, self.org_key
        user, org = linkage(_dict(obj.get("metadata")), uk, ok)
        if kind == "customer.created":
            fields: dict[str, str | bool] = dict(customer_fields(obj))
            if user:
                fields["user_id"] = user
            return "cus", row_id, _row("insert", wm, fields)
        if kind == "customer.updated":
            ins = {"user_id": user} if user else {}
            return "cus", row_id, _row("upsert", wm, customer_fields(obj), ins)
        if kind == "customer.deleted":
            scrub: dict[str, str | bool] = {"email": False, "name": False, "metadata": "{}"}
            return "cus", row_id, _row("never", wm, scrub)
        if kind == "customer.subscription.created":
            fields, _ = subscription_fields(obj, mode="created", user_key=uk, org_key=ok)
            op = {"op": "sub_created", "wm": wm, "fields": fields, "user_id": user, "org_id": org}
            return "sub", row_id, op
        if kind in ("customer.subscription.updated", "customer.subscription.deleted"):
            mode = "updated" if kind.endswith("updated") else "deleted"
            fields, insertable = subscription_fields(obj, mode=mode, user_key=uk, org_key=ok)
            return "sub", row_id, _row("upsert" if insertable else "never", wm, fields)
        if kind in _INVOICE_UPSERT:
            fields_i = invoice_fields(obj, user_key=uk, org_key=ok)
            return "inv", row_id, {"op": "invoice", "mode": "upsert", "fields": fields_i}
        if kind == "invoice.payment_failed":
            return "inv", row_id, {"op": "invoice", "mode": "payment_failed", "fields": {}}
        if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            if kind == "payment_intent.succeeded" and obj_id(obj.get("invoice")):
                return None  # is it a subscription's invoice? Stripe must tell
            mode = "succeeded" if kind.endswith("succeeded") else "failed"
            fields_p = payment_fields(obj, user_key=uk, org_key=ok)
            return "pay", row_id, {"op": "payment", "mode": mode, "fields": fields_p}
        if kind == "checkout.session.completed":
            return None
        logger.info("Unhandled Stripe event type %s", kind)
        return _NO_OP

    async def process_event(self, event: dict[str, Any]) -> None:
        """The default sync of one event (spec §3.7 with the §4.9 deviations)."""
        plan = self.plan(event)
        if plan is not None:
            await self.store.run(plan)
            return
        obj: Mapping[str, Any] = event["data"]["object"]
        row_id = str(obj_id(obj.get("id")))
        if event.get("type") == "checkout.session.completed":
            await self._checkout_completed(row_id, obj)
        elif not await self._is_subscription_payment(obj):  # payment_intent.succeeded
            fields = payment_fields(obj, user_key=self.user_key, org_key=self.org_key)
            await self.store.payment("succeeded", row_id, fields)

    async def _is_subscription_payment(self, pi: Mapping[str, Any]) -> bool:
        invoice = pi.get("invoice")
        invoice_id = obj_id(invoice)
        if not invoice_id:
            return False
        try:
            inv = _dict(await self.client.v1.invoices.retrieve_async(invoice_id))
        except stripe.StripeError as exc:
            logger.warning("Could not fetch invoice %s: %s", invoice_id, exc)
            return False
        return invoice_subscription_id(inv) is not None

    async def _checkout_completed(self, session_id: str, cs: Mapping[str, Any]) -> None:
        await self.store.apply("cs", session_id, set=checkout_fields(cs))
        customer = obj_id(cs.get("customer"))
        mode = cs.get("mode") or "payment"
        if mode == "payment":
            pi = obj_id(cs.get("payment_intent"))
            if pi and customer:
                await self.store.payment("link_customer", pi, {"cus": customer})
        elif mode == "subscription":
            sub_id = obj_id(cs.get("subscription"))
            if not sub_id:
                return
            try:
                await self.sync_latest_invoice(sub_id)
            except stripe.StripeError as exc:
                # S7: answered 200 all the same; a worker retries the fetch
                logger.warning(
                    "Could not fetch the first invoice of %s (%s); retrying in a worker",
                    sub_id,
                    exc,
                )
                await self._enqueue_follow_up(sub_id)

    async def sync_latest_invoice(self, subscription_id: str) -> str | None:
        """Fetch a subscription's latest invoice from Stripe and upsert it (status
        ``paid`` when Stripe gives none). Returns the invoice id (``None``: none)."""
        client = self.client
        sub = _dict(await client.v1.subscriptions.retrieve_async(subscription_id))
        latest = sub.get("latest_invoice")
        invoice_id = obj_id(latest)
        if not invoice_id:
            return None
        inv = _dict(await client.v1.invoices.retrieve_async(invoice_id))
        fields = invoice_fields(
            inv,
            default_status="paid",
            subscription_id=subscription_id,
            user_key=self.user_key,
            org_key=self.org_key,
        )
        if not fields["cus"]:
            fields["cus"] = obj_id(sub.get("customer")) or ""
        await self.store.invoice("upsert", invoice_id, fields)
        return invoice_id

    async def _enqueue_follow_up(self, subscription_id: str) -> str:
        """Attempts 2..N of the latest-invoice fetch on the workpool: the first one
        ``follow_up_backoff_ms`` after the failed inline attempt, each later one twice
        as long after the previous (times the pool's jitter)."""
        args = {"instance": self.instance, "subscription_id": subscription_id}
        return await self.workpool.enqueue(
            SYNC_INVOICE_ACTION,
            args,
            run_after=self.follow_up_backoff_ms,
            retry_behavior=RetryBehavior(
                max_attempts=self.follow_up_attempts - 1,
                initial_backoff_ms=self.follow_up_backoff_ms,
                base=2,
                exponent_offset=1,
            ),
            on_complete=FOLLOW_UP_DONE_ACTION,
            context={"job": "stripe_sync_latest_invoice", "args": args},
        )

    async def dead_letters(self, limit: int = 100) -> list[Any]:
        """Follow-up jobs that exhausted their attempts (oldest first, at most 1,000)."""
        return await self.store.dead(limit)

    async def aclose(self) -> None:
        """Close the HTTP client this instance made for the SDK (not one passed in)."""
        made, self._http_made = self._http_made, None
        self._client = None
        if made is not None:
            await made.close_async()  # type: ignore[no-untyped-call]


def _sync_of(app: App, instance: str) -> StripeSync:
    found = app.components.get_or_create(STRIPE.kind, instance)
    if not isinstance(found, StripeSync):
        raise StripeSyncError(f"this App has no Stripe instance {instance!r}")
    return found


def _register_actions(app: App) -> None:
    """The actions the Stripe pool runs (once per App)."""
    if SYNC_INVOICE_ACTION in app.actions:
        return

    async def sync_latest_invoice(instance: str, subscription_id: str) -> str | None:
        return await _sync_of(app, instance).sync_latest_invoice(subscription_id)

    async def follow_up_done(args: OnCompleteArgs) -> None:
        if not isinstance(args.result, Failed):
            return
        ctx = args.context if isinstance(args.context, dict) else {}
        instance = str((ctx.get("args") or {}).get("instance", "default"))
        record = {
            "job": ctx.get("job"),
            "args": ctx.get("args"),
            "error": args.result.error,
            "work_id": args.work_id,
            "at": await app.server_time(),
        }
        logger.error("Stripe follow-up %s failed for good: %s", record["job"], record["error"])
        await StripeSync.view(app, instance).store.dead_push(record)

    async def process_event(instance: str, body: str) -> None:
        await _sync_of(app, instance).process_queued(body)

    app.action(name=SYNC_INVOICE_ACTION)(sync_latest_invoice)
    app.action(name=PROCESS_EVENT_ACTION)(process_event)
    app.action(name=FOLLOW_UP_DONE_ACTION)(follow_up_done)


async def _stripe_panel(app: App) -> list[Section]:
    """Dashboard panel: per instance the newest webhook events received (the dedupe
    log) and how many follow-up fetches were dead-lettered."""
    out = []
    for sync in app.components.of_kind(STRIPE.kind, StripeSync):
        events = await sync.store.event_log(20)
        dead = await sync.store.dead(1_000)
        out.append(
            Section(
                f"instance {sync.instance}",
                stats={"events shown": len(events), "dead letters": len(dead)},
                columns=["id", "received_at"],
                rows=events,
            )
        )
    return out
