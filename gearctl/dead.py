"""`gearctl dead`: the dead-letter queue gearmand keeps, read and acted on. No printing.

A dead job is a background job of `<function>.dead` (deadletter.py), which no
worker registers, so it sits in gearmand's queue. gearmand has no command that
shows a job's workload, so gearctl looks at dead jobs the only way the protocol
allows: `DeadHold` opens a worker connection to each server (SET_CLIENT_ID
"gearctl-dead", CAN_DO for each dead-letter function, GRAB_JOB_UNIQ until
NO_JOB or `limit`), and holds the jobs. Listing lets them go by closing the
connection without completing them: gearmand puts a job that a closed worker
connection held back in its queue. Retry submits the envelope's workload to the
original function and only after its JOB_CREATED sends WORK_COMPLETE for the dead
job; purge sends WORK_COMPLETE alone. Whatever was not completed goes back.

Two consequences of holding, both in README. While a `dead` command holds them,
gearmand counts the jobs as running (and another `dead` command does not see
them). And gearmand's --job-retries N counts each hand-back as a retry and drops
the job on the Nth: gearctl cannot read that setting, so after the hand-back it
waits until each job it held is back (its retry count grew), and reports those that are gone
(`ServerDead.dropped`) instead of letting them vanish silently.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .addresses import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, ServerAddress, TLSOptions
from .admin import parse_jobs, parse_unique_jobs
from .adminio import admin_request
from .client import AsyncClient
from .connection import PROBE, PROBE_PAYLOAD, Connection
from .deadletter import Envelope, dead_letter_function, is_dead_letter_function, is_dead_unique, original_function
from .errors import GearctlError, NotFound, PayloadError, RemoteProtocolError, ServerError, UsageError
from .monitor import collect, each_server, none_answered, ssl_context
from .protocol import PacketType, encode

P = PacketType
CLIENT_ID = "gearctl-dead"
DEFAULT_LIMIT = 1000  # dead jobs held per server at most, by one command
SETTLE_POLL = 0.02  # seconds between looks at `show jobs` while handed-back jobs settle
SETTLE_MAX = 5.0  # ... and at most this long (or --io-timeout): gearmand takes milliseconds, so
# a job not queued again by then is held by another `gearctl dead` command


@dataclass(frozen=True)
class DeadJob:
    """One dead job as a server handed it to us."""

    server: str
    queue: str  # the dead-letter function, notifications_send_users.dead
    handle: str
    id: str  # the dead job's unique key (deadletter.dead_unique): what `dead show ID` takes
    raw: bytes  # its workload, as it is
    envelope: Envelope | None = None
    invalid: str = ""  # why the workload is not an envelope (someone submitted garbage to the queue)
    requeues: int | None = None  # gearmand's retry count for it, this hand-back included (`show jobs`)

    @property
    def valid(self) -> bool:
        return self.envelope is not None

    @property
    def function(self) -> str:
        """The original function: the envelope's, else the queue's name without `.dead`."""
        return self.envelope.function if self.envelope is not None else original_function(self.queue)

    def as_json(self) -> dict[str, Any]:
        """The record `gearctl dead list/show --json` prints (schema in README)."""
        doc: dict[str, Any] = {"id": self.id, "handle": self.handle, "server": self.server, "queue": self.queue,
                               "function": self.function, "valid": self.valid, "requeues": self.requeues,
                               "envelope": self.envelope.as_json() if self.envelope is not None else None}
        if self.envelope is None:
            doc["invalid"] = self.invalid
            try:
                doc["workload"] = self.raw.decode("utf-8")
            except UnicodeDecodeError:
                import base64

                doc["workload_base64"] = base64.b64encode(self.raw).decode("ascii")
        return doc


def dead_job(server: str, packet_args: Sequence[bytes]) -> DeadJob:
    """A DeadJob from a JOB_ASSIGN_UNIQ's arguments (handle, function, unique, data)."""
    handle, queue, unique, data = (bytes(a) for a in packet_args)
    text = {"handle": handle, "queue": queue, "unique": unique}
    names = {k: v.decode("utf-8", "surrogateescape") for k, v in text.items()}
    try:
        envelope: Envelope | None = Envelope.decode(data)
        invalid = ""
    except PayloadError as e:
        envelope, invalid = None, str(e)
    return DeadJob(server, names["queue"], names["handle"], names["unique"], data, envelope, invalid)


def listing_order(job: DeadJob) -> tuple[str, float, str, str]:
    """Per function, oldest death first (gearmand hands jobs out in no order one can rely on)."""
    return job.function, job.envelope.last_failure if job.envelope else 0.0, job.server, job.id


@dataclass(frozen=True)
class ServerDead:
    """What one server's part of a `dead` command came to."""

    address: str
    error: str | None = None  # why the server could not be read (it is down, say)
    held: int = 0  # dead jobs it handed us
    truncated: bool = False  # `limit` stopped the grabbing: it may hold more
    dropped: tuple[str, ...] = ()  # handles gone once handed back (gearmand's --job-retries, or a rival command)
    unsettled: int = 0  # handed-back jobs not seen back within the time allowed
    unconfirmed: tuple[str, ...] = ()  # completed (retried, purged) but the connection failed before gearmand
    # confirmed it had read that: those may still be dead (and a retried one then runs twice, never zero times)


@dataclass(frozen=True)
class DeadListing:
    jobs: tuple[DeadJob, ...]
    servers: tuple[ServerDead, ...]

    @property
    def dropped(self) -> int:
        return sum(len(s.dropped) for s in self.servers)

    @property
    def unconfirmed(self) -> int:
        return sum(len(s.unconfirmed) for s in self.servers)

    def as_json(self) -> dict[str, Any]:
        return {"jobs": [j.as_json() for j in self.jobs],
                "servers": [{"address": s.address, "up": s.error is None, "error": s.error, "held": s.held,
                             "truncated": s.truncated, "dropped": list(s.dropped),
                             "unconfirmed": list(s.unconfirmed)} for s in self.servers]}


class Action(str, Enum):
    RETRIED = "retried"  # resubmitted to the original function, then completed
    PURGED = "purged"  # completed
    INVALID = "invalid"  # not an envelope: left where it was (retry; purge without --include-invalid)
    KEY_TAKEN = "key_taken"  # a server holds its original unique key again: left, gearmand would coalesce
    FAILED = "failed"  # the resubmit (or the completion) failed: left where it was

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Acted:
    job: DeadJob
    action: Action
    detail: str = ""  # the new job's handle (retried), or why (the others)
    error: GearctlError | None = None  # what made a retry fail


@dataclass(frozen=True)
class DeadResult:
    acted: tuple[Acted, ...]
    listing: DeadListing  # every job held, and what each server's part came to
    declined: bool = False  # purge's confirm said no
    selection: Selection | None = None  # what the command's target turned out to be (a FUNCTION or an ID)

    def where(self, action: Action) -> list[Acted]:
        return [a for a in self.acted if a.action is action]


@dataclass(frozen=True)
class Selection:
    """Which dead jobs a retry or purge is about: one function's, one ID, all,
    or a `target` that is either (an ID when some dead job has it, else a function)."""

    function: str | None = None
    job_id: str | None = None
    every: bool = False
    target: str | None = None
    include_invalid: bool = False  # purge: envelopes that are not, too (never with retry)

    def __post_init__(self) -> None:
        named = (self.function is not None, self.job_id is not None, self.every, self.target is not None)
        if sum(named) != 1:
            raise UsageError("name one FUNCTION or ID, or give --all")

    def resolved(self, jobs: Sequence[DeadJob]) -> Selection:
        """A target made a function or an ID, by the jobs held (and, when none
        has it, by its form: a dead job's key or a job handle is an ID not found)."""
        if self.target is None:
            return self
        if any(self.target in (j.id, j.handle) for j in jobs) or looks_like_id(self.target):
            return Selection(job_id=self.target, include_invalid=self.include_invalid)
        return Selection(function=self.target, include_invalid=self.include_invalid)


_HANDLE = re.compile(r"H:.+:\d+", re.DOTALL)  # a gearmand job handle


def looks_like_id(target: str) -> bool:
    """A dead job's unique key as deadletter.dead_unique makes it, or a job handle."""
    return is_dead_unique(target) or _HANDLE.fullmatch(target) is not None


def queue_name(function: str) -> str:
    """The dead-letter function of FUNCTION; a name that is one already stays."""
    return function if is_dead_letter_function(function) else dead_letter_function(function)


def select(jobs: Sequence[DeadJob], selection: Selection) -> list[DeadJob]:
    """The jobs a selection names. An ID is a dead job's unique key, or its
    handle; NotFound (exit 8) when no server holds it, UsageError
    (exit 2) when it names jobs on several servers. Invalid envelopes are taken
    by FUNCTION or --all only with include_invalid; by ID always."""
    selection = selection.resolved(jobs)
    if selection.job_id is not None:
        found = [j for j in jobs if j.id == selection.job_id] or [j for j in jobs if j.handle == selection.job_id]
        if not found:
            hint = "" if looks_like_id(selection.job_id) else (
                " (an ID is a dead job's key or handle, as `gearctl dead list` shows them)")
            raise NotFound(f"no dead job {selection.job_id} on any server{hint}")
        if len(found) > 1:
            where = ", ".join(j.server for j in found)
            raise UsageError(f"{selection.job_id} names a dead job on each of {where}; pick one with -s")
        return found
    queue = queue_name(selection.function) if selection.function is not None else None
    return sorted((j for j in jobs if (queue is None or j.queue == queue) and (j.valid or selection.include_invalid)),
                  key=listing_order)


@dataclass
class Bounds:
    """How long every wait may take: the two documented timeouts, and TLS."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    io_timeout: float = DEFAULT_IO_TIMEOUT
    tls: TLSOptions | None = None

    def ssl(self) -> Any:
        return ssl_context(self.tls)


@dataclass
class ServerHold:
    """One server's worker connection and the dead jobs it holds."""

    address: ServerAddress
    conn: Connection | None = None
    jobs: list[DeadJob] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    error: str | None = None
    why: int = 0  # with an error: its exit code (3 unreachable, 7 another protocol, ...)
    truncated: bool = False


class DeadHold:
    """The dead jobs of `queues` (all when None) held on every server at once,
    handed back on exit (see the module docstring). Use `async with`."""

    def __init__(self, servers: Sequence[ServerAddress], function: str | None = None, *,
                 limit: int = DEFAULT_LIMIT, bounds: Bounds | None = None) -> None:
        if limit < 1:
            raise UsageError("--limit takes a number of 1 or more")
        self.servers = list(servers)
        self.queue = queue_name(function) if function is not None else None
        self.limit = limit
        self.bounds = bounds or Bounds()
        self.holds: list[ServerHold] = []
        self.listing = DeadListing((), ())

    @property
    def jobs(self) -> list[DeadJob]:
        return [j for h in self.holds for j in h.jobs]

    async def __aenter__(self) -> DeadHold:
        b = self.bounds
        reports = await collect(self.servers, connect_timeout=b.connect_timeout, io_timeout=b.io_timeout, tls=b.ssl())
        self.holds = [ServerHold(a, error=None if r.up else r.error, why=r.why)
                      for a, r in zip(self.servers, reports, strict=True)]
        queues = {r.address: sorted({fs.function for fs in r.status if fs.total and self._wanted(fs.function)})
                  for r in reports if r.up}
        await asyncio.gather(*(self._grab(h, queues[str(h.address)]) for h in self.holds if h.error is None))
        if all(h.error is not None for h in self.holds):
            await self.__aexit__()  # a server that failed mid-grab gets back what it handed out
            raise none_answered([(str(h.address), str(h.error), h.why) for h in self.holds])
        return self

    def _wanted(self, function: str) -> bool:
        return function == self.queue if self.queue is not None else is_dead_letter_function(function)

    async def _grab(self, hold: ServerHold, queues: list[str]) -> None:
        if not queues:
            return
        b = self.bounds
        try:
            conn = hold.conn = await Connection.open(hold.address, timeout=b.connect_timeout, tls=b.ssl(),
                                                     io_timeout=b.io_timeout)
            if (await conn.call(PROBE)).args[0] != PROBE_PAYLOAD:
                raise RemoteProtocolError(f"{hold.address}: echo came back altered")
            conn.send(encode(P.SET_CLIENT_ID, CLIENT_ID.encode())
                      + b"".join(encode(P.CAN_DO, q.encode("utf-8", "surrogateescape")) for q in queues))
            while len(hold.jobs) < self.limit:
                reply = await conn.call(encode(P.GRAB_JOB_UNIQ))
                if reply.type is P.NO_JOB:
                    return
                if reply.type is P.ERROR:
                    raise ServerError(reply.args[0].decode("utf-8", "replace"),
                                      reply.args[1].decode("utf-8", "replace"), str(hold.address))
                if reply.type is not P.JOB_ASSIGN_UNIQ:
                    raise RemoteProtocolError(f"{hold.address}: {reply.type.name} in answer to GRAB_JOB_UNIQ")
                hold.jobs.append(dead_job(str(hold.address), reply.args))
            hold.truncated = True
        except GearctlError as e:
            # Jobs grabbed before the error are still held: listed, and handed back on exit.
            hold.error, hold.why = str(e), e.exit_code

    def complete(self, job: DeadJob) -> None:
        """WORK_COMPLETE for a held dead job: gearmand forgets it. Raises
        ConnectionFailed when its connection is gone (then gearmand kept it)."""
        hold = next(h for h in self.holds if str(h.address) == job.server)
        if hold.conn is None:
            raise UsageError(f"{job.handle} is not held")
        hold.conn.send(encode(P.WORK_COMPLETE, job.handle.encode("utf-8", "surrogateescape"), b""))
        hold.completed.add(job.handle)

    async def __aexit__(self, *exc: object) -> None:
        results = await asyncio.gather(*(self._release(h) for h in self.holds))
        jobs = sorted((j for found, _ in results for j in found), key=listing_order)
        self.listing = DeadListing(tuple(jobs), tuple(s for _, s in results))

    async def _release(self, hold: ServerHold) -> tuple[list[DeadJob], ServerDead]:
        """Hand back what was not completed, and wait until gearmand has put it
        back (or dropped it): a command run right after sees the same queue."""
        conn = hold.conn
        if conn is None:
            return hold.jobs, ServerDead(str(hold.address), hold.error)
        error = hold.error
        unconfirmed: tuple[str, ...] = ()
        if hold.completed:
            try:  # an echo after the completions: gearmand has read them when it answers
                await conn.call(PROBE)
            except GearctlError as e:
                error, unconfirmed = error or str(e), tuple(sorted(hold.completed))
        back = {j.handle for j in hold.jobs} - hold.completed
        before = await self._retries(hold.address, back) if back and not conn.closed else None
        conn.close()
        await conn.wait_transport_closed()
        jobs, unsettled = hold.jobs, 0
        dropped: tuple[str, ...] = ()
        if before is not None:
            retries, gone, unsettled = await self._settle(hold.address, before)
            jobs = [replace(j, requeues=retries.get(j.handle)) for j in hold.jobs]
            dropped = tuple(sorted(gone))
        return jobs, ServerDead(str(hold.address), error, len(hold.jobs), hold.truncated, dropped, unsettled,
                                unconfirmed)

    async def _retries(self, address: ServerAddress, handles: set[str]) -> dict[str, int] | None:
        """gearmand's retry count of each handle (`show jobs`; None when it does not answer)."""
        b = self.bounds
        try:
            lines = await admin_request(address, "show jobs", timeout=b.connect_timeout, tls=b.ssl(),
                                        io_timeout=b.io_timeout)
        except GearctlError:
            return None
        return {j.handle: j.retries for j in parse_jobs(lines) if j.handle in handles}

    async def _settle(self, address: ServerAddress, before: dict[str, int]) -> tuple[dict[str, int], set[str], int]:
        """Until each handle held is back (gearmand counts a hand-back as a retry:
        its count grew) or gone, for at most SETTLE_MAX or --io-timeout: (retries
        per handle, handles gone, handles not seen back). `show jobs` is no help
        otherwise: gearmand 1.1.20 shows a job a worker holds as queued too."""
        deadline = time.monotonic() + min(self.bounds.io_timeout, SETTLE_MAX)
        while True:
            now = await self._retries(address, set(before))
            if now is None:
                return {}, set(), len(before)
            waiting = [h for h, n in now.items() if n <= before[h]]
            if not waiting or time.monotonic() >= deadline:
                return now, set(before) - set(now), len(waiting)
            await asyncio.sleep(SETTLE_POLL)


# -- the commands' library side ------------------------------------------------------


async def list_dead(servers: Sequence[ServerAddress], function: str | None = None, *,
                    limit: int = DEFAULT_LIMIT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                    io_timeout: float = DEFAULT_IO_TIMEOUT, tls: TLSOptions | None = None) -> DeadListing:
    """The dead jobs of `function` (all dead-letter functions when None) on every
    server, left where they were. NoServerAvailable when no server answers."""
    hold = DeadHold(servers, function, limit=limit, bounds=Bounds(connect_timeout, io_timeout, tls))
    async with hold:
        pass
    return hold.listing


async def show_dead(servers: Sequence[ServerAddress], job_id: str, *, limit: int = DEFAULT_LIMIT,
                    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                    tls: TLSOptions | None = None) -> tuple[DeadJob, DeadListing]:
    """One dead job by ID (its unique key, or its handle), left where it was;
    the errors of select()."""
    listing = await list_dead(servers, limit=limit, connect_timeout=connect_timeout, io_timeout=io_timeout, tls=tls)
    (job,) = select(listing.jobs, Selection(job_id=job_id))
    return job, listing


async def purge_dead(servers: Sequence[ServerAddress], selection: Selection, *, limit: int = DEFAULT_LIMIT,
                     confirm: Callable[[Sequence[DeadJob]], bool] | None = None,
                     connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                     tls: TLSOptions | None = None) -> DeadResult:
    """Complete the selected dead jobs: gearmand forgets them. `confirm` is
    asked with the jobs chosen, while they are held; when it says no, nothing
    is purged (`DeadResult.declined`)."""
    hold = DeadHold(servers, selection.function, limit=limit, bounds=Bounds(connect_timeout, io_timeout, tls))
    acted: list[Acted] = []
    async with hold:
        selection = selection.resolved(hold.jobs)
        chosen = select(hold.jobs, selection)
        declined = bool(chosen) and confirm is not None and not confirm(chosen)
        for job in [] if declined else chosen:
            try:
                hold.complete(job)
                acted.append(Acted(job, Action.PURGED))
            except GearctlError as e:
                acted.append(Acted(job, Action.FAILED, str(e), e))
        if not declined:
            acted += _left_invalid(hold.jobs, chosen, selection)
    return DeadResult(tuple(acted), hold.listing, declined, selection)


def _left_invalid(jobs: Sequence[DeadJob], chosen: Sequence[DeadJob], selection: Selection) -> list[Acted]:
    """Invalid envelopes a FUNCTION or --all left alone."""
    if selection.job_id is not None:
        return []
    queue = queue_name(selection.function) if selection.function is not None else None
    return [Acted(j, Action.INVALID, f"{j.invalid}; left where it is (purge takes it with --include-invalid)")
            for j in jobs if not j.valid and j not in chosen and (queue is None or j.queue == queue)]


async def retry_dead(servers: Sequence[ServerAddress], selection: Selection, *, limit: int = DEFAULT_LIMIT,
                     connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                     tls: TLSOptions | None = None) -> DeadResult:
    """Submit each selected dead job's workload to its original function, in
    the background and with its original unique key, and complete the dead job
    once a server answered JOB_CREATED. A failed submit leaves the dead job where
    it was (FAILED); so does an original key that a server holds again (KEY_TAKEN:
    gearmand would coalesce the retry into that job and the workload would never
    run), and a workload that is not an envelope (INVALID)."""
    if selection.include_invalid:
        raise UsageError("--include-invalid is for purge: a job that is not an envelope cannot be retried")
    bounds = Bounds(connect_timeout, io_timeout, tls)
    hold = DeadHold(servers, selection.function, limit=limit, bounds=bounds)
    acted: list[Acted] = []
    async with hold:
        selection = selection.resolved(hold.jobs)
        chosen = select(hold.jobs, replace(selection, include_invalid=True))
        taken = await _keys_held(servers, bounds)
        async with AsyncClient(servers, connect_timeout=connect_timeout, io_timeout=io_timeout, tls=tls) as client:
            for job in chosen:
                acted.append(await _retry_one(hold, client, job, taken))
    return DeadResult(tuple(acted), hold.listing, selection=selection)


async def _retry_one(hold: DeadHold, client: AsyncClient, job: DeadJob, taken: set[str]) -> Acted:
    env = job.envelope
    if env is None:
        return Acted(job, Action.INVALID, f"{job.invalid}; cannot be retried, purge it by its ID")
    if env.unique and env.unique in taken:
        return Acted(job, Action.KEY_TAKEN, f"a job with its unique key {env.unique} is queued or running again; "
                                          "gearmand would coalesce the retry into it: retry once that job ended")
    try:
        created = await client.submit(env.function, env.workload, background=True, unique=env.unique)
    except GearctlError as e:
        return Acted(job, Action.FAILED, str(e), e)
    try:
        hold.complete(job)
    except GearctlError as e:  # resubmitted, but the dead job stays: it may run twice, never zero times
        return Acted(job, Action.FAILED, f"resubmitted as {created.handle}, but the dead job stays: {e}", e)
    if env.unique:  # a second dead job of the same key now would be coalesced into this one
        taken.add(env.unique)
    return Acted(job, Action.RETRIED, created.handle or "")


async def _keys_held(servers: Sequence[ServerAddress], bounds: Bounds) -> set[str]:
    """Every unique key the servers that answer hold (`show unique jobs`)."""
    async def ask(address: ServerAddress) -> list[str]:
        return await admin_request(address, "show unique jobs", timeout=bounds.connect_timeout, tls=bounds.ssl(),
                                   io_timeout=bounds.io_timeout)

    return {key for _, lines in await each_server(servers, ask) if isinstance(lines, list)
            for key in parse_unique_jobs(lines)}
