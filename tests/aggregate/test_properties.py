"""A hypothesis state machine drives random inserts, deletes, replaces and
queries against both the aggregate and a naive sorted list, on fakeredis and on a
real redis-server; every answer and every error must agree."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rkit import App
from rkit.aggregate import Bound, DirectAggregate, Eq, Int64, Prefix, Range
from rkit.errors import KeyExistsError, KeyNotFoundError, OffsetOutOfRange

from .._servers import Server


def sk(v: Any) -> tuple[Any, ...]:
    """An independent Python sort key for the keys' total order: null < Int64 < float <
    NaN < bool < str < bytes < list < dict."""
    if v is None:
        return (1,)
    if isinstance(v, Int64):
        return (2, v.value)
    if isinstance(v, bool):
        return (4, v)
    if isinstance(v, int | float):
        return (3.5,) if math.isnan(v) else (3, float(v))
    if isinstance(v, str):
        return (5, v)
    if isinstance(v, bytes):
        return (6, v)
    if isinstance(v, list | tuple):
        return (7, tuple(sk(e) for e in v))
    if isinstance(v, dict):
        return (9, tuple((k, sk(v[k])) for k in sorted(v)))
    raise TypeError(v)


scalars = st.one_of(
    st.none(),
    st.builds(Int64, st.integers(-(2**63), 2**63 - 1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**53), 2**53),
    st.booleans(),
    st.text(max_size=4),
    st.binary(max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=4,
)
ids = st.sampled_from(["", "a", "b", "x:y"])


def in_bounds(key: Any, id: str, b: Any) -> bool:
    k = sk(key)
    if isinstance(b, Eq):
        return k == sk(b.key)
    if isinstance(b, Prefix):
        return (
            isinstance(key, list)
            and len(key) >= len(b.values)
            and all(sk(key[i]) == sk(p) for i, p in enumerate(b.values))
        )
    ok = True
    if b.lower is not None:
        lo = b.lower
        mine, theirs = (
            ((k, id), (sk(lo.key), lo.id)) if lo.id is not None else ((k,), (sk(lo.key),))
        )
        ok = mine >= theirs if lo.inclusive else mine > theirs
    if ok and b.upper is not None:
        up = b.upper
        mine, theirs = (
            ((k, id), (sk(up.key), up.id)) if up.id is not None else ((k,), (sk(up.key),))
        )
        ok = mine <= theirs if up.inclusive else mine < theirs
    return ok


def same(item: Any, model: tuple[Any, str, float]) -> bool:
    return sk(item.key) == sk(model[0]) and item.id == model[1] and item.sum_value == model[2]


class AggregateMachine(RuleBasedStateMachine):
    url: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.app = App(self.url) if self.url else App()
        if self.url:
            self.run(self.app.redis.flushall())
        self.model: dict[tuple[Any, str], tuple[Any, str, float]] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.app.aclose())
        self.loop.close()

    def sorted_items(self) -> list[tuple[Any, str, float]]:
        return sorted(self.model.values(), key=lambda m: (sk(m[0]), m[1]))

    @initialize(
        m=st.sampled_from(range(4, 20, 2)),
        lazy=st.booleans(),
        pool=st.lists(values, min_size=1, max_size=100),
    )
    def setup(self, m: int, lazy: bool, pool: list[Any]) -> None:
        self.agg: DirectAggregate[Any] = DirectAggregate(
            self.app, "p", default_max_node_size=m, default_root_lazy=lazy
        )
        self.pool = pool

    def _bounds(self, data: st.DataObject) -> Any:
        kind = data.draw(st.sampled_from(["none", "range", "eq", "prefix"]))
        if kind == "none":
            return None
        if kind == "eq":
            return Eq(data.draw(st.sampled_from(self.pool)))
        if kind == "prefix":
            arrays = [k for k in self.pool if isinstance(k, list)] or [[]]
            arr = data.draw(st.sampled_from(arrays))
            return Prefix(arr[: data.draw(st.integers(0, len(arr)))])

        def bound() -> Bound | None:
            if data.draw(st.booleans()):
                return None
            idv = data.draw(st.one_of(st.none(), ids))
            return Bound(data.draw(st.sampled_from(self.pool)), data.draw(st.booleans()), idv)

        return Range(bound(), bound())

    def _key(self, data: st.DataObject) -> tuple[Any, str]:
        return data.draw(st.sampled_from(self.pool)), data.draw(ids)

    def _norm(self, key: Any) -> tuple[Any, ...]:
        return sk(key)

    @rule(data=st.data(), s=st.integers(-10, 10))
    def insert(self, data: st.DataObject, s: int) -> None:
        key, id = self._key(data)
        mk = (sk(key), id)
        if mk in self.model:
            with pytest.raises(KeyExistsError):
                self.run(self.agg.insert(key, id, s))
        else:
            self.run(self.agg.insert(key, id, s))
            self.model[mk] = (key, id, float(s))

    @rule(data=st.data(), n=st.integers(1, 40))
    def insert_some(self, data: st.DataObject, n: int) -> None:
        """Grow the tree quickly (splits at small M) with fresh (key, id) pairs."""
        for i in range(n):
            key = data.draw(st.sampled_from(self.pool))
            id = f"bulk{len(self.model)}-{i}"
            if (sk(key), id) not in self.model:
                self.run(self.agg.insert(key, id, i % 7 - 3))
                self.model[(sk(key), id)] = (key, id, float(i % 7 - 3))

    @rule(data=st.data(), n=st.integers(1, 30))
    def delete_some(self, data: st.DataObject, n: int) -> None:
        """Shrink the tree quickly (merges, rotations, root collapse)."""
        items = self.sorted_items()
        for key, id, _ in (
            data.draw(
                st.lists(st.sampled_from(items), max_size=n, unique_by=lambda m: (sk(m[0]), m[1]))
            )
            if items
            else []
        ):
            self.run(self.agg.delete(key, id))
            del self.model[(sk(key), id)]
        self.check_valid()

    @precondition(lambda self: hasattr(self, "agg"))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        if self.model and data.draw(st.booleans()):
            key, id, _ = data.draw(st.sampled_from(self.sorted_items()))
        else:
            key, id = self._key(data)
        mk = (sk(key), id)
        if mk in self.model:
            self.run(self.agg.delete(key, id))
            del self.model[mk]
        else:
            with pytest.raises(KeyNotFoundError):
                self.run(self.agg.delete(key, id))

    @rule(data=st.data(), s=st.integers(-10, 10))
    def replace(self, data: st.DataObject, s: int) -> None:
        key, id = self._key(data)
        new_key = data.draw(st.sampled_from(self.pool))
        old, new = (sk(key), id), (sk(new_key), id)
        if old not in self.model:
            with pytest.raises(KeyNotFoundError):
                self.run(self.agg.replace(key, id, new_key, sum_value=s))
        elif new in self.model and new != old:
            with pytest.raises(KeyExistsError):
                self.run(self.agg.replace(key, id, new_key, sum_value=s))
        else:
            self.run(self.agg.replace(key, id, new_key, sum_value=s))
            del self.model[old]
            self.model[new] = (new_key, id, float(s))

    @rule(data=st.data())
    def count_and_sum(self, data: st.DataObject) -> None:
        b = self._bounds(data)
        want = [m for m in self.sorted_items() if b is None or in_bounds(m[0], m[1], b)]
        assert self.run(self.agg.count(bounds=b)) == len(want)
        assert self.run(self.agg.sum(bounds=b)) == pytest.approx(
            math.fsum(m[2] for m in want), abs=1e-9
        )

    @rule(data=st.data())
    def at(self, data: st.DataObject) -> None:
        b = self._bounds(data)
        want = [m for m in self.sorted_items() if b is None or in_bounds(m[0], m[1], b)]
        off = data.draw(st.integers(-len(want) - 1, len(want)))
        if -len(want) <= off < len(want):
            assert same(self.run(self.agg.at(off, bounds=b)), want[off])
        else:
            with pytest.raises(OffsetOutOfRange):
                self.run(self.agg.at(off, bounds=b))

    @rule(data=st.data())
    def index_of(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.pool))
        id = data.draw(st.one_of(st.none(), ids))
        target = (sk(key), id) if id is not None else (sk(key),)
        items = self.sorted_items()
        asc = sum(
            1 for m in items if ((sk(m[0]), m[1]) if id is not None else (sk(m[0]),)) < target
        )
        desc = sum(
            1 for m in items if ((sk(m[0]), m[1]) if id is not None else (sk(m[0]),)) > target
        )
        assert self.run(self.agg.index_of(key, id=id)) == asc
        assert self.run(self.agg.index_of(key, id=id, order="desc")) == desc

    @rule(data=st.data(), size=st.integers(1, 10), desc=st.booleans())
    def paginate(self, data: st.DataObject, size: int, desc: bool) -> None:
        b = self._bounds(data)
        want = [m for m in self.sorted_items() if b is None or in_bounds(m[0], m[1], b)]
        if desc:
            want.reverse()
        got: list[Any] = []
        cursor = None
        order = "desc" if desc else "asc"
        while True:
            page = self.run(self.agg.paginate(bounds=b, cursor=cursor, page_size=size, order=order))
            assert len(page.items) <= size
            got.extend(page.items)
            if page.is_done:
                break
            assert len(page.items) == size
            cursor = page.cursor
        assert len(got) == len(want)
        assert all(same(g, w) for g, w in zip(got, want, strict=True))

    @invariant()
    def totals(self) -> None:
        if hasattr(self, "agg"):
            assert self.run(self.agg.count()) == len(self.model)

    def check_valid(self) -> None:
        self.run(self.agg.validate())


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_state_machine_fakeredis() -> None:
    """Half the examples of the real-Redis run: the same scripts, and fakeredis runs
    Lua several times slower (the real run below keeps the full budget)."""

    class Fake(AggregateMachine):
        url = None

    run_state_machine_as_test(Fake, settings=settings(SETTINGS, max_examples=20))


def test_state_machine_real_redis(redis_server: Server) -> None:
    class Real(AggregateMachine):
        url = redis_server.url

    run_state_machine_as_test(Real, settings=SETTINGS)
