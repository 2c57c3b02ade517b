"""The Gearman binary protocol as data: packet types, their arguments, a codec.

No I/O happens here. `encode()` turns a packet into bytes; `Decoder.feed()`
takes bytes as they arrive and `Decoder.next()` hands back whole packets (or
None when it needs more). Written from gearmand's PROTOCOL text:

    header  = magic (4 bytes: b"\\0REQ" or b"\\0RES")
              type  (big-endian u32, PacketType)
              size  (big-endian u32, length of what follows)
    data    = arguments separated by NUL; the last one runs to the end of the
              data, so only the last may contain NUL bytes (it is the opaque
              workload or result).

Every packet type has a fixed argument list (ARGS); a packet whose data splits
into fewer arguments than its type needs is a protocol error.
"""

from __future__ import annotations

import struct
from enum import Enum, IntEnum
from typing import NamedTuple, NoReturn, Union

from .errors import LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct(">4sII")
HEADER_SIZE = HEADER.size  # 12
_unpack_header = HEADER.unpack_from
DEFAULT_MAX_PACKET = 1 << 30  # refuse a declared size above 1 GiB: a broken or hostile peer


class Magic(bytes, Enum):
    REQ = b"\0REQ"  # to a job server
    RES = b"\0RES"  # from a job server


class PacketType(IntEnum):
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


P = PacketType
_SUBMIT = ("function", "unique", "data")

# The protocol is data: each packet type's arguments, in wire order.
ARGS: dict[PacketType, tuple[str, ...]] = {
    P.CAN_DO: ("function",),
    P.CANT_DO: ("function",),
    P.RESET_ABILITIES: (),
    P.PRE_SLEEP: (),
    P.NOOP: (),
    P.SUBMIT_JOB: _SUBMIT,
    P.JOB_CREATED: ("handle",),
    P.GRAB_JOB: (),
    P.NO_JOB: (),
    P.JOB_ASSIGN: ("handle", "function", "data"),
    P.WORK_STATUS: ("handle", "numerator", "denominator"),
    P.WORK_COMPLETE: ("handle", "data"),
    P.WORK_FAIL: ("handle",),
    P.GET_STATUS: ("handle",),
    P.ECHO_REQ: ("data",),
    P.ECHO_RES: ("data",),
    P.SUBMIT_JOB_BG: _SUBMIT,
    P.ERROR: ("code", "text"),
    P.STATUS_RES: ("handle", "known", "running", "numerator", "denominator"),
    P.SUBMIT_JOB_HIGH: _SUBMIT,
    P.SET_CLIENT_ID: ("client_id",),
    P.CAN_DO_TIMEOUT: ("function", "timeout"),
    P.ALL_YOURS: (),
    P.WORK_EXCEPTION: ("handle", "data"),
    P.OPTION_REQ: ("option",),
    P.OPTION_RES: ("option",),
    P.WORK_DATA: ("handle", "data"),
    P.WORK_WARNING: ("handle", "data"),
    P.GRAB_JOB_UNIQ: (),
    P.JOB_ASSIGN_UNIQ: ("handle", "function", "unique", "data"),
    P.SUBMIT_JOB_HIGH_BG: _SUBMIT,
    P.SUBMIT_JOB_LOW: _SUBMIT,
    P.SUBMIT_JOB_LOW_BG: _SUBMIT,
    P.SUBMIT_JOB_SCHED: ("function", "unique", "minute", "hour", "day", "month", "weekday", "data"),
    P.SUBMIT_JOB_EPOCH: ("function", "unique", "epoch", "data"),
    P.SUBMIT_REDUCE_JOB: ("function", "unique", "reducer", "data"),
    P.SUBMIT_REDUCE_JOB_BACKGROUND: ("function", "unique", "reducer", "data"),
    P.GRAB_JOB_ALL: (),
    P.JOB_ASSIGN_ALL: ("handle", "function", "unique", "reducer", "data"),
    P.GET_STATUS_UNIQUE: ("unique",),
    P.STATUS_RES_UNIQUE: ("unique", "known", "running", "numerator", "denominator", "waiting"),
}

# Which magic each type travels with. WORK_* and the echo/option packets go both
# ways (worker -> server as REQ, server -> client as RES); ERROR only from servers.
RESPONSES = frozenset(
    {P.NOOP, P.JOB_CREATED, P.NO_JOB, P.JOB_ASSIGN, P.ECHO_RES, P.ERROR, P.STATUS_RES,
     P.OPTION_RES, P.JOB_ASSIGN_UNIQ, P.JOB_ASSIGN_ALL, P.STATUS_RES_UNIQUE}
)
BOTH_WAYS = frozenset(
    {P.WORK_STATUS, P.WORK_COMPLETE, P.WORK_FAIL, P.WORK_EXCEPTION, P.WORK_DATA, P.WORK_WARNING}
)
WORK_PACKETS = BOTH_WAYS  # what a worker sends about a job, and a server forwards to its clients

# The submit packet for (background, priority).
SUBMIT_TYPES: dict[tuple[bool, str], PacketType] = {
    (False, "normal"): P.SUBMIT_JOB,
    (False, "high"): P.SUBMIT_JOB_HIGH,
    (False, "low"): P.SUBMIT_JOB_LOW,
    (True, "normal"): P.SUBMIT_JOB_BG,
    (True, "high"): P.SUBMIT_JOB_HIGH_BG,
    (True, "low"): P.SUBMIT_JOB_LOW_BG,
}


# Types whose last argument is opaque data (may hold NUL bytes). In the others a
# trailing NUL is a terminator some servers add, and the decoder drops it.
OPAQUE_LAST = frozenset(t for t, names in ARGS.items() if names and names[-1] == "data")

Arg = Union[bytes, str]


def magic_allowed(ptype: PacketType, magic: Magic) -> bool:
    if ptype in BOTH_WAYS:
        return True
    return (ptype in RESPONSES) == (magic is Magic.RES)


class Packet(NamedTuple):
    """One binary packet. `args` are raw bytes in the order ARGS names them.

    Immutable like a frozen dataclass, but a NamedTuple: the decoder builds one
    per packet on the hot path and a tuple is several times cheaper to create.
    """

    type: PacketType
    args: tuple[bytes, ...] = ()
    magic: Magic = Magic.REQ

    def get(self, name: str) -> bytes:
        """The argument called `name` (see ARGS), e.g. packet.get("handle")."""
        try:
            return self.args[ARGS[self.type].index(name)]
        except ValueError:
            raise KeyError(f"{self.type.name} has no argument {name!r}") from None

    def __bytes__(self) -> bytes:
        return encode(self.type, *self.args, magic=self.magic)


def _as_bytes(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise LocalProtocolError(f"packet arguments are bytes or str, not {type(value).__name__}")


def encode(ptype: PacketType, *args: Arg, magic: Magic = Magic.REQ) -> bytes:
    """The wire bytes of one packet. Raises LocalProtocolError for arguments the
    protocol cannot carry (wrong count, a NUL inside a non-final argument)."""
    # Every job passes through here (the worker's WORK_COMPLETE and GRAB, the
    # client's SUBMIT): arguments that are bytes already, the usual case, go
    # straight to the join, and Magic, being bytes, packs as it is. 1.2 us
    # instead of 2.5 us for a WORK_COMPLETE (tests/test_protocol.py has the cases).
    names = ARGS[ptype]
    if len(args) != len(names):
        raise LocalProtocolError(
            f"{ptype.name} takes {len(names)} argument(s) ({', '.join(names) or 'none'}), got {len(args)}"
        )
    parts: tuple[bytes, ...] = args  # type: ignore[assignment]  # checked just below
    for arg in args:
        if type(arg) is not bytes:
            parts = tuple(_as_bytes(a) for a in args)
            break
    for i in range(len(parts) - 1):
        if b"\0" in parts[i]:
            raise LocalProtocolError(f"{ptype.name}: {names[i]} must not contain a NUL byte")
    data = b"\0".join(parts)
    return _pack_header(magic, ptype, len(data)) + data


def encode_packet(packet: Packet) -> bytes:
    return encode(packet.type, *packet.args, magic=packet.magic)


def encode_submit(ptype: PacketType, function: bytes, unique: bytes, data: bytes) -> bytes:
    """encode() for the three-argument SUBMIT_JOB* packets, without its checks:
    for callers (client.Job) that checked function and unique for NUL already."""
    return _pack_header(b"\0REQ", ptype, len(function) + len(unique) + len(data) + 2) + b"\0".join(
        (function, unique, data))


_pack_header = HEADER.pack
_MAGICS: dict[bytes, Magic] = {m.value: m for m in Magic}
# (magic bytes, type number) -> what the decoder needs, for every valid pair.
_SPECS: dict[tuple[bytes, int], tuple[Magic, PacketType, int, bool]] = {
    (m.value, int(t)): (m, t, len(ARGS[t]), t in OPAQUE_LAST)
    for m in Magic for t in PacketType if magic_allowed(t, m)
}


def looks_like_http(first_bytes: bytes) -> bool:
    """The commonest wrong port is a web server's: its status line, or, from one
    that takes a request line for HTTP/0.9 (as Python's http.server does), a page."""
    return first_bytes.startswith(b"HTTP") or first_bytes.lstrip().startswith(b"<")


class Decoder:
    """Incremental decoder: feed() bytes in any chunking, next() whole packets.

    `expect` restricts the magic (a client expects RES, a server REQ). After a
    RemoteProtocolError the stream cannot be resynchronised; the decoder keeps
    raising it.
    """

    __slots__ = ("_buf", "_error", "_expect", "_max", "_pos")

    def __init__(self, expect: Magic | None = None, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._expect = expect
        self._max = max_packet
        self._error: RemoteProtocolError | None = None

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Take bytes from the peer; they are copied (a read buffer may be reused)."""
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) - self._pos

    def next(self) -> Packet | None:
        """The next whole packet, or None until more bytes are fed."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_SIZE:
            return None
        raw_magic, raw_type, size = _unpack_header(buf, pos)
        spec = _SPECS.get((raw_magic, raw_type))
        if spec is None:
            self._invalid(raw_magic, raw_type)
        magic, ptype, arity, opaque_last = spec
        if self._expect is not None and magic is not self._expect:
            self._fail(f"{ptype.name} arrived with magic {magic.name}, expected {self._expect.name}")
        if size > self._max:
            self._fail(f"{ptype.name} declares {size} bytes, over the limit of {self._max}")
        end = pos + HEADER_SIZE + size
        if len(buf) < end:
            return None
        self._pos = end
        if arity == 0:
            if size:
                self._fail(f"{ptype.name} takes no arguments, got {size} bytes")
            return Packet(ptype, (), magic)
        args = bytes(buf[pos + HEADER_SIZE : end]).split(b"\0", arity - 1)
        if len(args) != arity:
            self._fail(f"{ptype.name} needs {arity} arguments, got {len(args)}")
        if not opaque_last and args[-1].endswith(b"\0"):
            # gearmand 1.1.20 sends WORK_FAIL as "handle\0" to clients without
            # the exceptions option: a NUL-terminated last field that is not data.
            args[-1] = args[-1].rstrip(b"\0")
        return Packet(ptype, tuple(args), magic)

    def _invalid(self, raw_magic: bytes, raw_type: int) -> NoReturn:
        magic = _MAGICS.get(raw_magic)
        if magic is None:
            what = "an HTTP server, not gearmand" if looks_like_http(raw_magic) else "not Gearman binary protocol"
            self._fail(f"bad magic {raw_magic!r} ({what})")
        try:
            ptype = PacketType(raw_type)
        except ValueError:
            self._fail(f"unknown packet type {raw_type}")
        self._fail(f"{ptype.name} cannot travel with magic {magic.name}")

    def __iter__(self) -> Decoder:
        return self

    def __next__(self) -> Packet:
        packet = self.next()
        if packet is None:
            raise StopIteration
        return packet

    def _fail(self, message: str) -> NoReturn:
        self._error = RemoteProtocolError(message)
        raise self._error


def decode_all(data: bytes, expect: Magic | None = None) -> list[Packet]:
    """Every packet in `data`, which must end on a packet boundary."""
    decoder = Decoder(expect)
    decoder.feed(data)
    packets = list(decoder)
    if decoder.pending:
        raise RemoteProtocolError(f"{decoder.pending} trailing bytes do not make a whole packet")
    return packets


def parse_int(value: bytes, what: str) -> int:
    """A decimal number argument (status numerators, timeouts, counts)."""
    try:
        return int(value) if value else 0
    except ValueError:
        raise RemoteProtocolError(f"{what} is not a number: {value[:40]!r}") from None
