"""Operator hooks: what a component contributes to the dashboard and to ``/metrics``.

A component (or a user's own code) registers, on its App, a *panel* (a function
reading its state into sections of numbers and rows), *metrics* (a function reading
counters and gauges that live in Redis, so every process's work counts once) and
*actions* (named operations the dashboard's buttons call, e.g. "cancel this run").
The admin API (``rkit.api.dashboard``, ``rkit.api.metrics``) reads these hooks; a
component never imports the API, and the core never imports FastAPI or
prometheus-client: everything here is plain data.

    hooks = operator_hooks(app)
    hooks.add_panel(Panel("crons", "Crons", collect=my_cron_sections))
    hooks.add_metrics("crons", my_cron_samples)
    hooks.add_action("crons.trigger", trigger_cron)
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "DashboardAction",
    "OperatorHooks",
    "Panel",
    "RowAction",
    "Sample",
    "Section",
    "operator_hooks",
]

_METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
MAX_ROWS = 200
"""Rows a section keeps (a panel shows the first rows of a long list)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric value: ``name`` (without ``_total`` for counters), its type and
    help text, the labels and the value (a counter is a total kept in Redis)."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    labels: Mapping[str, str]
    value: float

    def __post_init__(self) -> None:
        if not _METRIC_RE.match(self.name) or self.name.endswith("_total"):
            raise ConfigError(f"metric name {self.name!r} is not a Prometheus name without _total")
        if self.type not in ("counter", "gauge"):
            raise ConfigError(f"metric type must be counter or gauge, got {self.type!r}")
        for k in self.labels:
            if not _LABEL_RE.match(k) or k.startswith("__"):
                raise ConfigError(f"label name {k!r} of {self.name} is not a Prometheus label")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ConfigError(f"value of {self.name} must be a number, got {self.value!r}")
        if self.type == "counter" and not (math.isfinite(self.value) and self.value >= 0):
            raise ConfigError(f"counter {self.name} must be finite and >= 0, got {self.value!r}")


@dataclass(frozen=True, slots=True)
class RowAction:
    """A button on a row: calls the registered action ``action`` with ``args``."""

    label: str
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)
    confirm: str | None = None
    """A question the browser asks before acting (destructive actions)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "action": self.action,
            "args": dict(self.args),
            "confirm": self.confirm,
        }


@dataclass(frozen=True, slots=True)
class Section:
    """One block of a panel: headline numbers (``stats``), an optional table
    (``columns`` and ``rows``, each row a mapping of column to value, with its row
    actions), progress bars and, for counters worth charting, ``series``: names of
    stats whose per-poll increase the dashboard plots as a small throughput chart."""

    title: str
    stats: Mapping[str, float | int | str | None] = field(default_factory=dict)
    columns: Sequence[str] = ()
    rows: Sequence[Mapping[str, Any]] = ()
    row_actions: Sequence[Sequence[RowAction]] = ()
    actions: Sequence[RowAction] = ()
    """Buttons of the whole section (e.g. "reset this limit")."""
    series: Sequence[str] = ()
    progress: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Progress bars: label -> (done, total), e.g. a migration's batches."""
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: values other than numbers, strings, booleans and ``None``
        (e.g. datetimes) are shown as their ``str``."""
        rows = list(self.rows)[:MAX_ROWS]
        acts = list(self.row_actions)[: len(rows)]
        return {
            "title": self.title,
            "stats": {str(k): _cell(v) for k, v in self.stats.items()},
            "columns": list(self.columns),
            "rows": [{str(k): _cell(v) for k, v in r.items()} for r in rows],
            "row_actions": [[a.to_dict() for a in row] for row in acts],
            "actions": [a.to_dict() for a in self.actions],
            "series": list(self.series),
            "progress": {str(k): [_cell(d), _cell(t)] for k, (d, t) in self.progress.items()},
            "note": self.note,
            "truncated": len(self.rows) > MAX_ROWS,
        }


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)


PanelCollect = Callable[[Any], Awaitable[Sequence[Section]]]
"""``async def collect(app) -> [Section, ...]``: the panel's current state."""
MetricsCollect = Callable[[Any], Awaitable[Sequence[Sample]]]
"""``async def collect(app) -> [Sample, ...]``: read at every scrape."""
ActionRun = Callable[[Any, dict[str, Any]], Awaitable[Mapping[str, Any]]]
"""``async def run(app, args) -> result``: a dashboard action; raise
:class:`~rkit.errors.ConfigError` (or ``ValueError``) for bad ``args`` before
writing anything, ``LookupError`` when the target does not exist."""


@dataclass(frozen=True, slots=True)
class Panel:
    """A dashboard panel of one component kind."""

    kind: str
    title: str
    collect: PanelCollect
    order: int = 100
    """Panels are shown by ``order``, then title (built-in kinds use 10 to 60)."""


@dataclass(frozen=True, slots=True)
class DashboardAction:
    """A named operation the dashboard's buttons call."""

    name: str
    run: ActionRun


class OperatorHooks:
    """The panels, metric collectors and actions registered on one App."""

    def __init__(self) -> None:
        self._panels: dict[str, Panel] = {}
        self._metrics: dict[str, MetricsCollect] = {}
        self._actions: dict[str, DashboardAction] = {}

    def add_panel(self, panel: Panel) -> None:
        """Show ``panel`` on the dashboard (once per kind: the first one stays)."""
        self._panels.setdefault(panel.kind, panel)

    def add_metrics(self, name: str, collect: MetricsCollect) -> None:
        """Read ``collect(app)`` at every ``/metrics`` scrape (once per name)."""
        self._metrics.setdefault(name, collect)

    def add_action(self, name: str, run: ActionRun) -> None:
        """Let the dashboard call ``run(app, args)`` as action ``name``
        (dotted lower-case, e.g. ``"workpool.cancel"``)."""
        if not _ACTION_RE.match(name):
            raise ConfigError(f"action name must match {_ACTION_RE.pattern}, got {name!r}")
        self._actions.setdefault(name, DashboardAction(name, run))

    def panels(self) -> list[Panel]:
        return sorted(self._panels.values(), key=lambda p: (p.order, p.title))

    def metrics(self) -> dict[str, MetricsCollect]:
        return dict(self._metrics)

    def action(self, name: str) -> DashboardAction | None:
        return self._actions.get(name)

    def actions(self) -> list[str]:
        return sorted(self._actions)


def operator_hooks(app: Any) -> OperatorHooks:
    """The App's operator hooks (created on first use; kept in ``app.components``)."""
    return app.components.state("operator:hooks", OperatorHooks)  # type: ignore[no-any-return]
