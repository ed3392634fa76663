"""Order-preserving ("memcomparable") encoding of aggregate keys, bounds, namespaces
and cursors, so that Lua can order items by comparing strings.

``encode(a) < encode(b)`` (as ``str``, i.e. by code point = by UTF-8 byte, which is
how the Lua comparator sees them) exactly when ``a < b`` in the keys' total order:
null < int64 < float64 < NaN < false < true < string < bytes < array < object.
Numbers compare numerically (``-0.0 == 0.0``, ``-inf`` lowest, ``inf`` highest), all
NaNs are equal, strings by code point, bytes byte by byte, arrays element by element
(a proper prefix first), objects as their ``(name, value)`` pairs sorted by name.

Every encoded string is valid UTF-8 (control characters, ASCII and the user's own
string text), so it crosses redis-py with ``decode_responses=True`` unchanged.
Fixed-width numbers use an order-preserving 64-letter alphabet (11 characters per
64-bit value) instead of raw bytes.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from .. import keys as keyparts
from ..errors import ConfigError, KeyEncodingError

NULL, INT64, FLOAT, NAN, FALSE, TRUE, STRING, BYTES, ARRAY, OBJECT = (
    chr(c) for c in range(0x02, 0x0C)
)
END = "\x00"  # closes strings, bytes, arrays, objects: below every tag and payload char
ITEM = "\x40"  # closes a position: between the bound sentinels
LO = "\x01"  # bound sentinel: below every tag
HI = "\x7f"  # bound sentinel: above every tag

_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
assert list(_ALPHABET) == sorted(_ALPHABET) and len(_ALPHABET) == 64
_DIGIT = {c: i for i, c in enumerate(_ALPHABET)}
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_MAX_SAFE = 2**53
_ESCAPE = str.maketrans({"\x01": "\x01\x02", "\x00": "\x01\x01"})


@dataclass(frozen=True, slots=True, order=True)
class Int64:
    """An explicit 64-bit integer key: sorts before every float, whatever its magnitude."""

    value: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, int)
            or not -_SIGN <= self.value < _SIGN
        ):
            raise KeyEncodingError(f"Int64 needs an int in [-2**63, 2**63), got {self.value!r}")


def _u64(n: int) -> str:
    out = [""] * 11
    for i in range(10, -1, -1):
        out[i] = _ALPHABET[n & 63]
        n >>= 6
    return "".join(out)


def _un64(s: str) -> int:
    n = 0
    for c in s:
        n = (n << 6) | _DIGIT[c]
    return n


def _float(x: float) -> str:
    if x != x:
        return NAN
    if x == 0.0:
        x = 0.0  # -0.0 and 0.0 are the same key (the sign is not kept)
    bits = struct.unpack(">Q", struct.pack(">d", x))[0]
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN
    return FLOAT + _u64(bits)


def _text(s: str, what: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyEncodingError(f"{what} is not valid Unicode text: {s!r}") from None
    return s.translate(_ESCAPE) + END


def enc_str(s: str) -> str:
    return STRING + _text(s, "string")


# Lists, tuples and dicts nest at most this deep in a key (a composite key needs a few
# levels; the limit turns runaway or cyclic values into a KeyEncodingError instead of a
# RecursionError, and keeps decoding of a forged cursor bounded too).
MAX_KEY_DEPTH = 100


def enc(value: Any, what: str = "key", depth: int = 0) -> str:
    """The encoding of one key value; ``KeyEncodingError`` for anything else than None,
    bool, int within ±2**53, float (NaN and ±inf included: they are keys like any other
    number), Int64, str, bytes, or lists/tuples and dicts with str keys nested at most
    ``MAX_KEY_DEPTH`` deep. ``depth`` is the nesting level of ``value`` itself."""
    t = type(value)
    if t is float:
        return _float(value)
    if t is str:
        return STRING + _text(value, what)
    if value is None:
        return NULL
    if t is bool:
        return TRUE if value else FALSE
    if t is int:
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return _float(float(value))
        raise KeyEncodingError(
            f"{what}: int {value} is beyond 2**53 and would lose precision as a float; "
            "wrap it in Int64(...)"
        )
    if t is Int64:
        return INT64 + _u64(value.value + _SIGN)
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTES + bytes(value).hex() + END
    if isinstance(value, list | tuple | dict) and depth >= MAX_KEY_DEPTH:
        root = re.split(r"[\[.]", what, maxsplit=1)[0]  # "key", not "key[0][0]...[0]"
        raise KeyEncodingError(
            f"{root}: lists, tuples and dicts nest more than {MAX_KEY_DEPTH} deep"
        )
    if isinstance(value, list | tuple):
        return ARRAY + "".join(enc(v, f"{what}[{i}]", depth + 1) for i, v in enumerate(value)) + END
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise KeyEncodingError(f"{what}: object keys must be str, got {k!r}")
        parts = [enc_str(k) + enc(value[k], f"{what}.{k}", depth + 1) for k in sorted(value)]
        return OBJECT + "".join(parts) + END
    for base in (bool, int, float, str):  # subclasses such as IntEnum or StrEnum
        if isinstance(value, base):
            return enc(base(value), what, depth)
    raise KeyEncodingError(f"{what}: cannot use a {t.__name__} as an aggregate key: {value!r}")


MAX_POSITION_BYTES = 4095  # the node codec stores key lengths in two 6-bit digits


def position(key: Any, id: str) -> str:
    """The unique tree position of ``(key, id)``."""
    pos = enc(key) + enc_str(id) + ITEM
    if len(pos) > MAX_POSITION_BYTES // 4 and len(pos.encode("utf-8")) > MAX_POSITION_BYTES:
        raise KeyEncodingError(
            f"key and id encode to more than {MAX_POSITION_BYTES} bytes; use a shorter key"
        )
    return pos


def check_id(id: Any) -> str:
    if type(id) is not str:
        raise KeyEncodingError(f"id must be a str, got {type(id).__name__}")
    return id


# -- decoding ----------------------------------------------------------------------------


def _dec_text(s: str, i: int) -> tuple[str, int]:
    out = []
    while True:
        j = s.find(END, i)
        k = s.find("\x01", i, j)
        if k < 0:
            out.append(s[i:j])
            return "".join(out), j + 1
        out.append(s[i:k])
        out.append("\x00" if s[k + 1] == "\x01" else "\x01")
        i = k + 2


def _dec(s: str, i: int, depth: int = 0) -> tuple[Any, int]:
    tag = s[i]
    i += 1
    if tag == FLOAT:
        bits = _un64(s[i : i + 11])
        bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL
        return struct.unpack(">d", struct.pack(">Q", bits))[0], i + 11
    if tag == STRING:
        return _dec_text(s, i)
    if tag == NULL:
        return None, i
    if tag == INT64:
        return Int64(_un64(s[i : i + 11]) - _SIGN), i + 11
    if tag == NAN:
        return math.nan, i
    if tag in (FALSE, TRUE):
        return tag == TRUE, i
    if tag == BYTES:
        j = s.index(END, i)
        return bytes.fromhex(s[i:j]), j + 1
    if tag in (ARRAY, OBJECT) and depth >= MAX_KEY_DEPTH:
        raise ValueError(f"encoded key nested more than {MAX_KEY_DEPTH} deep at offset {i - 1}")
    if tag == ARRAY:
        items = []
        while s[i] != END:
            v, i = _dec(s, i, depth + 1)
            items.append(v)
        return items, i + 1
    if tag == OBJECT:
        obj = {}
        while s[i] != END:
            k, i = _dec(s, i, depth + 1)
            obj[k], i = _dec(s, i, depth + 1)
        return obj, i + 1
    raise ValueError(f"not an encoded key at offset {i - 1}: {s!r}")


def decode(encoded: str) -> Any:
    """The key value of ``enc`` output (floats for numbers, lists for tuples)."""
    value, _ = _dec(encoded, 0)
    return value


def decode_position(pos: str) -> tuple[Any, str]:
    key, i = _dec(pos, 0)
    id, _ = _dec(pos, i)
    return key, id


# -- bounds: exclusive lower/upper strings, "" = unbounded; LO/HI put a bound just before
# -- or just after every position that starts with the same key (and id) -------------------


def lower(key: Any, inclusive: bool, id: str | None = None) -> str:
    base = enc(key) if id is None else enc(key) + enc_str(check_id(id))
    return base + (LO if inclusive else HI)


def upper(key: Any, inclusive: bool, id: str | None = None) -> str:
    base = enc(key) if id is None else enc(key) + enc_str(check_id(id))
    return base + (HI if inclusive else LO)


def prefix(values: Any) -> tuple[str, str]:
    if not isinstance(values, list | tuple):
        raise KeyEncodingError(f"prefix must be a list or tuple, got {type(values).__name__}")
    k1 = ARRAY + "".join(enc(v, f"prefix[{i}]", 1) for i, v in enumerate(values))
    return k1, k1 + HI


# -- namespaces and cursors ---------------------------------------------------------------


def ns_member(namespace: Any, max_bytes: int | None = None) -> str:
    """``N(ns)``: the URL/registry form of a namespace (``~`` = default partition);
    ``KeyTooLong`` when its encoding exceeds ``max_bytes`` (UTF-8)."""
    if namespace is None:
        return "~"
    raw = enc(namespace, "namespace")
    if max_bytes is not None:
        keyparts.check_part(raw, "namespace (encoded)", max_bytes)
    return keyparts.encode(raw)


def ns_from_member(member: str) -> Any:
    raw = keyparts.decode(member)
    return None if raw is None else decode(raw)


_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def encode_cursor(pos: str) -> str:
    return base64.urlsafe_b64encode(pos.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> str:
    try:
        if not isinstance(cursor, str) or not _CURSOR_RE.match(cursor):
            raise ValueError(cursor)
        pos = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        decode_position(pos)
        return pos
    except (ValueError, IndexError, KeyError):
        raise ConfigError(f"not a cursor of this aggregate: {cursor!r}") from None
