"""What the supervisor and its worker processes agree on, with no processes in it.

supervisor.py is the parent's side and child.py the child's; both import
this module and neither imports the other's internals. A child is forked
with a `Launch` (why it starts), speaks to the parent in messages on a pipe
(`ChildReport`, `LogLine`, `Refusal`), and ends with an exit code from
`ChildExit`, which tells the parent whether to replace it.

The messages are JSON lines, encoded by `encode()` and read back by
`decode()` and nothing else. The child writes without blocking (a slow
parent must never stall a worker), so a full pipe can cut a line short; the
writer then starts its next message on a new line, and the reader skips the
torn one: a line that is not one whole, well-typed message decodes to None,
never to an exception in the parent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum, IntEnum
from typing import Any, Union

from .errors import ExitCode
from .workerstats import ServerState

YOUNG = 10.0  # seconds: a process that dies younger than this died young (respawn back-off, crash loops)


class ChildExit(IntEnum):
    """A worker process's exit code, as its supervisor reads it."""

    RECYCLED = 0  # made way (--max-jobs, --max-lifetime, --max-memory) or was stopped: replace at once
    USAGE = int(ExitCode.USAGE)  # bad options: a replacement would fail the same way
    NO_SERVER = int(ExitCode.NO_SERVER)  # --burst and no server reachable: the command fails with it
    CRASHED = 70  # EX_SOFTWARE: the child itself failed; respawn with back-off
    BURST_DONE = 75  # --burst: no jobs left; not replaced
    PLUGINS_BROKEN = 78  # EX_CONFIG: its plugins do not load (a half-deployed file); it sent a Refusal


class ChildState(str, Enum):
    """What a worker process is doing, as it reports it."""

    STARTING = "starting"  # not connected to any server yet
    IDLE = "idle"  # connected, no job running
    BUSY = "busy"  # running a job (ChildReport.current names it)
    STOPPING = "stopping"  # finishing its job before it exits (or asked to, by a reload)


@dataclass(frozen=True)
class Launch:
    """Why a child is started, for its plugin check (see child.py)."""

    serving: frozenset[str]  # what its predecessor served: a plugin error must not lose any of it
    reload: bool = False  # started by SIGHUP: any plugin error refuses it, and the old one stays
    first: bool = False  # one of the first processes: the command has shown the plugin errors
    only: frozenset[str] = frozenset()  # a process of these functions' own; empty: one of the shared pool


# -- per-function processes -------------------------------------------------------------
# `--functions reports_build:2,notifications_send_users` (or `processes` in a hook
# entry or @job) gives a function processes of its own: they serve it alone, and
# the shared pool (--concurrency) serves the other functions, never it. A slot
# plan lists what each process slot serves; its respawns and reloads serve the same.

def parse_function_counts(text: str) -> tuple[list[str], dict[str, int]]:
    """`a:4,b,c:1` -> (["a", "b", "c"], {"a": 4, "c": 1}). ValueError says what is wrong."""
    names: list[str] = []
    counts: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, colon, count = part.rpartition(":") if ":" in part else (part, "", "")
        name = name.strip()
        if not name:
            raise ValueError(f"{part!r}: no function name before the colon")
        if name in names:
            raise ValueError(f"{name!r} is listed twice")
        if colon:
            if not count.strip().isdigit() or int(count) < 1:
                raise ValueError(f"{part!r}: processes must be a whole number of at least 1 (NAME:N)")
            counts[name] = int(count)
        names.append(name)
    if not names:
        raise ValueError("it is empty; name at least one function, or leave it out to serve all")
    return names, counts


def processes_line(shared: int, dedicated: Mapping[str, int]) -> str:
    """The start line's part: `2 process(es)`, or `2 shared process(es); reports_build: 1 of its own`."""
    if not dedicated:
        return f"{shared} process(es)"
    own = "; ".join(f"{name}: {count} of its own" for name, count in sorted(dedicated.items()))
    return f"{shared} shared process(es); {own}"


def slot_plan(shared: int, dedicated: Mapping[str, int]) -> tuple[frozenset[str], ...]:
    """What each process slot serves: `shared` pool slots (empty sets), then each
    dedicated function's own, in name order."""
    own = tuple(frozenset({name}) for name, count in sorted(dedicated.items()) for _ in range(count))
    return (frozenset(),) * shared + own


@dataclass(frozen=True)
class FunctionReport:
    """One function's counts in one process (or summed over several)."""

    done: int = 0
    failed: int = 0
    running: int = 0
    last_error: str = ""
    last_error_at: float = 0.0  # epoch seconds: across processes, the latest error wins
    retried: int = 0  # failed attempts whose next attempt was submitted
    dead: int = 0  # jobs sent to the dead-letter function

    def merged(self, other: FunctionReport) -> FunctionReport:
        """The counts of both added up, and the later of their last errors."""
        later = other if other.last_error and other.last_error_at >= self.last_error_at else self
        return FunctionReport(self.done + other.done, self.failed + other.failed, self.running + other.running,
                              later.last_error, later.last_error_at, self.retried + other.retried,
                              self.dead + other.dead)


def summed(*reports: Mapping[str, FunctionReport]) -> dict[str, FunctionReport]:
    """Per function, the counts of several processes (or of exited ones) added up."""
    totals: dict[str, FunctionReport] = {}
    for functions in reports:
        for name, counts in functions.items():
            totals[name] = totals.get(name, FunctionReport()).merged(counts)
    return totals


@dataclass(frozen=True)
class ChildReport:
    """A worker process's whole state, sent whenever it changes and on a heartbeat."""

    state: ChildState
    current: str = ""  # "function handle" of the running job
    done: int = 0
    failed: int = 0
    memory_mb: float = 0.0
    functions: Mapping[str, FunctionReport] = field(default_factory=dict)
    prefetch: int = 1  # jobs it may hold at once now (--prefetch auto moves it)
    servers: Mapping[str, ServerState] = field(default_factory=dict)  # address -> as the worker sees it


@dataclass(frozen=True)
class LogLine:
    """A line the child logged or printed, for the parent to show above its live table."""

    text: str


@dataclass(frozen=True)
class Refusal:
    """Why the child will not serve (sent before it exits with PLUGINS_BROKEN)."""

    reason: str


Message = Union[ChildReport, LogLine, Refusal]


def encode(message: Message) -> bytes:
    """One message as one JSON line, newline included."""
    record: dict[str, Any]
    if isinstance(message, ChildReport):
        record = {"kind": "report", "state": message.state.value, "current": message.current,
                  "done": message.done, "failed": message.failed, "memory_mb": message.memory_mb,
                  "functions": {name: asdict(f) for name, f in message.functions.items()},
                  "prefetch": message.prefetch,
                  "servers": {address: state.value for address, state in message.servers.items()}}
    elif isinstance(message, LogLine):
        record = {"kind": "log", "text": message.text}
    else:
        record = {"kind": "refused", "reason": message.reason}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Message | None:
    """The message on one line, or None when the line is not one (torn, garbage)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
        return None
    if not isinstance(record, dict):
        return None
    kind = record.get("kind")
    reader = _READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        return None
    try:
        return reader(record)
    except (KeyError, TypeError, ValueError):
        return None


class MessageReader:
    """The parent's end of one status pipe: bytes as they are read in, whole messages out."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[Message]:
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [message for line in lines if (message := decode(line)) is not None]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a count, got {value!r}")
    return value


def _number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _function(value: Any) -> FunctionReport:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return FunctionReport(_count(value["done"]), _count(value["failed"]), _count(value["running"]),
                          _text(value["last_error"]), _number(value["last_error_at"]), _count(value["retried"]),
                          _count(value["dead"]))


def _report(record: dict[str, Any]) -> ChildReport:
    functions, servers = record["functions"], record["servers"]
    if not isinstance(functions, dict) or not isinstance(servers, dict):
        raise TypeError(f"expected objects, got {functions!r} and {servers!r}")
    return ChildReport(ChildState(record["state"]), _text(record["current"]), _count(record["done"]),
                       _count(record["failed"]), _number(record["memory_mb"]),
                       {_text(name): _function(f) for name, f in functions.items()},
                       _count(record["prefetch"]),
                       {_text(address): ServerState(state) for address, state in servers.items()})


_READERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    "report": _report,
    "log": lambda record: LogLine(_text(record["text"])),
    "refused": lambda record: Refusal(_text(record["reason"])),
}
