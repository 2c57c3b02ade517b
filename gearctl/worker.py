"""One worker: registers job functions on every server and runs their jobs.

Per server there is one connection and a small state machine:

    registered --GRAB_JOB_UNIQ x n--> grabbing --JOB_ASSIGN_UNIQ--> (job queued)
                                         |--NO_JOB (none outstanding, none held)--> PRE_SLEEP, sleeping
    sleeping --NOOP--> grabbing          (and every poll_interval: one GRAB, for
                                          scheduled jobs gearmand does not wake us for)

`prefetch` bounds the jobs a connection holds: grabs outstanding plus jobs
received and not yet finished. gearmand hands out one job per grab and puts
back the jobs a closed connection held, so prefetching never loses a job: on
a lost server, its prefetched jobs are dropped unstarted (it will hand them
out again), and on a stop they are handed back by closing the connection.

Jobs run one at a time, in the order they arrived, on this process's event
loop (plain functions run inline: no thread hop per job). Every packet the
server sends is handled as it comes: grabs are counted, not matched to replies,
so an ERROR about an old job (JOB_NOT_FOUND after a server-side timeout) cannot
be mistaken for the answer to a grab.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import partial

from . import admin
from .backoff import Backoff
from .connection import PROBE, Connection, ServerAddress, TLSOptions
from .errors import ConnectionFailed, GearctlError
from .jobs import Outcome, WorkerJob, execute
from .plugins import JobFunction
from .protocol import Packet, PacketType, encode

P = PacketType
log = logging.getLogger("gearctl.worker")
STABLE = 10.0  # seconds a connection must last before a loss starts the back-off afresh
OUTBOX_JOBS = 64  # finished jobs' replies written together at most
OUTBOX_SECONDS = 0.05  # ... and never held longer than this

GRAB = encode(P.GRAB_JOB_UNIQ)
PRE_SLEEP = encode(P.PRE_SLEEP)


def memory_mb() -> float:
    """This process's resident memory, from /proc (Linux); 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def default_client_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class FunctionStats:
    done: int = 0
    failed: int = 0
    running: int = 0
    last_error: str = ""
    last_error_at: float = 0.0  # epoch seconds: the latest error of several processes wins


@dataclass
class WorkerStats:
    """Counts per function, for the live table and for tests."""

    functions: dict[str, FunctionStats] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)  # address -> "up" | "down" | "connecting"
    current: str = ""  # "function handle" of the running job

    def of(self, name: str) -> FunctionStats:
        stats = self.functions.get(name)
        if stats is None:
            stats = self.functions[name] = FunctionStats()
        return stats

    @property
    def done(self) -> int:
        return sum(s.done for s in self.functions.values())

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.functions.values())


class ExitReason(Enum):
    """Why Worker.run() returned (exit_detail says more, for RECYCLE)."""

    STOPPED = "stopped"  # stop() from outside: a signal, the caller
    RECYCLE = "recycle"  # --max-jobs, --max-lifetime or --max-memory reached: make way for a fresh process
    BURST_DONE = "burst"  # --burst: every connected server said NO_JOB and nothing is held
    NO_SERVER = "no server"  # --burst and no server could be reached
    PARENT_GONE = "supervisor gone"  # the supervisor died (kill -9)


@dataclass(frozen=True)
class JobEvent:
    """A job started or ended; what the CLI logs or draws."""

    kind: str  # "start" | "complete" | "exception" | "failed" | "timeout"
    function: str
    handle: str
    server: str
    seconds: float = 0.0
    message: str = ""
    traceback: str = ""


class _Link:
    """One server: its connection and grab bookkeeping."""

    def __init__(self, address: ServerAddress) -> None:
        self.address = address
        self.conn: Connection | None = None
        self.grabs = 0  # GRAB_JOB_UNIQs sent and not answered
        self.held = 0  # jobs received and not finished
        self.sleeping = False
        self.dry = False  # the last answer was NO_JOB: grab one at a time
        self.failures = 0
        self.last_warned = 0.0
        self.confirmed = False  # the server echoed our probe: it is gearmand, and up
        self.outbox: list[bytes] = []  # finished jobs' replies not yet written
        self.outbox_since = 0.0


class _Sink:
    """A running job's WORK_DATA/WARNING/STATUS, written to its connection."""

    __slots__ = ("conn", "handle")

    def __init__(self, conn: Connection, handle: bytes) -> None:
        self.conn = conn
        self.handle = handle

    def _send(self, data: bytes) -> None:
        # A lost server: drop the update; the server hands the job out again.
        with contextlib.suppress(ConnectionFailed):
            self.conn.send(data)

    def data(self, chunk: bytes) -> None:
        self._send(encode(P.WORK_DATA, self.handle, chunk))

    def warning(self, text: bytes) -> None:
        self._send(encode(P.WORK_WARNING, self.handle, text))

    def status(self, numerator: int, denominator: int) -> None:
        self._send(encode(P.WORK_STATUS, self.handle, str(numerator).encode(), str(denominator).encode()))


class Worker:
    def __init__(self, functions: Sequence[JobFunction], servers: Sequence[ServerAddress], *,
                 client_id: str | None = None, prefetch: int = 1, connect_timeout: float = 5.0,
                 tls: TLSOptions | None = None, poll_interval: float = 5.0, max_backoff: float = 30.0,
                 on_event: Callable[[JobEvent], None] | None = None, max_jobs: int | None = None,
                 max_lifetime: float | None = None, max_memory_mb: float | None = None,
                 burst: bool = False, on_change: Callable[[], None] | None = None) -> None:
        if not functions:
            raise GearctlError("no job functions to serve")
        self.functions = {fn.name: fn for fn in functions}
        self.links = [_Link(a) for a in servers]
        self.client_id = client_id or default_client_id()
        self.prefetch = max(1, prefetch)
        self.connect_timeout = connect_timeout
        self.tls = tls or TLSOptions()
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.on_event = on_event
        self.max_jobs = max_jobs
        self.max_lifetime = max_lifetime
        self.max_memory_mb = max_memory_mb
        self.burst = burst
        self.started = time.monotonic()
        self.jobs_run = 0
        self.exit_reason: ExitReason | None = None  # why run() returned
        self.exit_detail = ""  # what made it recycle, e.g. "ran 100 jobs (--max-jobs)"
        # Every function and server is in the stats from the start (the live table
        # lists them before their first job, and a reporter thread may read them).
        self.stats = WorkerStats(functions={name: FunctionStats() for name in self.functions},
                                 servers={str(link.address): "connecting" for link in self.links})
        self.on_change = on_change  # called on the loop when a job starts or ends, or a server comes or goes
        self._ready: deque[tuple[_Link, Connection, Packet]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._registration = self._registration_bytes()

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> None:
        """Serve until stop(); returns once the running job (if any) finished
        and every connection is closed."""
        ssl_context = self.tls.context()
        self._tasks = [asyncio.ensure_future(self._maintain(link, ssl_context)) for link in self.links]
        self._tasks.append(asyncio.ensure_future(self._poll()))
        try:
            await self._execute_loop()
        finally:
            for task in self._tasks:
                task.cancel()
            for link in self.links:
                if link.conn is not None:
                    link.conn.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, reason: ExitReason = ExitReason.STOPPED, detail: str = "") -> None:
        """Stop grabbing, let the running job finish, hand back the rest."""
        if self.exit_reason is None:
            self.exit_reason, self.exit_detail = reason, detail
        self._stopping = True
        self._ready.clear()  # prefetched, not started: the closing connection hands them back
        self._wake.set()

    # -- connections -----------------------------------------------------------
    def _registration_bytes(self) -> bytes:
        # PROBE first: a port that is not gearmand (a web server) answers its line
        # end at once and the connection fails as a protocol error, instead of the
        # worker waiting forever for replies to its grabs. gearmand's echo is ignored.
        # Then the id, with --prefetch advertised for `gearctl status` (admin.PREFETCH_TAG).
        parts = [PROBE, encode(P.SET_CLIENT_ID, admin.worker_client_id(self.client_id, self.prefetch))]
        # Plain CAN_DO even for functions with a timeout: gearmand 1.1.20's
        # CAN_DO_TIMEOUT (milliseconds) re-queues an expired job instead of failing
        # it, tells nobody, and keeps one timer per connection that fires for the
        # wrong job once a worker has run two. gearctl enforces timeouts itself.
        parts += [encode(P.CAN_DO, fn.name) for fn in self.functions.values()]
        return b"".join(parts)

    async def _maintain(self, link: _Link, ssl_context: object) -> None:
        """Keep one server connected: connect, register, serve, and on loss
        reconnect with exponential back-off and jitter, logging sparingly."""
        backoff = Backoff(0.5, self.max_backoff)
        while not self._stopping:
            if link.failures:  # after a failure or a loss: back off before the next try
                await asyncio.sleep(backoff.next())
                if self._stopping:
                    break
            self.stats.servers[str(link.address)] = "connecting"
            try:
                conn = await Connection.open(link.address, timeout=self.connect_timeout,
                                             tls=ssl_context,  # type: ignore[arg-type]
                                             on_packet=partial(self._on_packet, link))
            except ConnectionFailed as e:
                self.stats.servers[str(link.address)] = "down"
                self._warn_down(link, str(e))
                if self._no_server_left():
                    break
                continue
            link.conn, link.grabs, link.held, link.sleeping, link.dry = conn, 0, 0, False, False
            link.confirmed = False
            link.outbox.clear()  # replies for the old connection's jobs: that server re-runs them
            try:
                conn.send(self._registration)
                self._grab(link, self.prefetch)
            except ConnectionFailed:
                pass  # closed at once: counted as a loss below
            connected = time.monotonic()
            # "up" once the probe's echo is back (_confirm): a port that is not
            # gearmand answers with bytes the decoder refuses and closes instead.
            await conn.wait_closed()
            link.conn = None
            if self._stopping:
                break
            reason = str(conn.error) if conn.error else f"{link.address}: connection lost"
            self.stats.servers[str(link.address)] = "down"
            self._changed()
            if not link.confirmed:  # never got going: a failed attempt, as a refused connect is
                self._warn_down(link, reason)
                if self._no_server_left():
                    break
                continue
            if time.monotonic() - connected >= STABLE:
                link.failures = 0  # it was up a while: start the back-off afresh
                backoff.reset()
            self._warn_down(link, reason)

    def _confirm(self, link: _Link) -> None:
        """The probe's echo came back: this server is gearmand, and up."""
        if link.confirmed:
            return
        link.confirmed = True
        self.stats.servers[str(link.address)] = "up"
        self._changed()
        if link.failures:
            log.warning("%s: connected again after %d failed attempt(s)", link.address, link.failures)

    def _no_server_left(self) -> bool:
        """With --burst and no server to drain from (none connected, every one
        failing): stop, as a cron drain with nothing to drain from."""
        if self.burst and not any(other.confirmed and other.conn for other in self.links) and all(
                other.failures for other in self.links):
            self.stop(ExitReason.NO_SERVER)  # a cron drain with nothing to drain from
            return True
        return False

    def _warn_down(self, link: _Link, reason: str) -> None:
        link.failures += 1
        now = time.monotonic()
        if now - link.last_warned >= 60:
            log.warning("%s; retrying with back-off (attempt %d)", reason, link.failures)
            link.last_warned = now
        else:
            log.debug("%s (attempt %d)", reason, link.failures)

    def _grab(self, link: _Link, count: int) -> None:
        conn = link.conn
        if count <= 0 or conn is None or conn.closed or self._stopping:
            return
        link.grabs += count
        link.sleeping = False
        conn.send(GRAB * count)

    def _on_packet(self, link: _Link, conn: Connection, packet: Packet) -> None:
        if conn is not link.conn:
            return  # a packet from a connection we already gave up
        kind = packet.type
        if kind is P.JOB_ASSIGN_UNIQ or kind is P.JOB_ASSIGN or kind is P.JOB_ASSIGN_ALL:
            link.grabs -= 1
            link.held += 1
            link.dry = False
            if self._stopping:
                return  # not started: the closing connection hands it back
            self._ready.append((link, conn, packet))
            self._wake.set()
        elif kind is P.ECHO_RES:
            self._confirm(link)
        elif kind is P.NO_JOB:
            link.grabs -= 1
            link.dry = True
            if link.grabs <= 0 and link.held <= 0 and not self._stopping:
                link.grabs = 0
                link.sleeping = True
                conn.send(PRE_SLEEP)
                self._check_burst()
        elif kind is P.NOOP:
            if link.sleeping:
                link.dry = False
                self._grab(link, self.prefetch - link.held)
        elif kind is P.ERROR:
            # Not an answer to a grab (those are NO_JOB or JOB_ASSIGN): about a job
            # the server no longer knows. Logged, nothing else changes.
            log.warning("%s: server error %s: %s", link.address, packet.args[0].decode(errors="replace"),
                        packet.args[1].decode(errors="replace"))

    async def _poll(self) -> None:
        """gearmand does not wake sleeping workers when a scheduled (--at/--in)
        job comes due; ask now and then."""
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            for link in self.links:
                if link.sleeping:
                    self._grab(link, 1)

    # -- running jobs ----------------------------------------------------------
    async def _execute_loop(self) -> None:
        ready = self._ready
        while True:
            if not ready:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            link, conn, packet = ready.popleft()
            if conn.closed or conn is not link.conn:
                continue  # the server is gone and will hand the job out again
            await self._run_one(link, conn, packet)
            if not ready or len(link.outbox) >= OUTBOX_JOBS or time.monotonic() - link.outbox_since > OUTBOX_SECONDS:
                self._flush()

    async def _run_one(self, link: _Link, conn: Connection, packet: Packet) -> None:
        args = packet.args
        handle, name = args[0], args[1].decode("utf-8", "surrogateescape")
        unique = args[2].decode("utf-8", "surrogateescape") if packet.type is not P.JOB_ASSIGN else ""
        fn = self.functions.get(name)
        handle_text = handle.decode("ascii", "replace")
        server = str(link.address)
        if fn is None:  # registered elsewhere on this connection? never: fail it loudly
            outcome = Outcome("exception", message=f"this worker has no function {name!r}")
        else:
            stats = self.stats.of(name)
            stats.running += 1
            self.stats.current = f"{name} {handle_text}"
            self._changed()
            if self.on_event is not None:
                self.on_event(JobEvent("start", name, handle_text, server))
            job = WorkerJob(name, handle_text, unique, args[-1], context=fn.context, encoding=fn.encoding,
                            sink=_Sink(conn, handle))
            outcome = await execute(fn, job)
            stats.running -= 1
            self.stats.current = ""
            if outcome.state == "complete":
                stats.done += 1
            else:
                stats.failed += 1
                stats.last_error, stats.last_error_at = outcome.message, time.time()
            self._changed()
        self.jobs_run += 1
        self._check_recycle()
        self._finish(link, conn, handle, outcome)
        if self.on_event is not None:
            self.on_event(JobEvent(outcome.state, name, handle_text, server, outcome.seconds, outcome.message,
                                   outcome.traceback))

    def _check_recycle(self) -> None:
        """After a job: time to make way for a fresh process?"""
        if self.max_jobs and self.jobs_run >= self.max_jobs:
            self.stop(ExitReason.RECYCLE, f"ran {self.jobs_run} jobs (--max-jobs)")
        elif self.max_lifetime and time.monotonic() - self.started >= self.max_lifetime:
            self.stop(ExitReason.RECYCLE, f"up {time.monotonic() - self.started:.0f}s (--max-lifetime)")
        elif self.max_memory_mb and (rss := memory_mb()) >= self.max_memory_mb:
            self.stop(ExitReason.RECYCLE, f"{rss:.0f} MB resident (--max-memory)")

    def _check_burst(self) -> None:
        """--burst: done once every connected server said NO_JOB and nothing is held."""
        if not self.burst or self._stopping or self._ready:
            return
        links = [link for link in self.links if link.conn is not None and not link.conn.closed]
        if links and all(link.sleeping and link.held == 0 for link in links):
            self.stop(ExitReason.BURST_DONE)

    def _finish(self, link: _Link, conn: Connection, handle: bytes, outcome: Outcome) -> None:
        """Send how the job ended and, in the same write, ask for the next one."""
        if conn is link.conn:  # a job from a connection since replaced counts against nothing
            link.held = max(link.held - 1, 0)
        if outcome.state == "complete":
            reply = encode(P.WORK_COMPLETE, handle, outcome.result)
        elif outcome.state == "exception":
            # gearmand 1.1.20 ends the job on WORK_EXCEPTION (a client without the
            # exceptions option gets WORK_FAIL); a WORK_FAIL after it would be
            # answered with ERROR JOB_NOT_FOUND.
            reply = encode(P.WORK_EXCEPTION, handle, outcome.message.encode("utf-8", "replace"))
        elif outcome.state == "timeout":
            note = f"gearctl: job {outcome.message}".encode()
            reply = encode(P.WORK_WARNING, handle, note) + encode(P.WORK_FAIL, handle)
        else:
            reply = encode(P.WORK_FAIL, handle)
        if conn.closed or conn is not link.conn or conn.transport is None or conn.transport.is_closing():
            log.warning("%s: connection lost before job %s could be reported; the server will run it again",
                        link.address, handle.decode(errors="replace"))
            return
        more = 0
        if not self._stopping:
            more = 1 if link.dry else self.prefetch - link.grabs - link.held
        if more > 0:
            link.grabs += more
            reply += GRAB * more
        # Results wait in an outbox while more prefetched jobs are ready to run, so
        # a run of short jobs goes out in one write, not one send() each; the
        # execute loop flushes when it runs dry, after OUTBOX_JOBS, or after
        # OUTBOX_SECONDS, so a slow job's neighbours are not held back.
        if not link.outbox:
            link.outbox_since = time.monotonic()
        link.outbox.append(reply)

    def _flush(self) -> None:
        for link in self.links:
            if link.outbox:
                data = b"".join(link.outbox)
                link.outbox.clear()
                if link.conn is not None:
                    with contextlib.suppress(ConnectionFailed):  # lost: the server runs those jobs again
                        link.conn.send(data)
