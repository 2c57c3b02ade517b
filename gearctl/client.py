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

The servers, the connections and the SUBMITs themselves are the Submitter's
(submitter.py), which this client and submit_many's pipeline (pipeline.py)
share; admin questions go through monitor.each_server, as every command's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, Union

from .addresses import Servers, parse_servers, resolve_servers
from .clientjob import Job, JobStatus, decode_text, status_from
from .connection import DEFAULT_IO_TIMEOUT, ServerAddress, TLSOptions
from .deadlines import deadline_after, remaining, within
from .errors import ConnectionFailed, GearctlError, NoWorker, RemoteProtocolError, ServerError, Timeout
from .pipeline import IterSource, JobSource, ManyRun
from .protocol import PacketType, encode
from .submitter import Submitter

P = PacketType
T = TypeVar("T")
DEFAULT_WINDOW = 10_000  # jobs in flight at once in submit_many
__all__ = ["AsyncClient", "Client", "Job", "JobStatus"]  # Job and JobStatus live in clientjob.py


class AsyncClient:
    """Submit jobs to one or more gearmand servers; see the module docstring."""

    def __init__(self, servers: Servers = None, *,
                 connect_timeout: float = 5.0, io_timeout: float | None = DEFAULT_IO_TIMEOUT,
                 tls: TLSOptions | None = None) -> None:
        self._submitter = Submitter(resolve_servers(servers), connect_timeout=connect_timeout, io_timeout=io_timeout,
                                    tls=tls, on_drained=self._on_drained, on_callback_error=self._on_callback_error)
        self._runs: set[ManyRun] = set()  # submit_many calls under way

    @property
    def servers(self) -> list[ServerAddress]:
        return self._submitter.servers

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._submitter.close()

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
        return await self._submitter.submit(job, deadline_after(timeout))

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
        run = ManyRun(self._submitter, source, max(1, window), deadline_after(timeout), on_created, on_done)
        await self._submitter.pool.connect_all(run.deadline)
        self._runs.add(run)
        try:
            source.start(run.pump)
            run.pump()
            await within(run.all_done.wait(), run.deadline, "waiting for the jobs")
        except Timeout as e:
            run.expire(e)
        finally:
            self._runs.discard(run)
            run.close()
            source.close()
        if run.failure is not None:
            raise run.failure
        return run.counts

    def _on_drained(self) -> None:
        for run in self._runs:
            run.flush()

    def _on_callback_error(self, error: Exception) -> None:
        """The caller's callback (output, progress) failed: stop the runs (the
        submitter wakes the foreground jobs' waiters)."""
        for run in list(self._runs):
            run.fail(error)

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
            servers = self._submitter.servers
        else:
            servers = [server if isinstance(server, ServerAddress) else parse_servers(server)[0]]

        async def one(address: ServerAddress) -> JobStatus | GearctlError:
            deadline = deadline_after(timeout)
            try:
                conn = await within(self._submitter.pool.connect(address), deadline, f"connecting to {address}")
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
        raise self._submitter.no_server_error([a for a in answers if isinstance(a, GearctlError)])

    async def admin(self, command: str, *args: str,
                    timeout: float | None = None) -> dict[ServerAddress, Union[list[str], GearctlError]]:
        """Run a text admin command on every server at once; lines or error per server.
        Without `timeout`, the client's connect and I/O timeouts bound it, as every
        other request; with it, the whole exchange."""
        from . import monitor  # the admin side: a one-shot submit starts without it

        pool = self._submitter.pool
        ctx = pool.ssl_context
        connect, io = (pool.connect_timeout, pool.io_timeout) if timeout is None else (timeout, None)
        return dict(await monitor.ask_all(pool.servers, command, *args, connect_timeout=connect, io_timeout=io,
                                          tls=ctx))

    async def workers_for(self, function: str, timeout: float | None = None) -> int:
        """Workers registered for `function`, summed over servers. Raises
        NoServerAvailable when no server answered."""
        from . import admin

        total, answered, errors = 0, 0, []
        for lines in (await self.admin("status", timeout=timeout)).values():
            if isinstance(lines, GearctlError):
                errors.append(lines)
                continue
            answered += 1
            total += sum(row.workers for row in admin.parse_status(lines) if row.function == function)
        if not answered:
            raise self._submitter.no_server_error(errors)
        return total

    async def require_workers(self, function: str, timeout: float | None = None) -> int:
        count = await self.workers_for(function, timeout)
        if not count:
            servers = ", ".join(str(s) for s in self.servers)
            raise NoWorker(f"no worker has registered {function!r} on {servers}; start one, or drop --require-workers")
        return count


class Client:
    """The AsyncClient API for code that is not async. Not thread-safe.

        with Client("gear1:4730,gear2") as client:
            job = client.submit("resize", b"...")              # background
            output = client.run("reverse", b"abc", timeout=10)   # foreground
    """

    def __init__(self, servers: Servers = None, *, connect_timeout: float = 5.0,
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
