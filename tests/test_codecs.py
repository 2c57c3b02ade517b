"""Payload codecs: raw, json, php, auto; prepare_payload for the client. No I/O."""

from __future__ import annotations

from typing import Any

import phpserialize
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearctl.codecs import CODECS, DECODINGS, ENCODINGS, prepare_payload, resolve
from gearctl.errors import ExitCode, PayloadError, UsageError

raw, json_, php, auto = (CODECS[name] for name in ("raw", "json", "php", "auto"))


def test_registry() -> None:
    assert set(ENCODINGS) <= set(CODECS)
    assert set(DECODINGS) == set(CODECS)
    for name in DECODINGS:
        assert resolve(name).name == name
    with pytest.raises(PayloadError, match="unknown encoding 'yaml'"):
        resolve("yaml")


# -- raw -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "wire"),
    [(b"\0\xffbin", b"\0\xffbin"), ("héllo", "héllo".encode()), (bytearray(b"ab"), b"ab"),
     (memoryview(b"cd"), b"cd"), (None, b"")],
)
def test_raw_encode(value: Any, wire: bytes) -> None:
    assert raw.encode(value) == wire


def test_raw_decode_is_identity() -> None:
    assert raw.decode(b"\0\xff{") == b"\0\xff{"


@pytest.mark.parametrize("value", [1, 1.5, [b"x"], {"a": 1}])
def test_raw_refuses_structured_values(value: Any) -> None:
    with pytest.raises(PayloadError, match="raw encoding"):
        raw.encode(value)


# -- json ------------------------------------------------------------------------

def test_json_encode_is_compact_utf8() -> None:
    assert json_.encode({"a": [1, 2.5, None, True], "é": "ü"}) == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()


def test_json_decode() -> None:
    assert json_.decode(b'{"a": [1, "x"], "b": null}') == {"a": [1, "x"], "b": None}
    assert json_.decode('"ü"'.encode()) == "ü"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")], {"x": object()}, b"bytes"])
def test_json_encode_refuses(value: Any) -> None:
    with pytest.raises(PayloadError, match="cannot encode as JSON"):
        json_.encode(value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"{'a': 1}", "invalid JSON"),
        (b"[1,]", "invalid JSON"),
        (b"\xff\xfe", "not UTF-8 at byte 0"),
        (b"NaN", "NaN is not valid JSON"),
        (b"[Infinity]", "Infinity is not valid JSON"),
        (b'{"x": -Infinity}', "-Infinity is not valid JSON"),
    ],
)
def test_json_decode_errors_carry_the_data(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message) as info:
        json_.decode(data)
    assert info.value.data == data
    assert info.value.exit_code == ExitCode.USAGE


# -- php -------------------------------------------------------------------------

def test_php_known_serialize_output() -> None:
    # What phpserialize (and PHP's own serialize([1, "x"])) writes.
    assert php.encode([1, "x"]) == b'a:2:{i:0;i:1;i:1;s:1:"x";}'
    assert php.encode({"a": True, "b": None}) == b'a:2:{s:1:"a";b:1;s:1:"b";N;}'
    assert php.encode("ü") == b's:2:"\xc3\xbc";'  # PHP string lengths count bytes


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b'a:2:{i:0;i:1;i:1;s:1:"x";}', [1, "x"]),
        (b'a:2:{i:1;s:1:"b";i:0;s:1:"a";}', {1: "b", 0: "a"}),  # keys 0..n-1 but out of order
        (b'a:2:{i:0;s:1:"a";i:2;s:1:"c";}', {0: "a", 2: "c"}),  # a gap
        (b'a:1:{i:1;s:1:"a";}', {1: "a"}),  # not starting at 0
        (b'a:1:{s:1:"0";s:1:"a";}', {"0": "a"}),  # phpserialize keeps string keys as written
        (b'a:1:{s:1:"k";a:2:{i:0;i:1;i:1;i:2;}}', {"k": [1, 2]}),
        (b"i:-7;", -7),
        (b"d:0.5;", 0.5),
        (b"b:0;", False),
        (b"N;", None),
        (b's:2:"\xc3\xbc";', "ü"),
    ],
)
def test_php_decode_lists_and_dicts(data: bytes, value: Any) -> None:
    decoded = php.decode(data)
    assert decoded == value
    assert type(decoded) is type(value)


def test_php_nested_round_trip() -> None:
    value = {"job": "resize", "sizes": [[64, 64], [128, 96]], "opts": {"q": 0.8, "strip": True, "tag": None},
             7: ["x", {"deep": []}]}
    data = php.encode(value)
    assert php.decode(data) == value
    assert phpserialize.loads(data, decode_strings=True)["job"] == "resize"  # readable by the reference library


json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, min_size=1, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, min_size=1, max_size=4)
    ),
    max_leaves=15,
)


@given(json_values)
def test_php_round_trip_property(value: Any) -> None:
    # Non-empty lists stay lists, string-keyed dicts stay dicts (an empty PHP array
    # is the one ambiguous case, so the strategy leaves it out).
    assert php.decode(php.encode(value)) == value


@given(json_values)
def test_json_round_trip_property(value: Any) -> None:
    assert json_.decode(json_.encode(value)) == value


def test_php_binary_strings_survive_a_round_trip() -> None:
    # PHP strings are bytes; ones that are not UTF-8 must come back unchanged.
    data = b'a:1:{i:0;s:2:"\xff\x00";}'
    assert php.encode(php.decode(data)) == data


def test_php_empty_array_decodes_as_empty_list() -> None:
    assert php.decode(b"a:0:{}") == []


@pytest.mark.parametrize(
    "data",
    [
        b'i:1;xx',
        b'a:1:{i:0;i:1;}}',
        b'N;N;',
        b's:1:"x";\n',
    ],
)
def test_php_trailing_garbage_is_an_error(data: bytes) -> None:
    with pytest.raises(PayloadError, match="trailing bytes") as info:
        php.decode(data)
    assert info.value.data == data


@pytest.mark.parametrize("data", [b"", b"i:1", b'a:2:{i:0;i:1;}', b's:5:"ab";', b"x:1;", b"hello"])
def test_php_invalid_data(data: bytes) -> None:
    with pytest.raises(PayloadError, match="invalid PHP serialize") as info:
        php.decode(data)
    assert info.value.data == data


@pytest.mark.parametrize("value", [float("nan"), [1, float("inf")], {"a": {"b": float("-inf")}}])
def test_php_refuses_non_finite_floats(value: Any) -> None:
    with pytest.raises(PayloadError, match="PHP serialize"):
        php.encode(value)


# -- auto ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"[1, 2]", [1, 2]),
        (b"42", 42),  # JSON first: a bare number is JSON
        (b'"s"', "s"),
        (b'a:2:{i:0;i:1;i:1;s:1:"x";}', [1, "x"]),  # not JSON, but PHP
        (b"i:5;", 5),
        (b"N;", None),
        (b"hello world", b"hello world"),  # neither: the raw bytes
        (b"\xff\x00", b"\xff\x00"),
        (b"", b""),
        (b"NaN", b"NaN"),  # not JSON for us, not PHP
        (b"i:1;xx", b"i:1;xx"),  # PHP with trailing garbage is not PHP
    ],
)
def test_auto_decode(data: bytes, value: Any) -> None:
    decoded = auto.decode(data)
    assert decoded == value
    assert type(decoded) is type(value)


def test_auto_encode() -> None:
    assert auto.encode(b"\0raw") == b"\0raw"
    assert auto.encode("text") == b"text"
    assert auto.encode({"a": [1]}) == b'{"a":[1]}'
    assert auto.encode(None) == b"null"


# -- prepare_payload -------------------------------------------------------------

def test_prepare_raw_passes_anything() -> None:
    assert prepare_payload(b"\0not json{", "raw") == b"\0not json{"


def test_prepare_json_keeps_the_bytes_as_given() -> None:
    data = b'{ "a" : [1, 2] }\n'
    assert prepare_payload(data, "json") == data


def test_prepare_php_converts_json_to_serialize() -> None:
    assert prepare_payload(b'[1, "x"]', "php") == b'a:2:{i:0;i:1;i:1;s:1:"x";}'
    assert prepare_payload(b'{"a": {"b": null}}', "php") == b'a:1:{s:1:"a";a:1:{s:1:"b";N;}}'


@pytest.mark.parametrize("encoding", ["json", "php"])
@pytest.mark.parametrize("data", [b"{not json", b"NaN", b"[Infinity]", b'{"x": -Infinity}', b"\xff", b""])
def test_prepare_invalid_json_is_a_usage_error(data: bytes, encoding: str) -> None:
    with pytest.raises(PayloadError, match="invalid JSON") as info:
        prepare_payload(data, encoding)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == ExitCode.USAGE == 2
    assert info.value.data == data


def test_prepare_unknown_encoding() -> None:
    with pytest.raises(PayloadError, match="unknown encoding 'xml'"):
        prepare_payload(b"{}", "xml")
