"""Presence: who is in a room right now, kept alive by heartbeats.

Each client connection is a *session* that heartbeats every ``interval`` ms; a user is
online in a room while at least one of their sessions there is alive (deadline =
last heartbeat + 2.5 x interval). Users who leave stay listed as offline with the
time they were last seen. Every room operation first ends the room's overdue
sessions (lazy expiry), so lists are exact without waiting for the sweeper; the
sweeper ends sessions in rooms nobody touches and delivers their ``leave`` events.
Join/leave/update/remove events go to a per-room Redis Stream from inside the
script that makes the transition. Spec: presence.md.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from . import codec, connections, keys, scripts
from .clock import MAX_DURATION_MS, argv_now
from .errors import ConfigError, SessionConflict
from .keys import MAX_KEY_PART_BYTES, BoundedCache, check_max_bytes, check_part, str_bytes
from .registry import Cron

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "DEFAULT_LIMIT",
    "DisconnectResult",
    "HeartbeatResult",
    "Presence",
    "PresenceEntry",
    "PresenceEvent",
    "PresenceSession",
    "RoomStats",
    "SweepStats",
    "UserRoomEntry",
    "sweep_all_job",
]

logger = logging.getLogger("rkit.presence")

DEFAULT_LIMIT = 104
MAX_LIMIT = 10_000
"""Largest ``limit`` of a list and ``count`` of a page (rooms, events, batches)."""
MAX_CURSOR = 2**63 - 1
"""Largest ``rooms`` cursor: Redis SCAN cursors are below the hash table size, far
under 2**63 (fakeredis refuses larger ones, Redis anything beyond 2**64 - 1)."""
_MAX_U64 = 2**64 - 1
DEFAULT_INTERVAL_MS = 10_000.0
DAY_MS = 86_400_000.0
EventType = Literal["join", "leave", "update", "remove"]

_ROOM_KEYS = ("room", "users", "on", "off", "sess", "dl", "tok", "events")
_OPS = (
    "heartbeat",
    "disconnect",
    "list",
    "user_probe",
    "session_probe",
    "update",
    "remove_user",
    "remove_room_batch",
    "sweep",
    "rotate",
    "room_stats",
    "due_lower",
    "owner_claim",
    "owner_release",
)


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    room_token: str
    session_token: str


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    user_id: str
    online: bool
    last_disconnected: float
    """When the user last went offline (ms); 0 while online."""
    data: Any | None = None


@dataclass(frozen=True, slots=True)
class UserRoomEntry:
    room_id: str
    online: bool
    last_disconnected: float


@dataclass(frozen=True, slots=True)
class DisconnectResult:
    room_id: str
    user_id: str
    session_id: str
    went_offline: bool


@dataclass(frozen=True, slots=True)
class SweepStats:
    rooms: int
    sessions_ended: int
    users_offline: int
    users_removed: int = 0


@dataclass(frozen=True, slots=True)
class RoomStats:
    room_id: str
    online: int
    users: int
    sessions: int


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """One entry of a room's event stream (``id`` is the stream id: resume after it)."""

    id: str
    room_id: str
    type: EventType
    user_id: str
    at: float


# -- validation -------------------------------------------------------------------------


def _check_id(value: Any, what: str, max_bytes: int = MAX_KEY_PART_BYTES) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    return check_part(value, what, max_bytes)


def _check_int(value: Any, what: str, minimum: int, maximum: int = MAX_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{what} must be an int in [{minimum}, {maximum}], got {value!r}")
    return value


def _check_limit(limit: Any) -> int:
    return _check_int(limit, "limit", 0)


def _check_positive(value: Any, what: str, maximum: float = MAX_DURATION_MS) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum
    ):
        raise ConfigError(f"{what} must be a number in (0, {maximum:.0f}], got {value!r}")
    return float(value)


_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")


def _check_stream_id(value: Any, what: str, *, allow_end: bool = False) -> str:
    """A Redis stream id (``ms`` or ``ms-seq``, each an unsigned 64-bit integer), or
    ``"$"`` (the current end) where ``allow_end``."""
    if not isinstance(value, str) or not (allow_end and value == "$"):
        m = _STREAM_ID.match(value) if isinstance(value, str) else None
        if m is None or any(int(g) > _MAX_U64 for g in m.groups() if g is not None):
            raise ConfigError(
                f"{what} must be a stream id such as '0' or '1700000040000-0', got {value!r}"
            )
    return str(value)


def _default_secret() -> str:
    return secrets.token_hex(16)


def _split_token(
    token: Any, kind: str, max_bytes: int = MAX_KEY_PART_BYTES
) -> tuple[str, str] | None:
    """``(room_id, secret)`` of a ``r1.``/``s1.`` token, or ``None`` if malformed
    (a room id over ``max_bytes`` included: such a room cannot exist)."""
    if not isinstance(token, str) or len(token) > 2 * max_bytes + 4096:
        return None
    parts = token.split(".", 2)
    if len(parts) != 3 or parts[0] != kind or not parts[1] or not parts[2]:
        return None
    try:
        room_id = keys.decode(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    if not room_id or keys.encode(room_id) != parts[1]:  # canonical encodings only
        return None
    if len(room_id.encode("utf-8")) > max_bytes:
        return None
    return room_id, parts[2]


def _ended(raw: Sequence[str]) -> list[tuple[str, str, str]]:
    """The (session id, user id, secret) triples a room script reports as ended."""
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]


# -- the component ----------------------------------------------------------------------


class Presence:
    """Presence rooms of one App (``name`` separates independent instances).

    ``default_interval_ms`` is the heartbeat interval when a call gives none; a
    session times out ``timeout_multiplier`` x interval after its last heartbeat.
    ``events`` writes join/leave/update/remove entries to a per-room stream
    (``MAXLEN ~ events_maxlen``, idle streams expire after ``events_ttl_ms``).
    ``offline_retention_ms`` lets the sweeper delete users offline for longer
    (default ``None``: keep them, like the reference). ``token_factory`` makes the
    secret part of room and session tokens. Room, user and session ids (and ``name``)
    are at most ``max_id_bytes`` UTF-8 bytes (default 1 KiB), else ``KeyTooLong``.
    """

    def __init__(
        self,
        app: App,
        name: str = "default",
        *,
        token_factory: Callable[[], str] | None = None,
        default_interval_ms: float = DEFAULT_INTERVAL_MS,
        timeout_multiplier: float = 2.5,
        lazy_expiry: bool = True,
        events: bool = True,
        events_maxlen: int = 1000,
        events_ttl_ms: float = DAY_MS,
        offline_retention_ms: float | None = None,
        remove_batch: int = 500,
        claim_lease_ms: float = 10_000,
        max_id_bytes: int = MAX_KEY_PART_BYTES,
    ) -> None:
        self.max_id_bytes = check_max_bytes(max_id_bytes, "max_id_bytes")
        if not isinstance(name, str) or not name:
            raise ConfigError("presence name must be a non-empty string")
        check_part(name, "presence name", self.max_id_bytes)
        if token_factory is not None and not callable(token_factory):
            raise ConfigError("token_factory must be a callable returning a str")
        _check_int(events_maxlen, "events_maxlen", 1, 1_000_000)
        _check_int(remove_batch, "remove_batch", 1)
        self.app = app
        self.name = name
        self.token_factory = token_factory or _default_secret
        self.default_interval_ms = _check_positive(default_interval_ms, "default_interval_ms")
        self.timeout_multiplier = _check_positive(timeout_multiplier, "timeout_multiplier", 1e6)
        self._timeout(self.default_interval_ms, "default_interval_ms")
        self.lazy_expiry = bool(lazy_expiry)
        self.events_enabled = bool(events)
        self.events_maxlen = events_maxlen
        self.events_ttl_ms = _check_positive(events_ttl_ms, "events_ttl_ms")
        self.offline_retention_ms = (
            None
            if offline_retention_ms is None
            else _check_positive(offline_retention_ms, "offline_retention_ms")
        )
        self.remove_batch = remove_batch
        self.claim_lease_ms = max(1.0, _check_positive(claim_lease_ms, "claim_lease_ms"))
        stem = app.keys.tag("presence", name)
        self.due_key = f"{stem}:due"
        self.rooms_key = f"{stem}:rooms"
        self.lock_key = f"{stem}:sweeper"
        self._s = {op: scripts.load("presence", op) for op in _OPS}
        # room id -> its 8 keys: bounded by bytes (ids come from users)
        self._room_keys: BoundedCache[str, tuple[str, ...]] = BoundedCache(65_536, 16 << 20)
        self._head_tail = (
            str(events_maxlen if self.events_enabled else 0),
            repr(self.events_ttl_ms),
            "1" if self.lazy_expiry else "0",
        )
        app.components.add("presence", name, self)
        app.components.add_cron(Cron("presence_sweep", sweep_all, second=EVERY_SECOND))

    # -- keys ----------------------------------------------------------------------------

    def room_keys(self, room_id: str) -> tuple[str, ...]:
        """The eight keys of one room (one hash tag: one Cluster slot)."""
        found = self._room_keys.get(room_id)
        if found is None:
            stem = self.app.keys.tag("presence", self.name, room_id)
            found = tuple(f"{stem}:{k}" for k in _ROOM_KEYS)
            self._room_keys.put(room_id, found, str_bytes(room_id, found))
        return found

    def _id(self, value: Any, what: str) -> str:
        """A room, user or session id: a non-empty str of at most ``max_id_bytes``."""
        return _check_id(value, what, self.max_id_bytes)

    def _timeout(self, interval: float, what: str) -> str:
        """The session timeout of ``interval`` as ARGV (``ConfigError`` beyond the
        largest duration)."""
        timeout = interval * self.timeout_multiplier
        if not timeout <= MAX_DURATION_MS:
            raise ConfigError(
                f"{what} {interval!r} x timeout_multiplier {self.timeout_multiplier!r} is "
                f"above {MAX_DURATION_MS:.0f} ms"
            )
        return repr(timeout)

    def events_key(self, room_id: str) -> str:
        return self.room_keys(room_id)[7]

    def _owner_key(self, session_id: str) -> str:
        return self.app.keys.tag("presence.sid", self.name, session_id)

    def _user_rooms_key(self, user_id: str) -> str:
        return self.app.keys.tag("presence.user", self.name, user_id) + ":rooms"

    @staticmethod
    def _owner_value(room_id: str, user_id: str, secret: str) -> str:
        return f"{keys.encode(room_id)}.{keys.encode(user_id)}.{secret}"

    def _new_secret(self) -> str:
        secret = self.token_factory()
        if not isinstance(secret, str) or not secret:
            raise ConfigError("token_factory must return a non-empty str")
        return secret

    # -- script plumbing -----------------------------------------------------------------

    def _head(self, now: float | None = None) -> tuple[str, ...]:
        t = argv_now(self.app.clock) if now is None else repr(float(now))
        return (t, *self._head_tail)

    async def _room(
        self, op: str, room_id: str, *args: str, now: float | None = None
    ) -> builtins.list[Any]:
        """Run a room script; release the owner keys of the sessions it ended.

        Returns the script's reply after the ended-sessions element."""
        res = await self._s[op](self.app.redis, self.room_keys(room_id), (*self._head(now), *args))
        if res[0]:
            await self._release(room_id, _ended(res[0]))
        return list(res[1:])

    async def _many(
        self, calls: Sequence[tuple[str, Sequence[str], Sequence[str]]]
    ) -> builtins.list[Any]:
        """Run single-key helper scripts (each its own slot): pipelined on standalone
        Redis, concurrently on Cluster."""
        if not calls:
            return []
        redis = self.app.redis
        if isinstance(redis, RedisCluster):
            return list(await asyncio.gather(*(self._s[op](redis, k, a) for op, k, a in calls)))
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for op, k, a in calls:
                    pipe.evalsha(self._s[op].sha, len(k), *k, *a)
                return list(await pipe.execute())
        except NoScriptError:  # script cache flushed: these helpers are idempotent
            pass
        return list(await asyncio.gather(*(self._s[op](redis, k, a) for op, k, a in calls)))

    async def _release(self, room_id: str, ended: Sequence[tuple[str, str, str]]) -> None:
        await self._many(
            [
                (
                    "owner_release",
                    (self._owner_key(sid),),
                    (self._owner_value(room_id, user, secret),),
                )
                for sid, user, secret in ended
            ]
        )

    async def _due_lower(self, room_id: str, t: str) -> None:
        if t:
            await self._s["due_lower"](self.app.redis, (self.due_key,), (room_id, t))

    async def _settle_due(self, room_id: str, earliest: str, *, room_gone: bool = False) -> None:
        """After an operation that may have ended the room's last session: drop the
        room from the sweeper's due index when it has none, then put it back if a
        concurrent heartbeat created one meanwhile (the index stays a superset of the
        rooms with sessions). With an offline retention a room with users stays due:
        the sweeper re-arms it for its oldest offline user."""
        if earliest:
            return  # sessions left: their due entry stays (at worst early)
        if self.offline_retention_ms is not None and not room_gone:
            return
        redis = self.app.redis
        await redis.zrem(self.due_key, room_id)
        first = await redis.zrange(self.room_keys(room_id)[5], 0, 0, withscores=True)
        if first:
            await self._due_lower(room_id, repr(float(first[0][1])))

    async def _unindex(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Drop (room, user) pairs from the users' room indexes, then put back any that
        a concurrent heartbeat re-created (the index stays a superset)."""
        redis: Any = self.app.redis
        for room, user in pairs:
            await redis.srem(self._user_rooms_key(user), room)
        for room, user in pairs:
            if await redis.hexists(self.room_keys(room)[1], user):
                await redis.sadd(self._user_rooms_key(user), room)

    # -- heartbeat -----------------------------------------------------------------------

    async def heartbeat(
        self, room_id: str, user_id: str, session_id: str, interval: float | None = None
    ) -> HeartbeatResult:
        """Create or refresh ``session_id`` of ``user_id`` in ``room_id``; the session
        ends unless another heartbeat comes within ``timeout_multiplier x interval``.

        Raises :class:`SessionConflict` if the session id belongs to another room/user.
        """
        self._id(room_id, "room_id")
        self._id(user_id, "user_id")
        self._id(session_id, "session_id")
        iv = self.default_interval_ms if interval is None else _check_positive(interval, "interval")
        timeout = self._timeout(iv, "interval")
        base = (user_id, session_id, timeout)
        # steady state: one script call that only refreshes an existing session
        res = await self._room("heartbeat", room_id, *base, "bump", "", "")
        if res[0] == "claim":  # a new session (this also lowers the due index)
            res = await self._create(
                room_id, user_id, session_id, base, self._new_secret(), self._new_secret()
            )
        elif res[0] == "ok" and res[6] == "1":  # deadline shortened: wake the sweeper
            await self._due_lower(room_id, res[5])
        if res[0] == "conflict":
            raise SessionConflict(session_id)
        r_secret, s_secret = res[1], res[2]
        enc = keys.encode(room_id)
        return HeartbeatResult(f"r1.{enc}.{r_secret}", f"s1.{enc}.{s_secret}")

    async def _create(
        self,
        room_id: str,
        user_id: str,
        session_id: str,
        base: tuple[str, ...],
        room_secret: str,
        secret: str,
    ) -> builtins.list[Any]:
        """Claim the session id, index the room, create the session, then make the
        owner key final (naming the session that exists) and lower the due index."""
        owner_key = (self._owner_key(session_id),)
        mine = self._owner_value(room_id, user_id, secret)
        claim = await self._claim(session_id, mine)
        # on failure give back only our own pending claim, never a concurrent one
        release = (claim,) if claim == "?" + mine else ("",)
        try:
            redis = self.app.redis
            if isinstance(redis, RedisCluster):
                await redis.sadd(self._user_rooms_key(user_id), room_id)
                await redis.sadd(self.rooms_key, room_id)
            else:
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.sadd(self._user_rooms_key(user_id), room_id)
                    pipe.sadd(self.rooms_key, room_id)
                    await pipe.execute()
            res = await self._room("heartbeat", room_id, *base, "create", room_secret, secret)
        except BaseException:
            await self._s["owner_release"](self.app.redis, owner_key, release)
            raise
        if res[0] != "ok":
            await self._s["owner_release"](self.app.redis, owner_key, release)
            return res
        final = self._owner_value(room_id, user_id, res[2])
        await self._many(
            [
                ("owner_claim", owner_key, (final, claim, "")),
                ("due_lower", (self.due_key,), (room_id, res[5])),
            ]
        )
        return res

    async def _claim(self, session_id: str, mine: str) -> str:
        """Take the global owner key of ``session_id`` with a pending lease for
        ``mine`` (``"?" + value``), or raise :class:`SessionConflict` when another
        room/user holds it with a live (or being created) session. Returns the
        pending value that the final owner value may replace."""
        owner_key = (self._owner_key(session_id),)
        pending = "?" + mine
        lease = str(int(self.claim_lease_ms))
        ours = mine.split(".", 2)[:2]
        stale = ""
        for _attempt in range(16):
            res = await self._s["owner_claim"](self.app.redis, owner_key, (pending, stale, lease))
            if res[0] == "ok":
                return pending
            current: str = res[1]
            is_pending = current.startswith("?")
            parts = current.lstrip("?").split(".", 2)
            if parts[:2] == ours:
                if is_pending:
                    return current  # a concurrent first heartbeat of this same session
                stale = current  # an earlier incarnation whose release is pending
                continue
            if is_pending:
                raise SessionConflict(session_id)  # being created elsewhere right now
            try:
                other_room = keys.decode(parts[0]) or ""
                other_user = keys.decode(parts[1]) or ""
            except (ValueError, UnicodeDecodeError, IndexError):
                stale = current  # unreadable: cannot name a live session
                continue
            if other_room and other_user:
                live = await self._room("session_probe", other_room, session_id, other_user)
                if live[0] == "live":
                    raise SessionConflict(session_id)
            stale = current
        raise RedisError(f"could not claim presence session id {session_id!r} (contention)")

    # -- reads ---------------------------------------------------------------------------

    async def _list(
        self, room_id: str, secret: str | None, online_only: bool, limit: int
    ) -> builtins.list[PresenceEntry]:
        res = await self._room(
            "list",
            room_id,
            "0" if secret is None else "1",
            secret or "",
            "1" if online_only else "0",
            str(limit),
        )
        flat = res[0]
        return [
            PresenceEntry(
                flat[i],
                flat[i + 1] == "1",
                float(flat[i + 2]),
                codec.loads(flat[i + 3]) if flat[i + 3] else None,
            )
            for i in range(0, len(flat), 4)
        ]

    async def list(
        self, room_token: str, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[PresenceEntry]:
        """The room's users in spec order (online by first join, then offline most
        recently left first), guarded by the room token. Bad tokens give ``[]``."""
        _check_limit(limit)
        parsed = _split_token(room_token, "r1", self.max_id_bytes)
        if parsed is None or limit == 0:
            return []
        return await self._list(parsed[0], parsed[1], False, limit)

    async def list_room(
        self, room_id: str, online_only: bool = False, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[PresenceEntry]:
        """Like :meth:`list` without a token, for trusted server code."""
        self._id(room_id, "room_id")
        _check_limit(limit)
        if limit == 0:
            return []
        return await self._list(room_id, None, online_only, limit)

    async def list_user(
        self, user_id: str, online_only: bool = False, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[UserRoomEntry]:
        """Every room the user is in: online rooms by id ascending, then offline rooms
        by id descending, online first up to ``limit``."""
        self._id(user_id, "user_id")
        _check_limit(limit)
        if limit == 0:
            return []
        index = self._user_rooms_key(user_id)
        redis: Any = self.app.redis
        rooms = sorted(await redis.smembers(index))
        probes = await asyncio.gather(*(self._room("user_probe", r, user_id) for r in rooms))
        online: builtins.list[UserRoomEntry] = []
        offline: builtins.list[UserRoomEntry] = []
        gone: builtins.list[str] = []
        for room, res in zip(rooms, probes, strict=True):
            if not res:
                gone.append(room)
            elif res[0] == "1":
                online.append(UserRoomEntry(room, True, float(res[1])))
            else:
                offline.append(UserRoomEntry(room, False, float(res[1])))
        if gone:
            await self._unindex([(room, user_id) for room in gone])
        out = online[:limit]
        if not online_only:
            out += sorted(offline, key=lambda e: e.room_id, reverse=True)[: limit - len(out)]
        return out

    # -- writes --------------------------------------------------------------------------

    async def update_room_user(self, room_id: str, user_id: str, data: Any | None = None) -> bool:
        """Replace the user's per-room ``data`` (``None`` clears it). ``False`` (and
        no write) when the user has no record in the room."""
        self._id(room_id, "room_id")
        self._id(user_id, "user_id")
        encoded = "" if data is None else codec.dumps(data, what="presence data")
        res = await self._room("update", room_id, user_id, "0" if data is None else "1", encoded)
        if res[0] == "0":
            logger.warning("update_room_user: %r has no presence record in %r", user_id, room_id)
        return bool(res[0] == "1")

    async def disconnect(self, session_token: str) -> DisconnectResult | None:
        """Graceful leave of the token's session. Unknown or forged tokens: ``None``."""
        parsed = _split_token(session_token, "s1", self.max_id_bytes)
        if parsed is None:
            return None
        room_id, secret = parsed
        earliest, *res = await self._room("disconnect", room_id, secret)
        await self._settle_due(room_id, earliest)
        if len(res) < 3:
            if res:
                logger.warning("disconnect: deleted an orphan session token in %r", room_id)
            return None
        return DisconnectResult(room_id, res[0], res[1], res[2] == "1")

    async def remove_room_user(self, room_id: str, user_id: str) -> bool:
        """Delete the user's record and sessions in the room (not a ban: a later
        heartbeat joins again). ``False`` if there was none."""
        self._id(room_id, "room_id")
        self._id(user_id, "user_id")
        earliest, *res = await self._room("remove_user", room_id, user_id)
        await self._settle_due(room_id, earliest)
        if res[0] != "1":
            logger.warning("remove_room_user: %r has no presence record in %r", user_id, room_id)
            return False
        await self._unindex([(room_id, user_id)])
        return True

    async def remove_room(self, room_id: str) -> bool:
        """Delete every user, session and token of the room, in batches; the next
        heartbeat mints a new room token. ``False`` if the room did not exist."""
        self._id(room_id, "room_id")
        existed = False
        while True:
            earliest, removed, more, was = await self._room(
                "remove_room_batch", room_id, str(self.remove_batch)
            )
            existed = existed or was == "1"
            await self._unindex([(room_id, u) for u in removed])
            if more == "done":
                break
        redis: Any = self.app.redis
        await redis.srem(self.rooms_key, room_id)
        await self._settle_due(room_id, earliest, room_gone=True)
        return existed

    async def rotate_room_token(self, room_id: str) -> str | None:
        """Give the room a new token (old ones list ``[]``); ``None`` for no such room."""
        self._id(room_id, "room_id")
        res = await self._room("rotate", room_id, self._new_secret())
        return f"r1.{keys.encode(room_id)}.{res[0]}" if res else None

    # -- admin ---------------------------------------------------------------------------

    async def rooms(
        self, *, cursor: int = 0, count: int = 100
    ) -> tuple[builtins.list[RoomStats], int]:
        """A page of rooms with counts (after lazy expiry) and the next cursor (0 = end).
        ``cursor`` is a Redis SCAN cursor (0 to 2**63 - 1), ``count`` at most 10,000."""
        _check_int(cursor, "cursor", 0, MAX_CURSOR)
        _check_int(count, "count", 1)
        nxt, members = await self.app.redis.sscan(self.rooms_key, cursor, count=count)
        out = []
        for room in sorted(members):
            online, users, sessions = await self._room("room_stats", room)
            if int(users) == 0 and int(sessions) == 0:
                continue
            out.append(RoomStats(room, int(online), int(users), int(sessions)))
        return out, int(nxt)

    # -- sweeper -------------------------------------------------------------------------

    async def sweep(
        self,
        *,
        now: float | None = None,
        max_rooms: int | None = None,
        max_sessions_per_room: int = 64,
        budget_ms: float = 500,
        batch: int = 100,
    ) -> SweepStats:
        """Sweep the rooms whose earliest deadline has passed, ``batch`` at a time,
        until none is due (or ``max_rooms`` rooms were swept, or ``budget_ms`` of
        wall-clock time went by: the rest is left for the next pass): end overdue
        sessions (``leave`` events), apply the offline retention, re-arm the index."""
        cap = None if max_rooms is None else _check_int(max_rooms, "max_rooms", 1, 2**62)
        _check_int(max_sessions_per_room, "max_sessions_per_room", 1)
        _check_int(batch, "batch", 1)
        budget = _check_positive(budget_ms, "budget_ms")
        at = await self.app.server_time() if now is None else _check_positive(now, "now", 1e15)
        deadline = time.monotonic() + budget / 1000
        redis: Any = self.app.redis  # redis-py types some async replies as `T | Awaitable[T]`
        total = SweepStats(0, 0, 0, 0)
        seen: set[str] = set()
        while cap is None or total.rooms < cap:
            want = batch if cap is None else min(batch, cap - total.rooms)
            rooms = [
                r
                for r in await redis.zrangebyscore(
                    self.due_key, "-inf", repr(at), start=0, num=want
                )
                if r not in seen
            ]
            if not rooms:
                break  # nothing due (or only rooms this pass already swept)
            for room in rooms:
                seen.add(room)
                one = await self._sweep_room(room, at, max_sessions_per_room)
                total = SweepStats(
                    total.rooms + 1,
                    total.sessions_ended + one.sessions_ended,
                    total.users_offline + one.users_offline,
                    total.users_removed + one.users_removed,
                )
                if time.monotonic() >= deadline:
                    return total
        return total

    async def _sweep_room(self, room: str, at: float, max_sessions: int) -> SweepStats:
        redis: Any = self.app.redis  # redis-py types some async replies as `T | Awaitable[T]`
        ended = offline = removed_n = 0
        retention = "" if self.offline_retention_ms is None else repr(self.offline_retention_ms)
        while True:
            res = await self._s["sweep"](
                redis, self.room_keys(room), (*self._head(at), str(max_sessions), retention)
            )
            done = _ended(res[0])
            if done:
                await self._release(room, done)
            ended += len(done)
            offline += int(res[1])
            next_due, more, removed = res[2], res[3], res[4]
            removed_n += len(removed)
            await self._unindex([(room, u) for u in removed])
            if more == "done":
                break
        if next_due:
            await redis.zadd(self.due_key, {room: float(next_due)})
        else:
            await redis.zrem(self.due_key, room)
            if not await redis.exists(self.room_keys(room)[0]):
                await redis.srem(self.rooms_key, room)
        # re-arm: a heartbeat may have added a session after the script ran
        first = await redis.zrange(self.room_keys(room)[5], 0, 0, withscores=True)
        if first:
            await self._due_lower(room, repr(float(first[0][1])))
        return SweepStats(1, ended, offline, removed_n)

    async def run_sweeper(self, stop: asyncio.Event, *, poll_ms: float = 1_000) -> None:
        """Sweep until ``stop`` is set: after each pass, sleep until the earliest due
        room or ``poll_ms``. A short Redis lock keeps one sweeper active at a time;
        Redis errors are logged and retried."""
        poll = _check_positive(poll_ms, "poll_ms")
        token = uuid.uuid4().hex
        lock_ms = max(int(poll * 10), 10_000)
        while not stop.is_set():
            wait = poll
            try:
                redis = self.app.redis
                if await redis.set(self.lock_key, token, nx=True, px=lock_ms) or (
                    await redis.get(self.lock_key) == token
                ):
                    await redis.pexpire(self.lock_key, lock_ms)
                    await self.sweep()
                    first = await redis.zrange(self.due_key, 0, 0, withscores=True)
                    if first:
                        gap = float(first[0][1]) - await self.app.server_time()
                        wait = min(poll, max(gap, 1.0))
            except RedisError:
                logger.exception("presence sweeper %s: Redis error; retrying", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait / 1000)
        with contextlib.suppress(RedisError):
            if await self.app.redis.get(self.lock_key) == token:
                await self.app.redis.delete(self.lock_key)

    # -- events --------------------------------------------------------------------------

    @staticmethod
    def _event(room_id: str, entry_id: str, fields: dict[str, str]) -> PresenceEvent:
        return PresenceEvent(
            entry_id,
            room_id,
            fields["type"],  # type: ignore[arg-type]
            fields["user"],
            float(fields["at"]),
        )

    async def read_events(
        self, room_id: str, *, after: str = "0", count: int = 1000
    ) -> builtins.list[PresenceEvent]:
        """Events of the room recorded after stream id ``after`` (oldest first; at
        most ``count``, up to 10,000)."""
        self._id(room_id, "room_id")
        _check_stream_id(after, "after")
        _check_int(count, "count", 1)
        if after == f"{_MAX_U64}-{_MAX_U64}":
            return []  # nothing can come after the largest id (Redis refuses "(max")
        entries = await self.app.redis.xrange(
            self.events_key(room_id), min=f"({after}" if after != "0" else "-", count=count
        )
        return [self._event(room_id, eid, fields) for eid, fields in entries]

    async def _batches(
        self, room_id: str, after: str, block_ms: int
    ) -> AsyncIterator[builtins.list[PresenceEvent]]:
        """Batches of new stream entries after ``after`` ("$" = the current end)."""
        key = self.events_key(room_id)
        redis = self.app.redis
        if after == "$":
            last = await redis.xrevrange(key, count=1)
            after = last[0][0] if last else "0-0"
        block = connections.max_block_ms(redis, block_ms)  # below the socket timeout
        while True:
            got = await redis.xread({key: after}, block=block, count=1000)
            if got:
                batch = [self._event(room_id, eid, fields) for eid, fields in got[0][1]]
                after = batch[-1].id
                yield batch

    async def events(
        self, room_id: str, *, after: str = "$", block_ms: int = 30_000
    ) -> AsyncIterator[PresenceEvent]:
        """Follow the room's events (``after="$"``: only new ones; ``"0"``: from the
        start of the retained stream; or a stream id). Each read blocks up to
        ``block_ms`` (0 = no limit); runs until the consumer stops iterating."""
        self._id(room_id, "room_id")
        _check_stream_id(after, "after", allow_end=True)
        _check_int(block_ms, "block_ms", 0, int(MAX_DURATION_MS))
        async for batch in self._batches(room_id, after, block_ms):
            for event in batch:
                yield event

    async def watch(
        self, room_token: str, *, block_ms: int = 30_000
    ) -> AsyncIterator[builtins.list[PresenceEntry]]:
        """Yield ``list(room_token)`` now and again after each batch of room events
        (a live view without polling). A malformed token yields ``[]`` once."""
        _check_int(block_ms, "block_ms", 0, int(MAX_DURATION_MS))
        parsed = _split_token(room_token, "r1", self.max_id_bytes)
        yield await self.list(room_token)
        if parsed is None:
            return
        async for _batch in self._batches(parsed[0], "$", block_ms):
            yield await self.list(room_token)

    # -- client helper -------------------------------------------------------------------

    def session(
        self,
        room_id: str,
        user_id: str,
        *,
        interval: float = DEFAULT_INTERVAL_MS,
        session_id: str | None = None,
        on_error: Callable[[Exception], Any] | None = None,
    ) -> PresenceSession:
        """A heartbeating session for ``async with`` (the Python analogue of the hook);
        ``on_error(exc)`` hears about failed timer heartbeats."""
        return PresenceSession(
            self, room_id, user_id, interval=interval, session_id=session_id, on_error=on_error
        )


class PresenceSession:
    """Heartbeats one session on a timer: immediately on enter and resume, then every
    ``interval`` ms; disconnects on exit and pause. Heartbeats never overlap; a
    failing timer heartbeat (any error: Redis down, ``SessionConflict``...) keeps the
    last good tokens, goes to ``on_error(exc)`` (sync or async; default: a warning
    on the ``rkit.presence`` logger) and the timer keeps going."""

    def __init__(
        self,
        presence: Presence,
        room_id: str,
        user_id: str,
        *,
        interval: float = DEFAULT_INTERVAL_MS,
        session_id: str | None = None,
        on_error: Callable[[Exception], Any] | None = None,
    ) -> None:
        self.presence = presence
        self.room_id = presence._id(room_id, "room_id")
        self.user_id = presence._id(user_id, "user_id")
        self.interval = _check_positive(interval, "interval")
        presence._timeout(self.interval, "interval")
        self.session_id = (
            uuid.uuid4().hex if session_id is None else presence._id(session_id, "session_id")
        )
        if on_error is not None and not callable(on_error):
            raise ConfigError("on_error must be a callable taking the exception")
        self.on_error = on_error
        self.errors = 0
        """Timer heartbeats that failed so far."""
        self.room_token: str | None = None
        self.session_token: str | None = None
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    async def heartbeat(self) -> HeartbeatResult | None:
        """One heartbeat now (single-flight: a call while one is in flight waits for
        it instead of sending another). Raises what the heartbeat raised."""
        if self._lock.locked():
            async with self._lock:
                return None
        async with self._lock:
            res = await self.presence.heartbeat(
                self.room_id, self.user_id, self.session_id, self.interval
            )
            self.room_token, self.session_token = res.room_token, res.session_token
            return res

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval / 1000)
            try:
                await self.heartbeat()
            except Exception as exc:  # the timer never dies of a heartbeat error
                self.errors += 1
                await self._report(exc)

    async def _report(self, exc: Exception) -> None:
        if self.on_error is None:
            logger.warning(
                "presence heartbeat of session %s failed (%s: %s); the timer keeps going",
                self.session_id,
                type(exc).__name__,
                exc,
            )
            return
        try:
            res = self.on_error(exc)
            if inspect.isawaitable(res):
                await res
        except Exception:
            logger.exception("on_error of presence session %s raised", self.session_id)

    def _start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        async with self._lock:
            if self.session_token is not None:
                await self.presence.disconnect(self.session_token)

    async def __aenter__(self) -> PresenceSession:
        await self.resume()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.pause()

    async def pause(self) -> None:
        """ "Tab hidden": stop the timer and disconnect (tokens are kept)."""
        await self._stop()

    async def resume(self) -> None:
        """ "Tab visible": heartbeat now and restart the timer."""
        await self.heartbeat()
        self._start()

    async def list(self, limit: int = DEFAULT_LIMIT) -> list[PresenceEntry]:
        """The room's list with this session's user first."""
        if self.room_token is None:
            return []
        entries = await self.presence.list(self.room_token, limit)
        mine = [e for e in entries if e.user_id == self.user_id]
        return mine + [e for e in entries if e.user_id != self.user_id]


async def sweep_all(app: App) -> int:
    """The worker's cron (every second): one sweep pass of every Presence of ``app``."""
    total = 0
    for presence in app.components.of_kind("presence", Presence):
        total += (await presence.sweep()).sessions_ended
    return total


async def sweep_all_job(ctx: dict[str, Any]) -> int:
    """:func:`sweep_all` for a job context holding the App (``ctx["rkit_app"]``)."""
    return await sweep_all(ctx["rkit_app"])


EVERY_SECOND = frozenset(range(60))
