"""The Stripe mirror's records, results and errors (spec stripe.md §7.6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ...errors import RkitError

__all__ = [
    "CheckoutSession",
    "CheckoutSessionResult",
    "Customer",
    "CustomerResult",
    "Invoice",
    "Payment",
    "PortalSessionResult",
    "StripeNotConfigured",
    "StripeSyncError",
    "Subscription",
    "SubscriptionNotFound",
    "WebhookResponse",
]


class Customer(BaseModel):
    stripe_customer_id: str
    email: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    user_id: str | None = None


class Subscription(BaseModel):
    stripe_subscription_id: str
    stripe_customer_id: str
    status: str
    current_period_end: int
    """Seconds (Stripe's unit); 0 when the first item has none."""
    cancel_at_period_end: bool
    cancel_at: int | None = None
    quantity: int | None = None
    price_id: str
    metadata: dict[str, Any] | None = None
    org_id: str | None = None
    user_id: str | None = None
    items: list[dict[str, Any]] | None = None
    """Every subscription item as Stripe sent it (the other fields mirror the first)."""


class CheckoutSession(BaseModel):
    stripe_checkout_session_id: str
    stripe_customer_id: str | None = None
    status: str
    mode: str
    metadata: dict[str, Any] | None = None


class Payment(BaseModel):
    stripe_payment_intent_id: str
    stripe_customer_id: str | None = None
    amount: int
    currency: str
    status: str
    created: int
    metadata: dict[str, Any] | None = None
    org_id: str | None = None
    user_id: str | None = None


class Invoice(BaseModel):
    stripe_invoice_id: str
    stripe_customer_id: str
    stripe_subscription_id: str | None = None
    status: str
    amount_due: int
    amount_paid: int
    created: int
    metadata: dict[str, Any] | None = None
    org_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class CheckoutSessionResult:
    session_id: str
    url: str | None


@dataclass(frozen=True)
class PortalSessionResult:
    url: str


@dataclass(frozen=True)
class CustomerResult:
    customer_id: str
    is_new: bool = False


@dataclass(frozen=True)
class WebhookResponse:
    """What the webhook route answers: status, body and media type."""

    status_code: int
    body: bytes
    media_type: str


class StripeSyncError(RkitError):
    """A Stripe mirror operation that cannot proceed ("Subscription has no items", ...)."""


class SubscriptionNotFound(StripeSyncError, LookupError):
    """``update_subscription_metadata`` on a subscription the mirror does not hold."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"Subscription {subscription_id} not found in database")
        self.subscription_id = subscription_id


class StripeNotConfigured(StripeSyncError):
    """A method needed the secret key and none is configured."""
