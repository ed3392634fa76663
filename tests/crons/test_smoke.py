from rkit import App
from rkit.crons import IntervalSchedule

from ._env import T0, Env


async def test_smoke(app: App) -> None:
    env = Env(app)
    cid = await env.crons.register(IntervalSchedule(ms=60_000), "record", {"m": "x"})
    await env.advance(0)
    assert env.calls == []
    await env.advance(60_000)
    assert env.calls == [(T0 + 60_000, {"m": "x"})]
    await env.advance(60_000)
    assert env.times == [T0 + 60_000, T0 + 120_000]
    d = await env.crons.details(id=cid)
    print(d)
