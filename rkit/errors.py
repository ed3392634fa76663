"""The one error hierarchy of rkit.

Bad input raises a subclass of :class:`ConfigError` (also a ``ValueError``) before
Redis is touched; Redis failures propagate as redis-py exceptions (fail closed).
"""

from __future__ import annotations

from typing import Any, ClassVar


class RkitError(Exception):
    """Base class of every error raised by rkit itself."""


class ConfigError(RkitError, ValueError):
    """Invalid configuration or argument; raised before anything is written."""


class KeyTooLong(ConfigError):
    """A user-supplied id, name or namespace above its component's size limit
    (UTF-8 bytes; default ``rkit.keys.MAX_KEY_PART_BYTES`` = 1 KiB)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size} bytes (UTF-8), above the limit of {limit} bytes; "
            "use a shorter value (or raise the component's limit)"
        )
        self.what = what
        self.size = size
        self.limit = limit


class SerializationError(ConfigError, TypeError):
    """A value that must be JSON (action arguments, results) is not."""


class ActionNotFound(RkitError, LookupError):
    """No action is registered under the given name in this App."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No action registered under the name {name!r}.")
        self.name = name


class RateLimitNotDefined(ConfigError):
    """A rate limit name was used that is neither registered nor given inline."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Rate limit {name} not defined. Pass config=... inline or register it "
            "in RateLimiter(app, {name: config})."
        )
        self.name = name


class RateLimitCountTooLarge(ConfigError):
    """``count`` can never be satisfied by the limit's configuration."""

    def __init__(self, name: str, count: float, bound: float, shards: int, *, reserve: bool):
        bound_s = f"{bound:.2f}" if reserve else _num(bound)
        suffix = f" per {shards} shards." if shards > 1 else "."
        super().__init__(f"Rate limit {name} count {_num(count)} exceeds {bound_s}{suffix}")
        self.name = name
        self.count = count
        self.bound = bound
        self.shards = shards


class RateLimited(RkitError):
    """Raised by ``limit``/``check`` with ``throws=True`` when the caller must wait."""

    kind: ClassVar[str] = "RateLimited"

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"Rate limit {name} exceeded; retry after {retry_after:.3f} ms.")
        self.name = name
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "retry_after": self.retry_after}


RateLimitExceeded = RateLimited
"""Alias of :class:`RateLimited` (the name used by the issue tracker)."""


def is_rate_limit_error(exc: BaseException) -> bool:
    """True iff ``exc`` is the error raised for a rate-limited call."""
    return isinstance(exc, RateLimited)


def _num(x: float) -> str:
    """Print a number like JavaScript does: integers without a trailing ``.0``, huge
    ones in exponent form (``1e+300``, not 301 digits)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e21 else repr(float(x))


class CacheValueTooLarge(RkitError, ValueError):
    """An action cache result is larger than the cache's ``max_value_bytes``."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(
            f"Cache {name} value is {size} bytes, above max_value_bytes={limit}; not cached."
        )
        self.name = name
        self.size = size
        self.limit = limit


class SingleFlightFailed(RkitError, RuntimeError):
    """The single-flight run a ``fetch`` waited for failed in another process (callers
    in the winner's own process get the winner's exception itself)."""

    def __init__(self, name: str, error_type: str, message: str) -> None:
        super().__init__(
            f"cache {name}: the single-flight run this fetch waited for failed: "
            f"{error_type}: {message}"
        )
        self.name = name
        self.error_type = error_type
        self.message = message


class SessionConflict(RkitError, ValueError):
    """A presence session id already belongs to a live session of another room/user."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"sessionId {session_id} must be unique for a given room/user")
        self.session_id = session_id


class AggregateError(RkitError):
    """Base class of aggregate errors; ``code`` is the reference's error code."""

    code: ClassVar[str] = "AGGREGATE"


class KeyExistsError(AggregateError):
    """An insert found the same ``(key, id)`` already in the tree."""

    code = "AGG_KEY_EXISTS"


class KeyNotFoundError(AggregateError, KeyError):
    """A delete or replace did not find ``(key, id)`` in the tree."""

    code = "DELETE_MISSING_KEY"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else self.code


class OffsetOutOfRange(AggregateError, IndexError):
    """``at`` with an offset beyond the items in the bounds (or an empty tree)."""

    code = "AGG_OUT_OF_RANGE"


class PendingOperationsError(AggregateError):
    """Reserved for queued mode: operations are still waiting to be applied."""

    code = "PENDING_OPERATIONS"


class InvalidNodeSize(AggregateError, ConfigError):
    """``max_node_size`` must be even and at least 4."""

    code = "AGG_INVALID_NODE_SIZE"


class TreeAlreadyInitialized(AggregateError):
    """``init`` on a namespace whose tree already exists."""

    code = "AGG_TREE_EXISTS"


class TreeCorrupted(AggregateError):
    """``validate`` found a violated B-tree invariant."""

    code = "AGG_CORRUPT"


class KeyEncodingError(AggregateError, ConfigError, TypeError):
    """A key, id or namespace outside the value space of aggregate keys."""

    code = "AGG_KEY_ENCODING"


class FunctionNotRegistered(ActionNotFound):
    """A work function or ``on_complete`` handler is not registered in the App."""


class PayloadTooLarge(ConfigError):
    """Work arguments or ``on_complete`` context above the pool's ``max_args_bytes``."""


class NonRetryableError(RkitError):
    """Raise from work to fail at once (no further attempts); ``str(exc)`` is the error."""

    __rkit_non_retryable__ = True


def is_non_retryable_error(exc: BaseException) -> bool:
    """True for :class:`NonRetryableError` (and subclasses) or any exception whose
    ``__rkit_non_retryable__`` attribute is ``True``."""
    return (
        isinstance(exc, NonRetryableError) or getattr(exc, "__rkit_non_retryable__", False) is True
    )


class RunNotFound(RkitError, LookupError):
    """No action-retrier run with this id (never existed, cleaned up or expired)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run {run_id} not found")
        self.run_id = run_id


class RunNotCompleted(RkitError):
    """``cleanup`` of a run that is still in progress."""

    def __init__(self, run_id: str, message: str | None = None) -> None:
        super().__init__(message or f"Run {run_id} hasn't completed.")
        self.run_id = run_id


class CallbackPending(RunNotCompleted):
    """``cleanup`` of a completed run whose ``on_complete`` is not yet delivered:
    deleting it would drop the callback (delivery is at least once)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            run_id, f"Run {run_id} has completed but its on_complete is not delivered yet."
        )
