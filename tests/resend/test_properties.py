"""The webhook status machine against a naive model of spec §4.7: any sequence of
events for one email, starting from any status, gives the model's status, flags,
error message and finalization time."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rkit import App, TestClock

from ._fake import FakeResend
from .conftest import T0, event, make_resend, signed

RANK = {
    "waiting": 0,
    "queued": 1,
    "sent": 2,
    "delivery_delayed": 3,
    "delivered": 4,
    "bounced": 5,
    "failed": 5,
    "cancelled": 100,
}
KINDS = [
    "email.sent",
    "email.delivered",
    "email.delivery_delayed",
    "email.complained",
    "email.bounced",
    "email.opened",
    "email.clicked",
    "email.failed",
]


def model(start: str, events: list[tuple[str, str]]) -> dict[str, Any]:
    m: dict[str, Any] = {"status": start, "fin": T0 if start == "cancelled" else None}
    flags = dict.fromkeys(["bounced", "failed", "delivery_delayed", "complained"], False)
    flags |= {"opened": False, "clicked": False}
    m["error"] = None
    for t, (kind, msg) in enumerate(events, 1):
        now = T0 + t * 1000
        st_ = m["status"]

        def can(x: str, st_: str = st_) -> bool:
            return st_ != "cancelled" and RANK[x] > RANK[st_]

        if kind == "email.delivered" and can("delivered"):
            m["status"], m["fin"] = "delivered", now
        elif kind in ("email.delivery_delayed", "email.bounced", "email.failed"):
            name = kind[len("email.") :]
            flag = "delivery_delayed" if name == "delivery_delayed" else name
            c = can(name)
            if c or not flags[flag]:
                flags[flag] = True
                if name == "bounced" and msg:
                    m["error"] = msg
                if c:
                    m["status"] = name
                    if name != "delivery_delayed":
                        m["fin"] = now
        elif kind == "email.complained" and not flags["complained"]:
            flags["complained"] = True
            if m["fin"] is None:
                m["fin"] = now
        elif kind in ("email.opened", "email.clicked"):
            flags[kind[len("email.") :]] = True
    return {**m, **flags}


events_st = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(["", "Mailbox full", "Blocked"])),
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(start=st.sampled_from(["sent", "delivered", "bounced", "cancelled"]), events=events_st)
async def test_status_machine_matches_the_model(
    fake_server: FakeResend, start: str, events: list[tuple[str, str]]
) -> None:
    clock = TestClock(T0)
    app = App(namespace="prop", clock=clock)
    r = make_resend(app, fake_server)
    d = r.key
    rec = {"from": "a@x.io", "to": "[]", "reply_to": "[]", "status": start, "created_ms": T0}
    if start == "cancelled":
        rec["finalized_ms"] = T0
    await app.redis.hset(f"{d}:e:em_1", mapping=rec)
    await app.redis.hset(f"{d}:rid", "re_1", "em_1")
    for t, (kind, msg) in enumerate(events, 1):
        clock.set(T0 + t * 1000)
        extra = {"bounce": {"message": msg}} if kind == "email.bounced" and msg else {}
        body, headers = signed(event(kind, "re_1", **extra), f"m{t}", T0 + t * 1000)
        assert (await r.handle_webhook(body.encode(), headers)).status_code == 201
    e = await r.get("em_1")
    assert e is not None
    want = model(start, events)
    got = {
        "status": e.status,
        "fin": e.finalized_at,
        "error": e.error_message,
        "bounced": e.bounced,
        "failed": e.failed,
        "delivery_delayed": e.delivery_delayed,
        "complained": e.complained,
        "opened": e.opened,
        "clicked": e.clicked,
    }
    assert got == want
    assert len(await r.list_delivery_events("em_1")) == len(events)
    await r.aclose()
    await app.aclose()
