"""The binary packet codec, tested three ways (STYLE.md): a table of exact wire
bytes through encoder and decoder, whole and byte by byte; round trips; and a
hypothesis property that no input makes the decoder do anything but return
packets, ask for more, or raise RemoteProtocolError. No sockets."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearctl.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from gearctl.protocol import (
    ARGS,
    DEFAULT_MAX_PACKET,
    HEADER_SIZE,
    OPAQUE_LAST,
    Decoder,
    Magic,
    Packet,
    PacketType,
    decode_all,
    encode,
    encode_packet,
    magic_allowed,
    parse_int,
)

P = PacketType
REQ, RES = Magic.REQ, Magic.RES


def frame(magic: bytes, type_number: int, payload: bytes) -> bytes:
    """A packet built by hand from the PROTOCOL header layout, not by the codec."""
    return magic + struct.pack(">II", type_number, len(payload)) + payload


@dataclass(frozen=True)
class Case:
    type: PacketType
    args: tuple[bytes, ...]
    magic: Magic
    wire: bytes

    def __str__(self) -> str:  # readable test ids
        return f"{self.type.name}-{self.magic.name}"


# The byte-for-byte walk-through at the end of gearmand's PROTOCOL, copied as hex.
SPEC_CASES = [
    Case(P.CAN_DO, (b"reverse",), REQ, bytes.fromhex("00524551 00000001 00000007 72657665727365")),
    Case(P.GRAB_JOB, (), REQ, bytes.fromhex("00524551 00000009 00000000")),
    Case(P.NO_JOB, (), RES, bytes.fromhex("00524553 0000000a 00000000")),
    Case(P.PRE_SLEEP, (), REQ, bytes.fromhex("00524551 00000004 00000000")),
    Case(P.SUBMIT_JOB, (b"reverse", b"", b"test"), REQ,
         bytes.fromhex("00524551 00000007 0000000d 7265766572736500 00 74657374")),
    Case(P.JOB_CREATED, (b"H:lap:1",), RES, bytes.fromhex("00524553 00000008 00000007 483a6c61703a31")),
    Case(P.NOOP, (), RES, bytes.fromhex("00524553 00000006 00000000")),
    Case(P.JOB_ASSIGN, (b"H:lap:1", b"reverse", b"test"), RES,
         bytes.fromhex("00524553 0000000b 00000014 483a6c61703a3100 7265766572736500 74657374")),
    Case(P.WORK_COMPLETE, (b"H:lap:1", b"tset"), REQ,
         bytes.fromhex("00524551 0000000d 0000000c 483a6c61703a3100 74736574")),
    Case(P.WORK_COMPLETE, (b"H:lap:1", b"tset"), RES,
         bytes.fromhex("00524553 0000000d 0000000c 483a6c61703a3100 74736574")),
]

# One or more cases of our own for every packet type; type numbers from PROTOCOL's table.
OWN_CASES = [
    Case(P.CANT_DO, (b"reverse",), REQ, frame(b"\0REQ", 2, b"reverse")),
    Case(P.RESET_ABILITIES, (), REQ, frame(b"\0REQ", 3, b"")),
    Case(P.SUBMIT_JOB, (b"f", b"u", b"a\0b\0"), REQ, frame(b"\0REQ", 7, b"f\0u\0a\0b\0")),
    Case(P.JOB_ASSIGN, (b"H:x:9", b"fn", b""), RES, frame(b"\0RES", 11, b"H:x:9\0fn\0")),
    Case(P.WORK_STATUS, (b"H:x:1", b"3", b"10"), REQ, frame(b"\0REQ", 12, b"H:x:1\x003\x0010")),
    Case(P.WORK_STATUS, (b"H:x:1", b"3", b"10"), RES, frame(b"\0RES", 12, b"H:x:1\x003\x0010")),
    Case(P.WORK_FAIL, (b"H:x:1",), REQ, frame(b"\0REQ", 14, b"H:x:1")),
    Case(P.WORK_FAIL, (b"H:x:1",), RES, frame(b"\0RES", 14, b"H:x:1")),
    Case(P.GET_STATUS, (b"H:x:1",), REQ, frame(b"\0REQ", 15, b"H:x:1")),
    Case(P.ECHO_REQ, (b"ping\0pong",), REQ, frame(b"\0REQ", 16, b"ping\0pong")),
    Case(P.ECHO_RES, (b"ping\0pong",), RES, frame(b"\0RES", 17, b"ping\0pong")),
    Case(P.SUBMIT_JOB_BG, (b"f", b"", b"x"), REQ, frame(b"\0REQ", 18, b"f\0\0x")),
    Case(P.ERROR, (b"QUEUE_ERROR", b"queue full"), RES, frame(b"\0RES", 19, b"QUEUE_ERROR\0queue full")),
    Case(P.STATUS_RES, (b"H:x:1", b"1", b"0", b"0", b"0"), RES, frame(b"\0RES", 20, b"H:x:1\x001\x000\x000\x000")),
    Case(P.SUBMIT_JOB_HIGH, (b"f", b"u1", b"{}"), REQ, frame(b"\0REQ", 21, b"f\0u1\0{}")),
    Case(P.SET_CLIENT_ID, (b"worker-7",), REQ, frame(b"\0REQ", 22, b"worker-7")),
    Case(P.CAN_DO_TIMEOUT, (b"slow", b"30000"), REQ, frame(b"\0REQ", 23, b"slow\x0030000")),
    Case(P.ALL_YOURS, (), REQ, frame(b"\0REQ", 24, b"")),
    Case(P.WORK_EXCEPTION, (b"H:x:1", b"boom"), REQ, frame(b"\0REQ", 25, b"H:x:1\0boom")),
    Case(P.WORK_EXCEPTION, (b"H:x:1", b"boom"), RES, frame(b"\0RES", 25, b"H:x:1\0boom")),
    Case(P.OPTION_REQ, (b"exceptions",), REQ, frame(b"\0REQ", 26, b"exceptions")),
    Case(P.OPTION_RES, (b"exceptions",), RES, frame(b"\0RES", 27, b"exceptions")),
    Case(P.WORK_DATA, (b"H:x:1", b"part\0ial"), REQ, frame(b"\0REQ", 28, b"H:x:1\0part\0ial")),
    Case(P.WORK_DATA, (b"H:x:1", b"part"), RES, frame(b"\0RES", 28, b"H:x:1\0part")),
    Case(P.WORK_WARNING, (b"H:x:1", b"careful"), REQ, frame(b"\0REQ", 29, b"H:x:1\0careful")),
    Case(P.WORK_WARNING, (b"H:x:1", b"careful"), RES, frame(b"\0RES", 29, b"H:x:1\0careful")),
    Case(P.GRAB_JOB_UNIQ, (), REQ, frame(b"\0REQ", 30, b"")),
    Case(P.JOB_ASSIGN_UNIQ, (b"H:x:1", b"f", b"u", b"d"), RES, frame(b"\0RES", 31, b"H:x:1\0f\0u\0d")),
    Case(P.SUBMIT_JOB_HIGH_BG, (b"f", b"u", b"d"), REQ, frame(b"\0REQ", 32, b"f\0u\0d")),
    Case(P.SUBMIT_JOB_LOW, (b"f", b"u", b"d"), REQ, frame(b"\0REQ", 33, b"f\0u\0d")),
    Case(P.SUBMIT_JOB_LOW_BG, (b"f", b"u", b"d"), REQ, frame(b"\0REQ", 34, b"f\0u\0d")),
    Case(P.SUBMIT_JOB_SCHED, (b"f", b"u", b"30", b"6", b"1", b"12", b"0", b"d"), REQ,
         frame(b"\0REQ", 35, b"f\0u\x0030\x006\x001\x0012\x000\0d")),
    Case(P.SUBMIT_JOB_EPOCH, (b"f", b"u", b"1767225600", b"d"), REQ, frame(b"\0REQ", 36, b"f\0u\x001767225600\0d")),
    Case(P.SUBMIT_REDUCE_JOB, (b"f", b"u", b"r", b"d"), REQ, frame(b"\0REQ", 37, b"f\0u\0r\0d")),
    Case(P.SUBMIT_REDUCE_JOB_BACKGROUND, (b"f", b"u", b"r", b"d"), REQ, frame(b"\0REQ", 38, b"f\0u\0r\0d")),
    Case(P.GRAB_JOB_ALL, (), REQ, frame(b"\0REQ", 39, b"")),
    Case(P.JOB_ASSIGN_ALL, (b"H:x:1", b"f", b"u", b"r", b"d"), RES, frame(b"\0RES", 40, b"H:x:1\0f\0u\0r\0d")),
    Case(P.GET_STATUS_UNIQUE, (b"u1",), REQ, frame(b"\0REQ", 41, b"u1")),
    Case(P.STATUS_RES_UNIQUE, (b"H:x:1", b"1", b"1", b"2", b"4", b"3"), RES,
         frame(b"\0RES", 42, b"H:x:1\x001\x001\x002\x004\x003")),
]

CASES = SPEC_CASES + OWN_CASES


def test_table_covers_every_packet_type() -> None:
    assert {case.type for case in CASES} == set(PacketType)


def test_spec_frame_helper_agrees_with_spec_hex() -> None:
    # Guards the hand-made frames above: the helper reproduces PROTOCOL's own bytes.
    assert frame(b"\0RES", 11, b"H:lap:1\0reverse\0test") == SPEC_CASES[7].wire


@pytest.mark.parametrize("case", CASES, ids=str)
def test_encode(case: Case) -> None:
    assert encode(case.type, *case.args, magic=case.magic) == case.wire
    packet = Packet(case.type, case.args, case.magic)
    assert bytes(packet) == case.wire
    assert encode_packet(packet) == case.wire


@pytest.mark.parametrize("case", CASES, ids=str)
def test_decode_whole(case: Case) -> None:
    decoder = Decoder()
    decoder.feed(case.wire)
    assert decoder.next() == Packet(case.type, case.args, case.magic)
    assert decoder.next() is None
    assert decoder.pending == 0


@pytest.mark.parametrize("case", CASES, ids=str)
def test_decode_byte_by_byte(case: Case) -> None:
    decoder = Decoder(expect=case.magic)
    for i in range(len(case.wire) - 1):
        decoder.feed(case.wire[i : i + 1])
        assert decoder.next() is None, f"a packet after only {i + 1} of {len(case.wire)} bytes"
    decoder.feed(case.wire[-1:])
    assert decoder.next() == Packet(case.type, case.args, case.magic)
    assert decoder.next() is None


def test_decode_whole_table_as_one_stream_byte_by_byte() -> None:
    stream = b"".join(case.wire for case in CASES)
    decoder = Decoder()
    packets = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        packets.extend(decoder)
    assert packets == [Packet(case.type, case.args, case.magic) for case in CASES]
    assert decoder.pending == 0


def test_decode_all_whole_stream() -> None:
    stream = b"".join(case.wire for case in SPEC_CASES)
    assert decode_all(stream) == [Packet(c.type, c.args, c.magic) for c in SPEC_CASES]


def test_str_arguments_are_utf8() -> None:
    assert encode(P.CAN_DO, "réverse") == frame(b"\0REQ", 1, "réverse".encode())
    assert encode(P.ECHO_REQ, bytearray(b"ab")) == encode(P.ECHO_REQ, memoryview(b"ab")) == frame(b"\0REQ", 16, b"ab")


def test_packet_get_by_argument_name() -> None:
    packet = Packet(P.JOB_ASSIGN_UNIQ, (b"H:x:1", b"fn", b"u", b"data"), RES)
    assert packet.get("handle") == b"H:x:1"
    assert packet.get("function") == b"fn"
    assert packet.get("unique") == b"u"
    assert packet.get("data") == b"data"
    with pytest.raises(KeyError, match="reducer"):
        packet.get("reducer")


# -- round trips ---------------------------------------------------------------

def random_args(rng: random.Random, ptype: PacketType) -> tuple[bytes, ...]:
    """Arguments the protocol can carry: no NUL except in the last one."""
    names = ARGS[ptype]
    args = [bytes(rng.choice(range(1, 256)) for _ in range(rng.randint(0, 12))) for _ in names]
    if names:
        args[-1] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if ptype not in OPAQUE_LAST:
            args[-1] = args[-1].rstrip(b"\0")  # see test_trailing_nul_dropped_only_from_non_data_fields
    return tuple(args)


def decode_in_chunks(wire: bytes, rng: random.Random, expect: Magic | None = None) -> list[Packet]:
    decoder = Decoder(expect)
    packets: list[Packet] = []
    pos = 0
    while pos < len(wire):
        step = rng.randint(1, 7)
        decoder.feed(wire[pos : pos + step])
        pos += step
        packets.extend(decoder)
    assert decoder.pending == 0
    return packets


def legal_magic(ptype: PacketType) -> Magic:
    return REQ if magic_allowed(ptype, REQ) else RES


@pytest.mark.parametrize("ptype", list(PacketType), ids=lambda t: t.name)
def test_round_trip_random_args(ptype: PacketType) -> None:
    rng = random.Random(int(ptype))
    magic = legal_magic(ptype)
    packets = [Packet(ptype, random_args(rng, ptype), magic) for _ in range(25)]
    wire = b"".join(bytes(p) for p in packets)
    assert decode_all(wire) == packets
    assert decode_in_chunks(wire, rng, expect=magic) == packets


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ptype = draw(st.sampled_from(PacketType))
    names = ARGS[ptype]
    args = [draw(st.binary(max_size=20).filter(lambda b: b"\0" not in b)) for _ in names[:-1]]
    if names:
        last = st.binary(max_size=60)
        if ptype not in OPAQUE_LAST:
            last = last.filter(lambda b: not b.endswith(b"\0"))
        args.append(draw(last))
    magics = [m for m in Magic if magic_allowed(ptype, m)]
    return Packet(ptype, tuple(args), draw(st.sampled_from(magics)))


@given(st.lists(packets(), max_size=8), st.randoms(use_true_random=False))
def test_round_trip_property(sent: list[Packet], rng: random.Random) -> None:
    wire = b"".join(bytes(p) for p in sent)
    assert len(wire) == sum(HEADER_SIZE + len(b"\0".join(p.args)) for p in sent)
    assert decode_in_chunks(wire, rng) == sent


# -- any input: packets, "need more", or RemoteProtocolError -----------------

def drain(decoder: Decoder) -> None:
    """Pull packets until the decoder wants more; only RemoteProtocolError may escape."""
    while True:
        try:
            packet = decoder.next()
        except RemoteProtocolError:
            with pytest.raises(RemoteProtocolError):  # and it stays broken
                decoder.next()
            raise
        if packet is None:
            return
        assert isinstance(packet, Packet)
        assert len(packet.args) == len(ARGS[packet.type])


near_valid_frames = st.builds(
    lambda magic, ptype, data, size_delta: magic + struct.pack(">II", ptype, max(len(data) + size_delta, 0)) + data,
    st.sampled_from([b"\0REQ", b"\0RES", b"\0REX", b"REQ\0"]),
    st.one_of(st.sampled_from([int(t) for t in PacketType]), st.integers(0, 2**32 - 1)),
    st.binary(max_size=40) | st.lists(st.binary(max_size=8), max_size=9).map(b"\0".join),
    st.sampled_from([0, 0, 0, -1, 1, 5]),
)


@settings(max_examples=300)
@given(
    st.lists(near_valid_frames | st.binary(max_size=30), max_size=6).map(b"".join),
    st.lists(st.integers(1, 16), min_size=1, max_size=20),
    st.sampled_from([None, REQ, RES]),
    st.sampled_from([1 << 30, 16]),
)
def test_any_input_decodes_or_raises_remote_protocol_error(
    data: bytes, chunk_sizes: list[int], expect: Magic | None, max_packet: int
) -> None:
    decoder = Decoder(expect, max_packet=max_packet)
    pos, i = 0, 0
    try:
        while pos < len(data):
            step = chunk_sizes[i % len(chunk_sizes)]
            decoder.feed(data[pos : pos + step])
            pos, i = pos + step, i + 1
            drain(decoder)
    except RemoteProtocolError:
        return
    assert 0 <= decoder.pending <= len(data)


# -- errors from the peer ------------------------------------------------------

def decode_one(wire: bytes, expect: Magic | None = None, max_packet: int = DEFAULT_MAX_PACKET) -> Packet | None:
    decoder = Decoder(expect, max_packet)
    decoder.feed(wire)
    return decoder.next()


@pytest.mark.parametrize(
    ("wire", "kwargs", "message"),
    [
        pytest.param(b"\0REX" + bytes(8), {}, "bad magic", id="bad-magic"),
        pytest.param(b"HTTP/1.1 400", {}, "bad magic", id="text-instead-of-binary"),
        pytest.param(frame(b"\0RES", 5, b""), {}, "unknown packet type 5", id="unused-type-5"),
        pytest.param(frame(b"\0RES", 43, b""), {}, "unknown packet type 43", id="type-43"),
        pytest.param(frame(b"\0RES", 0, b""), {}, "unknown packet type 0", id="type-0"),
        pytest.param(frame(b"\0REQ", 8, b"H:x:1"), {}, "JOB_CREATED cannot travel with magic REQ",
                     id="res-type-as-req"),
        pytest.param(frame(b"\0RES", 1, b"f"), {}, "CAN_DO cannot travel with magic RES", id="req-type-as-res"),
        pytest.param(frame(b"\0REQ", 13, b"H:x:1\0r"), {"expect": RES}, "expected RES", id="expect-res-got-req"),
        pytest.param(frame(b"\0RES", 13, b"H:x:1\0r"), {"expect": REQ}, "expected REQ", id="expect-req-got-res"),
        pytest.param(frame(b"\0RES", 11, b"H:x:1\0reverse"), {}, "JOB_ASSIGN needs 3 arguments, got 2",
                     id="too-few-args"),
        pytest.param(frame(b"\0RES", 20, b"H:x:1\x001\x000"), {}, "STATUS_RES needs 5 arguments, got 3",
                     id="too-few-args-status"),
        pytest.param(frame(b"\0RES", 6, b"x"), {}, "NOOP takes no arguments", id="noop-with-data"),
        pytest.param(frame(b"\0RES", 10, b"\0"), {}, "NO_JOB takes no arguments", id="no-job-with-nul"),
        pytest.param(frame(b"\0RES", 17, b"x" * 17), {"max_packet": 16}, "over the limit of 16", id="over-max"),
    ],
)
def test_decode_errors(wire: bytes, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message) as info:
        decode_one(wire, **kwargs)
    assert info.value.exit_code == 7


def test_size_limit_applies_before_the_data_arrives() -> None:
    decoder = Decoder(max_packet=1000)
    decoder.feed(b"\0RES" + struct.pack(">II", 17, 2**32 - 1))  # header only: a 4 GiB claim
    with pytest.raises(RemoteProtocolError, match="over the limit"):
        decoder.next()


def test_size_exactly_at_limit_is_accepted() -> None:
    assert decode_one(frame(b"\0RES", 17, b"x" * 16), max_packet=16) == Packet(P.ECHO_RES, (b"x" * 16,), RES)


def test_both_way_types_accept_either_magic_without_expect() -> None:
    for magic in (b"\0REQ", b"\0RES"):
        packet = decode_one(frame(magic, 13, b"H:x:1\0ok"))
        assert packet is not None
        assert packet.magic.value == magic


def test_decoder_keeps_raising_after_an_error() -> None:
    decoder = Decoder()
    decoder.feed(frame(b"\0RES", 6, b"") + b"\0BAD" + bytes(8))
    assert decoder.next() == Packet(P.NOOP, (), RES)
    with pytest.raises(RemoteProtocolError) as first:
        decoder.next()
    decoder.feed(frame(b"\0RES", 6, b""))  # valid bytes after garbage cannot resynchronise
    for _ in range(3):
        with pytest.raises(RemoteProtocolError) as again:
            decoder.next()
        assert again.value is first.value
    with pytest.raises(RemoteProtocolError):
        list(decoder)


def test_decoder_iterates_until_more_is_needed() -> None:
    decoder = Decoder()
    decoder.feed(frame(b"\0RES", 6, b"") * 3 + b"\0RES\0\0")
    assert list(decoder) == [Packet(P.NOOP, (), RES)] * 3
    assert decoder.pending == 6
    decoder.feed(b"\0\x06\0\0\0\0")
    assert list(decoder) == [Packet(P.NOOP, (), RES)]


def test_decode_all_rejects_trailing_bytes() -> None:
    with pytest.raises(RemoteProtocolError, match="3 trailing bytes"):
        decode_all(frame(b"\0RES", 6, b"") + b"\0RE")
    with pytest.raises(RemoteProtocolError, match="trailing bytes"):
        decode_all(frame(b"\0RES", 17, b"abcd")[:-1])  # a cut-off packet


def test_decode_all_applies_expect() -> None:
    with pytest.raises(RemoteProtocolError, match="expected RES"):
        decode_all(frame(b"\0REQ", 28, b"H:x:1\0d"), expect=RES)


def test_decode_all_empty() -> None:
    assert decode_all(b"") == []


# -- gearmand quirks -------------------------------------------------------------

def test_work_fail_with_trailing_nul_from_gearmand() -> None:
    # gearmand 1.1.20 forwards WORK_FAIL to clients as "H:vm:3\0" (size 7).
    wire = b"\0RES" + struct.pack(">II", 14, 7) + b"H:vm:3\0"
    packet = decode_one(wire, expect=RES)
    assert packet == Packet(P.WORK_FAIL, (b"H:vm:3",), RES)
    assert packet.get("handle") == b"H:vm:3"


def test_trailing_nul_dropped_only_from_non_data_fields() -> None:
    # Opaque data keeps every byte; a trailing NUL after a handle/name/number is a terminator.
    assert decode_one(frame(b"\0RES", 13, b"H:x:1\0result\0")) == Packet(P.WORK_COMPLETE, (b"H:x:1", b"result\0"), RES)
    assert decode_one(frame(b"\0RES", 17, b"\0\0")) == Packet(P.ECHO_RES, (b"\0\0",), RES)
    assert decode_one(frame(b"\0RES", 8, b"H:x:1\0")) == Packet(P.JOB_CREATED, (b"H:x:1",), RES)
    assert decode_one(frame(b"\0RES", 19, b"ERR\0text\0")) == Packet(P.ERROR, (b"ERR", b"text"), RES)
    assert decode_one(frame(b"\0RES", 12, b"H:x:1\x001\x002\0")) == Packet(P.WORK_STATUS, (b"H:x:1", b"1", b"2"), RES)


def test_opaque_last_is_exactly_the_types_ending_in_data() -> None:
    assert P.WORK_COMPLETE in OPAQUE_LAST
    assert P.SUBMIT_JOB_SCHED in OPAQUE_LAST
    assert P.JOB_ASSIGN_ALL in OPAQUE_LAST
    assert P.WORK_FAIL not in OPAQUE_LAST
    assert P.ERROR not in OPAQUE_LAST
    assert P.NOOP not in OPAQUE_LAST


# -- errors by the caller ------------------------------------------------------

@pytest.mark.parametrize(
    ("ptype", "args", "message"),
    [
        (P.SUBMIT_JOB, (b"rev\0erse", b"", b"x"), "function must not contain a NUL"),
        (P.SUBMIT_JOB, (b"reverse", b"u\0", b"x"), "unique must not contain a NUL"),
        (P.WORK_COMPLETE, (b"H:\0x", b"x"), "handle must not contain a NUL"),
        (P.CAN_DO_TIMEOUT, ("fn\0", "10"), "function must not contain a NUL"),
    ],
)
def test_nul_in_a_non_final_argument_is_local_error(ptype: PacketType, args: tuple[bytes, ...], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message) as info:
        encode(ptype, *args)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("args", [(5,), (b"H:1", None), ("H:1", 2.5)], ids=["int", "none-last", "float-last"])
def test_an_argument_that_is_not_bytes_or_text_is_local_error(args: tuple[object, ...]) -> None:
    ptype = P.ECHO_REQ if len(args) == 1 else P.WORK_COMPLETE
    with pytest.raises(LocalProtocolError, match="packet arguments are bytes or str, not "):
        encode(ptype, *args)  # type: ignore[arg-type]


def test_nul_in_the_final_argument_is_allowed() -> None:
    assert encode(P.SUBMIT_JOB, b"f", b"u", b"\0\0") == frame(b"\0REQ", 7, b"f\0u\0\0\0")


@pytest.mark.parametrize(
    ("ptype", "args", "message"),
    [
        (P.SUBMIT_JOB, (b"f", b"u"), r"SUBMIT_JOB takes 3 argument\(s\) \(function, unique, data\), got 2"),
        (P.SUBMIT_JOB, (b"f", b"u", b"d", b"e"), "got 4"),
        (P.NOOP, (b"x",), r"NOOP takes 0 argument\(s\) \(none\), got 1"),
        (P.CAN_DO, (), "got 0"),
    ],
)
def test_wrong_argument_count_is_local_error(ptype: PacketType, args: tuple[bytes, ...], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        encode(ptype, *args)
    with pytest.raises(LocalProtocolError):
        bytes(Packet(ptype, args))


def test_non_bytes_argument_is_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="not int"):
        encode(P.CAN_DO, 5)  # type: ignore[arg-type]


def test_local_and_remote_errors_are_both_protocol_errors() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_parse_int() -> None:
    assert parse_int(b"42", "numerator") == 42
    assert parse_int(b"", "numerator") == 0
    with pytest.raises(RemoteProtocolError, match="numerator is not a number"):
        parse_int(b"4x", "numerator")
