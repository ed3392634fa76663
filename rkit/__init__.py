"""rkit: a Redis-native component runtime for asyncio services.

State lives in Redis and changes only through atomic Lua scripts; side effects run
on arq workers. Start with :class:`App`, then build components on it.
"""

from .action_cache import ActionCache, CacheStats, Hit, Miss, PutResult
from .aggregate import DirectAggregate, TableAggregate
from .app import Action, App
from .clock import Clock, ServerClock, TestClock
from .errors import (
    ActionNotFound,
    AggregateError,
    CacheValueTooLarge,
    ConfigError,
    InvalidNodeSize,
    KeyEncodingError,
    KeyExistsError,
    KeyNotFoundError,
    OffsetOutOfRange,
    PendingOperationsError,
    RateLimitCountTooLarge,
    RateLimited,
    RateLimitExceeded,
    RateLimitNotDefined,
    RkitError,
    SerializationError,
    SessionConflict,
    TreeAlreadyInitialized,
    TreeCorrupted,
    is_rate_limit_error,
)
from .presence import Presence, PresenceEntry
from .rate_limit import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    WEEK,
    CalculatedState,
    FixedWindow,
    LimitRequest,
    RateLimitConfig,
    RateLimiter,
    RateLimitResult,
    RateLimitValue,
    TokenBucket,
    calculate_rate_limit,
)

__version__ = "0.1.0"

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "WEEK",
    "Action",
    "ActionCache",
    "ActionNotFound",
    "AggregateError",
    "App",
    "CacheStats",
    "CacheValueTooLarge",
    "CalculatedState",
    "Clock",
    "ConfigError",
    "DirectAggregate",
    "FixedWindow",
    "Hit",
    "InvalidNodeSize",
    "KeyEncodingError",
    "KeyExistsError",
    "KeyNotFoundError",
    "LimitRequest",
    "Miss",
    "OffsetOutOfRange",
    "PendingOperationsError",
    "Presence",
    "PresenceEntry",
    "PutResult",
    "RateLimitConfig",
    "RateLimitCountTooLarge",
    "RateLimitExceeded",
    "RateLimitNotDefined",
    "RateLimitResult",
    "RateLimitValue",
    "RateLimited",
    "RateLimiter",
    "RkitError",
    "SerializationError",
    "ServerClock",
    "SessionConflict",
    "TableAggregate",
    "TestClock",
    "TokenBucket",
    "TreeAlreadyInitialized",
    "TreeCorrupted",
    "__version__",
    "calculate_rate_limit",
    "is_rate_limit_error",
]
