"""gearctl.php: PHP serialize()/unserialize() exactly, checked against PHP itself.

Pure cases run without PHP; the interop cases run php-cli on tests/php/serialize.php
(no server needed): PHP's serialize() decoded in Python, and Python's bytes read and
written back by PHP byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import shutil
import subprocess
import time

import pytest
from conftest import PHP_DIR
from hypothesis import given, settings
from hypothesis import strategies as st

from gearctl.errors import PayloadError
from gearctl.php import MAX_DEPTH, PhpEnum, PhpObject, PhpSerializable, dumps, format_float, loads

needs_php = pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")


def php(*args: str, input: bytes = b"") -> str:
    done = subprocess.run(["php", str(PHP_DIR / "serialize.php"), *args], input=input, capture_output=True,
                          timeout=60, check=True)
    return done.stdout.decode()


# --- encode and decode, case by case -----------------------------------------------

CASES = [
    (None, b"N;"),
    (True, b"b:1;"),
    (False, b"b:0;"),
    (0, b"i:0;"),
    (-12, b"i:-12;"),
    (2**63 - 1, b"i:9223372036854775807;"),
    (0.1, b"d:0.1;"),
    (1.0, b"d:1;"),
    (-0.0, b"d:-0;"),
    (1e100, b"d:1.0E+100;"),
    (1e-5, b"d:1.0E-5;"),
    (0.0001, b"d:0.0001;"),
    (1e16, b"d:10000000000000000;"),
    (1e17, b"d:1.0E+17;"),
    (0.30000000000000004, b"d:0.30000000000000004;"),
    (math.inf, b"d:INF;"),
    (-math.inf, b"d:-INF;"),
    ("", b's:0:"";'),
    ("Zoë", b's:4:"Zo\xc3\xab";'),
    (b"\xff\x00", b's:2:"\xff\x00";'),
    ([1, "a"], b'a:2:{i:0;i:1;i:1;s:1:"a";}'),
    ({3: "a", 7: "b"}, b'a:2:{i:3;s:1:"a";i:7;s:1:"b";}'),
    ({"b": 1, "a": 2}, b'a:2:{s:1:"b";i:1;s:1:"a";i:2;}'),
    ({1: "x", 0: "y"}, b'a:2:{i:1;s:1:"x";i:0;s:1:"y";}'),
    (PhpEnum("Suit", "Hearts"), b'E:11:"Suit:Hearts";'),
    (PhpSerializable("ArrayObject", b"x:i:0;a:0:{};m:a:0:{}"),
     b'C:11:"ArrayObject":21:{x:i:0;a:0:{};m:a:0:{}}'),
]


@pytest.mark.parametrize(("value", "encoded"), CASES, ids=[repr(c[1])[:40] for c in CASES])
def test_each_case_encodes_and_decodes(value, encoded):
    assert dumps(value) == encoded
    decoded = loads(encoded)
    assert decoded == value and type(decoded) is type(value)
    assert loads(encoded + b"\n") == value  # echo's one trailing newline


def test_nan_is_written_as_php_writes_it():
    assert dumps(math.nan) == b"d:NAN;"
    assert math.isnan(loads(b"d:NAN;"))


def test_integers_past_int64_go_as_php_floats():
    assert dumps(12345678901234567890) == b"d:1.2345678901234567E+19;"
    assert dumps(-(2**63) - 1) == b"d:-9.223372036854776E+18;"
    assert dumps(10**400) == b"d:INF;"


def test_a_sparse_or_reordered_array_stays_a_dict_and_an_empty_one_is_a_list():
    assert loads(b'a:2:{i:3;s:1:"a";i:7;s:1:"b";}') == {3: "a", 7: "b"}
    assert loads(b"a:0:{}") == []


def test_one_odd_string_does_not_spoil_the_others():
    value = loads(b'a:2:{s:2:"ok";s:4:"text";s:3:"bad";s:2:"\xc3\x28";}')
    assert value == {"ok": "text", "bad": b"\xc3\x28"}


def test_an_object_keeps_class_and_visibility_and_encodes_back():
    data = b'O:7:"Account":3:{s:4:"name";s:3:"ann";s:10:"\0*\0balance";i:10;s:12:"\0Account\0pin";s:4:"1234";}'
    obj = loads(data)
    assert isinstance(obj, PhpObject) and obj.php_class == "Account"
    assert dict(obj) == {"name": "ann", "balance": 10, "pin": "1234"}
    assert [obj.visibility(k) for k in obj] == ["public", "protected", "private"]
    assert obj.declaring_class("pin") == "Account"
    assert dumps(obj) == data


def test_a_php_object_is_a_plain_mapping_for_json_and_keys():
    import json

    obj = loads(b'O:8:"stdClass":2:{s:1:"a";i:1;s:4:"list";a:1:{i:0;i:2;}}')
    assert list(obj.keys()) == ["a", "list"]
    assert json.loads(json.dumps(obj)) == {"a": 1, "list": [2]}


def test_properties_set_from_python():
    obj = PhpObject("Account", {"name": "bo"})
    obj.set("balance", 5, "protected")
    obj.set("pin", "0", "private", declaring_class="Base")
    assert dumps(obj) == (b'O:7:"Account":3:{s:4:"name";s:2:"bo";s:10:"\0*\0balance";i:5;'
                          b's:9:"\0Base\0pin";s:1:"0";}')
    del obj["balance"]
    obj["balance"] = 1
    assert obj.visibility("balance") == "public"
    with pytest.raises(ValueError):
        obj.set("x", 1, "secret")


def test_objects_compare_by_class_too():
    assert PhpObject("A", {"x": 1}) != PhpObject("B", {"x": 1})
    assert PhpObject("A", {"x": 1}) == PhpObject("A", {"x": 1})


def test_references_resolve_to_the_value_they_point_at():
    # PHP: $x = ['x' => 1]; serialize([&$x, &$x])
    assert loads(b'a:2:{i:0;a:1:{s:1:"x";i:1;}i:1;R:2;}') == [{"x": 1}, {"x": 1}]
    # r: (the same object twice) and an object that holds itself
    pair = loads(b'a:2:{i:0;O:8:"stdClass":0:{}i:1;r:2;}')
    assert pair[0] is pair[1]
    me = loads(b'O:8:"stdClass":1:{s:2:"me";r:1;}')
    assert me["me"] is me
    assert dumps(me) == b'O:8:"stdClass":1:{s:2:"me";r:1;}'
    assert dumps(pair) == b'a:2:{i:0;O:8:"stdClass":0:{}i:1;r:2;}'


def test_slots_count_values_not_keys():
    # slot 1 the array, 2 the nested array, 3 its 'a', 4 the R: target check
    assert loads(b'a:2:{s:1:"k";a:1:{s:1:"a";i:5;}s:1:"r";R:3;}') == {"k": {"a": 5}, "r": 5}


@pytest.mark.parametrize(("data", "message"), [
    (b"", "truncated at offset 0"),
    (b"i:1;x", "trailing bytes at offset 4"),
    (b"i:1;\n\n", "trailing bytes at offset 4"),
    (b'N;N;', "trailing bytes at offset 2"),
    (b's:5:"ab";', "runs past the end of the data at offset 2"),
    (b's:2:"abc";', "expected '\"', found 'c' at offset 7"),
    (b"a:99999999:{}", "array size 99999999 is larger than the data left at offset 2"),
    (b"a:1:{i:0;i:1;", "truncated, expected '}' at offset 13"),
    (b"a:1:{d:1.5;i:1;}", "an array key must be an integer or a string at offset 5"),
    (b"d:1_0;", "bad float '1_0' at offset 2"),
    (b"i:1.5;", "bad integer '1.5' at offset 2"),
    (b"b:2;", "bad boolean '2' at offset 2"),
    (b"Z:1;", "unknown type 'Z:' at offset 0"),
    (b"a:1:{i:0;R:9;}", "reference 9 points at no value at offset 9"),
    (b"a:1:{i:0;R:1;}", "circular reference"),
    (b'E:4:"Suit";', "an enum is written Class:Case at offset 2"),
    (b'O:1:"A":2:{s:1:"x";i:1;s:4:"\0*\0x";i:2;}', "property 'x' of A appears twice at offset 23"),
])
def test_bad_data_is_refused_with_its_offset(data, message):
    with pytest.raises(PayloadError) as e:
        loads(data)
    assert message in str(e.value)
    assert e.value.data == data


def test_nesting_is_bounded():
    deep = b"a:1:{i:0;" * (MAX_DEPTH + 1) + b"N;" + b"}" * (MAX_DEPTH + 1)
    with pytest.raises(PayloadError, match="nested deeper than"):
        loads(deep)
    ok = b"a:1:{i:0;" * MAX_DEPTH + b"N;" + b"}" * MAX_DEPTH
    assert loads(ok) is not None


def test_what_cannot_be_encoded_says_so():
    with pytest.raises(PayloadError, match="cannot encode set"):
        dumps({1, 2})
    with pytest.raises(PayloadError, match="int or a string, not float"):
        dumps({1.5: "x"})
    loop: list = []
    loop.append(loop)
    with pytest.raises(PayloadError, match="contains itself"):
        dumps(loop)
    with pytest.raises(PayloadError, match="not valid Unicode"):
        dumps("\ud800")


@pytest.mark.parametrize(("value", "text"), [
    (0.1, "0.1"), (100.0, "100"), (1e15, "1000000000000000"), (1.5e-7, "1.5E-7"), (-2.5, "-2.5"),
    (123456789.125, "123456789.125"), (5e-324, "5.0E-324"), (1.7976931348623157e308,
                                                                           "1.7976931348623157E+308"),
])
def test_float_spelling(value, text):
    assert format_float(value) == text


# --- properties --------------------------------------------------------------------

def _php_array_form(value):
    """What a Python value decodes back to: dicts keyed 0..n-1 (and {}) come back as lists,
    tuples as lists, bytes that are UTF-8 as str."""
    if isinstance(value, PhpObject):
        out = PhpObject(value.php_class)
        for k, v in value.items():
            out.set(k, _php_array_form(v), value.visibility(k), value.declaring_class(k))
        return out
    if isinstance(value, (list, tuple)):
        return [_php_array_form(v) for v in value]
    if isinstance(value, dict):
        items = {k: _php_array_form(v) for k, v in value.items()}
        return list(items.values()) if all(k == i for i, k in enumerate(items)) else items
    return value


def _int_like(key: str) -> bool:
    return re.fullmatch(r"-?[1-9][0-9]*|0", key) is not None


unicode = st.characters(blacklist_categories=("Cs",))  # lone surrogates are not Unicode text
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=8)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False) | st.text(unicode, max_size=20)
           | st.binary(max_size=10).filter(lambda b: _not_utf8(b))
           | st.builds(PhpEnum, st.from_regex(r"[A-Z][a-z]{0,5}", fullmatch=True),
                       st.from_regex(r"[A-Z][a-z]{0,5}", fullmatch=True))
           | st.builds(PhpSerializable, st.from_regex(r"[A-Z][a-z]{0,5}", fullmatch=True), st.binary(max_size=10)))


def _holds(value, types) -> bool:
    if isinstance(value, types):
        return True
    if isinstance(value, dict):
        return any(_holds(v, types) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds(v, types) for v in value)
    return False


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _object(draw_props):
    def build(cls, props):
        obj = PhpObject(cls)
        for name, (value, visibility) in props.items():
            obj.set(name, value, visibility)
        return obj
    return st.builds(build, st.from_regex(r"[A-Z][A-Za-z]{0,6}", fullmatch=True),
                     st.dictionaries(names, st.tuples(draw_props, st.sampled_from(["public", "protected", "private"])),
                                     max_size=4))


values = st.recursive(scalars, lambda children: (
    st.lists(children, max_size=5)
    # PHP's arrays take a key such as "0" or "-3" for the int: text keys are other text.
    | st.dictionaries(st.integers(-5, 5) | st.text(unicode, max_size=5).filter(lambda k: not _int_like(k)),
                      children, max_size=5)
    | _object(children)), max_leaves=20)


@given(values)
@settings(max_examples=300, deadline=None)
def test_any_supported_value_round_trips(value):
    assert loads(dumps(value)) == _php_array_form(value)


# A deadline per example (far above the microseconds one takes) makes "decodes or
# refuses in bounded time" part of the property.
@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=2000)
def test_any_bytes_decode_or_raise_payload_error(data):
    with contextlib.suppress(PayloadError):
        loads(data)


@given(values, st.data())
@settings(max_examples=300, deadline=2000)
def test_damaged_serializations_decode_or_raise_payload_error(value, data):
    encoded = bytearray(dumps(value))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, max(len(encoded) - 1, 0)))
        action = data.draw(st.sampled_from(["flip", "cut", "digit"]))
        if action == "cut":
            del encoded[at:]
        elif encoded:
            encoded[at] = data.draw(st.sampled_from(list(b'0123456789:;{}"aisdbNROrCE\\')))
    with contextlib.suppress(PayloadError):
        loads(bytes(encoded))


def test_a_hostile_size_costs_nothing():
    import tracemalloc

    tracemalloc.start()
    start = time.process_time()
    for data in (b"a:999999999999:{" + b"i:0;N;" * 10, b"s:999999999999:\"x\";", b"O:1:\"A\":99999999999:{}",
                 b"a:1:{i:0;" * 10_000):
        with pytest.raises(PayloadError, match=r"larger than the data left|runs past the end|nested deeper"):
            loads(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.process_time() - start < 1.0
    assert peak < 2_000_000  # bytes: nothing was allocated for the declared sizes


# --- against PHP itself ------------------------------------------------------------

@pytest.fixture(scope="module")
def php_samples() -> dict[str, bytes]:
    if shutil.which("php") is None:
        pytest.skip("php-cli is not installed")
    return {name: base64.b64decode(b64) for name, b64 in (line.split("\t") for line in php("samples").splitlines())}


EXPECTED_FROM_PHP = {
    "null": None, "true": True, "false": False, "int": 42, "negint": -7, "intmax": 2**63 - 1,
    "float01": 0.1, "float1e100": 1e100, "inf": math.inf, "neginf": -math.inf, "negzero": -0.0,
    "utf8": "Zoë", "binary": b"\xff\xfe\x00a", "empty": "", "list": [1, "two", 3.5], "emptyarray": [],
    "sparse": {3: "a", 7: "b"}, "assoc": {"b": 1, "a": 2, 5: "five"},
    "nested": {"uids": [1, 2, 3], "meta": {"by": "cron", "at": None}},
    "mixedstrings": {"ok": "text", "bad": b"\xc3\x28"},
    "refs": [{"x": 1}, {"x": 1}], "enum": PhpEnum("Suit", "Hearts"),
    "enums": [PhpEnum("Suit", "Hearts"), PhpEnum("Suit", "Spades")], "bigfloat": 1.2345678901234567e19,
}


@needs_php
@pytest.mark.parametrize("name", sorted(EXPECTED_FROM_PHP))
def test_php_serialize_decodes_to_the_documented_value(php_samples, name):
    value = loads(php_samples[name])
    assert value == EXPECTED_FROM_PHP[name] and type(value) is type(EXPECTED_FROM_PHP[name])
    if name != "refs":  # references are resolved, so they come back as two copies
        assert dumps(value) == php_samples[name]


@needs_php
def test_php_objects_decode_with_class_and_visibility(php_samples):
    assert math.isnan(loads(php_samples["nan"]))
    obj = loads(php_samples["stdclass"])
    assert obj.php_class == "stdClass" and obj == {"a": 1, "list": [1, 2]}
    account = loads(php_samples["account"])
    assert account.php_class == "Account" and dict(account) == {"name": "ann", "balance": 10, "pin": "1234"}
    assert [account.visibility(k) for k in account] == ["public", "protected", "private"]
    me = loads(php_samples["self"])
    assert me["me"] is me
    same = loads(php_samples["sameobj"])
    assert same[0] is same[1]
    for name in ("stdclass", "account", "self", "sameobj"):
        assert dumps(loads(php_samples[name])) == php_samples[name], name


@needs_php
@pytest.mark.interop
def test_a_redeclared_private_keeps_both_values(php_samples):
    # Child extends Account and redeclares private $pin: PHP writes \0Account\0pin and
    # \0Child\0pin. The mapping holds the one Child sees; Account's stays in shadowed.
    child = loads(php_samples["child"])
    assert child["pin"] == "child" and child.declaring_class("pin") == "Child"
    assert child.shadowed == {("Account", "pin"): "1234"}
    assert loads(dumps(child)) == child
    back = php("roundtrip", input=base64.b64encode(dumps(child)) + b"\n").strip()
    assert loads(base64.b64decode(back)) == child


@needs_php
@pytest.mark.interop
def test_php_reads_back_what_python_writes_byte_for_byte():
    account = PhpObject("Account", {"name": "bo"})
    account.set("balance", 5, "protected")
    account.set("pin", "9", "private")
    values = [None, True, False, 0, -(2**63), 2**63 - 1, 0.1, 1e100, -0.0, 1e-7, math.inf, -math.inf, math.nan,
              "Zoë", b"\xff\x00", "", [1, [2, [3]]], {3: "a", 7: "b"}, {"k": {"n": None}},
              PhpObject("stdClass", {"a": 1}), account, PhpEnum("Suit", "Spades"), [account, account]]
    lines = b"".join(base64.b64encode(dumps(v)) + b"\n" for v in values)
    back = php("roundtrip", input=lines).splitlines()
    assert len(back) == len(values)
    for value, line in zip(values, back, strict=True):
        assert line != "ERR", value
        assert base64.b64decode(line) == dumps(value), value


@needs_php
@given(values)
@settings(max_examples=60, deadline=None)
@pytest.mark.interop
def test_php_reads_any_supported_value(value):
    # A Serializable payload is its class's own format, and an enum needs its class
    # declared: PHP refuses both for classes it does not have, so they stay out.
    if _holds(value, (PhpSerializable, PhpEnum)):
        return
    back = php("roundtrip", input=base64.b64encode(dumps(value)) + b"\n").strip()
    assert back != "ERR"
    assert loads(base64.b64decode(back)) == _php_array_form(value)
