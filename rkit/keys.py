"""Redis key construction.

Every key is ``rkit:{<namespace>:<component>:<instance...>}:<rest>``: the braces are
the Redis Cluster hash tag, so all keys one script touches share one slot. User
input is encoded with unpadded base64url (``None`` becomes ``~``, ``""`` stays empty),
so ``:``, ``{``, ``}`` and empty strings can neither collide nor break the tag.

User-supplied parts (ids, names, namespaces) are limited in size
(:data:`MAX_KEY_PART_BYTES` by default, configurable per component) and every
in-process cache of keys is bounded by the bytes it holds, not only by entries.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Generic, TypeVar

from .errors import ConfigError, KeyTooLong

K = TypeVar("K")
V = TypeVar("V")

MAX_KEY_PART_BYTES = 1024
"""Default limit of one user-supplied key part (an id, a name, a namespace): its
UTF-8 bytes (the key holds its base64url form, 4/3 as long)."""


class BoundedCache(Generic[K, V]):
    """A dict bounded by entries *and* by the approximate bytes it holds: when a new
    entry would exceed either bound, the cache is emptied first (cheap, and what a
    cache of keys needs: a hot set refills at once). An entry larger than the whole
    budget is never kept."""

    __slots__ = ("_data", "max_bytes", "max_entries", "nbytes")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._data: dict[K, V] = {}
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V, size: int) -> V:
        """Keep ``value`` under ``key`` (``size``: its approximate bytes); returns it."""
        if size > self.max_bytes:
            return value
        if len(self._data) >= self.max_entries or self.nbytes + size > self.max_bytes:
            self._data.clear()
            self.nbytes = 0
        if key not in self._data:
            self.nbytes += size
        self._data[key] = value
        return value

    def pop(self, key: K) -> None:
        """Forget ``key`` (its bytes are released at the next clear)."""
        self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


ENTRY_OVERHEAD = 120
"""Approximate bytes of a cache entry besides its strings (dict slot, str headers)."""


def str_bytes(*parts: Any) -> int:
    """Approximate memory of strings held by a cache entry (one byte per char for
    ASCII; non-ASCII strings are at most 4x, counted by their UTF-8 length)."""
    total = ENTRY_OVERHEAD
    for p in parts:
        if isinstance(p, str):
            total += len(p) if p.isascii() else 4 * len(p)
        elif isinstance(p, tuple):
            total += str_bytes(*p)
    return total


def check_max_bytes(value: Any, what: str) -> int:
    """A configured size limit: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 29:
        raise ConfigError(f"{what} must be an int between 1 and 2**29 bytes, got {value!r}")
    return value


def check_part(value: str, what: str, max_bytes: int = MAX_KEY_PART_BYTES) -> str:
    """``value`` (a str) unless its UTF-8 form exceeds ``max_bytes``
    (:class:`KeyTooLong`) or is not valid Unicode (:class:`ConfigError`)."""
    if value.isascii():
        size = len(value)  # the common case: no encoding needed
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError(f"{what} is not valid Unicode text: {value[:40]!r}") from None
    if size > max_bytes:
        raise KeyTooLong(what, size, max_bytes)
    return value


PREFIX = "rkit"
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def encode(part: str | None) -> str:
    """Encode one user-supplied key part; ``None`` and ``""`` stay distinct."""
    if part is None:
        return "~"
    if type(part) is not str:
        raise ConfigError(f"key parts must be str or None, got {type(part).__name__}")
    found = _ENCODED.get(part)
    if found is None:
        found = _ENCODED.put(part, _encode(part), str_bytes(part) + 4 * len(part) // 3)
    return found


# at most 4 MiB of encodings (was 65,536 entries of any size: an out-of-memory path
# when parts come from users)
_ENCODED: BoundedCache[str, str] = BoundedCache(65_536, 4 << 20)


def _encode(part: str) -> str:
    try:
        raw = part.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"key part is not valid Unicode text: {part[:40]!r}") from None
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(encoded: str) -> str | None:
    if encoded == "~":
        return None
    pad = "=" * (-len(encoded) % 4)
    return base64.urlsafe_b64decode(encoded + pad).decode("utf-8")


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
        raise ConfigError(
            f"namespace must match {_NAMESPACE_RE.pattern} (letters, digits, _ . -), "
            f"got {namespace!r}"
        )
    return namespace


class KeySpace:
    """Builds the keys of one App namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)

    def tag(self, component: str, *parts: str | None) -> str:
        """``rkit:{ns:component:E(part)...}`` — the hash-tagged stem of a key."""
        inner = ":".join([self.namespace, component, *(encode(p) for p in parts)])
        return f"{PREFIX}:{{{inner}}}"

    def pattern(self, component: str) -> str:
        """A SCAN MATCH pattern for every key of ``component`` in this namespace."""
        return f"{PREFIX}:{{{self.namespace}:{component}:*"
