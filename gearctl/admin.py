"""gearmand's text admin protocol: commands, response framing, parsers. No I/O.

An admin command is one text line on the same port as the binary protocol.
List commands (status, workers, show jobs, ...) answer with lines ended by a
line holding a single "."; the others answer with one line ("OK ...", a
version, or "ERR CODE text"). Servers end lines with LF or CRLF and some pad
with NUL bytes, so parsing strips both. A function name may hold a tab (the
C `gearadmin` splits it wrongly); counts are parsed from the right so it stays
whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from .errors import LocalProtocolError, RemoteProtocolError, ServerError
from .prefetch import AUTO_MAX

MAX_LINE = 1 << 20  # bytes; a longer line is not an admin reply (a peer streaming garbage)

# Commands whose answer is a list ended by a "." line.
LIST_COMMANDS = frozenset({"status", "workers", "show jobs", "show unique jobs", "prioritystatus"})


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """One `status` row. gearmand's TOTAL counts running jobs too."""

    function: str
    total: int
    running: int
    workers: int

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker (total minus running)."""
        return max(self.total - self.running, 0)


@dataclass(frozen=True, slots=True)
class PriorityStatus:
    """One `prioritystatus` row: jobs waiting, by priority."""

    function: str
    high: int
    normal: int
    low: int
    workers: int


# gearmand counts a job handed to a worker as running, whether the worker runs
# it or holds it prefetched. A gearctl worker with --prefetch N > 1 ends its
# client id with this tag and N, so `gearctl status` can tell how many of the
# "running" jobs are held. gearmand keeps 127 bytes of a client id.
PREFETCH_TAG = "/prefetch="
CLIENT_ID_BYTES = 127


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One `workers` row: a connection and the functions it registered."""

    fd: int
    address: str
    client_id: str
    functions: tuple[str, ...]

    @property
    def prefetch(self) -> int:
        """The jobs this connection may hold at once, as a gearctl worker
        advertises it in its client id (1 for any other worker; `auto`: its most)."""
        _, sep, n = self.client_id.rpartition(PREFETCH_TAG)
        if sep and n == "auto":
            return AUTO_MAX
        return int(n) if sep and n.isdigit() and int(n) > 0 else 1


def worker_client_id(client_id: str, prefetch: int | str) -> bytes:
    """A worker's SET_CLIENT_ID: its id (spaces would make `workers` lines
    ambiguous) and, unless it holds one job at a time (prefetch "1"), the tag
    with its --prefetch ("auto" or N), kept whole when the id is cut."""
    tag = f"{PREFETCH_TAG}{prefetch}".encode() if str(prefetch) != "1" else b""
    return client_id.replace(" ", "_").encode("utf-8", "replace")[: CLIENT_ID_BYTES - len(tag)] + tag


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One `show jobs` row."""

    handle: str
    retries: int
    ignore: bool
    queued: bool


def command_line(command: str, *args: str) -> bytes:
    """The bytes of one admin command. Refuses arguments that would end the line early."""
    words = [command, *args]
    for word in words:
        if any(c in word for c in "\r\n\0"):
            raise LocalProtocolError(f"admin command arguments must not contain line breaks or NUL: {word!r}")
    return (" ".join(words) + "\n").encode()


def is_list_command(command: str) -> bool:
    return command in LIST_COMMANDS


def _clean(line: str) -> str:
    return line.rstrip("\r\n\0")


class ResponseReader:
    """Frames one admin response from bytes fed in any chunking.

    feed() returns the response lines once complete (without the "." end line),
    else None. An ERR line raises ServerError at once.
    """

    def __init__(self, command: str) -> None:
        self._list = is_list_command(command)
        self._buf = bytearray()
        self._lines: list[str] = []

    def feed(self, data: bytes) -> list[str] | None:
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    raise RemoteProtocolError(f"an admin reply line longer than {MAX_LINE} bytes: not gearmand")
                return None
            raw = bytes(self._buf[:nl]).lstrip(b"\0")
            del self._buf[: nl + 1]
            line = _clean(raw.decode("utf-8", "surrogateescape"))
            if not self._lines and _is_err(line, self._list):
                raise parse_err(line)
            if not self._list:
                return [line]
            if line == ".":
                return self._lines
            self._lines.append(line)


_ERR = re.compile(r"ERR(?: ([A-Z][A-Z0-9_]*))?(?: (.*))?")


def _is_err(line: str, listing: bool) -> bool:
    """An ERR answer. In a list a first row could start with "ERR" too (a
    function called ERRORLOG): an error line holds no tab and names a code."""
    if not listing:
        return line == "ERR" or line.startswith("ERR ")
    return "\t" not in line and (line == "ERR" or re.match(r"ERR [A-Z][A-Z0-9_]*(?: |$)", line) is not None)


def parse_err(line: str) -> ServerError:
    """'ERR CODE text+encoded' -> ServerError. Some gearmand answers are plain
    English with no code ('ERR function not found'): code ERR, the words as text."""
    match = _ERR.fullmatch(line)
    if match is None or match.group(1) is None:
        return ServerError("ERR", line[4:].strip())
    return ServerError(match.group(1), unquote_plus(match.group(2) or ""))


def _int(value: str, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise RemoteProtocolError(f"{what}: expected a number, got {value!r}") from None


def parse_status(lines: list[str]) -> list[FunctionStatus]:
    rows = []
    for line in lines:
        if not line:
            continue
        parts = line.rsplit("\t", 3)
        if len(parts) != 4:
            raise RemoteProtocolError(f"status: cannot parse line {line!r}")
        name, total, running, workers = parts
        rows.append(FunctionStatus(name, _int(total, "status"), _int(running, "status"), _int(workers, "status")))
    return rows


def parse_prioritystatus(lines: list[str]) -> list[PriorityStatus]:
    rows = []
    for line in lines:
        if not line:
            continue
        parts = line.rsplit("\t", 4)
        if len(parts) != 5:
            raise RemoteProtocolError(f"prioritystatus: cannot parse line {line!r}")
        name, *nums = parts
        high, normal, low, workers = (_int(n, "prioritystatus") for n in nums)
        rows.append(PriorityStatus(name, high, normal, low, workers))
    return rows


def parse_workers(lines: list[str]) -> list[WorkerInfo]:
    """'FD IP CLIENT-ID : FUNCTION ...'; function names are separated by spaces."""
    rows = []
    for line in lines:
        if not line:
            continue
        # fd and address hold no spaces (an IPv6 address holds colons, so the
        # " :" separator is looked for only after them).
        fields = line.split(" ", 2)
        if len(fields) < 3:
            raise RemoteProtocolError(f"workers: cannot parse line {line!r}")
        fd = _int(fields[0], "workers")
        address = fields[1]
        rest = " " + fields[2]
        head, sep, tail = rest.partition(" :")
        if not sep:
            raise RemoteProtocolError(f"workers: cannot parse line {line!r}")
        client_id = head.strip() or "-"
        functions = tuple(f for f in tail.split(" ") if f)
        rows.append(WorkerInfo(fd, address, client_id, functions))
    return rows


def parse_jobs(lines: list[str]) -> list[JobInfo]:
    rows = []
    for line in lines:
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) < 4:
            raise RemoteProtocolError(f"show jobs: cannot parse line {line!r}")
        handle = "\t".join(parts[:-3])
        retries, ignore, queued = (_int(p, "show jobs") for p in parts[-3:])
        rows.append(JobInfo(handle, retries, bool(ignore), bool(queued)))
    return rows


def parse_unique_jobs(lines: list[str]) -> list[str]:
    return [line for line in lines if line]


def parse_ok(lines: list[str]) -> str:
    """A one-line 'OK [value]' answer -> value ('' when bare)."""
    line = lines[0] if lines else ""
    if line == "OK":
        return ""
    if line.startswith("OK "):
        return line[3:]
    raise RemoteProtocolError(f"expected OK, got {line!r}")


_VERSION = re.compile(r"\d+(?:\.\d+)*(?:[-+.~]?[0-9A-Za-z.+~-]*)?")


def parse_version(lines: list[str]) -> str:
    """gearmand answers 'OK 1.1.20'; older servers send the bare version. Anything
    else (a web server's page, a Redis error) is not a gearmand admin port."""
    version = _after_ok(lines)
    if not _VERSION.fullmatch(version.strip()):
        raise RemoteProtocolError(f"expected a version, got {(lines or [''])[0][:80]!r}: not a gearmand admin port")
    return version


def _after_ok(lines: list[str]) -> str:
    line = lines[0] if lines else ""
    return line[3:] if line.startswith("OK ") else line


def parse_getpid(lines: list[str]) -> int:
    return _int(_after_ok(lines), "getpid")
