"""Submitting jobs: one at a time with failover, or many pipelined; job status.

`AsyncClient` is the engine; `Client` is the same API for code that is not
async (it runs its own event loop). Neither prints: they return `Job` objects
and raise errors from errors.py.

A job counts as submitted only once a server answered JOB_CREATED. A submit
whose server cannot be reached, closes the connection, or answers ERROR moves
on to the next server; one that no server took raises (or, in submit_many,
ends with state "error"). Resubmitting after a connection broke between the
SUBMIT and its JOB_CREATED can run a job twice, never zero times: Gearman's
at-least-once promise.

Foreground jobs are registered under their handle the moment JOB_CREATED is
read, inside the same read loop, because the job's WORK_* packets may follow
in the very same chunk of bytes.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, Union

from . import admin
from .connection import (
    DEFAULT_IO_TIMEOUT,
    Connection,
    ServerAddress,
    ServerPool,
    TLSOptions,
    admin_request,
    ignore_reply,
    parse_servers,
)
from .errors import (
    ConnectionFailed,
    GearctlError,
    JobException,
    JobFailed,
    NoServerAvailable,
    NoWorker,
    RemoteProtocolError,
    ServerError,
    Timeout,
    UsageError,
)
from .pipeline import IterSource, JobSource, ManyRun, deadline_after, remaining
from .protocol import SUBMIT_TYPES, WORK_PACKETS, Packet, PacketType, encode, encode_submit, parse_int

P = PacketType
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
MAX_FUNCTION = 8191  # bytes; gearmand 1.1.20 drops the connection for a longer name
DEFAULT_WINDOW = 10_000  # jobs in flight at once in submit_many

# Job states. A background job ends at "queued"; a foreground one at
# "complete", "failed" or "exception". "error" and "timeout" are gearctl's own.
DONE_STATES = frozenset({"queued", "complete", "failed", "exception", "error", "timeout"})
T = TypeVar("T")


_UNIQUE_PREFIX = uuid.uuid4().hex.encode()
_unique_counter = itertools.count(1)


def _fresh_unique() -> bytes:
    """A unique key no other job has: this process's random prefix and a counter
    (a uuid4 per job would cost more than the rest of a pipelined submit)."""
    return b"%s-%d" % (_UNIQUE_PREFIX, next(_unique_counter))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _text_or_base64(value: bytes) -> tuple[str | None, str | None]:
    """For JSON: (the UTF-8 text, None), or (None, the base64) for other bytes."""
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(value).decode()


def _bytes(value: Union[bytes, str]) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """GET_STATUS / GET_STATUS_UNIQUE answer. gearmand's answer to the unique
    form names the unique key, not the handle."""

    handle: str | None
    known: bool
    running: bool
    numerator: int
    denominator: int
    server: str
    waiting: int | None = None  # clients waiting on the job (GET_STATUS_UNIQUE only)
    unique: str | None = None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.numerator / self.denominator if self.denominator else None


class Job:
    """One job: what was submitted and everything the server said about it.

    For a foreground job, set on_data/on_warning/on_status before submitting to
    see WORK_* packets as they come (they are kept in chunks/warnings anyway).
    """

    __slots__ = (
        "_future",
        "_on_done",
        "_wire_function",
        "_wire_unique",
        "background",
        "chunks",
        "data",
        "denominator",
        "error",
        "exception",
        "function",
        "handle",
        "index",
        "numerator",
        "on_data",
        "on_status",
        "on_warning",
        "priority",
        "result",
        "server",
        "state",
        "unique",
        "warnings",
        "when",
    )

    def __init__(self, function: str, data: Union[bytes, str] = b"", *, unique: str = "",
                 background: bool = True, priority: str = "normal", when: int | None = None,
                 index: int | None = None) -> None:
        if priority not in PRIORITIES:
            raise UsageError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        if when is not None and not background:
            raise UsageError("a scheduled job (--at/--in) runs in the background; it cannot be waited for")
        if when is not None and priority != "normal":
            raise UsageError("gearmand has no priority for scheduled jobs; drop --priority or --at/--in")
        if not function:
            raise UsageError("the function name is empty")
        self._wire_function = function.encode("utf-8", "surrogateescape")
        # No key given: a fresh one, as libgearman does. gearmand's persistent
        # queues (sqlite, mysql, ...) store jobs under (function, unique): with an
        # empty unique, a restart would bring back one job of many.
        self._wire_unique = unique.encode("utf-8", "surrogateescape") if unique else _fresh_unique()
        if b"\0" in self._wire_function or b"\0" in self._wire_unique:
            raise UsageError("function names and unique keys cannot contain NUL bytes")
        if len(self._wire_function) > MAX_FUNCTION:
            raise UsageError(f"the function name is {len(self._wire_function)} bytes; gearmand takes {MAX_FUNCTION}")
        self.function = function
        self.data = _bytes(data)
        self.unique = unique
        self.background = background
        self.priority = priority
        self.when = when
        self.index = index  # the caller's number for it (input line)
        self.handle: str | None = None
        self.server: ServerAddress | None = None
        self.state = "new"
        self.result = b""  # WORK_COMPLETE payload
        self.chunks: list[bytes] = []  # WORK_DATA payloads, in order
        self.warnings: list[bytes] = []
        self.exception: bytes | None = None
        self.error: GearctlError | None = None
        self.numerator = 0
        self.denominator = 0
        self.on_data: Callable[[Job, bytes], None] | None = None
        self.on_warning: Callable[[Job, bytes], None] | None = None
        self.on_status: Callable[[Job, int, int], None] | None = None
        self._on_done: Callable[[Job], None] | None = None
        self._future: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Job {self.function} {self.handle or '-'} {self.state}>"

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    @property
    def output(self) -> bytes:
        """What `gearctl client --wait` prints: the WORK_DATA chunks, then the
        result. To parse the result, use `result` (what wait() returns)."""
        return b"".join(self.chunks) + self.result if self.chunks else self.result

    def packet(self) -> bytes:
        """The SUBMIT packet for this job."""
        if self.when is not None:
            return encode(P.SUBMIT_JOB_EPOCH, self._wire_function, self._wire_unique, str(self.when).encode(),
                          self.data)
        return encode_submit(SUBMIT_TYPES[(self.background, self.priority)], self._wire_function,
                             self._wire_unique, self.data)

    def raise_for_state(self) -> None:
        """Raise the error that matches how the job ended (nothing for success)."""
        if self.state == "failed":
            raise JobFailed(f"job {self.handle} ({self.function}) failed")
        if self.state == "exception":
            text = _text(self.exception or b"").strip() or "no message"
            raise JobException(f"job {self.handle} ({self.function}) raised: {text}")
        if self.state in ("error", "timeout") and self.error is not None:
            raise self.error

    async def wait(self, timeout: float | None = None) -> bytes:
        """Wait for the job to end; its result (WORK_COMPLETE's payload, without
        the WORK_DATA chunks, which are in `chunks`), or the matching error."""
        if not self.done:
            if self._future is None:
                self._future = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._future), timeout)
            except asyncio.TimeoutError:
                self._finish("timeout", Timeout(
                    f"job {self.handle} ({self.function}) did not finish in time; it may still run on the server"))
        self.raise_for_state()
        return self.result

    def to_dict(self) -> dict[str, Any]:
        """The --json record. A foreground job's WORK_DATA chunks are a list of
        their own under "data", never glued onto "result"; bytes that are not
        UTF-8 are null, with the base64 in "result_base64" / "data_base64"."""
        record: dict[str, Any] = {
            "function": self.function,
            "handle": self.handle,
            "unique": _text(self._wire_unique),
            "server": str(self.server) if self.server else None,
            "status": self.state,
        }
        record["result"], result_base64 = _text_or_base64(self.result)
        record["error"] = self.error_text()
        if result_base64 is not None:
            record["result_base64"] = result_base64
        if not self.background:
            chunks = [_text_or_base64(chunk) for chunk in self.chunks]
            if all(encoded is None for _, encoded in chunks):
                record["data"] = [text for text, _ in chunks]
            else:
                record["data"], record["data_base64"] = None, [base64.b64encode(c).decode() for c in self.chunks]
        if self.warnings:
            record["warnings"] = [_text(w) for w in self.warnings]
        if self.index is not None:
            record["line"] = self.index
        return record

    def error_text(self) -> str | None:
        if self.state == "exception":
            return _text(self.exception or b"")
        if self.state == "failed":
            return "job failed"
        if self.error is not None:
            return str(self.error)
        return None

    # -- driven by AsyncClient --------------------------------------------------
    def _abort(self, error: BaseException) -> None:
        """Wake a waiter with an error that is not the job's (the caller's own
        output failed): the job's state stays as it is."""
        if self._future is not None and not self._future.done():
            self._future.set_exception(error)

    def _finish(self, state: str, error: GearctlError | None = None) -> None:
        if self.done:
            return
        self.state = state
        if error is not None:
            self.error = error
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        if self._on_done is not None:
            self._on_done(self)

    def _work(self, packet: Packet) -> bool:
        """Apply a WORK_* packet; True when it ends the job."""
        kind, args = packet.type, packet.args
        if kind is P.WORK_DATA:
            self.chunks.append(args[1])
            if self.on_data:
                self.on_data(self, args[1])
        elif kind is P.WORK_WARNING:
            self.warnings.append(args[1])
            if self.on_warning:
                self.on_warning(self, args[1])
        elif kind is P.WORK_STATUS:
            self.numerator = parse_int(args[1], "WORK_STATUS numerator")
            self.denominator = parse_int(args[2], "WORK_STATUS denominator")
            if self.on_status:
                self.on_status(self, self.numerator, self.denominator)
        elif kind is P.WORK_COMPLETE:
            self.result = args[1]
            self._finish("complete")
            return True
        elif kind is P.WORK_FAIL:
            self._finish("failed")
            return True
        elif kind is P.WORK_EXCEPTION:
            # gearmand ends the job on WORK_EXCEPTION and forwards it only to
            # clients that set the "exceptions" option (we always do).
            self.exception = args[1]
            self._finish("exception")
            return True
        return False


Done = Callable[[Job, Union[GearctlError, None]], None]


class AsyncClient:
    """Submit jobs to one or more gearmand servers; see the module docstring."""

    def __init__(self, servers: Union[str, Iterable[str], Iterable[ServerAddress], None] = None, *,
                 connect_timeout: float = 5.0, io_timeout: float | None = DEFAULT_IO_TIMEOUT,
                 tls: TLSOptions | None = None) -> None:
        self._pool = ServerPool(_addresses(servers), connect_timeout=connect_timeout, tls=tls, io_timeout=io_timeout,
                                on_packet=self._on_packet, on_close=self._on_close, on_drained=self._on_drained,
                                on_callback_error=self._on_callback_error)
        self._runs: set[ManyRun] = set()  # submit_many calls under way
        # Foreground jobs by connection and handle (coalesced jobs share a handle).
        self._waiting: dict[Connection, dict[bytes, list[Job]]] = {}

    @property
    def servers(self) -> list[ServerAddress]:
        return self._pool.servers

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._pool.close()

    # -- one job ---------------------------------------------------------------
    async def submit(self, function: str, data: Union[bytes, str] = b"", *, background: bool = True,
                     priority: str = "normal", unique: str = "", when: int | None = None,
                     timeout: float | None = None) -> Job:
        """Submit one job; returns once a server created it (JOB_CREATED).
        For a foreground job, `await job.wait()` then gives its result."""
        job = Job(function, data, unique=unique, background=background, priority=priority, when=when)
        await self.submit_job(job, timeout=timeout)
        return job

    async def run(self, function: str, data: Union[bytes, str] = b"", *, priority: str = "normal",
                  unique: str = "", timeout: float | None = None) -> bytes:
        """Submit a foreground job and wait for its result (WORK_DATA is not
        part of it: submit() and read the job's `chunks`, or set `on_data`)."""
        deadline = deadline_after(timeout)
        job = await self.submit(function, data, background=False, priority=priority, unique=unique,
                                timeout=timeout)
        return await job.wait(remaining(deadline))

    async def submit_job(self, job: Job, timeout: float | None = None) -> Job:
        """Create `job` on the first server that takes it (see module docstring)."""
        deadline = deadline_after(timeout)
        errors: list[GearctlError] = []
        for address in self._candidates(job):
            try:
                conn = await _within(self._pool.connect(address), deadline, f"connecting to {address}")
            except (ConnectionFailed, RemoteProtocolError) as e:  # a greeting in another protocol, say
                errors.append(e)
                continue
            future: asyncio.Future[GearctlError | None] = asyncio.get_running_loop().create_future()
            self._send(conn, [job], partial(_settle, future))
            try:
                error = await _within(asyncio.shield(future), deadline, f"waiting for {address} to create the job")
            except Timeout as e:
                job._finish("timeout", e)
                raise
            if error is None:
                return job
            errors.append(error)
            if isinstance(error, ConnectionFailed):
                self._pool.mark_down(address, error)
        error = _best_error(errors, self._pool)
        job._finish("error", error)
        raise error

    def _candidates(self, job: Job) -> list[ServerAddress]:
        """Servers to try: the ones not known down, or all of them when none is up."""
        return self._pool.order(job._wire_unique if job.unique else b"")  # a generated key: rotate

    # -- many jobs -------------------------------------------------------------
    async def submit_many(self, jobs: Iterable[Job] | JobSource, *, window: int = DEFAULT_WINDOW,
                          timeout: float | None = None,
                          on_created: Callable[[Job], None] | None = None,
                          on_done: Callable[[Job], None] | None = None) -> dict[str, int]:
        """Submit jobs pipelined, at most `window` in flight (not yet created, or
        for foreground jobs not yet finished). Each job ends in a done state;
        `on_done` is called once for every job. Returns counts by state.

        Jobs without a unique key rotate over the servers that are connected;
        jobs with one go to their key's server. The window is refilled from the
        reply callbacks themselves (no task wakes up per job), and SUBMITs are
        written in batches, once per turn of the event loop, so there is no round
        trip per job and, with a window of 1, no idle turn between two jobs.
        """
        source = jobs if isinstance(jobs, JobSource) else IterSource(jobs)
        run = ManyRun(self, source, max(1, window), deadline_after(timeout), on_created, on_done)
        await self._pool.connect_all(run.deadline)
        self._runs.add(run)
        try:
            source.start(run.pump)
            run.pump()
            await _within(run.all_done.wait(), run.deadline, "waiting for the jobs")
        except Timeout as e:
            run.expire(e)
        finally:
            self._runs.discard(run)
            run.close()
            source.close()
        if run.failure is not None:
            raise run.failure
        return run.counts

    async def _connection_for(self, job: Job) -> Connection | None:
        for address in self._candidates(job):
            conn = self._pool.connected(address)
            if conn is not None:
                return conn
            try:
                return await self._pool.connect(address)
            except (ConnectionFailed, RemoteProtocolError):
                continue
        return None

    # -- the wire --------------------------------------------------------------
    def _send(self, conn: Connection, jobs: list[Job], done: Done) -> None:
        """Write SUBMITs for `jobs` in one write; `done(job, error)` per reply."""
        waiting = self._waiting
        needs_option = any(not job.background for job in jobs) and "exceptions" not in conn.options
        chunks = []
        callbacks: list[Callable[[Union[Packet, GearctlError]], None]] = []
        if needs_option:
            conn.options.add("exceptions")
            chunks.append(encode(P.OPTION_REQ, b"exceptions"))
            callbacks.append(ignore_reply)
        for job in jobs:
            job.state = "sent"

            def reply(answer: Union[Packet, GearctlError], job: Job = job) -> None:
                if isinstance(answer, Packet):
                    if answer.type is P.JOB_CREATED:
                        handle = answer.args[0]
                        job.handle = _text(handle)
                        job.server = conn.address
                        if job.background:
                            done(job, None)
                            job._finish("queued")
                        else:
                            job.state = "created"
                            waiting.setdefault(conn, {}).setdefault(handle, []).append(job)
                            done(job, None)
                        return
                    if answer.type is P.ERROR:
                        done(job, ServerError(_text(answer.args[0]), _text(answer.args[1]), str(conn.address)))
                        return
                    error = RemoteProtocolError(f"{conn.address}: {answer.type.name} in answer to a submit")
                    done(job, error)
                    conn.fail(error)  # the replies are out of step: the connection cannot be trusted
                    return
                done(job, answer)

            chunks.append(job.packet())
            callbacks.append(reply)
        try:
            conn.request_many(b"".join(chunks), callbacks)
        except GearctlError as e:
            for callback in callbacks:
                callback(e)

    def _on_packet(self, conn: Connection, packet: Packet) -> None:
        kind = packet.type
        if kind in WORK_PACKETS:
            handles = self._waiting.get(conn)
            jobs = handles.get(packet.args[0]) if handles else None
            if not jobs:
                return  # a job we no longer wait for (timed out, or a stray packet)
            ended = False
            for job in list(jobs):
                ended = job._work(packet) or ended
            if ended and handles is not None:
                del handles[packet.args[0]]

    def _no_server_error(self) -> GearctlError:
        return _best_error(list(self._pool.errors.values()), self._pool)

    def _on_drained(self) -> None:
        for run in self._runs:
            run.flush()

    def _on_callback_error(self, error: Exception) -> None:
        """The caller's callback (output, progress) failed: stop what waits."""
        for run in list(self._runs):
            run.fail(error)
        for handles in self._waiting.values():
            for jobs in handles.values():
                for job in jobs:
                    job._abort(error)

    def _on_close(self, conn: Connection, error: GearctlError) -> None:
        handles = self._waiting.pop(conn, None)
        if not handles:
            return
        for jobs in handles.values():
            for job in jobs:
                lost: GearctlError = error if isinstance(error, RemoteProtocolError) else ConnectionFailed(
                    f"{conn.address}: connection lost while waiting for job {job.handle} ({job.function})")
                job._finish("error", lost)

    # -- status and admin --------------------------------------------------------
    async def status(self, handle: str, *, server: Union[str, ServerAddress, None] = None,
                     timeout: float | None = 10.0) -> JobStatus:
        """GET_STATUS on `server`, or on every server until one knows the handle."""
        request = encode(P.GET_STATUS, handle.encode())
        return await self._ask_status(request, server, timeout)

    async def status_unique(self, unique: str, *, server: Union[str, ServerAddress, None] = None,
                            timeout: float | None = 10.0) -> JobStatus:
        """GET_STATUS_UNIQUE: like status(), by unique key, with the waiting-clients count."""
        request = encode(P.GET_STATUS_UNIQUE, unique.encode())
        return await self._ask_status(request, server, timeout)

    async def _ask_status(self, request: bytes, server: Union[str, ServerAddress, None],
                          timeout: float | None) -> JobStatus:
        """Ask every server at once (each bounded by `timeout`); the first that
        knows the job answers, else the first that answered at all."""
        if server is None:
            servers = self._pool.servers
        else:
            servers = [server if isinstance(server, ServerAddress) else parse_servers(server)[0]]

        async def one(address: ServerAddress) -> JobStatus | GearctlError:
            deadline = deadline_after(timeout)
            try:
                conn = await _within(self._pool.connect(address), deadline, f"connecting to {address}")
                packet = await conn.call(request, remaining(deadline))
            except (ConnectionFailed, RemoteProtocolError, Timeout) as e:  # one bad server is not every answer
                return e
            if packet.type is P.ERROR:
                return ServerError(_text(packet.args[0]), _text(packet.args[1]), str(address))
            return _status_from(packet, str(address))

        answers = await asyncio.gather(*(one(a) for a in servers))
        statuses = [a for a in answers if isinstance(a, JobStatus)]
        for status in statuses:
            if status.known:
                return status
        if statuses:
            return statuses[0]
        raise _best_error([a for a in answers if isinstance(a, GearctlError)], self._pool)

    async def admin(self, command: str, *args: str,
                    timeout: float = 5.0) -> dict[ServerAddress, Union[list[str], GearctlError]]:
        """Run a text admin command on every server at once; lines or error per server."""
        ctx = self._pool.ssl_context

        async def one(address: ServerAddress) -> Union[list[str], GearctlError]:
            try:
                return await admin_request(address, command, *args, timeout=timeout, tls=ctx)
            except GearctlError as e:
                return e

        results = await asyncio.gather(*(one(a) for a in self._pool.servers))
        return dict(zip(self._pool.servers, results, strict=True))

    async def workers_for(self, function: str, timeout: float = 5.0) -> int:
        """Workers registered for `function`, summed over servers. Raises
        NoServerAvailable when no server answered."""
        total, answered, errors = 0, 0, []
        for lines in (await self.admin("status", timeout=timeout)).values():
            if isinstance(lines, GearctlError):
                errors.append(lines)
                continue
            answered += 1
            total += sum(row.workers for row in admin.parse_status(lines) if row.function == function)
        if not answered:
            raise _best_error(errors, self._pool)
        return total

    async def require_workers(self, function: str, timeout: float = 5.0) -> int:
        count = await self.workers_for(function, timeout)
        if not count:
            servers = ", ".join(str(s) for s in self._pool.servers)
            raise NoWorker(f"no worker has registered {function!r} on {servers}; start one, or drop --require-workers")
        return count


def _addresses(servers: Union[str, Iterable[str], Iterable[ServerAddress], None]) -> list[ServerAddress]:
    if servers is None or isinstance(servers, str):
        return parse_servers(servers)
    items = list(servers)
    if all(isinstance(s, ServerAddress) for s in items):
        return [s for s in items if isinstance(s, ServerAddress)]
    return parse_servers([str(s) for s in items])


def _settle(future: asyncio.Future[GearctlError | None], _job: Job, error: GearctlError | None) -> None:
    if not future.done():
        future.set_result(error)


def _status_from(packet: Packet, server: str) -> JobStatus:
    args = packet.args
    by_unique = packet.type is P.STATUS_RES_UNIQUE
    waiting = parse_int(args[5], "waiting clients") if by_unique else None
    return JobStatus(None if by_unique else _text(args[0]), args[1] == b"1", args[2] == b"1",
                     parse_int(args[3], "status numerator"), parse_int(args[4], "status denominator"),
                     server, waiting, _text(args[0]) if by_unique else None)


def _best_error(errors: list[GearctlError], pool: ServerPool) -> GearctlError:
    """One error for a request no server took: a server's own refusal if every
    reachable server refused, else 'no server' naming each one's reason."""
    broken = [e for e in errors if isinstance(e, RemoteProtocolError)]
    if broken:
        return broken[-1]
    refusals = [e for e in errors if isinstance(e, ServerError)]
    if refusals and len(refusals) == len(errors):
        return refusals[-1]
    timeouts = [e for e in errors if isinstance(e, Timeout)]
    if timeouts and len(timeouts) == len(errors):
        return timeouts[-1]
    reasons = "; ".join(str(e) for e in errors) or "; ".join(str(e) for e in pool.errors.values())
    reasons = reasons or ", ".join(str(s) for s in pool.servers)
    return NoServerAvailable(f"no job server reachable: {reasons} (check --servers or GEARCTL_SERVERS)")


async def _within(awaitable: Awaitable[T], deadline: float | None, what: str) -> T:
    if deadline is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, remaining(deadline))
    except asyncio.TimeoutError:
        raise Timeout(f"timed out {what}") from None


class Client:
    """The AsyncClient API for code that is not async. Not thread-safe.

        with Client("gear1:4730,gear2") as client:
            job = client.submit("resize", b"...")              # background
            output = client.run("reverse", b"abc", timeout=10)   # foreground
    """

    def __init__(self, servers: Union[str, Iterable[str], None] = None, *, connect_timeout: float = 5.0,
                 io_timeout: float | None = DEFAULT_IO_TIMEOUT, tls: TLSOptions | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = AsyncClient(servers, connect_timeout=connect_timeout, io_timeout=io_timeout, tls=tls)

    def _run(self, coro: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    def submit(self, function: str, data: Union[bytes, str] = b"", **options: Any) -> Job:
        return self._run(self._client.submit(function, data, **options))

    def run(self, function: str, data: Union[bytes, str] = b"", **options: Any) -> bytes:
        return self._run(self._client.run(function, data, **options))

    def wait(self, job: Job, timeout: float | None = None) -> bytes:
        return self._run(job.wait(timeout))

    def submit_many(self, jobs: Iterable[Job], **options: Any) -> dict[str, int]:
        return self._run(self._client.submit_many(jobs, **options))

    def status(self, handle: str, **options: Any) -> JobStatus:
        return self._run(self._client.status(handle, **options))

    def status_unique(self, unique: str, **options: Any) -> JobStatus:
        return self._run(self._client.status_unique(unique, **options))

    def workers_for(self, function: str, timeout: float = 5.0) -> int:
        return self._run(self._client.workers_for(function, timeout))
