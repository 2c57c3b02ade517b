"""Getting jobs onto servers: which server, which connection, the SUBMIT and its answer.

`Submitter` is what AsyncClient and submit_many's pipeline (pipeline.py) share.
It owns the connections (a ServerPool) and the foreground jobs waiting for
their WORK_* packets, and offers four things:

- `candidates(job)`: the servers to try for a job, in failover order;
- `ready_connection(job, turn)` (an open one, without waiting) and
  `connection_for(job)` (connecting, with failover);
- `send(conn, jobs, answered)`: SUBMITs for jobs in one write, and
  `answered(job, error)` once per job when its server said JOB_CREATED (error
  None) or refused it, or the connection failed;
- `no_server_error(errors)`: the one error for a request no server took.

`submit(job, deadline)` puts them together for one job with failover.

Foreground jobs are registered under their handle the moment JOB_CREATED is
read, inside the same read loop, because the job's WORK_* packets may follow
in the very same chunk of bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import Union

from .clientjob import Job, decode_text
from .connection import Connection, ServerAddress, ServerPool, TLSOptions, ignore_reply
from .deadlines import within
from .errors import ConnectionFailed, GearctlError, NoServerAvailable, RemoteProtocolError, ServerError, Timeout
from .protocol import WORK_PACKETS, Packet, PacketType, encode

P = PacketType

# Called once per job sent: None when its server created it, else why not.
Answered = Callable[[Job, Union[GearctlError, None]], None]


class Submitter:
    """Connections to the servers, and the jobs on them; see the module docstring.

    `on_drained` is called when a connection has handled all it read (the
    moment to write queued SUBMITs); `on_callback_error` when a caller's
    callback (output, progress) raised: the foreground jobs' waiters are then
    woken with that error too."""

    def __init__(self, servers: Sequence[ServerAddress], *, connect_timeout: float, io_timeout: float | None,
                 tls: TLSOptions | None, on_drained: Callable[[], None] | None = None,
                 on_callback_error: Callable[[Exception], None] | None = None) -> None:
        self.pool = ServerPool(servers, connect_timeout=connect_timeout, tls=tls, io_timeout=io_timeout,
                               on_packet=self._on_packet, on_close=self._on_close, on_drained=on_drained,
                               on_callback_error=self._on_callback_error)
        self._callback_failed = on_callback_error
        # Foreground jobs by connection and handle (coalesced jobs share a handle).
        self._waiting: dict[Connection, dict[bytes, list[Job]]] = {}

    @property
    def servers(self) -> list[ServerAddress]:
        return self.pool.servers

    async def close(self) -> None:
        await self.pool.close()

    # -- which server, which connection ------------------------------------------
    def candidates(self, job: Job, first: ServerAddress | None = None) -> list[ServerAddress]:
        """Servers to try: the ones not known down, or all of them when none is up
        (`first`, when among them, is tried first)."""
        order = self.pool.order(job.server_key)
        return [first, *(s for s in order if s != first)] if first in order else order

    def ready_connection(self, job: Job, turn: int) -> Connection | None:
        """An open connection for `job`, without waiting, or None. A job without a
        unique key takes the `turn`-th open connection (the caller counts turns);
        one with a key the first of its candidates that is open."""
        if not job.unique:
            live = self.pool.live()
            return live[turn % len(live)] if live else None
        for address in self.candidates(job):
            conn = self.pool.connected(address)
            if conn is not None:
                return conn
        return None

    async def connection_for(self, job: Job) -> Connection | None:
        """A connection to the first candidate that is open or can be opened."""
        for address in self.candidates(job):
            conn = self.pool.connected(address)
            if conn is not None:
                return conn
            try:
                return await self.pool.connect(address)
            except (ConnectionFailed, RemoteProtocolError):
                continue
        return None

    def no_server_error(self, errors: list[GearctlError] | None = None) -> GearctlError:
        """One error for a request no server took, from this request's `errors`
        (default: the last error each server gave): a protocol error if one
        server spoke something else, a server's own refusal if every reachable
        server refused, a timeout if every one timed out, else 'no server'
        naming each one's reason."""
        pool = self.pool
        if errors is None:
            errors = list(pool.errors.values())
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

    # -- one job, with failover ----------------------------------------------------
    async def submit(self, job: Job, deadline: float | None, *, first: ServerAddress | None = None) -> Job:
        """Create `job` on the first server that takes it. A submit whose server
        cannot be reached, closes the connection or answers ERROR moves on to
        the next server; when none took it the job ends in "error" and that
        error is raised ("timeout" and Timeout past `deadline`)."""
        errors: list[GearctlError] = []
        for address in self.candidates(job, first):
            try:
                conn = await within(self.pool.connect(address), deadline, f"connecting to {address}")
            except (ConnectionFailed, RemoteProtocolError) as e:  # a greeting in another protocol, say
                errors.append(e)
                continue
            future: asyncio.Future[GearctlError | None] = asyncio.get_running_loop().create_future()
            self.send(conn, [job], partial(_settle, future))
            try:
                error = await within(asyncio.shield(future), deadline, f"waiting for {address} to create the job")
            except Timeout as e:
                job.finish("timeout", e)
                raise
            if error is None:
                return job
            errors.append(error)
            if isinstance(error, ConnectionFailed):
                self.pool.mark_down(address, error)
        error = self.no_server_error(errors)
        job.finish("error", error)
        raise error

    # -- the wire --------------------------------------------------------------
    def send(self, conn: Connection, jobs: list[Job], answered: Answered) -> None:
        """Write SUBMITs for `jobs` in one write; `answered(job, error)` per reply.
        A background job is finished ("queued") right after its answered();
        a foreground one then waits on `conn` for its WORK_* packets."""
        waiting = self._waiting
        needs_option = "exceptions" not in conn.options and any(not job.background for job in jobs)
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
                        job.created(handle, conn.address)
                        if job.background:
                            answered(job, None)
                            job.finish("queued")
                        else:
                            waiting.setdefault(conn, {}).setdefault(handle, []).append(job)
                            answered(job, None)
                        return
                    if answer.type is P.ERROR:
                        code, text = decode_text(answer.args[0]), decode_text(answer.args[1])
                        answered(job, ServerError(code, text, str(conn.address)))
                        return
                    error = RemoteProtocolError(f"{conn.address}: {answer.type.name} in answer to a submit")
                    answered(job, error)
                    conn.fail(error)  # the replies are out of step: the connection cannot be trusted
                    return
                answered(job, answer)

            chunks.append(job.packet())
            callbacks.append(reply)
        try:
            conn.request_many(b"".join(chunks), callbacks)
        except GearctlError as e:
            for callback in callbacks:
                callback(e)

    def _on_packet(self, conn: Connection, packet: Packet) -> None:
        if packet.type in WORK_PACKETS:
            handles = self._waiting.get(conn)
            jobs = handles.get(packet.args[0]) if handles else None
            if not jobs:
                return  # a job we no longer wait for (timed out, or a stray packet)
            ended = False
            for job in list(jobs):
                ended = job.apply_work(packet) or ended
            if ended and handles is not None:
                del handles[packet.args[0]]

    def _on_callback_error(self, error: Exception) -> None:
        """The caller's callback (output, progress) failed: stop what waits."""
        if self._callback_failed is not None:
            self._callback_failed(error)
        for handles in self._waiting.values():
            for jobs in handles.values():
                for job in jobs:
                    job.abort_wait(error)

    def _on_close(self, conn: Connection, error: GearctlError) -> None:
        handles = self._waiting.pop(conn, None)
        if not handles:
            return
        for jobs in handles.values():
            for job in jobs:
                lost: GearctlError = error if isinstance(error, RemoteProtocolError) else ConnectionFailed(
                    f"{conn.address}: connection lost while waiting for job {job.handle} ({job.function})")
                job.finish("error", lost)


def _settle(future: asyncio.Future[GearctlError | None], _job: Job, error: GearctlError | None) -> None:
    if not future.done():
        future.set_result(error)
