"""Fire-time computation without Redis: intervals (no drift, truncation of
fractional ms, phase-preserving coalesce), cron expressions (seconds first, last
weekday, both day fields OR-ed) and daylight-saving transitions by local wall time."""

from __future__ import annotations

import time

import pytest

from rkit.crons import (
    Cron,
    CronSchedule,
    Interval,
    InvalidSchedule,
    compile_schedule,
)

from ._env import T0, utc_ms


def nexts(schedule: object, start: float, n: int) -> list[int]:
    c = compile_schedule(schedule)
    out, t = [], start
    for _ in range(n):
        t = c.next_after(t)
        out.append(t)
    return out


def test_interval_truncates_fractional_ms_and_never_drifts() -> None:
    assert nexts(Interval(1500.5), T0, 3) == [T0 + 1500, T0 + 3000, T0 + 4500]
    c = compile_schedule(Interval(60_000))
    # coalesce: the first tick strictly after now, in phase, and how many were skipped
    assert c.next_after_now(T0 + 60_000, T0 + 630_000) == (T0 + 660_000, 9)
    assert c.next_after_now(T0 + 60_000, T0 + 600_000) == (T0 + 660_000, 9)
    assert c.next_after_now(T0 + 60_000, T0 + 60_000) == (T0 + 120_000, 0)


def test_cron_coalesce_counts_the_skipped_ticks() -> None:
    c = compile_schedule(Cron("0 * * * *"))
    first = utc_ms("2023-11-14T23:00:00")
    nxt, missed = c.next_after_now(first, first + 5 * 3_600_000 + 1)
    assert (nxt, missed) == (first + 6 * 3_600_000, 5)


def test_day_of_month_or_day_of_week() -> None:
    # the 1st of the month OR a Monday (classic cron rule)
    got = nexts(Cron("0 0 1 * MON"), T0, 3)
    assert got == [
        utc_ms(d) for d in ("2023-11-20T00:00:00", "2023-11-27T00:00:00", "2023-12-01T00:00:00")
    ]


@pytest.mark.parametrize(
    ("spec", "tz", "start", "expected"),
    [
        # every 15 minutes across a spring-forward gap: 02:00-02:59 do not exist
        (
            "*/30 * * * *",
            "America/New_York",
            "2026-03-08T06:00:00",
            ["2026-03-08T06:30:00", "2026-03-08T07:00:00", "2026-03-08T07:30:00"],
        ),
        (
            "10 2 * * *",
            "America/New_York",
            "2026-03-07T17:00:00",
            ["2026-03-08T07:00:00", "2026-03-09T06:10:00"],
        ),
        (
            "59 2 * * *",
            "America/New_York",
            "2026-03-07T17:00:00",
            ["2026-03-08T07:00:00", "2026-03-09T06:59:00"],
        ),
        # the repeated hour of a fall-back day fires once, at its first instant
        (
            "30 1 * * *",
            "America/New_York",
            "2026-11-01T00:00:00",
            ["2026-11-01T05:30:00", "2026-11-02T06:30:00"],
        ),
        (
            "0,30 1 * * *",
            "America/New_York",
            "2026-11-01T00:00:00",
            ["2026-11-01T05:00:00", "2026-11-01T05:30:00", "2026-11-02T06:00:00"],
        ),
        # Europe: 02:30 on the last Sunday of March does not exist -> 03:00 CEST
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00",
            ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
        ),
        # a half-hour zone
        ("0 9 * * *", "Asia/Kolkata", "2023-11-14T00:00:00", ["2023-11-14T03:30:00"]),
    ],
)
def test_daylight_saving(spec: str, tz: str, start: str, expected: list[str]) -> None:
    got = nexts(Cron(spec, tz=tz), utc_ms(start), len(expected))
    assert got == [utc_ms(t) for t in expected]


def test_registered_inside_the_repeated_hour_waits_for_the_next_wall_time() -> None:
    # 01:10 EST (the second 01:10 of 2026-11-01): 01:30 already fired at 01:30 EDT
    second_0110 = utc_ms("2026-11-01T06:10:00")
    assert nexts(Cron("30 1 * * *", tz="America/New_York"), second_0110, 1) == [
        utc_ms("2026-11-02T06:30:00")
    ]


def test_validation_is_quick_and_rejects_what_never_matches() -> None:
    start = time.perf_counter()
    for spec in ("0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *"):
        with pytest.raises(InvalidSchedule, match="Invalid cronspec"):
            compile_schedule(Cron(spec))
    assert time.perf_counter() - start < 1.0
    with pytest.raises(InvalidSchedule, match="Invalid timezone"):
        compile_schedule(CronSchedule(cronspec="* * * * *", tz=""))
    with pytest.raises(InvalidSchedule):
        compile_schedule("every minute")
