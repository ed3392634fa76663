"""Values and errors of the migrations component (spec migrations.md §7.8)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..errors import ConfigError, RkitError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RESUME",
    "CursorMismatch",
    "DryRunReport",
    "InvalidBatchSize",
    "MigrateOne",
    "MigrationBatchFailed",
    "MigrationCtx",
    "MigrationError",
    "MigrationInProgress",
    "MigrationNotFound",
    "MigrationState",
    "MigrationStatus",
    "Source",
    "SourcePage",
    "UnknownMigration",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
DEFAULT_BATCH_SIZE = 100
MigrationState = Literal["inProgress", "success", "failed", "canceled", "unknown"]


class _Resume:
    """The cursor value "resume from the saved cursor" (the reference's undefined)."""

    _instance: _Resume | None = None

    def __new__(cls) -> _Resume:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "RESUME"


RESUME = _Resume()


# -- errors ------------------------------------------------------------------------------


class MigrationError(RkitError):
    """Base class of the migrations component's errors."""


class InvalidBatchSize(MigrationError, ConfigError):
    """A batch size that is not a positive int."""

    def __init__(self, value: Any = None) -> None:
        super().__init__(f"Batch size must be greater than 0 (got {value!r})")


class MigrationNotFound(MigrationError, KeyError):
    """Cancel (or progress) of a name that has no state."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Migration {name} not found")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownMigration(MigrationError, LookupError):
    """Run of a name that no ``define`` in this process registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Can't find function {name} (define it with Migrations.define)")
        self.name = name


class CursorMismatch(MigrationError):
    """The saved cursor belongs to another source range (its fingerprint changed)."""

    def __init__(self, name: str, stored: str, current: str) -> None:
        super().__init__(
            f"Migration {name}: the saved cursor belongs to source {stored!r}, not "
            f"{current!r}; the range changed. Restart it with reset=True (or cursor=None)."
        )
        self.name = name


class MigrationInProgress(MigrationError):
    """``run_to_completion`` of a migration another runner holds."""


class MigrationBatchFailed(MigrationError):
    """A batch of ``run_to_completion`` failed; the message is the batch's error."""


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationStatus:
    """What ``get_status`` and most calls return (spec §2, §4.6)."""

    name: str
    cursor: str | None
    processed: int
    is_done: bool
    error: str | None
    state: MigrationState
    latest_start: float
    latest_end: float | None
    batch_size: int | None = None
    next: list[str] | None = None
    failed_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DryRunReport:
    """A dry run's outcome: the would-be status after one batch, up to 10 changed
    items ``(item_id, before, after)`` and up to 100 captured writes."""

    status: MigrationStatus
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    writes: list[tuple[Any, ...]] = field(default_factory=list)
    dry_run: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.to_dict(),
            "changes": [list(c) for c in self.changes],
            "writes": [[str(x) for x in w] for w in self.writes],
            "dry_run": True,
        }


@dataclass
class MigrationCtx:
    """Passed to ``migrate_one``: ``redis`` (a recording proxy during a dry run, which
    captures writes instead of running them), ``dry_run`` (external side effects must
    honour it themselves), the migration's ``name`` and the batch's start cursor."""

    redis: Any
    dry_run: bool
    name: str
    batch_cursor: str | None


MigrateOne = Callable[
    [MigrationCtx, Any], Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None
]


@dataclass(frozen=True)
class SourcePage(Generic[T]):
    """One page of a source: its items, where the next page starts, and whether the
    walk ended with it."""

    items: list[T]
    next_cursor: str
    is_done: bool


class Source(Protocol[T]):
    """What a migration walks (spec §7.5). Cursors are strings the source makes;
    ``None`` is the beginning."""

    def fingerprint(self) -> str:
        """Identifies the walked range: a saved cursor is only valid for it."""
        ...

    async def page(self, cursor: str | None, limit: int) -> SourcePage[T]: ...

    def item_id(self, item: T) -> str: ...

    async def estimate_total(self) -> int | None: ...

    async def apply_patches(self, patches: list[tuple[T, Mapping[str, Any]]]) -> None:
        """Apply ``migrate_one``'s returned patches (the patch shorthand)."""
        ...

    def preview(self, item: T, patch: Mapping[str, Any]) -> tuple[Any, Any]:
        """``(before, after)`` of an item under a patch, for dry-run reports."""
        ...
