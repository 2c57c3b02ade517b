"""Payload codecs: raw bytes, JSON, PHP serialize(), and `auto` detection.

All share one small interface (`Codec`) and are found by name through
`resolve()`. Decode failures raise PayloadError carrying the bytes that failed.
PHP arrays whose keys are exactly 0..n-1 decode to lists, the rest to dicts,
which is what a PHP programmer means by them.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Protocol

import phpserialize

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


def _php_array(pairs: list[tuple[Any, Any]]) -> Any:
    if all(key == index for index, (key, _) in enumerate(pairs)):
        return [value for _, value in pairs]
    return dict(pairs)


class PhpCodec:
    name = "php"

    def encode(self, value: Any) -> bytes:
        _check_php(value)
        try:
            return bytes(phpserialize.dumps(value))
        except (TypeError, ValueError) as e:
            raise PayloadError(f"cannot encode as PHP serialize(): {e}") from e

    def decode(self, data: bytes) -> Any:
        stream = io.BytesIO(data)
        try:
            value = phpserialize.load(stream, decode_strings=True, array_hook=_php_array,
                                      object_hook=phpserialize.phpobject)
        except (ValueError, TypeError, KeyError, IndexError, EOFError) as e:
            raise PayloadError(f"invalid PHP serialize() data: {e or 'truncated'}", data) from e
        if stream.tell() != len(data):
            raise PayloadError(f"invalid PHP serialize() data: trailing bytes after offset {stream.tell()}", data)
        return value


def _check_php(value: Any) -> None:
    """phpserialize writes Python's spelling of inf/nan, which PHP cannot read."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{value} cannot be sent as PHP serialize() yet")
    if isinstance(value, dict):
        for item in value.values():
            _check_php(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_php(item)


class AutoCodec:
    """Decodes JSON, else PHP serialize(), else gives the raw bytes; encodes as JSON."""

    name = "auto"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview, str)):
            return _RAW.encode(value)
        return _JSON.encode(value)

    def decode(self, data: bytes) -> Any:
        for codec in (_JSON, _PHP):
            try:
                return codec.decode(data)
            except PayloadError:
                continue
        return data


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
    php: JSON in, its PHP serialize() form out (for workers that unserialize()).
    """
    if encoding == "raw":
        return data
    value = CODECS["json"].decode(data)
    if encoding == "json":
        return data
    if encoding == "php":
        return CODECS["php"].encode(value)
    raise PayloadError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
