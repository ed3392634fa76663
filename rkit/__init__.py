"""rkit: a Redis-native component runtime for asyncio services.

State lives in Redis and changes only through atomic Lua scripts; side effects run
on arq workers. Start with :class:`App`, then build components on it.
"""

from .action_cache import ActionCache, CacheStats, Hit, Miss, PutResult
from .app import Action, App
from .clock import Clock, ServerClock, TestClock
from .errors import (
    ActionNotFound,
    CacheValueTooLarge,
    ConfigError,
    RateLimitCountTooLarge,
    RateLimited,
    RateLimitExceeded,
    RateLimitNotDefined,
    RkitError,
    SerializationError,
    SessionConflict,
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
    "App",
    "CacheStats",
    "CacheValueTooLarge",
    "CalculatedState",
    "Clock",
    "ConfigError",
    "FixedWindow",
    "Hit",
    "LimitRequest",
    "Miss",
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
    "TestClock",
    "TokenBucket",
    "__version__",
    "calculate_rate_limit",
    "is_rate_limit_error",
]
