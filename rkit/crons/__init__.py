"""Dynamic crons: recurring jobs registered, inspected, paused and deleted at run time
from any process (spec crons.md).

Design:

* **State** lives under one hash tag per namespace (``app.keys.tag("cron", ns)``):
  one hash per cron (``cr:j:<id>``), ``cr:names`` (name -> id), ``cr:due`` (ZSET of
  next fire times), ``cr:order`` (creation order), ``cr:stats``, ``cr:events`` (a
  stream capped at about 10,000) and a bounded run history per cron (``cr:h:<id>``,
  the last ``history_len`` outcomes). Every change is one script in ``lua/cron/``.
* **Exactly one fire per due time**: any number of :class:`CronScheduler` loops (one
  per worker process) *claim* due crons in one script; a claim re-scores the cron at
  its claim deadline and carries a token. The scheduler enqueues the tick's execution
  (work id ``<cron id>:<tick>``: a second enqueue of a tick is refused) and then
  *commits* the next fire time, only under its token and only if the claimed tick is
  still the cron's next one. A scheduler that dies between claim and commit leaves
  the tick to be claimed again after the lease; its execution runs once (the work
  id, and ``begin`` refusing a finished tick).
* **Executions** run on a workpool of the ``cron`` kind (the one execution path):
  an internal action begins the tick (fenced: a deleted cron, a tick never fired or
  already finished is skipped), calls the cron's function with its arguments, and
  the pool's durable ``on_complete`` records the outcome (success, failed, lost,
  canceled), duration and attempts in the cron's hash and history. Retries follow
  the cron's ``retry`` (default none: one execution per tick, the reference's rule).
* **Overlap** ``skip`` (default): a tick whose previous execution is still pending
  or running is skipped (counted, not queued); ``allow`` fires regardless.
* **Missed ticks** (all schedulers down): ``coalesce`` (default) fires once for the
  overdue tick and continues at the first tick after now, in phase; ``catch_up``
  processes every missed tick in order (each subject to the overlap rule).
* **Schedules**: :func:`Interval` (ms >= 1,000; fire times ``prev + floor(ms)``, no
  drift) or :func:`Cron` (5 fields, or 6 with seconds first, croniter, in an IANA
  zone). Daylight saving: local wall times are what match; a time skipped by a
  spring-forward transition fires once at the first instant after the gap, a time
  repeated by a fall-back transition fires once, at its first instant.
* **Scheduling loop**: every worker runs one scheduler per namespace its App
  constructs; it sleeps until the earliest due time (at most ``max_sleep_ms``) and is
  woken at once by a register or resume in any process (``PUBLISH`` on the
  namespace's wake channel).
* **Clock**: the Redis server's (or the App's test clock), passed to every script.

Package layout: ``schedules`` (intervals, cron expressions, fire-time rules),
``types`` (errors and values), ``component`` (:class:`Crons`: registering, reading,
control, the execution path), ``scheduler`` (:class:`CronScheduler`).
"""

from .component import CRON, FINISH_ACTION, RUN_ACTION, CronKind, Crons
from .scheduler import CronScheduler
from .schedules import (
    Cron,
    CronSchedule,
    Interval,
    IntervalSchedule,
    InvalidSchedule,
    Schedule,
    compile_schedule,
)
from .types import (
    CronDetails,
    CronInfo,
    CronNameTaken,
    CronNotFound,
    CronRun,
    MisfirePolicy,
    OverlapPolicy,
    TickReport,
    current_tick,
)

__all__ = [
    "CRON",
    "FINISH_ACTION",
    "RUN_ACTION",
    "Cron",
    "CronDetails",
    "CronInfo",
    "CronKind",
    "CronNameTaken",
    "CronNotFound",
    "CronRun",
    "CronSchedule",
    "CronScheduler",
    "Crons",
    "Interval",
    "IntervalSchedule",
    "InvalidSchedule",
    "MisfirePolicy",
    "OverlapPolicy",
    "Schedule",
    "TickReport",
    "compile_schedule",
    "current_tick",
]
