"""The mirror in Redis (spec stripe.md §7.1-7.3): row hashes, sorted-set indexes by
insertion rank, webhook progress records, the get-or-create lock and the dead-letter
list of one instance, all under the hash tag ``app.keys.tag("stripe", instance)``.
Every change is one script in ``lua/stripe/``; reads are plain commands on one slot."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ... import scripts
from ...clock import argv_now
from ...codec import fmt_num
from .extract import jdump
from .models import CheckoutSession, Customer, Invoice, Payment, Subscription

if TYPE_CHECKING:
    from ...app import App

__all__ = ["EventClaim", "Plan", "StripeStore"]

M = TypeVar("M", bound=BaseModel)
FieldMap = Mapping[str, str | bool]

DEAD_MAX_LEN = 1_000
EVENT_LOG_MAX = 10_000
"""The dedupe log (``P:events``) keeps at most this many event ids (and only those
received within the event retention)."""

_TABLES = ("cus", "sub", "cs", "pay", "inv")


def _b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode("utf-8")).rstrip(b"=").decode("ascii")


def _js(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _num(value: str | None, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    return int(float(value))


def _customer(h: Mapping[str, str]) -> Customer:
    return Customer(
        stripe_customer_id=h["id"],
        email=h.get("email"),
        name=h.get("name"),
        metadata=_js(h.get("metadata")),
        user_id=h.get("user_id") or None,
    )


def _subscription(h: Mapping[str, str]) -> Subscription:
    return Subscription(
        stripe_subscription_id=h["id"],
        stripe_customer_id=h.get("cus", ""),
        status=h.get("status", ""),
        current_period_end=_num(h.get("current_period_end"), 0) or 0,
        cancel_at_period_end=h.get("cancel_at_period_end") == "1",
        cancel_at=_num(h.get("cancel_at")),
        quantity=_num(h.get("quantity")),
        price_id=h.get("price_id", ""),
        metadata=_js(h.get("metadata")),
        org_id=h.get("org_id") or None,
        user_id=h.get("user_id") or None,
        items=_js(h.get("items")),
    )


def _checkout(h: Mapping[str, str]) -> CheckoutSession:
    return CheckoutSession(
        stripe_checkout_session_id=h["id"],
        stripe_customer_id=h.get("cus") or None,
        status=h.get("status", ""),
        mode=h.get("mode", ""),
        metadata=_js(h.get("metadata")),
    )


def _payment(h: Mapping[str, str]) -> Payment:
    return Payment(
        stripe_payment_intent_id=h["id"],
        stripe_customer_id=h.get("cus") or None,
        amount=_num(h.get("amount"), 0) or 0,
        currency=h.get("currency", ""),
        status=h.get("status", ""),
        created=_num(h.get("created"), 0) or 0,
        metadata=_js(h.get("metadata")),
        org_id=h.get("org_id") or None,
        user_id=h.get("user_id") or None,
    )


def _invoice(h: Mapping[str, str]) -> Invoice:
    return Invoice(
        stripe_invoice_id=h["id"],
        stripe_customer_id=h.get("cus", ""),
        stripe_subscription_id=h.get("sub") or None,
        status=h.get("status", ""),
        amount_due=_num(h.get("amount_due"), 0) or 0,
        amount_paid=_num(h.get("amount_paid"), 0) or 0,
        created=_num(h.get("created"), 0) or 0,
        metadata=_js(h.get("metadata")),
        org_id=h.get("org_id") or None,
        user_id=h.get("user_id") or None,
    )


DECODERS: dict[str, Any] = {
    "cus": _customer,
    "sub": _subscription,
    "cs": _checkout,
    "pay": _payment,
    "inv": _invoice,
}


Plan = tuple[str, str, dict[str, Any]]
"""A default-sync operation: (table, row id, operation for ``sk_op`` in Lua)."""


def _claim_of(reply: Any) -> EventClaim:
    state = str(reply[0])
    if state == "CLAIMED":
        return EventClaim(state, str(reply[1]), str(reply[2]) == "1")
    return EventClaim(state)


class EventClaim:
    """The outcome of claiming a webhook event: ``state`` DONE, BUSY or CLAIMED."""

    __slots__ = ("applied", "state", "token")

    def __init__(self, state: str, token: str = "", applied: bool = False) -> None:
        self.state = state
        self.token = token
        self.applied = applied


class StripeStore:
    """Keys, scripts and reads of one Stripe instance's mirror."""

    def __init__(self, app: App, instance: str) -> None:
        self.app = app
        self.instance = instance
        self.tag = app.keys.tag("stripe", instance)
        self.prefix = f"{self.tag}:s"
        self.seq_key = f"{self.prefix}:seq"
        self.events_key = f"{self.prefix}:events"
        self.dead_key = f"{self.prefix}:dead"
        self._s = {
            op: scripts.load("stripe", op)
            for op in (
                "row_apply",
                "subscription_created",
                "invoice_apply",
                "payment_apply",
                "event_claim",
                "event_apply",
                "event_mark",
                "lock_acquire",
                "lock_release",
                "dead_push",
            )
        }

    @property
    def _redis(self) -> Any:
        """The state client for plain commands (redis-py types some async replies as
        ``T | Awaitable[T]``)."""
        return self.app.redis

    # -- keys ---------------------------------------------------------------------------

    def row_key(self, table: str, row_id: str) -> str:
        return f"{self.prefix}:{table}:{row_id}"

    def index_key(self, name: str, value: str) -> str:
        return f"{self.prefix}:ix:{name}:{_b64(value)}"

    def event_key(self, event_id: str) -> str:
        return f"{self.prefix}:evt:{event_id}"

    def body_key(self, event_id: str) -> str:
        return f"{self.prefix}:evb:{event_id}"

    def lock_key(self, user_id: str) -> str:
        return f"{self.prefix}:lock:goc:{_b64(user_id)}"

    # -- row scripts --------------------------------------------------------------------

    async def _row(self, op: str, table: str, row_id: str, *args: str) -> str:
        keys = [self.seq_key, self.row_key(table, row_id)]
        return str(await self._s[op](self.app.redis, keys, [self.prefix, *args]))

    async def apply(
        self,
        table: str,
        row_id: str,
        *,
        policy: str = "upsert",
        wm: int | None = None,
        set: FieldMap | None = None,
        ins: FieldMap | None = None,
        fill: FieldMap | None = None,
    ) -> str:
        """``row_apply.lua``: INSERTED, UPDATED, EXISTS, MISSING or STALE."""
        return await self._row(
            "row_apply",
            table,
            row_id,
            table,
            row_id,
            policy,
            "" if wm is None else fmt_num(wm),
            jdump(dict(set or {})),
            jdump(dict(ins or {})),
            jdump(dict(fill or {})),
        )

    async def subscription_created(
        self, sub_id: str, wm: int, fields: FieldMap, user_id: str, org_id: str
    ) -> str:
        return await self._row(
            "subscription_created",
            "sub",
            sub_id,
            sub_id,
            fmt_num(wm),
            jdump(dict(fields)),
            user_id,
            org_id,
        )

    async def invoice(self, mode: str, invoice_id: str, fields: FieldMap | None = None) -> str:
        return await self._row(
            "invoice_apply", "inv", invoice_id, mode, invoice_id, jdump(dict(fields or {}))
        )

    async def payment(self, mode: str, pi_id: str, fields: FieldMap) -> str:
        return await self._row("payment_apply", "pay", pi_id, mode, pi_id, jdump(dict(fields)))

    # -- webhook progress ---------------------------------------------------------------

    def _claim_args(
        self,
        event_id: str,
        event_type: str,
        created: int,
        body: str,
        lease_ms: float,
        retention_ms: float,
        timestamp: int,
        tolerance_s: int,
        body_retention_ms: float,
    ) -> list[str]:
        return [
            argv_now(self.app.clock),
            fmt_num(lease_ms),
            event_type,
            str(created),
            body,
            fmt_num(retention_ms),
            str(EVENT_LOG_MAX),
            event_id,
            str(timestamp),
            str(tolerance_s),
            fmt_num(body_retention_ms),
        ]

    def _event_keys(self, event_id: str) -> list[str]:
        return [self.event_key(event_id), self.events_key, self.body_key(event_id)]

    async def claim(
        self,
        event_id: str,
        *,
        event_type: str,
        created: int,
        body: str,
        lease_ms: float,
        retention_ms: float,
        timestamp: int = 0,
        tolerance_s: int = 0,
        body_retention_ms: float = 0,
    ) -> EventClaim:
        """Claim ``event_id`` (DONE, BUSY, CLAIMED), or TOO_OLD when the signature's
        ``timestamp`` is more than ``tolerance_s`` before now on the App's clock (then
        nothing is written)."""
        args = self._claim_args(
            event_id, event_type, created, body, lease_ms, retention_ms,
            timestamp, tolerance_s, body_retention_ms,
        )  # fmt: skip
        reply = await self._s["event_claim"](self.app.redis, self._event_keys(event_id), args)
        return _claim_of(reply)

    async def claim_apply(
        self,
        event_id: str,
        plan: Plan,
        *,
        finish: str,
        event_type: str,
        created: int,
        body: str,
        lease_ms: float,
        retention_ms: float,
        timestamp: int,
        tolerance_s: int,
        body_retention_ms: float,
    ) -> EventClaim:
        """``event_apply.lua``: the claim, the planned default sync and the ``done``
        (or ``applied``, when handlers run next) mark in one script."""
        table, row_id, op = plan
        row = self.row_key(table, row_id) if row_id else self.seq_key
        args = self._claim_args(
            event_id, event_type, created, body, lease_ms, retention_ms,
            timestamp, tolerance_s, body_retention_ms,
        )  # fmt: skip
        reply = await self._s["event_apply"](
            self.app.redis,
            [self.seq_key, row, *self._event_keys(event_id)],
            [self.prefix, *args, row_id, jdump({**op, "table": table}), finish],
        )
        return _claim_of(reply)

    async def run(self, plan: Plan) -> str:
        """Run a planned default-sync operation on its own (no event record)."""
        table, row_id, op = plan
        kind = op["op"]
        if kind == "row":
            return await self.apply(
                table,
                row_id,
                policy=op["policy"],
                wm=op.get("wm"),
                set=op.get("set"),
                ins=op.get("ins"),
                fill=op.get("fill"),
            )
        if kind == "sub_created":
            return await self.subscription_created(
                row_id, op["wm"], op["fields"], op["user_id"], op["org_id"]
            )
        if kind == "invoice":
            return await self.invoice(op["mode"], row_id, op.get("fields"))
        if kind == "payment":
            return await self.payment(op["mode"], row_id, op["fields"])
        return "NONE"

    async def mark(
        self,
        event_id: str,
        token: str,
        action: str,
        retention_ms: float,
        error: str = "",
        *,
        applied: bool = False,
    ) -> str:
        """``applied`` / ``release`` / ``done`` under the claim's token (STALE when the
        claim was taken over); ``applied=True`` on release records the default sync."""
        return str(
            await self._s["event_mark"](
                self.app.redis,
                [self.event_key(event_id)],
                [
                    argv_now(self.app.clock),
                    token,
                    action,
                    fmt_num(retention_ms),
                    error,
                    "1" if applied else "0",
                ],
            )
        )

    async def event(self, event_id: str) -> dict[str, Any] | None:
        """The progress record of an event (its stored body decoded), or ``None``."""
        h: dict[str, str] = await self._redis.hgetall(self.event_key(event_id))
        if not h:
            return None
        out: dict[str, Any] = dict(h)
        body = await self._redis.get(self.body_key(event_id))
        out["event"] = _js(body) if body else None
        return out

    async def event_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` event ids received (the dedupe log), newest first."""
        rows = await self._redis.zrevrange(self.events_key, 0, limit - 1, withscores=True)
        return [{"id": str(m), "received_at": float(s)} for m, s in rows]

    # -- lock and dead letters ------------------------------------------------------------

    async def lock(self, user_id: str, token: str, ttl_ms: int) -> bool:
        got = await self._s["lock_acquire"](
            self.app.redis, [self.lock_key(user_id)], [token, str(ttl_ms)]
        )
        return bool(int(got))

    async def unlock(self, user_id: str, token: str) -> None:
        await self._s["lock_release"](self.app.redis, [self.lock_key(user_id)], [token])

    async def locked(self, user_id: str) -> bool:
        return bool(await self._redis.exists(self.lock_key(user_id)))

    async def dead_push(self, record: Mapping[str, Any]) -> int:
        return int(
            await self._s["dead_push"](
                self.app.redis, [self.dead_key], [jdump(dict(record)), str(DEAD_MAX_LEN)]
            )
        )

    async def dead(self, limit: int = 100) -> list[Any]:
        raw = await self._redis.lrange(self.dead_key, -limit, -1)
        return [json.loads(r) for r in raw]

    # -- reads --------------------------------------------------------------------------

    async def get(self, table: str, row_id: str) -> Any:
        if not isinstance(row_id, str) or not row_id:
            return None
        h = await self._redis.hgetall(self.row_key(table, row_id))
        return DECODERS[table](h) if h else None

    async def _rows(self, table: str, ids: Sequence[str]) -> list[Any]:
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.row_key(table, i))
        found = await pipe.execute()
        return [DECODERS[table](h) for h in found if h]

    async def by_index(self, table: str, name: str, value: str, *, first: bool = False) -> Any:
        """Rows of ``table`` whose indexed field ``name`` equals ``value``, oldest
        first (or the oldest, ``first=True``)."""
        if not isinstance(value, str) or not value:
            return None if first else []
        ids = await self._redis.zrange(self.index_key(name, value), 0, 0 if first else -1)
        rows = await self._rows(table, [str(i) for i in ids])
        if first:
            return rows[0] if rows else None
        return rows

    async def keys(self) -> list[str]:
        """Every key of this instance's mirror (tests and admin)."""
        return sorted([str(k) async for k in self._redis.scan_iter(match=f"{self.prefix}:*")])
