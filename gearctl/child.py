"""A worker process's side of supervision: its start after the fork, its main,
and its reports to the parent.

`after_fork()` is what a freshly forked process runs: it puts back the signals the
parent blocked, runs the child's main and turns however that ends into an
exit code from supervision.ChildExit; it never returns into the parent's code.

Reports (supervision.ChildReport) go to the parent on a pipe, from a thread of their own:
a plain (non-async) job function blocks the event loop for as long as it runs,
so a heartbeat on the loop would show a busy process as idle. The job path
only raises a flag and, when no report is pending, writes one byte to wake
the reporter thread; the thread sends the whole state, then waits a few
milliseconds before it sends again. So a job's start and end reach the live
table at once however long the job takes, and a drain of short jobs costs one
report per interval, not two per job.

What a new process serves: the first processes and the ones that replace a
recycled or dead process must serve what their predecessor served, and one
that cannot (a half-deployed plugin file) exits with PLUGINS_BROKEN; a reload
(SIGHUP) process is refused on any plugin error at all. Either way it sends
the reason to the parent, which logs it in one line and keeps the old
processes (reload) or tries again after a back-off (respawn).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from .supervision import ChildExit, ChildReport, ChildState, FunctionReport, Launch, LogLine, Message, Refusal, encode

if TYPE_CHECKING:  # the worker (asyncio, sockets) is imported in the child only, when it runs
    from .worker import ExitReason, Worker

REPORT_GAP = 0.02  # seconds between two reports at most once per ...
HEARTBEAT = 1.0  # ... and one at least this often (memory, a gone parent)


def after_fork(main: Callable[[int, Launch], int], status_fd: int, launch: Launch,
               signal_mask: Iterable[int]) -> NoReturn:
    """Run `main(status_fd, launch)` in a process just forked with the parent's
    signals blocked (`signal_mask` is the mask from before), and exit with its code."""
    code: int = ChildExit.CRASHED
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
        code = main(status_fd, launch)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = ChildExit.CRASHED
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))


class StatusReporter:
    """A child's side of the status pipe: messages written without blocking
    (a slow parent must never stall the worker; a full pipe drops an update)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()  # the reporter thread and log lines share the pipe
        self._torn = False  # a partial write left half a line: end it before the next
        os.set_blocking(fd, False)

    def send(self, message: Message) -> None:
        data = encode(message)
        with self._lock:
            if self._torn:
                data = b"\n" + data
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                self._torn = os.write(self.fd, data) < len(data)


class _PipeText(io.TextIOBase):
    """sys.stdout/sys.stderr of a child on a terminal: whole lines to the parent,
    which prints them above the live table instead of through it."""

    def __init__(self, reporter: StatusReporter) -> None:
        self.reporter = reporter
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.reporter.send(LogLine(line))
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.reporter.send(LogLine(self._partial))
            self._partial = ""


@dataclass
class WorkerSpec:
    """Everything a child needs to build its worker; plugins are loaded in the
    child, so a reload (a new child) reads them anew."""

    plugin_dirs: list[str] | None
    functions: list[str] | None
    servers: list[Any]
    client_id: str
    prefetch: Any = None  # prefetch.PrefetchSetting (None: auto)
    connect_timeout: float = 5.0
    tls: Any = None
    poll_interval: float = 5.0
    max_jobs: int | None = None
    max_lifetime: float | None = None
    max_memory_mb: float | None = None
    burst: bool = False
    log_format: str = "text"
    log_level: str = "info"
    logs_to_pipe: bool = False  # on a terminal: log lines go to the parent, which draws the table
    retry: dict[str, Any] = field(default_factory=dict)  # Worker's retry keywords (retries, retry_backoff...)
    allow_insecure_plugins: bool = False  # --allow-insecure-plugins
    dedicated: frozenset[str] = frozenset()  # functions with processes of their own: not the pool's


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the supervisor dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the reporter's parent check does it


def choose(spec: WorkerSpec, launch: Launch) -> tuple[list[Any], str]:
    """Load the plugins and pick the functions to serve, or say why this
    process must not start: (functions, "") or ([], reason)."""
    from . import logs, plugins
    from .errors import GearctlError

    registry = plugins.load_plugins(plugins.plugin_dirs(spec.plugin_dirs), allow_insecure=spec.allow_insecure_plugins)
    problems = list(registry.errors)
    chosen: list[Any] = []
    try:
        if launch.only:  # a process of these functions' own
            chosen = registry.select(sorted(launch.only))
        else:  # the shared pool: what was chosen, but the functions with processes of their own
            chosen = [fn for fn in registry.select(spec.functions) if fn.name not in spec.dedicated]
    except GearctlError as e:
        problems.append(str(e))
    if problems and (launch.reload or not chosen):
        return [], "; ".join(problems)
    lost = sorted(launch.serving - {fn.name for fn in chosen})
    if problems and lost:
        return [], f"{'; '.join(problems)} (it would stop serving {', '.join(lost)})"
    if not launch.first:  # the first processes' errors were shown by the command itself
        for problem in problems:
            logs.log.error("plugin error: %s", problem)
    return chosen, ""


class _Reports:
    """The reporter thread: it sends the worker's state when poked (a job
    started or ended, a server came or went), and at least every HEARTBEAT."""

    def __init__(self, reporter: StatusReporter) -> None:
        self.reporter = reporter
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self.pending = False
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gearctl-status", daemon=True)
        self.worker: Worker | None = None
        self.parent = os.getppid()

    def poke(self) -> None:
        """On the loop, at every job start and end: cheap when a report is pending."""
        if not self.pending:
            self.pending = True
            with contextlib.suppress(BlockingIOError):
                os.write(self.wake_w, b"!")

    def start(self, worker: Worker) -> None:
        self.worker = worker
        self.thread.start()

    def report(self) -> None:
        assert self.worker is not None
        from .worker import ServerState, memory_mb

        worker, stats = self.worker, self.worker.stats
        up = any(state is ServerState.UP for state in list(stats.servers.values()))
        state = (ChildState.STOPPING if worker.stopping else ChildState.BUSY if stats.current
                 else ChildState.IDLE if up else ChildState.STARTING)
        self.reporter.send(ChildReport(state, stats.current, stats.done, stats.failed, memory_mb(), {
            name: FunctionReport(f.done, f.failed, f.running, f.last_error, f.last_error_at, f.retried, f.dead)
            for name, f in list(stats.functions.items())}, stats.prefetch, dict(stats.servers)))

    def _run(self) -> None:
        from .worker import ExitReason

        assert self.worker is not None
        while not self.finished.is_set():
            self.pending = False
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)
            self.report()
            if os.getppid() != self.parent:  # the supervisor is gone (kill -9): stop too
                self.worker.stop_threadsafe(ExitReason.PARENT_GONE)
            self.finished.wait(REPORT_GAP)
            select.select([self.wake_r], [], [], HEARTBEAT)

    def finish(self) -> None:
        """Stop the thread, then send the last word: final counts, before the parent reaps us."""
        self.finished.set()
        os.write(self.wake_w, b"!")
        if self.thread.is_alive():
            self.thread.join(5)
        self.report()


def _own_output(spec: WorkerSpec, reporter: StatusReporter) -> None:
    """A plugin's print() (and anything it runs that writes to fd 1) goes to stderr:
    stdout is not the worker's to fill. On a terminal, both go above the table."""
    from . import logs

    sys.stdout.flush()
    os.dup2(2, 1)
    if spec.logs_to_pipe:
        sys.stdout = sys.stderr = _PipeText(reporter)
    logs.setup(spec.log_format, spec.log_level,
               write_line=(lambda line: reporter.send(LogLine(line))) if spec.logs_to_pipe else None)


def build_worker(spec: WorkerSpec, chosen: list[Any], on_change: Callable[[], None]) -> Worker:
    """The library's Worker, set up as the spec says."""
    from . import logs
    from .worker import Worker

    lifetime = spec.max_lifetime
    if lifetime:
        lifetime *= random.uniform(1.0, 1.1)  # splay: children started together do not recycle together
    return Worker(chosen, spec.servers, client_id=spec.client_id, prefetch=spec.prefetch or "auto",
                  connect_timeout=spec.connect_timeout, tls=spec.tls, poll_interval=spec.poll_interval,
                  max_jobs=spec.max_jobs, max_lifetime=lifetime, max_memory_mb=spec.max_memory_mb,
                  burst=spec.burst, on_event=logs.job_event_logger(live=spec.logs_to_pipe), on_change=on_change,
                  **spec.retry)


def run_child(spec: WorkerSpec, status_fd: int, launch: Launch) -> int:
    """A child's whole life: load plugins, serve, report; its exit code tells the
    parent what happened (supervision.ChildExit)."""
    from . import logs
    from .worker import ExitReason

    reporter = StatusReporter(status_fd)
    _own_output(spec, reporter)
    _die_with_parent()
    chosen, refused = choose(spec, launch)
    if refused:
        reporter.send(Refusal(refused))
        return ChildExit.PLUGINS_BROKEN
    reports = _Reports(reporter)
    worker = build_worker(spec, chosen, reports.poke)
    reports.start(worker)
    try:
        # SIGTERM only: Ctrl-C reaches the whole group and the parent decides (SIGINT
        # stays ignored). A second SIGTERM leaves at once, as a recycled process.
        reason = worker.run(signals=(signal.SIGTERM,), hard_exit=ChildExit.RECYCLED)
    finally:
        reports.finish()
        sys.stdout.flush()
    if reason is ExitReason.RECYCLE:
        logs.log.info("worker process %d: recycle: %s", os.getpid(), worker.exit_detail)
    return exit_code(worker.exit_reason)


def exit_code(reason: ExitReason | None) -> ChildExit:
    """What this process's exit tells the parent, from why its worker stopped:
    --burst found nothing to do (not replaced) or no server (the command fails
    with it); anything else (recycling, a stop) makes way for a replacement."""
    from .worker import ExitReason

    if reason is ExitReason.BURST_DONE:
        return ChildExit.BURST_DONE
    if reason is ExitReason.NO_SERVER:
        return ChildExit.NO_SERVER
    return ChildExit.RECYCLED
