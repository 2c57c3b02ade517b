"""Payload codecs: raw, json, php, auto; prepare_payload for the client. No I/O."""

from __future__ import annotations

import json
from typing import Any

import phpserialize
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearctl.codecs import (
    CODECS,
    DECODINGS,
    ENCODINGS,
    as_json_text,
    encode_answer,
    from_json,
    prepare_payload,
    resolve,
    sniff,
    to_json,
)
from gearctl.errors import ExitCode, PayloadError, UsageError
from gearctl.php import PhpEnum, PhpObject, PhpSerializable

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
        (b'a:1:{s:1:"0";s:1:"a";}', {"0": "a"}),  # string keys stay as written
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
        b's:1:"x";\n\n',  # one newline (echo's) is allowed, not two
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


def test_php_writes_non_finite_floats_as_php_does() -> None:
    assert php.encode([1, float("inf"), float("-inf")]) == b"a:3:{i:0;i:1;i:1;d:INF;i:2;d:-INF;}"
    assert php.encode(float("nan")) == b"d:NAN;"


def test_php_str_is_a_php_string() -> None:
    assert php.encode("Zoë") == b's:4:"Zo\xc3\xab";'


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
        (b"s:foo", b"s:foo"),  # a letter and a colon is not yet PHP
        (b"a:b:c", b"a:b:c"),
        (b"2026-12-01", b"2026-12-01"),  # starts like a number, is text
        (b'a:1:{i:0;i:1;}\n', [1]),  # echo's newline
    ],
)
def test_auto_decode(data: bytes, value: Any) -> None:
    decoded = auto.decode(data)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("data", [
    b"i:1;xx",  # PHP with trailing garbage
    b'a:2:{i:0;i:1;}',  # truncated PHP
    b's:5:"ab";',
    b"O:7:\"Account\":1:{s:1:\"x\";",
    b"N;N;",
    b"d:1.2.3;",
    b"b:1;x",
    b'{"uids": [1, 2}',  # a broken JSON object
    b"[1, 2",
    b'  {"oops": ',
    b"[1, 2,",
    b"i:5;x",
])
def test_auto_refuses_what_starts_like_php_or_json_but_does_not_decode(data: bytes) -> None:
    with pytest.raises(PayloadError, match=r"invalid (PHP serialize\(\) data|JSON)") as info:
        auto.decode(data)
    assert info.value.data == data


@pytest.mark.parametrize(("data", "kind"), [
    (b'a:1:{i:0;i:1;}', "php"), (b'O:8:"', "php"), (b"N;", "php"), (b'E:11:"', "php"), (b"i:-1;", "php"),
    (b"d:INF;", "php"), (b"b:0;", "php"), (b"{", "json"), (b" [", "json"), (b"42", "json"), (b'"x"', "json"),
    (b"true", "json"), (b"hello", "raw"), (b"", "raw"), (b"\xff", "raw"), (b"s:x", "raw"), (b"12 apples", "raw"),
    # Text that merely starts with a bracket or a PHP type letter stays text.
    (b"[INFO] started", "raw"), (b"{oops}", "raw"), (b"i:5 apples", "raw"), (b"a:b", "raw"), (b"d:dev", "raw"),
    (b"{", "json"), (b"[", "json"), (b'[ "x"', "json"), (b"{}", "json"), (b"[]", "json"),
])
def test_sniff(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize(("value", "encoding", "wire"), [
    (None, "php", b""), (None, "json", b""),
    (b"\0raw", "php", b"\0raw"), (b"\0raw", "json", b"\0raw"),
    ("Zoë", "php", b's:4:"Zo\xc3\xab";'), ("Zoë", "json", "Zoë".encode()), ("Zoë", "raw", "Zoë".encode()),
    ({"sent": 2}, "php", b'a:1:{s:4:"sent";i:2;}'), ({"sent": 2}, "json", b'{"sent":2}'),
    ({"sent": 2}, "raw", b'{"sent":2}'), (7, "php", b"i:7;"), (7, "json", b"7"),
])
def test_encode_answer_speaks_the_callers_language(value: Any, encoding: str, wire: bytes) -> None:
    assert encode_answer(value, encoding) == wire


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
    assert prepare_payload(b'{"i": 12345678901234567890}', "php") == b'a:1:{s:1:"i";d:1.2345678901234567E+19;}'


def test_prepare_php_objects_and_enums_from_json() -> None:
    data = (b'{"__php_class__": "Account", "name": "ann", "\\u0000*\\u0000balance": 10,'
            b' "\\u0000Account\\u0000pin": "1", "suit": {"__php_enum__": "Suit:Hearts"}}')
    assert prepare_payload(data, "php") == (
        b'O:7:"Account":4:{s:4:"name";s:3:"ann";s:10:"\0*\0balance";i:10;s:12:"\0Account\0pin";s:1:"1";'
        b's:4:"suit";E:11:"Suit:Hearts";}')
    with pytest.raises(PayloadError, match="Class:Case"):
        prepare_payload(b'{"__php_enum__": "Hearts"}', "php")


def test_to_json_and_back() -> None:
    obj = PhpObject("Account", {"name": "ann"})
    obj.set("balance", 10, "protected")
    value = {"o": obj, 5: [b"\xff", b"ok", PhpEnum("Suit", "Hearts"), PhpSerializable("A", b"x")]}
    shown = to_json(value)
    assert shown == {"o": {"__php_class__": "Account", "name": "ann", "balance": 10,
                           "__php_visibility__": {"balance": "protected"}},
                     "5": [{"__base64__": "/w=="}, "ok", {"__php_enum__": "Suit:Hearts"},
                           {"__php_serializable__": "A", "base64": "eA=="}]}
    back = from_json(shown)
    assert back["o"].php_class == "Account" and back["5"][0] == b"\xff" and back["5"][2] == PhpEnum("Suit", "Hearts")


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


# -- --decode ----------------------------------------------------------------------

@pytest.mark.parametrize(("data", "decoding", "shown"), [
    (b'a:2:{s:4:"uids";a:2:{i:0;i:1;i:1;i:2;}s:1:"o";O:8:"stdClass":1:{s:1:"x";s:2:"\xff\xfe";}}', "php",
     b'{"uids": [1, 2], "o": {"__php_class__": "stdClass", "x": {"__base64__": "//4="}}}'),
    (b'a:1:{i:3;d:INF;}', "auto", b'{"3": Infinity}'),
    (b'{"a":1}', "json", b'{"a": 1}'),
    (b'{"a":1}', "auto", b'{"a": 1}'),
    (b"plain text", "auto", b'"plain text"'),
    (b"\xff\x00", "auto", b'{"__base64__": "/wA="}'),
    (b's:4:"Zo\xc3\xab";', "auto", '"Zoë"'.encode()),
])
def test_as_json_text(data: bytes, decoding: str, shown: bytes) -> None:
    assert as_json_text(data, decoding) == shown


def test_as_json_text_says_what_does_not_decode() -> None:
    with pytest.raises(PayloadError, match="invalid PHP serialize"):
        as_json_text(b"plain text", "php")


def test_json_forms_keep_visibility_and_shadowed_privates() -> None:
    obj = PhpObject("Child", {"name": "ann"})
    obj.set("balance", 10, "protected")
    obj.set("pin", "c", "private")
    obj.set("base", 1, "private", declaring_class="Base")
    obj.shadowed[("Base", "pin")] = "b"
    shown = to_json(obj)
    assert shown == {"__php_class__": "Child", "name": "ann", "balance": 10, "pin": "c", "base": 1,
                     "__php_visibility__": {"balance": "protected", "pin": "private", "base": "private:Base"},
                     "__php_shadowed__": [{"class": "Base", "name": "pin", "value": "b"}]}
    assert from_json(shown) == obj
    assert prepare_payload(json.dumps(shown).encode(), "php") == php.encode(obj)


def test_an_object_inside_itself_is_marked_not_followed() -> None:
    me = PhpObject("Node")
    me["next"] = me
    assert to_json({"list": [me]}) == {"list": [{"__php_class__": "Node", "next": {"__php_cycle__": "Node"}}]}
    with pytest.raises(PayloadError, match="cannot rebuild"):
        from_json({"__php_class__": "Node", "next": {"__php_cycle__": "Node"}})


@pytest.mark.parametrize("data", [
    b'{"__php_class__": ""}', b'{"__php_class__": "A\\"B;x"}', b'{"__php_class__": "1abc"}',
    b'{"__php_enum__": "Suit:1x"}', b'{"__php_class__": "A", "\\u0000bad": 1}',
    b'{"__php_class__": "A", "x": 1, "__php_visibility__": {"x": "secret"}}',
])
def test_names_php_would_refuse_are_refused_at_the_client(data: bytes) -> None:
    with pytest.raises(PayloadError):
        prepare_payload(data, "php")


def test_namespaced_and_unicode_class_names_are_fine() -> None:
    assert prepare_payload(b'{"__php_class__": "App\\\\Model\\\\Caf\\u00e9"}', "php") == \
        'O:15:"App\\Model\\Café":0:{}'.encode()
