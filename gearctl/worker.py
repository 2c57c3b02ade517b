"""The public Worker: one process's loop over its server sessions.

    from gearctl import Worker, job

    @job
    def reverse(job):
        return job.workload()[::-1]

    Worker([reverse], servers="127.0.0.1:4730").run(burst=True)

What each server connection asks for, holds and owes is sans-IO state in
sessions.WorkerSession (its docstring there describes the state machine); this
module keeps the asyncio orchestration around it: one task per server that
connects, registers and reconnects with back-off, the loop that runs jobs,
stats, recycling limits and signals.

Jobs run one at a time, in the order they arrived, on this process's event
loop (plain functions run inline: no thread hop per job). Every packet the
server sends is handled as it comes.

Signals (run()): the first SIGTERM or SIGINT stops grabbing, lets the running
job finish and hands the rest back; a second one exits at once (closing the
sockets hands every held job back to gearmand). The handler is a Python-level
one, not the loop's: it runs between two bytecodes even while a plain job
blocks the loop, so prefetched jobs are not started after the first signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from . import admin, retry
from .addresses import Servers, resolve_servers
from .backoff import Backoff
from .connection import PROBE, Connection, ServerAddress, TLSOptions
from .deadletter import DEAD_SUFFIX, attempt_number
from .errors import ConnectionFailed, UsageError
from .execution import WorkerJob, execute
from .plugins import JobFunction, as_job_function
from .prefetch import PrefetchSetting, WindowSize, prefetch_setting
from .protocol import Packet, PacketType, encode
from .retry import RETRY_ON, Failed, Plan, Retrier, RetryPolicy, Step
from .sessions import Happened, Outcome, OutcomeState, WorkerSession, drained
from .workerstats import (  # re-exported: the public names of the worker's reports
    ExitReason as ExitReason,
)
from .workerstats import (
    FunctionStats as FunctionStats,
)
from .workerstats import (
    JobEvent as JobEvent,
)
from .workerstats import (
    JobEventKind as JobEventKind,
)
from .workerstats import (
    ServerState as ServerState,
)
from .workerstats import (
    WorkerStats as WorkerStats,
)
from .workerstats import (
    memory_mb as memory_mb,
)

P = PacketType
log = logging.getLogger("gearctl.worker")
STABLE = 10.0  # seconds a connection must last before a loss starts the back-off afresh


_ENDED = {state: JobEventKind(state.value) for state in OutcomeState}  # how a job ended, as its event


def default_client_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Link:
    """One server: its session, its current connection and its reconnect bookkeeping."""

    def __init__(self, address: ServerAddress, session: WorkerSession) -> None:
        self.address = address
        self.session = session
        self.name = str(address)  # as logs and events show it
        self.conn: Connection | None = None
        self.failures = 0
        self.last_warned = 0.0
        self.farewell = asyncio.Event()  # set when the goodbye's echo is back

    def send(self, data: bytes) -> None:
        """Write to the current connection; a lost one drops it (the server re-runs those jobs)."""
        if data and self.conn is not None and not self.conn.closed:
            with contextlib.suppress(ConnectionFailed):
                self.conn.send(data)

    @property
    def open(self) -> bool:
        return self.conn is not None and not self.conn.closed

    @property
    def usable(self) -> bool:
        """Open, and not already closing: a reply written now can arrive."""
        conn = self.conn
        return conn is not None and not conn.closed and conn.transport is not None and not conn.transport.is_closing()


class _WireUpdates:
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


def _by_name(functions: Iterable[JobFunction]) -> dict[str, JobFunction]:
    chosen: dict[str, JobFunction] = {}
    for fn in functions:
        if chosen.setdefault(fn.name, fn) != fn:  # the same function given twice is one
            raise UsageError(f"two job functions are named {fn.name!r}")
    if not chosen:
        raise UsageError("no job functions to serve")
    return chosen


class Worker:
    """Serves job functions on every server until stopped.

    `functions`: @job functions, plain callables (named by __name__),
    plugins.JobFunction objects or hook entries (dicts, as gearman_functions()
    returns). `servers`: "h1:4730,h2", a list of strings or ServerAddresses, or
    None for GEARCTL_SERVERS (else 127.0.0.1:4730). run() serves with signal
    handling and returns why it stopped; serve() is the same for asyncio code.

    `prefetch`: "auto" (the default) holds as many jobs as this process can
    finish within `prefetch_budget` seconds (0.05), from measured run times
    (prefetch.py has the rule); a number N holds N per server. `on_event` gets a
    JobEvent as each job starts and ends; if it has a flush() method, that is
    called whenever the worker writes finished jobs' replies to a server, so
    lines it buffered leave with them (logs.JobLog does).
    """

    def __init__(self, functions: Iterable[Any], servers: Servers = None, *,
                 client_id: str | None = None, prefetch: int | str | PrefetchSetting = "auto",
                 prefetch_budget: float | str | None = None, connect_timeout: float = 5.0,
                 tls: TLSOptions | None = None, poll_interval: float = 5.0, max_backoff: float = 30.0,
                 on_event: Callable[[JobEvent], None] | None = None, max_jobs: int | None = None,
                 max_lifetime: float | None = None, max_memory_mb: float | None = None,
                 burst: bool = False, on_change: Callable[[], None] | None = None, retries: int = 0,
                 retry_backoff: float | str = 10.0, retry_backoff_max: float | str = 3600.0,
                 retry_on: Iterable[str] | str = RETRY_ON, dead_letter: bool = True,
                 dead_letter_suffix: str = DEAD_SUFFIX) -> None:
        self.functions = _by_name(as_job_function(item, index) for index, item in enumerate(functions))
        try:  # the worker's defaults; a function's own declarations win (JobFunction.policy)
            defaults = RetryPolicy().merged(retry.check_options({
                "retries": retries, "retry_backoff": retry_backoff, "retry_backoff_max": retry_backoff_max,
                "retry_on": retry_on, "dead_letter": dead_letter, "dead_letter_suffix": dead_letter_suffix}))
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.policies = {name: fn.policy(defaults) for name, fn in self.functions.items()}
        self._names = {name.encode("utf-8", "surrogateescape"): name for name in self.functions}
        self.client_id = client_id or default_client_id()
        self.prefetch = prefetch_setting(prefetch, prefetch_budget)
        self.window = WindowSize(self.prefetch)  # the jobs held at once now (prefetch.py has the rule)
        registration = self._registration_bytes()
        addresses = resolve_servers(servers)
        self.links = [_Link(a, WorkerSession(registration, self.window.share(len(addresses)))) for a in addresses]
        self.connect_timeout = connect_timeout
        self.tls = tls or TLSOptions()
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.on_event = on_event
        self._flush_events: Callable[[], None] | None = getattr(on_event, "flush", None)
        self.max_jobs = max_jobs
        self.max_lifetime = max_lifetime
        self.max_memory_mb = max_memory_mb
        self.burst = burst
        self.started = time.monotonic()
        self.jobs_run = 0
        self.exit_reason: ExitReason | None = None  # why serve() returned
        self.exit_detail = ""  # what made it recycle, e.g. "ran 100 jobs (--max-jobs)"
        # Every function and server is in the stats from the start (the live table
        # lists them before their first job, and a reporter thread may read them).
        self.stats = WorkerStats(functions={name: FunctionStats() for name in self.functions},
                                 servers={str(link.address): ServerState.CONNECTING for link in self.links},
                                 prefetch=self.window.size)
        self.on_change = on_change  # called on the loop when a job starts or ends, or a server comes or goes
        # (server, its connection's epoch, JOB_ASSIGN*, when it came: time.monotonic())
        self._ready: deque[tuple[_Link, int, Packet, float]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.retrier = Retrier([link.address for link in self.links], connect_timeout=connect_timeout,
                               tls=self.tls, host=socket.gethostname(), created=self._resubmitted)

    # -- lifecycle -------------------------------------------------------------
    def run(self, burst: bool | None = None, *, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
            hard_exit: int | None = None) -> ExitReason:
        """Serve until stopped (a signal, stop(), --burst drained, a recycling
        limit) and say why. The first of `signals` stops grabbing and lets the
        running job finish; a second exits the process at once with `hard_exit`
        (default 128 + the signal's number). Signals are only handled when run()
        is called from the main thread."""
        if burst is not None:
            self.burst = burst
        with self._signals_handled(signals, hard_exit):
            asyncio.run(self.serve())
        return self.exit_reason or ExitReason.STOPPED

    @contextlib.contextmanager
    def _signals_handled(self, signals: Sequence[int], hard_exit: int | None) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        seen = 0

        def on_signal(signum: int, _frame: Any) -> None:
            nonlocal seen
            seen += 1
            if seen > 1:
                os._exit(128 + signum if hard_exit is None else hard_exit)
            self.stop()
            self._changed()
            self._nudge()

        previous = {sig: signal.signal(sig, on_signal) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def serve(self) -> None:
        """Serve until stop(); returns once the running job (if any) finished
        and every connection is closed."""
        self._loop = asyncio.get_running_loop()
        ssl_context = self.tls.context()
        self._tasks = [asyncio.ensure_future(self._maintain(link, ssl_context)) for link in self.links]
        self._tasks.append(asyncio.ensure_future(self._poll()))
        try:
            await self._execute_loop()
        finally:
            await self.retrier.close()  # the ends of jobs being resubmitted are written first
            self._flush()
            await asyncio.gather(*(self._say_goodbye(link) for link in self.links))
            for task in self._tasks:
                task.cancel()
            for link in self.links:
                if link.conn is not None:
                    link.conn.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._loop = None

    async def _say_goodbye(self, link: _Link) -> None:
        """Before closing: wait (at most --connect-timeout) until the server has
        taken every reply written so far (WorkerSession.goodbye)."""
        conn, data = link.conn, link.session.goodbye()
        if conn is None or not data or not link.usable:
            return
        link.farewell.clear()
        link.send(data)
        waits = [asyncio.ensure_future(link.farewell.wait()), asyncio.ensure_future(conn.wait_closed())]
        await asyncio.wait(waits, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _nudge(self) -> None:
        """Wake the loop's selector (a signal handler's stop() only queues work)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(lambda: None)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, reason: ExitReason = ExitReason.STOPPED, detail: str = "") -> None:
        """Stop grabbing, let the running job finish, hand back the rest."""
        if self.exit_reason is None:
            self.exit_reason, self.exit_detail = reason, detail
        self._stopping = True
        for link in self.links:
            link.session.stop()
        self._ready.clear()  # prefetched, not started: the closing connection hands them back
        self._wake.set()

    def stop_threadsafe(self, reason: ExitReason = ExitReason.STOPPED) -> None:
        """stop() from another thread (e.g. a supervisor watchdog)."""
        loop = self._loop
        if loop is None:
            self.stop(reason)
            return
        with contextlib.suppress(RuntimeError):  # the loop just closed: it has stopped anyway
            loop.call_soon_threadsafe(self.stop, reason)

    # -- connections -----------------------------------------------------------
    def _registration_bytes(self) -> bytes:
        # PROBE first: a port that is not gearmand (a web server) answers its line
        # end at once and the connection fails as a protocol error, instead of the
        # worker waiting forever for replies to its grabs. gearmand's echo is ignored.
        # Then the id (client_id_packet()).
        parts = [PROBE, self._client_id_packet()]
        # Plain CAN_DO even for functions with a timeout: gearmand 1.1.20's
        # CAN_DO_TIMEOUT (milliseconds) re-queues an expired job instead of failing
        # it, tells nobody, and keeps one timer per connection that fires for the
        # wrong job once a worker has run two. gearctl enforces timeouts itself.
        parts += [encode(P.CAN_DO, fn.name) for fn in self.functions.values()]
        return b"".join(parts)

    def _client_id_packet(self) -> bytes:
        """SET_CLIENT_ID, with --prefetch advertised for `gearctl status` while
        this process may hold more than one job (admin.PREFETCH_TAG): a fixed N > 1
        always, auto while its window is wider than 1 (sent again as that changes)."""
        held = str(self.prefetch) if self.window.size > 1 else "1"
        return encode(P.SET_CLIENT_ID, admin.worker_client_id(self.client_id, held))

    def _set_state(self, link: _Link, state: ServerState) -> None:
        self.stats.servers[str(link.address)] = state

    async def _maintain(self, link: _Link, ssl_context: object) -> None:
        """Keep one server connected: connect, register, serve, and on loss
        reconnect with exponential back-off and jitter, logging sparingly."""
        backoff = Backoff(0.5, self.max_backoff)
        while not self._stopping:
            if link.failures:  # after a failure or a loss: back off before the next try
                await asyncio.sleep(backoff.next())
                if self._stopping:
                    break
            self._set_state(link, ServerState.CONNECTING)
            try:
                conn = await Connection.open(link.address, timeout=self.connect_timeout,
                                             tls=ssl_context,  # type: ignore[arg-type]
                                             on_packet=partial(self._on_packet, link))
            except ConnectionFailed as e:
                self._set_state(link, ServerState.DOWN)
                if self._failed(link, str(e)):
                    break
                continue
            link.conn = conn
            link.send(link.session.connect())  # closed at once: counted as a loss below
            connected = time.monotonic()
            # "up" once the probe's echo is back (_confirm): a port that is not
            # gearmand answers with bytes the decoder refuses and closes instead,
            # or says nothing whole: --connect-timeout bounds the echo too.
            await self._probed(link, conn)
            await conn.wait_closed()
            link.conn = None
            link.session.lose()
            if self._stopping:
                break
            reason = str(conn.error) if conn.error else f"{link.address}: connection lost"
            self._set_state(link, ServerState.DOWN)
            self._changed()
            if not link.session.confirmed:  # never got going: a failed attempt, as a refused connect is
                if self._failed(link, reason):
                    break
                continue
            if time.monotonic() - connected >= STABLE:
                link.failures = 0  # it was up a while: start the back-off afresh
                backoff.reset()
            self._warn_down(link, reason)

    async def _probed(self, link: _Link, conn: Connection) -> None:
        """Drop a connection whose probe is not echoed within --connect-timeout."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(conn.wait_closed()), self.connect_timeout)
        if not link.session.confirmed and not conn.closed:
            conn.fail(ConnectionFailed(f"{link.address}: no answer to the probe within {self.connect_timeout:g}s "
                                       "(--connect-timeout): not gearmand, or stalled"))

    def _failed(self, link: _Link, reason: str) -> bool:
        """An attempt that did not get going; True when --burst has no server left."""
        self._warn_down(link, reason)
        return self._no_server_left()

    def _confirm(self, link: _Link) -> None:
        """The probe's echo came back: this server is gearmand, and up."""
        self._set_state(link, ServerState.UP)
        self._changed()
        if link.failures:
            log.warning("%s: connected again after %d failed attempt(s)", link.address, link.failures)

    def _no_server_left(self) -> bool:
        """With --burst and no server to drain from (none connected, every one
        failing): stop, as a cron drain with nothing to drain from."""
        if self.burst and not any(other.session.confirmed and other.conn for other in self.links) and all(
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

    def _on_packet(self, link: _Link, conn: Connection, packet: Packet) -> None:
        if conn is not link.conn:
            return  # a packet from a connection we already gave up
        reaction = link.session.receive(packet)
        link.send(reaction.send)
        happened = reaction.happened
        if happened is Happened.JOB:
            assert reaction.job is not None
            self._ready.append((link, link.session.epoch, reaction.job, time.monotonic()))
            self._wake.set()
        elif happened is Happened.SLEEPING:
            self._check_burst()
        elif happened is Happened.CONFIRMED:
            self._confirm(link)
        elif happened is Happened.FAREWELL:
            link.farewell.set()
        elif happened is Happened.ERROR:
            log.warning("%s: %s", link.address, reaction.error)

    async def _poll(self) -> None:
        """gearmand does not wake sleeping workers when a scheduled (--at/--in)
        job comes due; ask now and then."""
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            for link in self.links:
                link.send(link.session.poll())

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
            link, epoch, packet, received = ready.popleft()
            if not link.open or not link.session.current(epoch):
                continue  # the server is gone and will hand the job out again
            await self._run_one(link, epoch, packet, received)
            # Finished jobs' replies leave together while quick jobs follow (one
            # write for many); before a job that may take a while they leave first.
            if not ready or link.session.flush_due(time.monotonic()) or not self.window.quick(
                    self._name(ready[0][2].args[1])):
                self._flush()

    async def _run_one(self, link: _Link, epoch: int, packet: Packet, received: float) -> None:
        args = packet.args
        handle, name = args[0], self._name(args[1])
        unique = args[2].decode("utf-8", "surrogateescape") if packet.type is not P.JOB_ASSIGN else ""
        fn = self.functions.get(name)
        handle_text = handle.decode("ascii", "replace")
        server = link.name
        if fn is None:  # registered elsewhere on this connection? never: fail it loudly
            outcome = Outcome(OutcomeState.EXCEPTION, message=f"this worker has no function {name!r}")
        else:
            assert link.conn is not None  # open: checked by the execute loop
            policy = self.policies[name]
            job = WorkerJob(name, handle_text, unique, args[-1], context=fn.context, encoding=fn.encoding,
                            updates=_WireUpdates(link.conn, handle),
                            attempt=attempt_number(unique), attempts=policy.attempts)
            outcome = await self._execute(fn, job, server, received)
            self._measured(name, outcome.seconds, len(args[-1]))
        self.jobs_run += 1
        self._check_recycle()
        # A bad end with a retry or a dead letter to submit first: its end is written once that is created.
        if fn is None or outcome.state is OutcomeState.COMPLETE or not self.retrier.take(
                policy, Failed(name, handle_text, unique, args[-1], outcome, link.address),
                partial(self._end_resubmitted, link, epoch, handle), partial(self._abandon, link, epoch)):
            self._end(link, epoch, handle, outcome)
        if self.on_event is not None:
            self.on_event(JobEvent(_ENDED[outcome.state], name, handle_text, server, outcome.seconds,
                                   outcome.message, outcome.traceback))

    def _end(self, link: _Link, epoch: int, handle: bytes, outcome: Outcome) -> None:
        if not (link.usable and link.session.finish(epoch, handle, outcome, time.monotonic())):
            log.warning("%s: connection lost before job %s could be reported; a server that kept the job will "
                        "run it again",
                        link.address, handle.decode("ascii", "replace"))

    def _end_resubmitted(self, link: _Link, epoch: int, handle: bytes, outcome: Outcome) -> None:
        """Its retry or dead letter was created: end the attempt now, and write it."""
        self._end(link, epoch, handle, outcome)
        if link.session.outbox:
            link.send(link.session.take_outbox())

    def _abandon(self, link: _Link, epoch: int) -> None:
        """Neither a retry nor a dead letter could be submitted: close without
        ending the job, so that gearmand hands it out again (with the others held there)."""
        if link.conn is not None and link.session.current(epoch):
            link.conn.close()

    def _resubmitted(self, plan: Plan, failed: Failed) -> None:
        stats, retried = self.stats.of(failed.function), plan.step is Step.RETRY
        stats.retried, stats.dead = stats.retried + retried, stats.dead + (not retried)
        self._changed()
        if self.on_event is not None:
            self.on_event(JobEvent(JobEventKind(plan.step.value), failed.function, failed.handle, str(failed.origin),
                                   message=failed.outcome.message or str(failed.outcome.state), attempt=plan.attempt,
                                   attempts=plan.attempts, due=plan.due, delay=plan.delay,
                                   dead_function="" if retried else plan.function))

    def _name(self, raw: bytes) -> str:
        """A JOB_ASSIGN's function name (ours, without decoding it again per job)."""
        return self._names.get(raw) or raw.decode("utf-8", "surrogateescape")

    def _measured(self, function: str, seconds: float, size: int) -> None:
        """A job (`size` workload bytes) ran for `seconds`: the window may change
        (auto), and with it what each connection asks for as jobs end."""
        before = self.window.size
        after = self.window.record(function, seconds, time.monotonic(), size)
        if after == before:
            return
        share = self.window.share(len(self.links))
        retag = (before > 1) != (after > 1)  # the client id's prefetch tag comes or goes
        registration = self._registration_bytes() if retag else b""
        for link in self.links:
            link.session.prefetch = share
            if retag:
                link.session.registration = registration  # for the next connection
                link.send(self._client_id_packet())
        self.stats.prefetch = after

    async def _execute(self, fn: JobFunction, job: WorkerJob, server: str, received: float) -> Outcome:
        """Run one job, with its stats and start event around it."""
        stats = self.stats.of(fn.name)
        stats.running += 1
        self.stats.current = f"{fn.name} {job.handle}"
        self._changed()
        if self.on_event is not None:
            self.on_event(JobEvent(JobEventKind.START, fn.name, job.handle, server,
                                   held=time.monotonic() - received))
        outcome = await execute(fn, job)
        stats.running -= 1
        self.stats.current = ""
        if outcome.state is OutcomeState.COMPLETE:
            stats.done += 1
        else:
            stats.failed += 1
            stats.last_error, stats.last_error_at = outcome.message, time.time()
        self._changed()
        return outcome

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
        if drained(link.session for link in self.links if link.open):
            self.stop(ExitReason.BURST_DONE)

    def _flush(self) -> None:
        for link in self.links:
            if link.session.outbox:
                link.send(link.session.take_outbox())
        if self._flush_events is not None:
            self._flush_events()  # lines the event callback buffered leave with the replies
