"""rkit: a Redis-native component runtime for asyncio services.

State lives in Redis and changes only through atomic Lua scripts; side effects run
on arq workers. Start with :class:`App`, then build components on it.
"""

from typing import TYPE_CHECKING, Any

from .action_cache import ActionCache, CacheStats, Hit, Miss, PutResult
from .aggregate import DirectAggregate, TableAggregate
from .app import Action, App
from .clock import Clock, ServerClock, TestClock
from .crons import (
    Cron,
    CronDetails,
    CronInfo,
    CronNameTaken,
    CronNotFound,
    Crons,
    CronSchedule,
    CronScheduler,
    Interval,
    IntervalSchedule,
    InvalidSchedule,
)
from .errors import (
    ActionNotFound,
    AggregateError,
    CacheValueTooLarge,
    CallbackPending,
    ConfigError,
    FunctionNotRegistered,
    InvalidNodeSize,
    KeyEncodingError,
    KeyExistsError,
    KeyNotFoundError,
    KeyTooLong,
    NonRetryableError,
    OffsetOutOfRange,
    PayloadTooLarge,
    PendingOperationsError,
    RateLimitCountTooLarge,
    RateLimited,
    RateLimitExceeded,
    RateLimitNotDefined,
    RkitError,
    RunNotCompleted,
    RunNotFound,
    SerializationError,
    SessionConflict,
    SingleFlightFailed,
    TreeAlreadyInitialized,
    TreeCorrupted,
    is_non_retryable_error,
    is_rate_limit_error,
)
from .integrations.workos import (
    ActionResponder,
    ActionVerdict,
    AmbiguousExternalId,
    AuthKit,
    AuthKitConfigError,
    AuthKitEvent,
    InvalidToken,
)
from .logs import JsonFormatter, configure_json_logs
from .operator import OperatorHooks, Panel, RowAction, Sample, Section, operator_hooks
from .integrations.resend import (
    EmailAlreadySent,
    EmailNotFound,
    InvalidEmail,
    Resend,
    ResendComponentError,
    ResendConfigError,
    TestModeViolation,
)
from .presence import Presence, PresenceEntry, PresenceSession
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
from .workflow import (
    RetryPolicy,
    StepCtx,
    StepFailed,
    WorkflowError,
    WorkflowManager,
    WorkflowStatus,
)
from .workpool import (
    DEFAULT_RETRY_BEHAVIOR,
    Canceled,
    Failed,
    Finished,
    NotFound,
    OnCompleteArgs,
    Pending,
    RetryBehavior,
    Running,
    Success,
    WorkId,
    Workpool,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .integrations.stripe import (
        CustomerResult,
        StripeNotConfigured,
        StripeSync,
        StripeSyncError,
        SubscriptionNotFound,
    )

# Stripe needs the optional ``stripe`` SDK (``pip install 'rkit[stripe]'``): its
# names are imported on first use, so ``import rkit`` works without it
_STRIPE_NAMES = frozenset(
    {
        "CustomerResult",
        "StripeNotConfigured",
        "StripeSync",
        "StripeSyncError",
        "SubscriptionNotFound",
    }
)


def __getattr__(name: str) -> Any:
    if name in _STRIPE_NAMES:
        from .integrations import stripe

        return getattr(stripe, name)
    raise AttributeError(f"module 'rkit' has no attribute {name!r}")


__all__ = [
    "DAY",
    "DEFAULT_RETRY_BEHAVIOR",
    "HOUR",
    "MINUTE",
    "SECOND",
    "WEEK",
    "Action",
    "ActionCache",
    "ActionNotFound",
    "ActionResponder",
    "ActionVerdict",
    "AggregateError",
    "AmbiguousExternalId",
    "App",
    "AuthKit",
    "AuthKitConfigError",
    "AuthKitEvent",
    "CacheStats",
    "CacheValueTooLarge",
    "CalculatedState",
    "CallbackPending",
    "Canceled",
    "Clock",
    "ConfigError",
    "CustomerResult",
    "Cron",
    "CronDetails",
    "CronInfo",
    "CronNameTaken",
    "CronNotFound",
    "CronSchedule",
    "CronScheduler",
    "Crons",
    "DirectAggregate",
    "EmailAlreadySent",
    "EmailNotFound",
    "Failed",
    "Finished",
    "FixedWindow",
    "FunctionNotRegistered",
    "Hit",
    "Interval",
    "IntervalSchedule",
    "InvalidEmail",
    "InvalidNodeSize",
    "InvalidToken",
    "JsonFormatter",
    "InvalidSchedule",
    "KeyEncodingError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyTooLong",
    "LimitRequest",
    "Miss",
    "NonRetryableError",
    "NotFound",
    "OffsetOutOfRange",
    "OnCompleteArgs",
    "OperatorHooks",
    "Panel",
    "PayloadTooLarge",
    "Pending",
    "PendingOperationsError",
    "Presence",
    "PresenceEntry",
    "PresenceSession",
    "PutResult",
    "RateLimitConfig",
    "RateLimitCountTooLarge",
    "RateLimitExceeded",
    "RateLimitNotDefined",
    "RateLimitResult",
    "RateLimitValue",
    "RateLimited",
    "RateLimiter",
    "Resend",
    "ResendComponentError",
    "ResendConfigError",
    "RetryBehavior",
    "RetryPolicy",
    "RkitError",
    "RowAction",
    "RunNotCompleted",
    "RunNotFound",
    "Running",
    "Sample",
    "Section",
    "SerializationError",
    "ServerClock",
    "SessionConflict",
    "SingleFlightFailed",
    "StepCtx",
    "StepFailed",
    "StripeNotConfigured",
    "StripeSync",
    "StripeSyncError",
    "SubscriptionNotFound",
    "Success",
    "TableAggregate",
    "TestClock",
    "TestModeViolation",
    "TokenBucket",
    "TreeAlreadyInitialized",
    "TreeCorrupted",
    "WorkId",
    "WorkflowError",
    "WorkflowManager",
    "WorkflowStatus",
    "Workpool",
    "__version__",
    "calculate_rate_limit",
    "configure_json_logs",
    "is_non_retryable_error",
    "is_rate_limit_error",
    "operator_hooks",
]
