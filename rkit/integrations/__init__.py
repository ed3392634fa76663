"""Vendor integrations (Stripe, WorkOS AuthKit, Resend): the layer above the
components. An integration runs its outbound calls through a workpool of its own
kind and keeps its synced state in Redis through its own scripts
(``lua/<vendor>/``); its public webhook routes live in ``api/webhooks.py``
(signature-verified, never behind the admin token) and its admin routes in
``api/<vendor>.py``. See README "Architecture"."""
