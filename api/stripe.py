"""Admin routes of the Stripe mirror (spec stripe.md §7.7), behind the admin token:
synced objects, the webhook dedupe log and progress records, replay of a stored
event, the dead-letter list and a subscription resync from Stripe. Instances are
addressed by name; one this process did not construct is read through an
unregistered handle (secrets from the environment)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, HTTPException, Query

from rkit import App
from rkit.integrations.stripe import StripeNotConfigured, StripeSync

from .validation import Name, QueryStr

_INSTANCE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
Limit = Annotated[int, Query(ge=1, le=1000)]


def _sync(app: App, instance: str) -> StripeSync:
    if not _INSTANCE.match(instance):
        raise HTTPException(404, detail=f"no Stripe instance {instance!r}")
    return StripeSync.view(app, instance)


def _dump(rows: list[Any]) -> list[dict[str, Any]]:
    return [r.model_dump() for r in rows]


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["stripe"])

    @r.get("/{instance}/customers/{customer_id}")
    async def customer(instance: Name, customer_id: Name) -> dict[str, Any]:
        found = await _sync(app, instance).get_customer(customer_id)
        if found is None:
            raise HTTPException(404, detail=f"no customer {customer_id!r}")
        return found.model_dump()

    @r.get("/{instance}/subscriptions/{subscription_id}")
    async def subscription(instance: Name, subscription_id: Name) -> dict[str, Any]:
        found = await _sync(app, instance).get_subscription(subscription_id)
        if found is None:
            raise HTTPException(404, detail=f"no subscription {subscription_id!r}")
        return found.model_dump()

    @r.post("/{instance}/subscriptions/{subscription_id}/resync")
    async def resync(instance: Name, subscription_id: Name) -> dict[str, Any]:
        try:
            found = await _sync(app, instance).resync_subscription(subscription_id)
        except StripeNotConfigured as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except stripe.StripeError as exc:
            raise HTTPException(502, detail=f"Stripe: {exc.user_message or exc}") from None
        return {"subscription": None if found is None else found.model_dump()}

    @r.post("/{instance}/customers/{customer_id}/resync")
    async def resync_customer(instance: Name, customer_id: Name) -> dict[str, Any]:
        try:
            found = await _sync(app, instance).resync_customer(customer_id)
        except StripeNotConfigured as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except stripe.StripeError as exc:
            raise HTTPException(502, detail=f"Stripe: {exc.user_message or exc}") from None
        return {"customer": None if found is None else found.model_dump()}

    @r.get("/{instance}/users/{user_id}/subscriptions")
    async def user_subscriptions(
        instance: Name, user_id: Name, status: QueryStr = ""
    ) -> dict[str, Any]:
        rows = await _sync(app, instance).list_subscriptions_by_user_id(
            user_id, status=status or None
        )
        return {"subscriptions": _dump(rows)}

    @r.get("/{instance}/orgs/{org_id}/subscriptions")
    async def org_subscriptions(
        instance: Name, org_id: Name, status: QueryStr = ""
    ) -> dict[str, Any]:
        rows = await _sync(app, instance).list_subscriptions_by_org_id(
            org_id, status=status or None
        )
        return {"subscriptions": _dump(rows)}

    @r.get("/{instance}/users/{user_id}/invoices")
    async def user_invoices(instance: Name, user_id: Name) -> dict[str, Any]:
        return {"invoices": _dump(await _sync(app, instance).list_invoices_by_user_id(user_id))}

    @r.get("/{instance}/orgs/{org_id}/invoices")
    async def org_invoices(instance: Name, org_id: Name) -> dict[str, Any]:
        return {"invoices": _dump(await _sync(app, instance).list_invoices_by_org_id(org_id))}

    @r.get("/{instance}/users/{user_id}/payments")
    async def user_payments(instance: Name, user_id: Name) -> dict[str, Any]:
        return {"payments": _dump(await _sync(app, instance).list_payments_by_user_id(user_id))}

    @r.get("/{instance}/orgs/{org_id}/payments")
    async def org_payments(instance: Name, org_id: Name) -> dict[str, Any]:
        return {"payments": _dump(await _sync(app, instance).list_payments_by_org_id(org_id))}

    @r.get("/{instance}/events")
    async def events(instance: Name, limit: Limit = 100) -> dict[str, Any]:
        """The dedupe log: event ids received, newest first."""
        return {"events": await _sync(app, instance).store.event_log(limit)}

    @r.get("/{instance}/events/{event_id}")
    async def event(instance: Name, event_id: Name) -> dict[str, Any]:
        found = await _sync(app, instance).store.event(event_id)
        if found is None:
            raise HTTPException(404, detail=f"no event {event_id!r}")
        return found

    @r.post("/{instance}/events/{event_id}/replay")
    async def replay(instance: Name, event_id: Name, handlers: bool = False) -> dict[str, Any]:
        sync = _sync(app, instance)
        try:
            ok = await sync.replay_event(event_id, handlers=handlers)
        except stripe.StripeError as exc:
            raise HTTPException(502, detail=f"Stripe: {exc.user_message or exc}") from None
        if not ok:
            raise HTTPException(404, detail=f"no stored event {event_id!r}")
        return {"replayed": event_id, "handlers": handlers}

    @r.get("/{instance}/dead")
    async def dead(instance: Name, limit: Limit = 100) -> dict[str, Any]:
        return {"dead": await _sync(app, instance).dead_letters(limit)}

    return r
