"""Actions on servers: cancel a job, drop a function, ping. No printing.

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
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from .addresses import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, ServerAddress, TLSOptions
from .admin import FunctionStatus, JobInfo
from .client import AsyncClient
from .connection import PROBE, PROBE_PAYLOAD, Connection
from .errors import GearctlError, RemoteProtocolError, ServerError, UsageError
from .monitor import ServerReport, answered, ask_all, collect, each_server, ssl_context

# -- cancel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    """A queued job cancelled (or found cancelled already) on one server."""

    handle: str
    server: str
    already: bool = False  # gearmand had marked it ignored before we asked


def job_holder(reports: Sequence[ServerReport], handle: str) -> tuple[ServerReport, JobInfo]:
    """The one server whose `show jobs` lists `handle`. ServerError UNKNOWN_JOB
    (exit 8) when none does; UsageError (exit 2) when several do (handles
    repeat across gearmands on one host)."""
    holders = [(r, j) for r in reports for j in r.jobs if j.handle == handle]
    if not holders:
        raise ServerError("UNKNOWN_JOB", f"no server has a job {handle} (finished jobs cannot be cancelled)")
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
