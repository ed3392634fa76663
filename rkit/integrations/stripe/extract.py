"""Pure derivations from Stripe objects (spec stripe.md §3.8, §4.4, §4.7): the row
fields each script receives, encoded for Redis (strings; booleans ``"1"``/``"0"``;
JSON text for metadata and items; ``False`` = remove the field)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CANCEL_AT_TOLERANCE_S",
    "INVOICE_STATUS_RANK",
    "build_checkout_session_params",
    "derive_cancel_at_period_end",
    "invoice_status_rank",
]

CANCEL_AT_TOLERANCE_S = 300
"""``cancel_at`` within this many seconds of the period end means "at period end"."""
INVOICE_STATUS_RANK = {"draft": 0, "open": 1, "paid": 2, "uncollectible": 2, "void": 2}

Fields = dict[str, str | bool]


def invoice_status_rank(status: str | None) -> int:
    return INVOICE_STATUS_RANK.get(status or "", 0)


def jdump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def obj_id(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object's ``id``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        found = value.get("id")
        return found if isinstance(found, str) and found else None
    return None


def _int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _meta(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def linkage(metadata: Mapping[str, Any], user_key: str, org_key: str) -> tuple[str, str]:
    """``(user_id, org_id)`` from linkage metadata ("" when absent)."""
    user, org = metadata.get(user_key), metadata.get(org_key)
    return (user if isinstance(user, str) else "", org if isinstance(org, str) else "")


def derive_cancel_at_period_end(flag: bool, cancel_at: int | None, current_period_end: int) -> bool:
    """Stripe's flag, or a ``cancel_at`` within 300 s of the period end (the Customer
    Portal cancels "at period end" that way)."""
    if flag:
        return True
    return (
        cancel_at is not None
        and current_period_end > 0
        and abs(cancel_at - current_period_end) <= CANCEL_AT_TOLERANCE_S
    )


def _first_item(sub: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, list[Any]]:
    items = sub.get("items")
    data = items.get("data") if isinstance(items, Mapping) else items
    if not isinstance(data, list):
        return None, []
    first = data[0] if data and isinstance(data[0], Mapping) else None
    return first, data


def subscription_fields(
    sub: Mapping[str, Any], *, mode: str, user_key: str = "userId", org_key: str = "orgId"
) -> tuple[Fields, bool]:
    """The fields a subscription event (``mode`` created/updated/deleted/client)
    writes, and whether a missing row may be inserted (a customer id and, except for
    ``created``, a price id are needed)."""
    first, items = _first_item(sub)
    cpe = _int(first.get("current_period_end"), 0) if first else 0
    cpe = cpe if cpe is not None else 0
    flag = sub.get("cancel_at_period_end") is True
    cancel_at = _int(sub.get("cancel_at"))
    price = first.get("price") if first else None
    price_id = obj_id(price)
    quantity = _int(first.get("quantity"), 1) if first else 1
    metadata = _meta(sub.get("metadata"))
    user, org = linkage(metadata, user_key, org_key)
    customer = obj_id(sub.get("customer"))
    status = _str(sub.get("status")) or ""
    f: Fields = {}
    if customer:
        f["cus"] = customer
    if mode == "deleted":
        f["status"] = "canceled"
        if first is not None and first.get("current_period_end") is not None:
            f["current_period_end"] = str(cpe)
        if "cancel_at" in sub:
            f["cancel_at"] = False if cancel_at is None else str(cancel_at)
        if "cancel_at_period_end" in sub or cancel_at is not None:
            f["cancel_at_period_end"] = _b(derive_cancel_at_period_end(flag, cancel_at, cpe))
    else:
        f["status"] = status
        f["current_period_end"] = str(cpe)
        f["cancel_at_period_end"] = _b(derive_cancel_at_period_end(flag, cancel_at, cpe))
        f["cancel_at"] = False if cancel_at is None else str(cancel_at)
        f["quantity"] = str(quantity if quantity is not None else 1)
    if price_id:
        f["price_id"] = price_id
    elif mode == "created":
        f["price_id"] = ""
    f["metadata"] = jdump(metadata)
    if items:
        f["items"] = jdump(items)
    if user:
        f["user_id"] = user
    if org:
        f["org_id"] = org
    insertable = bool(customer) and (mode == "created" or bool(price_id))
    return f, insertable


def _b(flag: bool) -> str:
    return "1" if flag else "0"


def customer_fields(cus: Mapping[str, Any]) -> Fields:
    """email/name (absent = removed) and metadata of a customer object."""
    return {
        "email": _str(cus.get("email")) or False,
        "name": _str(cus.get("name")) or False,
        "metadata": jdump(_meta(cus.get("metadata"))),
    }


def invoice_subscription_id(inv: Mapping[str, Any]) -> str | None:
    parent = inv.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping):
            found = obj_id(details.get("subscription"))
            if found:
                return found
    return obj_id(inv.get("subscription"))


def invoice_metadata(inv: Mapping[str, Any]) -> dict[str, Any]:
    own = _meta(inv.get("metadata"))
    if own:
        return own
    parent = inv.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping):
            return _meta(details.get("metadata"))
    return {}


def invoice_fields(
    inv: Mapping[str, Any],
    *,
    default_status: str = "open",
    subscription_id: str | None = None,
    user_key: str = "userId",
    org_key: str = "orgId",
) -> dict[str, str]:
    metadata = invoice_metadata(inv)
    user, org = linkage(metadata, user_key, org_key)
    return {
        "cus": obj_id(inv.get("customer")) or "",
        "sub": invoice_subscription_id(inv) or subscription_id or "",
        "status": _str(inv.get("status")) or default_status,
        "amount_due": str(_int(inv.get("amount_due"), 0)),
        "amount_paid": str(_int(inv.get("amount_paid"), 0)),
        "created": str(_int(inv.get("created"), 0)),
        "metadata": jdump(metadata),
        "user_id": user,
        "org_id": org,
    }


def payment_fields(
    pi: Mapping[str, Any], *, user_key: str = "userId", org_key: str = "orgId"
) -> dict[str, str]:
    metadata = _meta(pi.get("metadata"))
    user, org = linkage(metadata, user_key, org_key)
    currency = _str(pi.get("currency")) or ""
    return {
        "cus": obj_id(pi.get("customer")) or "",
        "amount": str(_int(pi.get("amount"), 0)),
        "currency": currency.lower(),
        "status": _str(pi.get("status")) or "",
        "created": str(_int(pi.get("created"), 0)),
        "metadata": jdump(metadata),
        "user_id": user,
        "org_id": org,
    }


def checkout_fields(cs: Mapping[str, Any]) -> Fields:
    customer = obj_id(cs.get("customer"))
    return {
        "cus": customer or False,
        "status": "complete",
        "mode": _str(cs.get("mode")) or "payment",
        "metadata": jdump(_meta(cs.get("metadata"))),
    }


_HOSTED = ("hosted_page", "hosted")


def build_checkout_session_params(
    *,
    price_id: str,
    mode: str,
    success_url: str,
    cancel_url: str,
    customer_id: str | None = None,
    quantity: int | None = None,
    metadata: Mapping[str, str] | None = None,
    subscription_metadata: Mapping[str, str] | None = None,
    payment_intent_metadata: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/checkout/sessions`` parameters (spec §4.7): ``params`` wins key
    by key at the top level, except ``mode``; linkage metadata wins inside
    ``subscription_data`` / ``payment_intent_data``; non-hosted UI modes drop the
    redirect URLs."""
    base: dict[str, Any] = {
        "mode": mode,
        "line_items": [{"price": price_id, "quantity": 1 if quantity is None else quantity}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": dict(metadata or {}),
    }
    if customer_id:
        base["customer"] = customer_id
    if mode == "subscription" and subscription_metadata:
        base["subscription_data"] = {"metadata": dict(subscription_metadata)}
    if mode == "payment" and payment_intent_metadata:
        base["payment_intent_data"] = {"metadata": dict(payment_intent_metadata)}
    over = {k: v for k, v in (params or {}).items() if k != "mode"}
    final = {**base, **over}
    for key in ("subscription_data", "payment_intent_data"):
        if key in base or key in over:
            b = base.get(key) or {}
            o = over.get(key) or {}
            final[key] = {
                **b,
                **o,
                "metadata": {**(o.get("metadata") or {}), **(b.get("metadata") or {})},
            }
    ui_mode = final.get("ui_mode")
    if ui_mode is not None and ui_mode not in _HOSTED:
        final.pop("success_url", None)
        final.pop("cancel_url", None)
    return final
