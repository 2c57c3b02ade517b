"""Fuzzing (issue 11): the packet decoder, the admin protocol's framer and every
parse_* function, every payload codec and PHP unserialize(), fed generated input
near the valid forms and far from them. Any input either decodes or raises the
documented error (RemoteProtocolError, ServerError, PayloadError): nothing else
escapes. No sockets.

CI runs FUZZ_EXAMPLES per target (a few seconds in all). The extended run sets
GEARCTL_FUZZ_EXAMPLES (20000 per target makes well over 100,000 inputs) and
GEARCTL_FUZZ_REPORT=FILE to get the count of inputs each target was fed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearctl import admin, codecs, php
from gearctl.deadletter import Envelope, parse_attempt
from gearctl.errors import PayloadError, RemoteProtocolError, ServerError
from gearctl.protocol import ARGS, DEFAULT_MAX_PACKET, Decoder, Magic, Packet, PacketType

EXAMPLES = int(os.environ.get("GEARCTL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
FED: Counter[str] = Counter()  # inputs per target, for GEARCTL_FUZZ_REPORT


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    path = os.environ.get("GEARCTL_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"examples_per_target": EXAMPLES, "fed": dict(FED), "total": sum(FED.values())}, f, indent=1)


def fed(target: str) -> None:
    FED[target] += 1


# -- the binary packet decoder -----------------------------------------------------
def frame(magic: bytes, ptype: int, body: bytes, size_delta: int) -> bytes:
    return magic + struct.pack(">II", ptype, max(0, min(len(body) + size_delta, 2**32 - 1))) + body


frames = st.builds(
    frame,
    st.sampled_from([b"\0REQ", b"\0RES", b"\0REX", b"REQ\0", b"\0\0\0\0"]),
    st.one_of(st.sampled_from([int(t) for t in PacketType]), st.integers(0, 2**32 - 1)),
    st.binary(max_size=64) | st.lists(st.binary(max_size=12), max_size=9).map(b"\0".join),
    st.sampled_from([0, 0, 0, 0, -1, 1, -5, 7, 2**32]),  # 2**32: a 4 GB claim
)
streams = st.lists(frames | st.binary(max_size=40), max_size=8).map(b"".join)


def drain(decoder: Decoder) -> int:
    """Packets until the decoder wants more; only RemoteProtocolError may escape."""
    n = 0
    while (packet := decoder.next()) is not None:
        assert isinstance(packet, Packet) and len(packet.args) == len(ARGS[packet.type])
        n += 1
    return n


@FUZZ
@given(streams, st.sampled_from([None, Magic.REQ, Magic.RES]))
def test_decoder_fed_whole(data: bytes, expect: Magic | None) -> None:
    fed("decoder whole")
    decoder = Decoder(expect)
    decoder.feed(data)
    try:
        drain(decoder)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):  # and it stays broken
            decoder.next()
        return
    assert decoder.pending < HEADER_PLUS_MAX


HEADER_PLUS_MAX = 12 + DEFAULT_MAX_PACKET


@FUZZ
@given(streams, st.randoms(use_true_random=False), st.sampled_from([None, Magic.REQ, Magic.RES]),
       st.sampled_from([DEFAULT_MAX_PACKET, 16]))
def test_decoder_fed_in_random_chunks(data: bytes, rng: random.Random, expect: Magic | None, limit: int) -> None:
    fed("decoder chunks")
    decoder = Decoder(expect, max_packet=limit)
    whole = Decoder(expect, max_packet=limit)
    whole.feed(data)
    got: list[Packet] = []
    pos = 0
    try:
        while pos < len(data):
            step = rng.randint(1, 17)
            decoder.feed(data[pos:pos + step])
            pos += step
            while (packet := decoder.next()) is not None:
                got.append(packet)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            list(whole)  # fed whole, the same stream fails too
        return
    assert got == list(whole)  # chunking changes nothing


# -- the admin protocol --------------------------------------------------------------
words = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
numbers = st.integers(-5, 10**6).map(str) | st.sampled_from(["", " ", "x", "1.5", "0x10", "9" * 30, "-0", "1_0"])
fields = numbers | words | st.sampled_from(["ERR", "OK", ".", "-", ":", "\t", "127.0.0.1"])
lines = st.lists(fields, max_size=6).map("\t".join) | st.lists(fields, max_size=6).map(" ".join) | words
line_lists = st.lists(lines, max_size=6)

PARSERS: dict[str, Callable[[list[str]], Any]] = {
    name: getattr(admin, name) for name in dir(admin) if name.startswith("parse_") and name != "parse_err"
}


def test_every_admin_parser_is_fuzzed() -> None:
    assert set(PARSERS) >= {"parse_status", "parse_prioritystatus", "parse_workers", "parse_jobs",
                            "parse_unique_jobs", "parse_ok", "parse_version", "parse_getpid"}, PARSERS


@FUZZ
@given(st.sampled_from(sorted(PARSERS)), line_lists)
def test_admin_parsers(name: str, given_lines: list[str]) -> None:
    fed("admin parse_*")
    with contextlib.suppress(RemoteProtocolError):
        PARSERS[name](given_lines)


@FUZZ
@given(lines)
def test_admin_err_lines_are_always_a_server_error(line: str) -> None:
    fed("admin parse_err")
    assert isinstance(admin.parse_err(line), ServerError)


answers = st.lists(st.sampled_from([b"\n", b".\n", b"\r\n", b"\t", b"\0", b"ERR ", b"OK ", b"ERR CODE x+y\n"])
                   | lines.map(lambda s: s.encode("utf-8", "surrogateescape")) | st.binary(max_size=20),
                   max_size=12).map(b"".join)


@FUZZ
@given(st.sampled_from(["status", "workers", "show jobs", "show unique jobs", "version", "getpid",
                        "prioritystatus", "cancel job", "drop function"]),
       answers, st.randoms(use_true_random=False))
def test_admin_response_reader(command: str, data: bytes, rng: random.Random) -> None:
    fed("admin framer")
    reader = admin.ResponseReader(command)
    pos = 0
    try:
        while pos < len(data):
            step = rng.randint(1, 9)
            got = reader.feed(data[pos:pos + step])
            pos += step
            if got is not None:
                assert all(isinstance(line, str) for line in got)
                return
    except (RemoteProtocolError, ServerError):
        pass


# -- payload codecs and PHP unserialize() ---------------------------------------
php_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers() | st.text(max_size=4), inner,
                                                                 max_size=4),
    max_leaves=12)


def _dumped(value: Any) -> bytes:
    try:
        return php.dumps(value)
    except PayloadError:
        return b"N;"


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid payload, then cut, spliced into, or with a byte or a length changed."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["cut", "insert", "flip", "digit"]))
        if how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.sampled_from([b";", b":", b"{", b"}", b'"', b"0", b"9", b"r:1;", b"R:1;",
                                                b"O:8:\"stdClass\":", b"a:99999999:{", b"\0", b"\xff"]))
        elif how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            data[at] = ord(draw(st.sampled_from("0123456789-")))
    return bytes(data)


php_tokens = st.lists(st.sampled_from([
    b"N;", b"b:1;", b"b:2;", b"i:-7;", b"i:99999999999999999999999;", b"d:1.5;", b"d:NAN;", b"d:-INF;", b"d:1e999;",
    b's:3:"abc";', b's:9:"ab";', b'S:2:"\\41";', b"a:1:{", b"a:0:{}", b"}", b"i:0;", b"r:1;", b"R:2;", b"r:0;",
    b'O:8:"stdClass":1:{', b'O:3:"Foo":0:{}', b'O:7:"Pickler":0:{}', b'C:3:"Foo":3:{abc}', b'E:9:"Suit:Hear";',
    b'E:11:"Suit:Hearts";', b"x:1;", b"", b'"', b":",
]), max_size=10).map(b"".join)
php_inputs = mutated(php_values.map(_dumped)) | php_tokens | st.binary(max_size=40)
json_inputs = mutated(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
                                   lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=3), i,
                                                                                        max_size=3))
                      .map(lambda v: json.dumps(v).encode()))
json_inputs = json_inputs | st.sampled_from([b"[" * 5000, b'{"a":' * 3000, b"NaN", b"-Infinity", b"1e99999",
                                             b'"\\ud800"', b"\xef\xbb\xbf{}", b'{"__php_class__": 7}',
                                             b'{"__php_enum__": "x"}', b'{"__base64__": "!!"}'])
payloads = php_inputs | json_inputs | st.binary(max_size=64)


@FUZZ
@given(php_inputs)
def test_php_unserialize(data: bytes) -> None:
    fed("php.loads")
    try:
        value = php.loads(data)
    except PayloadError as e:
        assert e.data is not None
        return
    codecs.to_json(value)  # what it decoded to can be shown (--decode)


@FUZZ
@given(st.sampled_from(sorted(codecs.CODECS)), payloads)
def test_every_codec_decodes_or_raises_payload_error(name: str, data: bytes) -> None:
    fed("codecs decode")
    with contextlib.suppress(PayloadError):
        codecs.CODECS[name].decode(data)


@FUZZ
@given(st.sampled_from(["auto", "json", "php"]), payloads)
def test_decode_for_the_command_line(decoding: str, data: bytes) -> None:
    fed("--decode (json_value)")
    try:
        text = codecs.as_json_text(data, decoding)
    except PayloadError:
        return
    json.loads(text)


@FUZZ
@given(json_inputs, st.sampled_from(["raw", "json", "php"]))
def test_payloads_from_the_command_line(data: bytes, encoding: str) -> None:
    fed("prepare_payload (-e)")
    with contextlib.suppress(PayloadError):
        codecs.prepare_payload(data, encoding)


envelopes = st.builds(
    lambda doc: json.dumps(doc).encode(),
    st.dictionaries(st.sampled_from(["gearctl_dead_letter", "function", "unique", "workload", "attempts", "error",
                                     "first_failure", "last_failure", "traceback", "host", "handle", "state"]),
                    st.none() | st.integers(-2, 3) | st.text(max_size=8) | st.floats()
                    | st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()), max_size=12))


@FUZZ
@given(envelopes | mutated(envelopes) | st.binary(max_size=30), st.text(max_size=70))
def test_dead_letter_envelopes_and_attempt_keys(data: bytes, unique: str) -> None:
    fed("deadletter")
    with contextlib.suppress(PayloadError):
        Envelope.decode(data)
    attempt = parse_attempt(unique)
    assert attempt.number >= 1


surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(st.characters() | surrogates, max_size=40)  # lone surrogates too


@FUZZ
@given(any_text, any_text, st.binary(max_size=30), any_text)
def test_dead_letter_envelopes_round_trip_any_text(function: str, unique: str, workload: bytes, error: str) -> None:
    # An exception's message may hold anything a payload held: a lone surrogate too.
    fed("deadletter round trip")
    envelope = Envelope(function=function, unique=unique, workload=workload, attempts=3, error=error,
                        traceback=error, host="h", first_failure=1.0, last_failure=2.5)
    def as_json(text: str) -> str:  # what JSON makes of it: a surrogate pair is one character
        return str(json.loads(json.dumps(text)))

    back = Envelope.decode(envelope.encode())
    assert (back.function, back.unique, back.workload, back.error) == (
        as_json(function), as_json(unique), workload, as_json(error))


def test_what_the_fuzzing_found_stays_fixed() -> None:
    # JSON may spell a lone surrogate ("\ud800"): --decode crashed printing it
    # (UnicodeEncodeError), and a dead-letter envelope could not be encoded.
    assert codecs.as_json_text(b'"\\ud800"', "json") == b'"\\ud800"'
    assert codecs.as_json_text(b'["\\u00e9"]', "auto") == '["é"]'.encode()
    dead = Envelope(function="f", unique="u", workload=b"", attempts=1, error="\ud800", traceback="", host="h",
                    first_failure=1.0, last_failure=2.0)
    assert Envelope.decode(dead.encode()) == dead
