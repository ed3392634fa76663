"""Stripe: checkout, customers and subscriptions, mirrored into Redis by signed,
deduplicated, watermarked webhooks (spec stripe.md). Needs the ``stripe`` extra."""

from .extract import build_checkout_session_params, derive_cancel_at_period_end
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
from .store import StripeStore
from .sync import STRIPE, EventHandler, StripeSync

__all__ = [
    "STRIPE",
    "CheckoutSession",
    "CheckoutSessionResult",
    "Customer",
    "CustomerResult",
    "EventHandler",
    "Invoice",
    "Payment",
    "PortalSessionResult",
    "StripeNotConfigured",
    "StripeStore",
    "StripeSync",
    "StripeSyncError",
    "Subscription",
    "SubscriptionNotFound",
    "WebhookResponse",
    "build_checkout_session_params",
    "derive_cancel_at_period_end",
]
