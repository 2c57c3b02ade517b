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
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeVar, Union

from . import admin
from .clientjob import Job, JobStatus, decode_text, status_from
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
    NoServerAvailable,
    NoWorker,
    RemoteProtocolError,
    ServerError,
    Timeout,
)
from .pipeline import IterSource, JobSource, ManyRun, deadline_after, remaining
from .protocol import WORK_PACKETS, Packet, PacketType, encode

P = PacketType
T = TypeVar("T")
DEFAULT_WINDOW = 10_000  # jobs in flight at once in submit_many
__all__ = ["AsyncClient", "Client", "Job", "JobStatus"]  # Job and JobStatus live in clientjob.py

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
                        job.handle = decode_text(handle)
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
                        code, text = decode_text(answer.args[0]), decode_text(answer.args[1])
                        done(job, ServerError(code, text, str(conn.address)))
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
                return ServerError(decode_text(packet.args[0]), decode_text(packet.args[1]), str(address))
            return status_from(packet, str(address))

        answers = await asyncio.gather(*(one(a) for a in servers))
        statuses = [a for a in answers if isinstance(a, JobStatus)]
        for status in statuses:
            if status.known:
                return status
        if statuses:
            return statuses[0]
        raise _best_error([a for a in answers if isinstance(a, GearctlError)], self._pool)

    async def admin(self, command: str, *args: str,
                    timeout: float | None = None) -> dict[ServerAddress, Union[list[str], GearctlError]]:
        """Run a text admin command on every server at once; lines or error per server.
        Without `timeout`, the client's connect and I/O timeouts bound it, as every
        other request; with it, the whole exchange."""
        ctx = self._pool.ssl_context
        connect, io = (self._pool.connect_timeout, self._pool.io_timeout) if timeout is None else (timeout, None)

        async def one(address: ServerAddress) -> Union[list[str], GearctlError]:
            try:
                return await admin_request(address, command, *args, timeout=connect, tls=ctx, io_timeout=io)
            except GearctlError as e:
                return e

        results = await asyncio.gather(*(one(a) for a in self._pool.servers))
        return dict(zip(self._pool.servers, results, strict=True))

    async def workers_for(self, function: str, timeout: float | None = None) -> int:
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

    async def require_workers(self, function: str, timeout: float | None = None) -> int:
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

    def workers_for(self, function: str, timeout: float | None = None) -> int:
        return self._run(self._client.workers_for(function, timeout))
