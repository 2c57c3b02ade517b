"""PHP serialize() and unserialize(), exactly as PHP 8 writes and reads them.

gearctl's own codec rather than a wrapper around phpserialize: the contract needs
byte offsets in errors, references (`R:`/`r:`), enums (`E:`), property visibility,
per-string UTF-8 fallback and bounded nesting, none of which phpserialize has, and
PHP 8's float spelling (`d:0.1;`, `d:1.0E+25;`, `d:INF;`).

Decoding maps PHP to Python as README's table says: strings are str when they are
UTF-8 and bytes otherwise, arrays with keys exactly 0..n-1 are lists and the rest
dicts (PHP's key order kept), objects are `PhpObject` (a dict of property names
that remembers the class and each property's visibility), enums `PhpEnum`,
Serializable (`C:`) payloads `PhpSerializable` kept byte for byte, and references
are resolved to the value they point at. Every error is a PayloadError that names
the byte offset.

Memory and stack are bounded by the input: a declared length or element count
larger than the bytes left is refused before anything is allocated, and nesting
deeper than MAX_DEPTH is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .errors import PayloadError

MAX_DEPTH = 256  # PHP's own default (unserialize_max_depth) is 4096; Drupal payloads nest < 20
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_PUBLIC, _PROTECTED = "", "*"  # a property's scope: "", "*", or the declaring class (private)


class PhpObject(dict[str, Any]):
    """A PHP object: its properties as a dict (names without PHP's NUL prefixes),
    plus `php_class` and each property's visibility. Never instantiated as a
    Python class; encoded again it gives PHP the same class and properties back.

    A parent class's private property that a subclass redeclares has the same name
    twice in PHP; the mapping holds the one the object's own class sees, and the
    other stays in `shadowed`, keyed (declaring class, name), so it goes back too.
    """

    __slots__ = ("_scopes", "php_class", "shadowed")

    def __init__(self, php_class: str = "stdClass", properties: Any = (), /, **kwargs: Any) -> None:
        super().__init__(properties, **kwargs)
        self.php_class = php_class
        self._scopes: dict[str, str] = {}
        self.shadowed: dict[tuple[str, str], Any] = {}

    def visibility(self, name: str) -> str:
        """'public', 'protected' or 'private'."""
        if name not in self:
            raise KeyError(name)
        scope = self._scopes.get(name, _PUBLIC)
        return "public" if scope == _PUBLIC else "protected" if scope == _PROTECTED else "private"

    def declaring_class(self, name: str) -> str:
        """The class a private property belongs to; php_class for the others."""
        scope = self._scopes.get(name, _PUBLIC)
        return self.php_class if scope in (_PUBLIC, _PROTECTED) else scope

    def set(self, name: str, value: Any, visibility: str = "public", declaring_class: str | None = None) -> None:
        """Set a property with its visibility (item assignment makes it public)."""
        scopes = {"public": _PUBLIC, "protected": _PROTECTED, "private": declaring_class or self.php_class}
        if visibility not in scopes:
            raise ValueError(f"visibility is public, protected or private, not {visibility!r}")
        self[name] = value
        self._scopes[name] = scopes[visibility]

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self._scopes.pop(name, None)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PhpObject):
            return (self.php_class == other.php_class and dict.__eq__(self, other)
                    and all(self._scopes.get(k, _PUBLIC) == other._scopes.get(k, _PUBLIC) for k in self)
                    and self.shadowed == other.shadowed)
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PhpObject({self.php_class!r}, {dict.__repr__(self)})"

    def set_mangled(self, key: str, value: Any) -> None:
        """Set a property by the name serialize() writes: "\\0*\\0name" is protected,
        "\\0Class\\0name" private, anything else public."""
        self._add(*_split_property(key), value)

    def _add(self, name: str, scope: str, value: Any) -> None:
        """A property with its scope ("", "*" or a class), as PHP holds it."""
        if name not in self:
            self[name] = value
            self._scopes[name] = scope
            return
        mine = self._scopes.get(name, _PUBLIC)
        if scope in (_PUBLIC, _PROTECTED, self.php_class) and mine not in (_PUBLIC, _PROTECTED, self.php_class):
            self.shadowed[(mine, name)] = self[name]
            self[name] = value
            self._scopes[name] = scope
        elif scope in (_PUBLIC, _PROTECTED):
            raise PayloadError(f"property {name!r} of {self.php_class} appears twice")
        else:
            self.shadowed[(scope, name)] = value

    def _raw_items(self) -> list[tuple[str, Any]]:
        """Properties under PHP's mangled names, as serialize() writes them."""
        out = []
        for name, value in self.items():
            scope = self._scopes.get(name, _PUBLIC)
            out.append((name if scope == _PUBLIC else f"\0{scope}\0{name}", value))
        out += [(f"\0{cls}\0{name}", value) for (cls, name), value in self.shadowed.items()]
        return out


@dataclass(frozen=True)
class PhpEnum:
    """A PHP 8.1 enum case (`E:11:"Suit:Hearts";`), encoded back as it came."""

    php_class: str
    case: str


@dataclass(frozen=True)
class PhpSerializable:
    """An object of a class implementing PHP's Serializable (`C:`): its payload is
    the class's own format, so gearctl keeps it opaque and writes it back byte for byte."""

    php_class: str
    data: bytes


# --- decoding ---------------------------------------------------------------

# What PHP takes for a class (namespaces with \\) or enum case name.
_IDENT = r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*"
# Left a string for re's cache to compile on first use: the non-ASCII ranges take
# ~12 ms to compile, which every gearctl command would pay at import.
_CLASS_NAME = rf"\\?{_IDENT}(?:\\{_IDENT})*"
_FLOAT = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|-?INF|NAN")
_INT = re.compile(rb"[+-]?\d+")
_UINT = re.compile(rb"\d+")
_IN_PROGRESS = object()  # an array still being read; a reference to it would be circular


def loads(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """unserialize(): one value from `data`; one trailing newline (as `echo` adds) is allowed."""
    data = bytes(data)
    reader = _Reader(data, max_depth)
    value = reader.value(0)
    end = reader.pos
    if end != len(data) and data[end:] != b"\n":
        raise PayloadError(f"invalid PHP serialize() data: trailing bytes at offset {end}", data)
    return value


class _Reader:
    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        # Every value but an R: gets a slot, numbered from 1 in reading order
        # (array keys do not): what R:n and r:n point at, as in PHP's var_hash.
        self.slots: list[Any] = []

    def fail(self, what: str, at: int | None = None) -> PayloadError:
        return PayloadError(f"invalid PHP serialize() data: {what} at offset {self.pos if at is None else at}",
                            self.data)

    def expect(self, token: bytes) -> None:
        if not self.data.startswith(token, self.pos):
            found = self.data[self.pos:self.pos + 1]
            raise self.fail(f"expected {token.decode()!r}, found {found.decode('latin-1')!r}" if found
                            else f"truncated, expected {token.decode()!r}")
        self.pos += len(token)

    def until(self, end: bytes, pattern: re.Pattern[bytes], what: str) -> bytes:
        start = self.pos
        stop = self.data.find(end, start)
        if stop < 0:
            raise self.fail(f"truncated {what}")
        token = self.data[start:stop]
        if not pattern.fullmatch(token):
            raise self.fail(f"bad {what} {token[:40].decode('latin-1')!r}", start)
        self.pos = stop + len(end)
        return token

    def count(self, what: str, min_size: int) -> int:
        """A declared length or count, refused when the bytes left cannot hold it."""
        at = self.pos
        n = int(self.until(b":", _UINT, what))
        if n * min_size > len(self.data) - self.pos:
            raise self.fail(f"{what} {n} is larger than the data left", at)
        return n

    def raw_string(self) -> bytes:
        """The `N:"..."` part of s:, O:, C:, E:, after the type letter and colon."""
        at = self.pos
        n = self.count("string length", 1)
        self.expect(b'"')
        if self.pos + n > len(self.data):
            raise self.fail(f"a string of {n} bytes runs past the end of the data", at)
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        self.expect(b'"')
        return value

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise self.fail(f"nested deeper than {self.max_depth} levels")
        at = self.pos
        kind = self.data[at:at + 2]
        if kind == b"N;":
            self.pos += 2
            return self.slot(None)
        if kind[1:] != b":":
            raise self.fail("truncated" if len(kind) < 2 else f"unknown type {kind.decode('latin-1')!r}")
        self.pos += 2
        letter = kind[:1]
        if letter == b"R":
            return self.reference(at)
        if letter == b"r":
            return self.slot(self.reference(at))
        reader = self.READERS.get(letter)
        if reader is None:
            raise self.fail(f"unknown type {kind.decode('latin-1')!r}", at)
        return reader(self, depth)

    def slot(self, value: Any) -> Any:
        self.slots.append(value)
        return value

    def reference(self, at: int) -> Any:
        n = int(self.until(b";", _UINT, "reference"))
        if not 1 <= n <= len(self.slots):
            raise self.fail(f"reference {n} points at no value", at)
        value = self.slots[n - 1]
        if value is _IN_PROGRESS:
            raise self.fail("circular reference to an enclosing array (gearctl refuses these)", at)
        return value

    def boolean(self, depth: int) -> Any:
        token = self.until(b";", re.compile(rb"[01]"), "boolean")
        return self.slot(token == b"1")

    def integer(self, depth: int) -> Any:
        return self.slot(int(self.until(b";", _INT, "integer")))

    def double(self, depth: int) -> Any:
        return self.slot(float(self.until(b";", _FLOAT, "float")))

    def string(self, depth: int) -> Any:
        raw = self.raw_string()
        self.expect(b";")
        return self.slot(_text(raw))

    def escaped_string(self, depth: int) -> Any:
        """S: (PHP 6 era): like s: with \\xx hex escapes."""
        at = self.pos
        n = self.count("string length", 1)
        self.expect(b'"')
        out = bytearray()
        while len(out) < n:
            c = self.data[self.pos:self.pos + 1]
            if not c:
                raise self.fail("truncated escaped string", at)
            if c == b"\\":
                try:
                    out.append(int(self.data[self.pos + 1:self.pos + 3], 16))
                except ValueError:
                    raise self.fail("bad escape in S: string") from None
                self.pos += 3
            else:
                out += c
                self.pos += 1
        self.expect(b'";')
        return self.slot(_text(bytes(out)))

    def array(self, depth: int) -> Any:
        n = self.count("array size", 4)  # i:0;N; is the smallest element
        self.expect(b"{")
        index = len(self.slots)
        self.slot(_IN_PROGRESS)
        pairs: dict[Any, Any] = {}
        for _ in range(n):
            key = self.key()
            pairs[key] = self.value(depth + 1)
        self.expect(b"}")
        value = list(pairs.values()) if all(k == i for i, k in enumerate(pairs)) else pairs
        self.slots[index] = value
        return value

    def key(self) -> Any:
        at = self.pos
        kind = self.data[at:at + 2]
        self.pos += 2
        if kind == b"i:":
            return int(self.until(b";", _INT, "integer key"))
        if kind == b"s:":
            raw = self.raw_string()
            self.expect(b";")
            return _text(raw)
        if len(kind) < 2:
            raise self.fail("truncated, expected an array key or '}'", at)
        raise self.fail("an array key must be an integer or a string", at)

    def object(self, depth: int) -> Any:
        cls = self.class_name()
        self.expect(b":")
        n = self.count("property count", 6)
        self.expect(b"{")
        obj = self.slot(PhpObject(cls))  # before its properties: r: may point back at it
        for _ in range(n):
            at = self.pos
            raw = self.key()
            if not isinstance(raw, str):
                raw = str(raw)
            value = self.value(depth + 1)
            try:
                obj.set_mangled(raw, value)
            except PayloadError as e:
                raise self.fail(str(e), at) from None
        self.expect(b"}")
        return obj

    def serializable(self, depth: int) -> Any:
        cls = self.class_name()
        self.expect(b":")
        n = self.count("Serializable payload length", 1)
        self.expect(b"{")
        data = self.data[self.pos:self.pos + n]
        self.pos += n
        self.expect(b"}")
        return self.slot(PhpSerializable(cls, data))

    def enum(self, depth: int) -> Any:
        at = self.pos
        text = _text(self.raw_string())
        self.expect(b";")
        if not isinstance(text, str) or text.count(":") != 1:
            raise self.fail("an enum is written Class:Case", at)
        cls, case = text.split(":")
        return self.slot(PhpEnum(cls, case))

    def class_name(self) -> str:
        at = self.pos
        name = _text(self.raw_string())
        if not isinstance(name, str) or not name:
            raise self.fail("bad class name", at)
        return name

    READERS = {b"b": boolean, b"i": integer, b"d": double, b"s": string, b"S": escaped_string,
               b"a": array, b"O": object, b"C": serializable, b"E": enum}


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _split_property(raw: str) -> tuple[str, str]:
    """PHP's mangled property names: "\\0*\\0name" protected, "\\0Class\\0name" private."""
    if raw.startswith("\0"):
        scope, sep, name = raw[1:].partition("\0")
        if sep:
            return name, scope
    return raw, _PUBLIC


# --- encoding ---------------------------------------------------------------

def dumps(value: Any) -> bytes:
    """serialize(): the bytes PHP 8 writes for the value's PHP equivalent."""
    writer = _Writer()
    try:
        writer.value(value)
    except RecursionError:
        raise PayloadError("cannot encode as PHP serialize(): nested too deeply") from None
    return b"".join(writer.out)


class _Writer:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.slot = 0  # numbered as the reader numbers them
        self.objects: dict[int, int] = {}  # id(PhpObject) -> its slot, for r:
        self.open: set[int] = set()  # containers being written: a cycle is refused

    def value(self, value: Any) -> None:
        self.slot += 1
        out = self.out
        if value is None:
            out.append(b"N;")
        elif value is True or value is False:
            out.append(b"b:1;" if value else b"b:0;")
        elif isinstance(value, int):
            out.append(b"i:%d;" % value if INT64_MIN <= value <= INT64_MAX else b"d:%s;" % _big_int(value))
        elif isinstance(value, float):
            out.append(b"d:%s;" % format_float(value).encode())
        elif isinstance(value, str):
            out.append(_string(b"s", _utf8(value), b";"))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            out.append(_string(b"s", bytes(value), b";"))
        elif isinstance(value, PhpObject):
            self.php_object(value)
        elif isinstance(value, (dict, list, tuple)):
            self.container(value)
        elif isinstance(value, PhpEnum):
            out.append(_string(b"E", _class_name(value.php_class) + b":" + _class_name(value.case, "an enum case"),
                               b";"))
        elif isinstance(value, PhpSerializable):
            cls = _class_name(value.php_class)
            out.append(b'C:%d:"%s":%d:{%s}' % (len(cls), cls, len(value.data), value.data))
        else:
            raise PayloadError(f"cannot encode {type(value).__name__} as PHP serialize()")

    def container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> None:
        self.enter(value)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        self.out.append(b"a:%d:{" % len(value))
        for key, item in items:
            self.out.append(_key(key))
            self.value(item)
        self.out.append(b"}")
        self.open.discard(id(value))

    def php_object(self, obj: PhpObject) -> None:
        seen = self.objects.get(id(obj))
        if seen is not None:  # PHP objects are handles: the same object again is r:
            self.out.append(b"r:%d;" % seen)
            return
        self.objects[id(obj)] = self.slot
        cls = _class_name(obj.php_class)
        items = obj._raw_items()
        self.out.append(b'O:%d:"%s":%d:{' % (len(cls), cls, len(items)))
        for name, item in items:
            self.out.append(_string(b"s", _utf8(name), b";"))
            self.value(item)
        self.out.append(b"}")

    def enter(self, container: object) -> None:
        if id(container) in self.open:
            raise PayloadError("cannot encode a list or dict that contains itself as PHP serialize()")
        self.open.add(id(container))


def _string(kind: bytes, raw: bytes, end: bytes) -> bytes:
    return b'%s:%d:"%s"%s' % (kind, len(raw), raw, end)


def _class_name(name: str, what: str = "a class") -> bytes:
    """A name PHP's unserialize() takes, or a PayloadError: PHP would refuse the whole payload."""
    if not isinstance(name, str) or not re.fullmatch(_CLASS_NAME, name):
        raise PayloadError(f"cannot encode as PHP serialize(): {name!r} is not {what} name PHP accepts")
    return _utf8(name)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PayloadError(f"cannot encode as PHP serialize(): {text[:20]!r} is not valid Unicode ({e.reason})") from e


def _key(key: Any) -> bytes:
    if isinstance(key, bool):
        return b"i:%d;" % key  # PHP casts true/false keys to 1/0
    if isinstance(key, int):
        if not INT64_MIN <= key <= INT64_MAX:
            raise PayloadError(f"array key {key} is outside PHP's integer range")
        return b"i:%d;" % key
    if isinstance(key, str):
        return _string(b"s", _utf8(key), b";")
    if isinstance(key, bytes):
        return _string(b"s", key, b";")
    raise PayloadError(f"a PHP array key is an int or a string, not {type(key).__name__}")


def _big_int(value: int) -> bytes:
    """An integer past int64, as PHP holds it: a float (INF past the float range)."""
    try:
        return format_float(float(value)).encode()
    except OverflowError:
        return b"INF" if value > 0 else b"-INF"


def format_float(value: float) -> str:
    """A float as PHP 8 serializes it (serialize_precision -1): the shortest digits
    that round-trip, in php_gcvt's layout with 17 digits of precision."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # value = 0.DIGITS x 10^point
    point = len(digit_tuple) + exponent if digits != "0" else 1
    minus = "-" if sign else ""
    if point < -3 or point > 17:
        mantissa = digits[0] + "." + (digits[1:] or "0")
        return f"{minus}{mantissa}E{'-' if point - 1 < 0 else '+'}{abs(point - 1)}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    whole, frac = digits[:point].ljust(point, "0"), digits[point:]
    return f"{minus}{whole}.{frac}" if frac else f"{minus}{whole}"
