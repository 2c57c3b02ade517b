"""Payload codecs: raw bytes, JSON, PHP serialize(), and `auto` detection.

All share one small interface (`Codec`) and are found by name through
`resolve()`. Decode failures raise PayloadError carrying the bytes that failed.
PHP serialize() itself is gearctl/php.py; `auto` answers a PHP workload in PHP
and anything else in JSON (encode_answer).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Protocol

from . import php
from .errors import PayloadError

ENCODINGS = ("raw", "json", "php")  # what a client may send
DECODINGS = ("auto", "raw", "json", "php")  # what a worker may decode with


class Codec(Protocol):
    name: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class RawCodec:
    name = "raw"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        if value is None:
            return b""
        raise PayloadError(f"the raw encoding sends bytes or text, not {type(value).__name__}")

    def decode(self, data: bytes) -> Any:
        return data


class JsonCodec:
    name = "json"

    def encode(self, value: Any) -> bytes:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise PayloadError(f"cannot encode as JSON: {e}") from e

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as e:
            raise PayloadError(f"invalid JSON: not UTF-8 at byte {e.start}", data) from e
        except json.JSONDecodeError as e:
            raise PayloadError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}", data) from e
        except (ValueError, RecursionError) as e:
            raise PayloadError(f"invalid JSON: {e}", data) from e


class PhpCodec:
    """PHP serialize(), exactly (gearctl/php.py). A str is a PHP string; only bytes
    that are already a serialize() answer go out as they are (see encode_answer)."""

    name = "php"

    def encode(self, value: Any) -> bytes:
        return php.dumps(value)

    def decode(self, data: bytes) -> Any:
        return php.loads(data)


# What `auto` takes for PHP serialize(): a type letter and the start of its value, as
# serialize() writes them. "s:foo" or "a:b" is text, not a broken PHP payload.
_LOOKS_PHP = re.compile(rb"""(?:[aO]:\d+:[{"]|[sCE]:\d+:"|i:[-+]?\d+;|d:[-+\d.EINAF]+;|b:[01];|N;)""")
# An object or array as JSON opens: "{" then a key or "}", "[" then a value or "]".
# "[INFO] started" is text.
_LOOKS_JSON = re.compile(rb"""[ \t\r\n]*(?:\{[ \t\r\n]*(?:["}]|\Z)|\[[ \t\r\n]*(?:[]"{\[\-0-9tfn]|\Z))""")


def sniff(data: bytes) -> str:
    """What `auto` takes `data` for: "php" or "json" when it starts like one (and
    must then decode as it, or the job fails), else "json" when it is a whole JSON
    scalar (`42`, `"text"`, `true`), else "raw"."""
    if _LOOKS_PHP.match(data):
        return "php"
    if _LOOKS_JSON.match(data):
        return "json"
    try:
        _JSON.decode(data)
    except PayloadError:
        return "raw"
    return "json"


class AutoCodec:
    """Decodes what the workload is (see sniff); encodes as JSON, text and bytes as they are.

    A workload that starts like PHP serialize() or a JSON object/array but does not
    decode raises PayloadError: guessing "raw" there would hide the sender's bug.
    """

    name = "auto"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview, str)):
            return _RAW.encode(value)
        return _JSON.encode(value)

    def decode(self, data: bytes) -> Any:
        kind = sniff(data)
        return data if kind == "raw" else CODECS[kind].decode(data)


def encode_answer(value: Any, encoding: str) -> bytes:
    """A job function's return value as its client expects it, for a workload that
    was `encoding` (php, json or raw; for `auto`, what sniff() found).

    None is the empty result and bytes go out exactly as they are. Under php, the
    rest is PHP serialize(), a str included (s:4:"Zoë";), so that the PHP client's
    unserialize() works. Otherwise a str goes out as its UTF-8 text and the rest as JSON.
    """
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if encoding == "php":
        return _PHP.encode(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return _JSON.encode(value)


_RAW, _JSON, _PHP = RawCodec(), JsonCodec(), PhpCodec()
CODECS: dict[str, Codec] = {c.name: c for c in (_RAW, _JSON, _PHP, AutoCodec())}


def resolve(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise PayloadError(f"unknown encoding {name!r}; choose one of {', '.join(CODECS)}") from None


def prepare_payload(data: bytes, encoding: str) -> bytes:
    """What a client sends for `data` given on the command line.

    raw: the bytes as they are. json: the same bytes, once checked to be JSON.
    php: JSON in, its PHP serialize() form out (for workers that unserialize()),
    with the PHP forms of from_json() for objects and enums.
    """
    if encoding == "raw":
        return data
    value = CODECS["json"].decode(data)
    if encoding == "json":
        return data
    if encoding == "php":
        return CODECS["php"].encode(from_json(value))
    raise PayloadError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")


# JSON has no PHP objects, enums or byte strings, so the command line spells them as
# objects with one reserved key (README, "PHP and Drupal"):
#   {"__php_class__": "Account", "name": "ann", "\u0000*\u0000balance": 10}
#       an object; a key with PHP's NUL prefix is protected ("\0*\0") or private
#       ("\0Class\0"); shown back with plain names
#   {"__php_enum__": "Suit:Hearts"}       an enum case
#   {"__php_serializable__": "ArrayObject", "base64": "..."}   a Serializable's payload
#   {"__base64__": "..."}                 a string that is not UTF-8
PHP_CLASS, PHP_ENUM, PHP_SERIALIZABLE, BASE64 = "__php_class__", "__php_enum__", "__php_serializable__", "__base64__"
PHP_VISIBILITY, PHP_SHADOWED, PHP_CYCLE = "__php_visibility__", "__php_shadowed__", "__php_cycle__"


def from_json(value: Any) -> Any:
    """JSON as read from the command line, with the PHP forms above made PHP values."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if PHP_ENUM in value and len(value) == 1:
        cls, sep, case = str(value[PHP_ENUM]).partition(":")
        if not (sep and cls and case):
            raise PayloadError(f"{PHP_ENUM} is written Class:Case, not {value[PHP_ENUM]!r}")
        return php.PhpEnum(cls, case)
    if PHP_SERIALIZABLE in value:
        return php.PhpSerializable(str(value[PHP_SERIALIZABLE]), _unbase64(value.get("base64", "")))
    if BASE64 in value and len(value) == 1:
        return _unbase64(value[BASE64])
    if PHP_CYCLE in value:
        raise PayloadError(f"{PHP_CYCLE} marks an object inside itself, which JSON cannot rebuild")
    if PHP_CLASS in value:
        return _object_from_json(value)
    return {k: from_json(v) for k, v in value.items()}


def _object_from_json(value: dict[str, Any]) -> php.PhpObject:
    obj = php.PhpObject(str(value[PHP_CLASS]))
    visibility = value.get(PHP_VISIBILITY) or {}
    if not isinstance(visibility, dict):
        raise PayloadError(f"{PHP_VISIBILITY} maps property names to public, protected or private")
    for key, item in value.items():
        if key in (PHP_CLASS, PHP_VISIBILITY, PHP_SHADOWED):
            continue
        if key.startswith("\0"):
            if key.count("\0") != 2 or key.endswith("\0"):
                raise PayloadError(f"property {key!r}: a protected one is \\u0000*\\u0000name, "
                                   "a private one \\u0000Class\\u0000name")
            obj.set_mangled(key, from_json(item))
            continue
        seen, _, declared = str(visibility.get(key, "public")).partition(":")
        try:
            obj.set(key, from_json(item), seen, declared or None)
        except ValueError as e:
            raise PayloadError(f"property {key!r}: {e}") from None
    for entry in value.get(PHP_SHADOWED) or ():
        try:
            obj.shadowed[(str(entry["class"]), str(entry["name"]))] = from_json(entry["value"])
        except (TypeError, KeyError):
            raise PayloadError(f"{PHP_SHADOWED} holds objects with class, name and value") from None
    return obj


def to_json(value: Any, _inside: frozenset[int] = frozenset()) -> Any:
    """A decoded payload as a JSON-ready value (the forms above; keys made strings)."""
    if isinstance(value, php.PhpObject):
        if id(value) in _inside:
            return {PHP_CYCLE: value.php_class}
        return _object_to_json(value, _inside | {id(value)})
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _key_text(k)): to_json(v, _inside) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, _inside) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return {BASE64: base64.b64encode(data).decode()}
    if isinstance(value, php.PhpEnum):
        return {PHP_ENUM: f"{value.php_class}:{value.case}"}
    if isinstance(value, php.PhpSerializable):
        return {PHP_SERIALIZABLE: value.php_class, "base64": base64.b64encode(value.data).decode()}
    return value


def _object_to_json(obj: php.PhpObject, inside: frozenset[int]) -> dict[str, Any]:
    out: dict[str, Any] = {PHP_CLASS: obj.php_class, **{k: to_json(v, inside) for k, v in obj.items()}}
    visibility = {}
    for name in obj:
        seen = obj.visibility(name)
        if seen == "private" and obj.declaring_class(name) != obj.php_class:
            seen = f"private:{obj.declaring_class(name)}"
        if seen != "public":
            visibility[name] = seen
    if visibility:
        out[PHP_VISIBILITY] = visibility
    if obj.shadowed:
        out[PHP_SHADOWED] = [{"class": cls, "name": name, "value": to_json(v, inside)}
                             for (cls, name), v in obj.shadowed.items()]
    return out


def _key_text(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return str(key)


def _unbase64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError as e:
        raise PayloadError(f"invalid base64 in a PHP value: {e}") from e


def json_value(data: bytes, decoding: str) -> Any:
    """A result for `--decode`: decoded as php, json, or what auto finds, as a
    JSON-ready value in the forms above (raw bytes: a string, or __base64__)."""
    kind = sniff(data) if decoding == "auto" else decoding
    return to_json(data if kind == "raw" else resolve(kind).decode(data))


def as_json_text(data: bytes, decoding: str) -> bytes:
    """json_value() as one line of JSON. NaN and the infinities are written NaN
    and Infinity, which jq and Python read."""
    value = json_value(data, decoding)
    try:
        return json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in JSON) has no UTF-8: keep it escaped
        return json.dumps(value).encode()
