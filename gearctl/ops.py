"""Actions on servers: cancel a job, drop a function, ping, and gearadmin's
remaining verbs (getpid, maxqueue, shutdown). No printing.

Each action asks every server through monitor (collect, ask_all,
each_server), decides on the parsed answers, and returns a dataclass the
CLI renders; a request that cannot be carried out raises the GearctlError
that names why (and carries its exit code). The deciding steps are plain
functions of admin reports (`job_holder`, `drop_plan`), so they are tested
without a server.

gearmand matches a function name in `drop function` without regard to
ASCII case (strcasecmp), so "drop idle" drops "Idle" with its queued jobs:
the checks here match names the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import admin
from .addresses import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, ServerAddress, TLSOptions
from .admin import FunctionStatus, JobInfo
from .adminio import admin_session
from .client import AsyncClient
from .connection import PROBE, PROBE_PAYLOAD, Connection
from .errors import ExitCode, GearctlError, NotFound, RemoteProtocolError, ServerError, UsageError
from .monitor import ServerReport, answered, ask_all, collect, each_server, ssl_context

# -- cancel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    """A queued job cancelled (or found cancelled already) on one server."""

    handle: str
    server: str
    already: bool = False  # gearmand had marked it ignored before we asked


def job_holder(reports: Sequence[ServerReport], handle: str) -> tuple[ServerReport, JobInfo]:
    """The one server whose `show jobs` lists `handle`. NotFound (exit 8) when
    none does; UsageError (exit 2) when several do (handles
    repeat across gearmands on one host)."""
    holders = [(r, j) for r in reports for j in r.jobs if j.handle == handle]
    if not holders:
        raise NotFound(f"no server has a job {handle} (finished jobs cannot be cancelled)")
    if len(holders) > 1:
        where = ", ".join(r.address for r, _ in holders)
        raise UsageError(f"{handle} names a job on each of {where} (handles repeat across servers on one host); "
                         "pick one with -s")
    return holders[0]


async def cancel(servers: Sequence[ServerAddress], handle: str, *,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                 tls: TLSOptions | None = None) -> Cancelled:
    """Cancel a queued job (admin `cancel job`). Raises NoServerAvailable when
    no server answers, the errors of job_holder, and ServerError RUNNING when
    the job runs (gearmand cannot stop a running job)."""
    ctx = ssl_context(tls)
    reports = answered(await collect(servers, status=False, jobs=True, connect_timeout=connect_timeout,
                                     io_timeout=io_timeout, tls=ctx))
    report, held = job_holder(reports, handle)
    if held.ignore:
        return Cancelled(handle, report.address, already=True)
    address = next(a for a in servers if str(a) == report.address)
    if not held.queued or await _running(address, handle, connect_timeout, io_timeout, tls):
        raise ServerError("RUNNING", f"{handle} is running on {report.address}; gearmand cannot stop a running job")
    ((_, answer),) = await ask_all([address], "cancel job", handle, connect_timeout=connect_timeout,
                                   io_timeout=io_timeout, tls=ctx)
    if isinstance(answer, GearctlError):
        raise answer
    return Cancelled(handle, report.address)


async def _running(address: ServerAddress, handle: str, connect_timeout: float, io_timeout: float,
                   tls: TLSOptions | None) -> bool:
    """`show jobs` does not say whether a job runs; GET_STATUS does."""
    async with AsyncClient([address], connect_timeout=connect_timeout, io_timeout=io_timeout, tls=tls) as gear:
        return (await gear.status(handle, timeout=None)).running


# -- drop --------------------------------------------------------------------------------


class DropOutcome(Enum):
    DROPPED = "dropped"
    BUSY = "busy"  # workers registered, or jobs running: gearmand refuses, so it is not asked
    REFUSED = "refused"  # gearmand answered ERR all the same (its status changed since we looked)
    UNKNOWN = "unknown"  # the server has no such function
    DOWN = "down"


@dataclass(frozen=True)
class ServerDrop:
    address: str
    outcome: DropOutcome
    detail: str = ""  # why, for BUSY, REFUSED and DOWN


@dataclass(frozen=True)
class Dropped:
    """What `drop function` did on each server, in server order."""

    function: str
    servers: tuple[ServerDrop, ...]

    def where(self, outcome: DropOutcome) -> list[ServerDrop]:
        return [s for s in self.servers if s.outcome is outcome]

    @property
    def refused(self) -> list[ServerDrop]:
        """Servers that keep the function (BUSY or REFUSED)."""
        return [s for s in self.servers if s.outcome in (DropOutcome.BUSY, DropOutcome.REFUSED)]


def same_function(a: str, b: str) -> bool:
    """gearmand's name match for `drop function`: strcasecmp, ASCII only."""
    return a.encode("utf-8", "surrogateescape").lower() == b.encode("utf-8", "surrogateescape").lower()


def busy_detail(function: str) -> str:
    return f"workers are still connected for {function} (or clients wait on its jobs); stop them first"


def drop_plan(reports: Sequence[ServerReport], function: str, force: bool = False) -> list[ServerDrop | None]:
    """Per server (status reports, in order) the outcome already decided from
    its status, or None where `drop function` should be sent. UsageError
    (exit 2) when the function holds jobs and not `force`: gearmand would keep
    them and no worker would ever get them."""
    rows = {r.address: [fs for fs in r.status if same_function(fs.function, function)] for r in reports}
    jobs = sum(fs.total for found in rows.values() for fs in found)
    if jobs and not force:
        raise UsageError(f"{function} has {jobs} job(s) queued or running; gearmand would keep them but no worker "
                         "would ever get them. Let them drain, or use --force")
    return [_decided(r, rows[r.address], function) for r in reports]


def _decided(report: ServerReport, rows: list[FunctionStatus], function: str) -> ServerDrop | None:
    if not report.up:
        return ServerDrop(report.address, DropOutcome.DOWN, str(report.error))
    if not rows:
        return ServerDrop(report.address, DropOutcome.UNKNOWN)
    if any(fs.workers or fs.running for fs in rows):  # gearmand's own condition for refusing
        return ServerDrop(report.address, DropOutcome.BUSY, busy_detail(function))
    return None


async def drop(servers: Sequence[ServerAddress], function: str, *, force: bool = False,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
               tls: TLSOptions | None = None) -> Dropped:
    """Remove a function from the servers' status (admin `drop function`) where
    it is idle. Raises NoServerAvailable when no server answers, and the
    UsageError of drop_plan."""
    ctx = ssl_context(tls)
    reports = answered(await collect(servers, connect_timeout=connect_timeout, io_timeout=io_timeout, tls=ctx))
    plan = drop_plan(reports, function, force)
    ask = [a for a, decided in zip(servers, plan, strict=True) if decided is None]
    answers = dict(await ask_all(ask, "drop function", function, connect_timeout=connect_timeout,
                                 io_timeout=io_timeout, tls=ctx))
    return Dropped(function, tuple(decided or _answered(a, answers[a])
                                   for a, decided in zip(servers, plan, strict=True)))


def _answered(address: ServerAddress, answer: list[str] | GearctlError) -> ServerDrop:
    if isinstance(answer, ServerError):
        return ServerDrop(str(address), DropOutcome.REFUSED, str(answer))
    if isinstance(answer, GearctlError):
        return ServerDrop(str(address), DropOutcome.DOWN, str(answer))
    return ServerDrop(str(address), DropOutcome.DROPPED)


# -- ping --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pong:
    """One server's ECHO round trip: its time, or why it failed."""

    address: ServerAddress
    seconds: float | None
    error: GearctlError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def ping_document(pongs: Sequence[Pong]) -> dict[str, Any]:
    """`ping --json`: each server's round trip in milliseconds, or why it failed."""
    return {"servers": [{"address": str(p.address), "up": p.ok, "error": None if p.error is None else str(p.error),
                         "ms": None if p.seconds is None else round(p.seconds * 1000, 3)} for p in pongs]}


async def ping(servers: Sequence[ServerAddress], *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
               io_timeout: float = DEFAULT_IO_TIMEOUT, tls: TLSOptions | None = None) -> list[Pong]:
    """An ECHO round trip to every server at once, in the order given."""
    ctx = ssl_context(tls)

    async def echo(address: ServerAddress) -> float:
        conn = await Connection.open(address, timeout=connect_timeout, tls=ctx)
        try:
            started = time.perf_counter()
            # The probe's line end makes a line-based server (HTTP) answer at once.
            reply = await conn.call(PROBE, io_timeout)
            if reply.args[0] != PROBE_PAYLOAD:
                raise RemoteProtocolError(f"{address}: echo came back altered")
            return time.perf_counter() - started
        finally:
            conn.close()
            await conn.wait_transport_closed()

    return [Pong(a, None, r) if isinstance(r, GearctlError) else Pong(a, r)
            for a, r in await each_server(servers, echo)]


# -- getpid, maxqueue, shutdown: gearadmin's remaining verbs ---------------------------------


@dataclass(frozen=True)
class AdminOutcome:
    """One server's answer to an admin verb: the value it gave (getpid's pid), or
    the error that stopped it (down, refused, or a verb it does not know)."""

    address: str
    error: GearctlError | None = None
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def unsupported(self) -> bool:
        """The server does not know the verb (gearmand 1.1.20 and `shutdown`)."""
        return isinstance(self.error, ServerError) and self.error.code == "UNKNOWN_COMMAND"


def worst_exit(outcomes: Sequence[AdminOutcome]) -> ExitCode:
    """0 when every server did it, else the highest exit code among their errors
    (3 down, 7 not gearmand, 8 refused)."""
    return max((o.error.exit_code for o in outcomes if o.error is not None), default=ExitCode.OK)


def maxqueue_args(function: str, limits: Sequence[int]) -> list[str]:
    """`maxqueue FUNCTION [N | HIGH NORMAL LOW]`, as gearmand 1.1.20 takes it: no
    number lifts the limit, one applies to every priority, three are per priority.
    gearmand reads the numbers with atoi (`abc` and `-1` quietly mean no limit), so
    they are checked here: UsageError unless 0, 1 or 3 numbers, none negative."""
    if len(limits) not in (0, 1, 3):
        raise UsageError(f"maxqueue takes no limit, one (every priority) or three (high normal low), "
                         f"not {len(limits)}")
    negative = [n for n in limits if n < 0]
    if negative:
        raise UsageError(f"a queue limit is 0 (no limit) or more, not {negative[0]}")
    return [function, *(str(n) for n in limits)]


def shutdown_args(graceful: bool) -> list[str]:
    return ["graceful"] if graceful else []


async def admin_verb(servers: Sequence[ServerAddress], command: str, *args: str,
                     connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                     tls: TLSOptions | None = None, asked_first: str | None = None,
                     decide: Callable[[ServerAddress, list[str], list[str]], AdminOutcome] | None = None,
                     ) -> list[AdminOutcome]:
    """One admin command on every server at once; per server, in order, what came
    of it (a `getpid` answer parsed into `pid`). With `asked_first`, that command
    goes first on the same connection and `decide(address, its lines, the
    command's lines)` makes the outcome."""
    ctx = ssl_context(tls)
    commands = ([(asked_first,)] if asked_first else []) + [(command, *args)]

    async def ask(address: ServerAddress) -> AdminOutcome:
        answers = await admin_session(address, commands, timeout=connect_timeout, io_timeout=io_timeout, tls=ctx)
        refused = next((a for a in answers if isinstance(a, ServerError)), None)
        if refused is not None:
            return AdminOutcome(str(address), refused)
        lines = [a for a in answers if not isinstance(a, ServerError)]
        try:
            if command == "getpid":
                return AdminOutcome(str(address), pid=admin.parse_getpid(lines[-1]))
            admin.parse_ok(lines[-1])  # anything but OK: not a gearmand admin port
            return decide(address, lines[0], lines[-1]) if decide else AdminOutcome(str(address))
        except RemoteProtocolError as e:
            raise RemoteProtocolError(f"{address}: {e}") from e

    return [r if isinstance(r, AdminOutcome) else AdminOutcome(str(a), r) for a, r in await each_server(servers, ask)]


def getpid_document(outcomes: Sequence[AdminOutcome]) -> dict[str, Any]:
    """`getpid --json`: each server's pid (null when it did not answer)."""
    return {"servers": [{"address": o.address, "up": o.ok, "error": None if o.error is None else str(o.error),
                         "pid": o.pid} for o in outcomes]}


async def getpid(servers: Sequence[ServerAddress], **bounds: Any) -> list[AdminOutcome]:
    """Each server's process id (admin `getpid`)."""
    return await admin_verb(servers, "getpid", **bounds)


async def maxqueue(servers: Sequence[ServerAddress], function: str, limits: Sequence[int] = (),
                   **bounds: Any) -> list[AdminOutcome]:
    """Cap the jobs a function may hold on every server (see maxqueue_args).
    gearmand 1.1.20 (and `gearctl server`, as it) answers OK to a cap for a
    function it does not know yet and keeps none, so `status` is asked first on
    the same connection: there a cap is the error UNKNOWN_FUNCTION (exit 8)."""
    def decide(address: ServerAddress, status: list[str], _: list[str]) -> AdminOutcome:
        if limits and not any(same_function(fs.function, function) for fs in admin.parse_status(status)):
            return AdminOutcome(str(address), ServerError("UNKNOWN_FUNCTION", unknown_function(function),
                                                          str(address)))
        return AdminOutcome(str(address))

    return await admin_verb(servers, "maxqueue", *maxqueue_args(function, limits), asked_first="status",
                            decide=decide, **bounds)


def unknown_function(function: str) -> str:
    return (f"no function {function} here yet, and gearmand keeps no cap for an unknown function: set it once "
            "a worker has registered it or a job was submitted")


async def shutdown(servers: Sequence[ServerAddress], graceful: bool = False, **bounds: Any) -> list[AdminOutcome]:
    """Ask every server to stop (admin `shutdown [graceful]`). gearmand 1.1.20
    does not know the verb (`unsupported`); `gearctl server` does."""
    return await admin_verb(servers, "shutdown", *shutdown_args(graceful), **bounds)
