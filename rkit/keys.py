"""Redis key construction.

Every key is ``rkit:{<namespace>:<component>:<instance...>}:<rest>``: the braces are
the Redis Cluster hash tag, so all keys one script touches share one slot. User
input is encoded with unpadded base64url (``None`` becomes ``~``, ``""`` stays empty),
so ``:``, ``{``, ``}`` and empty strings can neither collide nor break the tag.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

from .errors import ConfigError

PREFIX = "rkit"
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def encode(part: str | None) -> str:
    """Encode one user-supplied key part; ``None`` and ``""`` stay distinct."""
    if part is None:
        return "~"
    if type(part) is not str:
        raise ConfigError(f"key parts must be str or None, got {type(part).__name__}")
    return _encode(part)


@lru_cache(maxsize=65536)
def _encode(part: str) -> str:
    return base64.urlsafe_b64encode(part.encode("utf-8")).rstrip(b"=").decode("ascii")


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
