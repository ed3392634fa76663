"""Migrations (spec migrations.md): resumable, batched data migrations with durable
progress, one runner per migration, dry runs, cancel and ordered series; batches
run on a workpool of the ``migrations`` kind.

    migrations = Migrations(app)
    set_default = migrations.define(
        source=HashIndexSource(app.redis, "items:idx"),
        migrate_one=lambda ctx, item: None if "opt" in item[1] else {"opt": "default"},
        name="set_default",
    )
    await migrations.run_one(set_default)          # first batch now, the rest on workers

Package layout: ``types`` (statuses, errors, the Source protocol), ``sources``
(the built-in sources), ``dryrun`` (the recording proxy), ``component``
(:class:`Migrations`).
"""

from .component import MIGRATIONS, Migration, MigrationKind, Migrations
from .sources import (
    BaseSource,
    HashIndexSource,
    HashItem,
    HashKeySource,
    IterableSource,
    RedisScanSource,
    SortedSetSource,
    StreamSource,
)
from .types import (
    DEFAULT_BATCH_SIZE,
    RESUME,
    CursorMismatch,
    DryRunReport,
    InvalidBatchSize,
    MigrateOne,
    MigrationBatchFailed,
    MigrationCtx,
    MigrationError,
    MigrationInProgress,
    MigrationNotFound,
    MigrationState,
    MigrationStatus,
    Source,
    SourcePage,
    UnknownMigration,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MIGRATIONS",
    "RESUME",
    "BaseSource",
    "CursorMismatch",
    "DryRunReport",
    "HashIndexSource",
    "HashItem",
    "HashKeySource",
    "InvalidBatchSize",
    "IterableSource",
    "MigrateOne",
    "Migration",
    "MigrationBatchFailed",
    "MigrationCtx",
    "MigrationError",
    "MigrationInProgress",
    "MigrationKind",
    "MigrationNotFound",
    "MigrationState",
    "MigrationStatus",
    "Migrations",
    "RedisScanSource",
    "SortedSetSource",
    "Source",
    "SourcePage",
    "StreamSource",
    "UnknownMigration",
]
