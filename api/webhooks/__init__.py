"""Public webhook routes, one module per vendor (``api/webhooks/<vendor>.py``).

Never behind the admin token: each route verifies the vendor's own signature with
the vendor's scheme and refuses every request while no secret is configured. A
vendor integration registers its router with ``app.components.add_router`` and
``create_api`` mounts it outside the admin-token dependency.
"""
