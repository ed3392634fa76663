"""The recording Redis proxy of a dry run (spec §7.6): reads pass through, every
other command is captured (not executed) and answers ``None``. Unknown commands
count as writes, so nothing slips through."""

from __future__ import annotations

from typing import Any

from .sources import pipeline

MAX_WRITES = 100

READS = frozenset(
    """get mget exists type ttl pttl strlen getrange getbit bitcount bitpos hget hmget
    hgetall hkeys hvals hlen hexists hstrlen hscan hscan_iter hrandfield scan scan_iter
    keys lrange llen lindex lpos smembers sismember smismember scard srandmember sscan
    sscan_iter sinter sunion sdiff zrange zrangebyscore zrangebylex zrevrange
    zrevrangebyscore zrevrangebylex zscore zmscore zrank zrevrank zcard zcount zlexcount
    zscan zscan_iter xrange xrevrange xlen xinfo_stream xread pfcount dbsize time ping
    randomkey memory_usage object dump echo""".split()
)


class _Recorder:
    def __init__(self, writes: list[tuple[Any, ...]]) -> None:
        self.writes = writes

    def record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if len(self.writes) < MAX_WRITES:
            extra = tuple(f"{k}={v!r}" for k, v in kwargs.items())
            self.writes.append((name.upper(), *args, *extra))


class RecordingRedis:
    """Wraps a redis-py asyncio client for one dry-run batch."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes: list[tuple[Any, ...]] = []
        self._rec = _Recorder(self.writes)

    def pipeline(self, *args: Any, **kwargs: Any) -> RecordingPipeline:
        return RecordingPipeline(pipeline(self._client), self._rec)

    def __getattr__(self, name: str) -> Any:
        if name in READS:
            return getattr(self._client, name)

        async def captured(*args: Any, **kwargs: Any) -> None:
            self._rec.record(name, args, kwargs)

        return captured


class RecordingPipeline:
    """A pipeline whose reads run on ``execute`` and whose writes are captured
    (their results are ``None``)."""

    def __init__(self, real: Any, rec: _Recorder) -> None:
        self._real = real
        self._rec = rec
        self._slots: list[bool] = []  # True: a real (read) command

    def __getattr__(self, name: str) -> Any:
        if name in READS:
            method = getattr(self._real, name)

            def queued(*args: Any, **kwargs: Any) -> RecordingPipeline:
                method(*args, **kwargs)
                self._slots.append(True)
                return self

            return queued

        def captured(*args: Any, **kwargs: Any) -> RecordingPipeline:
            self._rec.record(name, args, kwargs)
            self._slots.append(False)
            return self

        return captured

    async def execute(self, *args: Any, **kwargs: Any) -> list[Any]:
        real = iter(await self._real.execute() if any(self._slots) else [])
        out = [next(real) if s else None for s in self._slots]
        self._slots = []
        return out

    async def __aenter__(self) -> RecordingPipeline:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None
