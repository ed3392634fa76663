"""Core pieces: key encoding, codec, clock, script loader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.cluster import key_slot

from rkit import App, ConfigError, RateLimiter, SerializationError, TestClock, TokenBucket
from rkit.clock import ServerClock, argv_now
from rkit.codec import dumps, fmt_num, loads
from rkit.keys import KeySpace, decode, encode
from rkit.scripts import load

parts = st.one_of(st.none(), st.text(max_size=20))


@given(parts, parts, parts, parts)
def test_encoded_keys_never_collide(
    a: str | None, b: str | None, c: str | None, d: str | None
) -> None:
    ks = KeySpace("ns")
    if (a, b) != (c, d):
        assert ks.tag("rl", a, b) != ks.tag("rl", c, d)


@given(parts)
def test_encode_round_trips_and_keeps_the_tag_intact(p: str | None) -> None:
    e = encode(p)
    assert decode(e) == p
    assert not set(e) & set(":{}")


def test_none_empty_and_separators() -> None:
    ks = KeySpace("ns")
    assert encode(None) != encode("")
    assert ks.tag("rl", "a:b", "c") != ks.tag("rl", "a", "b:c")
    key = ks.tag("rl", "}{", "{x}")
    assert key.count("{") == 1 and key.count("}") == 1
    # the whole stem is the hash tag: every shard/field of one bucket is one slot
    assert key_slot(key.encode()) == key_slot((key + ":more").encode())


@pytest.mark.parametrize("bad", [1, b"x", ["a"], {"a": 1}, 1.5])
def test_non_string_key_parts_are_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="key parts must be str or None"):
        encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("ns", ["", "a b", "a:b", "{x}", "x" * 65])
def test_bad_namespaces(ns: str) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        App(namespace=ns)


def test_codec() -> None:
    assert dumps({"a": [1, 2.5, None, "é"]}) == '{"a":[1,2.5,null,"é"]}'
    assert loads('{"a":1}') == {"a": 1}
    for bad in (float("nan"), object(), {1, 2}, b"x"):
        with pytest.raises(SerializationError):
            dumps(bad, what="thing")
    assert fmt_num(3) == "3" and fmt_num(0.1) == "0.1" and float(fmt_num(1 / 3)) == 1 / 3
    with pytest.raises(SerializationError):
        fmt_num(float("inf"))


def test_clocks() -> None:
    c = TestClock(1000)
    assert argv_now(c) == "1000.0"
    c.advance(0.5)
    assert c.now_ms() == 1000.5
    c.set(5)
    assert c.now_ms() == 5
    assert argv_now(ServerClock()) == ""
    with pytest.raises(ConfigError):
        App(clock=object())  # type: ignore[arg-type]


def test_script_loader_prepends_libraries() -> None:
    s = load("rate_limit", "eval_sharded")
    assert "local function rk_fmt" in s.body and "local function rl_calc" in s.body
    # only the library functions a script reaches are prepended (a closure per call each)
    fast = load("rate_limit", "eval")
    assert "local function rl_project" in fast.body and "local function rk_fmt" in fast.body
    assert "local function rl_evaluate" not in fast.body
    assert len(s.sha) == 40
    with pytest.raises(FileNotFoundError):
        load("rate_limit", "nope")


async def test_lua_numbers_keep_17_digits(app: App) -> None:
    """Fractional values survive: stored and returned as %.17g strings."""
    rl = RateLimiter(app, {"third": TokenBucket(rate=3, period=1000)}, rng=lambda: 0.0)
    for _ in range(3):
        assert (await rl.limit("third")).ok
    r = await rl.limit("third")
    assert r.retry_after == 1 / (3 / 1000)  # 333.333..., unrounded
    assert (await rl.limit("third", count=0.1, reserve=True)).retry_after == pytest.approx(
        (1 / 3) * 100, rel=1e-12
    )
