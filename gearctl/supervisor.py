"""N worker processes under one supervisor: respawn, recycling, stop, reload.

The parent never runs jobs. It forks children with its signals blocked (so a
signal cannot land in a half-made child), and each child resets them: SIGINT
ignored (Ctrl-C reaches the whole process group; the parent decides), SIGTERM
handled by the child's worker as "finish the running job, hand back the rest".

The parent, in one loop woken by signals (set_wakeup_fd) and by the children's
status pipes:
- a child that exits 0 was recycled (--max-jobs, --max-lifetime, --max-memory):
  a new one starts at once; one that dies otherwise is respawned after a
  back-off that grows while children keep dying young, so a plugin that crashes
  on start cannot cause a fork storm;
- the first SIGTERM/SIGINT forwards SIGTERM and waits up to --graceful-timeout,
  then kills what is left (gearmand re-queues the jobs it held); a second one
  kills at once;
- SIGHUP replaces the children one at a time with fresh ones that read the
  plugin directory anew: the new child must report that it is connected (idle
  or busy) before an old one is asked to stop, and a reload whose new child cannot start keeps the old ones;
- with --burst, children that find no job exit with BURST_DONE and are not
  replaced; the parent exits once all are gone.

Children report their state as JSON lines on a pipe: starting, idle, busy (with
function and handle), jobs done and failed, resident memory. The live table is drawn from these.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ExitCode

log = logging.getLogger("gearctl.supervisor")

# Child exit codes the parent understands.
RECYCLED = 0  # asked to make way (or stopped): replace at once unless stopping
BURST_DONE = 75  # --burst: no jobs left; do not replace
NO_SERVER = int(ExitCode.NO_SERVER)  # --burst and no server reachable
USAGE = int(ExitCode.USAGE)  # plugins broken: replacing would fail the same way
CRASHED = 70  # the child itself failed (EX_SOFTWARE): respawn with back-off

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


@dataclass
class ChildState:
    """What the parent knows about one child, from its status messages."""

    pid: int
    slot: int
    started: float = field(default_factory=time.monotonic)
    state: str = "starting"  # starting, idle, busy (connected), stopping
    current: str = ""
    done: int = 0
    failed: int = 0
    memory_mb: float = 0.0
    functions: dict[str, list[Any]] = field(default_factory=dict)  # name -> [done, failed, running, last error]
    retiring: bool = False  # replaced by a reload; asked to stop once its successor is ready
    buffer: bytes = b""
    status_fd: int = -1


@dataclass
class SupervisorOptions:
    concurrency: int = 1
    graceful_timeout: float = 30.0
    pidfile: str | None = None
    burst: bool = False
    max_backoff: float = 30.0


class Supervisor:
    """Runs `child_main(status_fd)` in `concurrency` forked children."""

    def __init__(self, child_main: Callable[[int], int], options: SupervisorOptions,
                 on_change: Callable[[Supervisor], None] | None = None,
                 on_log: Callable[[str], None] | None = None) -> None:
        self.child_main = child_main
        self.options = options
        self.on_change = on_change
        self.on_log = on_log  # children's log lines, when they send them through the pipe
        self.children: dict[int, ChildState] = {}
        self.stopping = False
        self.exit_code = 0
        self._slot_failures: dict[int, int] = {}
        self._slot_wait: dict[int, float] = {}  # slot -> monotonic time it may respawn
        self._burst_done: set[int] = set()
        self._reload_queue: list[int] = []  # pids of old children to replace
        self._reload_new: int | None = None  # pid of the replacement we wait to be ready
        self._stop_deadline: float | None = None
        # done/failed per function of the processes that have exited, so the live
        # table's totals survive recycling
        self.retired: dict[str, list[int]] = {}
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1

    # -- the parent's loop ---------------------------------------------------------
    def run(self) -> int:
        self._write_pidfile()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            for slot in range(self.options.concurrency):
                self._spawn(slot)
            while self.children or not self._finished():
                self._step()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._remove_pidfile()
        return self.exit_code

    def _finished(self) -> bool:
        if self.stopping:
            return True
        if self.options.burst:
            return len(self._burst_done) >= self.options.concurrency
        return False

    def _step(self) -> None:
        fds = [self._wake_r] + [c.status_fd for c in self.children.values() if c.status_fd >= 0]
        timeout = 0.5
        if self._slot_wait:
            timeout = max(0.0, min(timeout, min(self._slot_wait.values()) - time.monotonic()))
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            readable = []
        for fd in readable:
            if fd == self._wake_r:
                self._drain_wakeups()
            else:
                self._read_status(fd)
        self._handle_signals()
        self._reap()
        self._respawn_due()
        self._advance_reload()
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
            log.warning("graceful timeout passed: killing %d worker(s); the servers re-queue their jobs",
                        len(self.children))
            self._kill_all(signal.SIGKILL)
            self._stop_deadline = None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        signals, self._signals = self._signals, []
        for signum in signals:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    self.stopping = True
                    name = signal.Signals(signum).name
                    log.warning("%s: stopping %d worker(s) after their current job (again to stop now)",
                                name, len(self.children))
                    self._kill_all(signal.SIGTERM)
                    self._stop_deadline = time.monotonic() + self.options.graceful_timeout
                else:
                    log.warning("stopping now; the servers re-queue the jobs that were held")
                    self._kill_all(signal.SIGKILL)
            elif signum == signal.SIGHUP and not self.stopping:
                self._start_reload()

    # -- children ---------------------------------------------------------------------
    def _spawn(self, slot: int) -> int:
        status_r, status_w = os.pipe()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # the child
                os.close(status_r)
                code = CRASHED
                try:
                    signal.set_wakeup_fd(-1)
                    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                        signal.signal(sig, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                    code = self.child_main(status_w)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = CRASHED
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(status_w)
        os.set_blocking(status_r, False)
        self.children[pid] = ChildState(pid=pid, slot=slot, status_fd=status_r)
        log.info("worker process %d started", pid)
        self._changed()
        return pid

    def _read_status(self, fd: int) -> None:
        child = next((c for c in self.children.values() if c.status_fd == fd), None)
        if child is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            os.close(fd)
            child.status_fd = -1
            return
        child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "log" in message:
                if self.on_log is not None:
                    self.on_log(str(message["log"]))
                continue
            child.state = message.get("state", child.state)
            child.current = message.get("current", "")
            child.done = int(message.get("done", child.done))
            child.failed = int(message.get("failed", child.failed))
            child.memory_mb = float(message.get("memory_mb", child.memory_mb))
            child.functions = message.get("functions", child.functions)
        self._changed()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if child.status_fd >= 0:
                os.close(child.status_fd)
            code = os.waitstatus_to_exitcode(status)
            for name, (done, failed, *_rest) in child.functions.items():  # kept for the live table
                totals = self.retired.setdefault(name, [0, 0])
                totals[0] += done
                totals[1] += failed
            self._exited(child, code)
            self._changed()

    def _exited(self, child: ChildState, code: int) -> None:
        lived = time.monotonic() - child.started
        if self._reload_new == child.pid:  # the replacement died before it was ready
            log.error("reload failed: the new worker process exited with %d; keeping the old ones", code)
            self._reload_new = None
            self._reload_queue.clear()
            for other in self.children.values():
                other.retiring = False
            return
        if self.stopping:
            return
        if child.retiring:
            return  # replaced by a reload
        if code == BURST_DONE and self.options.burst:
            self._burst_done.add(child.slot)
            log.info("worker process %d found no more jobs", child.pid)
            return
        if code == NO_SERVER and self.options.burst:
            log.error("no job server reachable")
            self.exit_code = NO_SERVER
            self.stopping = True
            self._kill_all(signal.SIGTERM)
            return
        if code == RECYCLED:
            log.info("worker process %d recycled after %.0fs, %d jobs", child.pid, lived, child.done)
            self._slot_failures.pop(child.slot, None)
            self._spawn(child.slot)
            return
        if code == USAGE:
            log.error("worker process %d could not load its job functions; not restarting it", child.pid)
            self.exit_code = USAGE
            if not any(c.slot != child.slot for c in self.children.values()):
                self.stopping = True
            return
        # A crash (signal or error): respawn after a back-off while children die young.
        failures = self._slot_failures.get(child.slot, 0) + 1 if lived < 10 else 1
        self._slot_failures[child.slot] = failures
        delay = min(0.25 * 2 ** (failures - 1), self.options.max_backoff) * random.uniform(0.8, 1.2)
        how = f"signal {-code}" if code < 0 else f"status {code}"
        log.warning("worker process %d died (%s) after %.1fs; a new one starts in %.1fs",
                    child.pid, how, lived, delay)
        self._slot_wait[child.slot] = time.monotonic() + delay

    def _respawn_due(self) -> None:
        if self.stopping:
            self._slot_wait.clear()
            return
        now = time.monotonic()
        for slot, when in list(self._slot_wait.items()):
            if when <= now:
                del self._slot_wait[slot]
                self._spawn(slot)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise

    # -- reload -----------------------------------------------------------------------
    def _start_reload(self) -> None:
        if self._reload_queue or self._reload_new is not None:
            log.warning("SIGHUP: a reload is already under way")
            return
        log.warning("SIGHUP: replacing %d worker process(es) with ones that read the plugins anew",
                    len(self.children))
        self._reload_queue = list(self.children)
        for child in self.children.values():
            child.retiring = True

    def _advance_reload(self) -> None:
        if self._reload_new is not None:
            new = self.children.get(self._reload_new)
            if new is None or new.state in ("starting",):
                return
            self._reload_new = None  # ready: now retire one old child
            while self._reload_queue:
                old = self._reload_queue.pop(0)
                if old in self.children:
                    os.kill(old, signal.SIGTERM)
                    self.children[old].state = "stopping"
                    break
        if self._reload_new is None and self._reload_queue and not self.stopping:
            slot = self.children[self._reload_queue[0]].slot if self._reload_queue[0] in self.children else 0
            self._reload_new = self._spawn(slot)

    # -- bookkeeping -----------------------------------------------------------------
    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def _write_pidfile(self) -> None:
        if not self.options.pidfile:
            return
        path = self.options.pidfile
        try:
            with open(path) as f:
                other = int(f.read().strip() or 0)
        except (OSError, ValueError):
            other = 0
        if other and other != os.getpid() and _alive(other):
            from .errors import UsageError

            raise UsageError(f"pidfile {path} names process {other}, which is running")
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)

    def _remove_pidfile(self) -> None:
        if not self.options.pidfile:
            return
        try:
            with open(self.options.pidfile) as f:
                if int(f.read().strip() or 0) == os.getpid():
                    os.unlink(self.options.pidfile)
        except (OSError, ValueError):
            pass


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the supervisor dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the heartbeat's parent check does it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StatusReporter:
    """A child's side of the status pipe: JSON lines, written without blocking
    (a slow parent must never stall the worker; a full pipe drops an update)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.fd, json.dumps(message).encode() + b"\n")


# -- the child's side ----------------------------------------------------------------

@dataclass
class WorkerSpec:
    """Everything a child needs to build its worker; plugins are loaded in the
    child, so a reload (a new child) reads them anew."""

    plugin_dirs: list[str] | None
    functions: list[str] | None
    servers: list[Any]
    client_id: str
    prefetch: int = 1
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


def run_child(spec: WorkerSpec, status_fd: int) -> int:
    """A child's whole life: load plugins, serve, report; its exit code tells the
    parent what happened (see RECYCLED, BURST_DONE, NO_SERVER, USAGE)."""
    import asyncio

    from . import logs, plugins
    from .errors import GearctlError
    from .worker import Worker, memory_mb

    reporter = StatusReporter(status_fd)
    logs.setup(spec.log_format, spec.log_level,
               sink=(lambda line: reporter.send({"log": line})) if spec.logs_to_pipe else None)
    _die_with_parent()
    registry = plugins.load_plugins(plugins.plugin_dirs(spec.plugin_dirs))
    for error in registry.errors:
        logs.log.error("plugin error: %s", error)
    try:
        chosen = registry.select(spec.functions)
    except GearctlError as e:
        logs.log.error("%s", e)
        return USAGE
    lifetime = spec.max_lifetime
    if lifetime:
        lifetime *= random.uniform(1.0, 1.1)  # splay: children started together do not recycle together
    worker = Worker(chosen, spec.servers, client_id=spec.client_id, prefetch=spec.prefetch,
                    connect_timeout=spec.connect_timeout, tls=spec.tls, poll_interval=spec.poll_interval,
                    max_jobs=spec.max_jobs, max_lifetime=lifetime, max_memory_mb=spec.max_memory_mb,
                    burst=spec.burst, on_event=logs.job_event_logger(quiet_success=spec.logs_to_pipe))

    def report() -> None:
        stats = worker.stats
        up = any(state == "up" for state in stats.servers.values())
        reporter.send({
            "state": "busy" if stats.current else ("idle" if up else "starting"),
            "current": stats.current, "done": stats.done, "failed": stats.failed, "memory_mb": memory_mb(),
            "functions": {name: [f.done, f.failed, f.running, f.last_error]
                          for name, f in stats.functions.items()},
        })


    parent = os.getppid()
    terms = 0

    def on_term(_signum: int, _frame: Any) -> None:
        # A Python-level handler, not the loop's: it runs between two bytecodes
        # even while a plain job blocks the loop, so prefetched jobs are not
        # started after a SIGTERM. A second one leaves at once: closing the
        # sockets hands every held job back to gearmand.
        nonlocal terms
        terms += 1
        if terms == 1:
            worker.stop()
        else:
            os._exit(RECYCLED)

    signal.signal(signal.SIGTERM, on_term)

    async def serve() -> None:
        async def heartbeat() -> None:
            while True:
                report()
                if os.getppid() != parent:  # the supervisor is gone (kill -9): stop too
                    worker.stop("supervisor gone")
                await asyncio.sleep(0.25)

        beat = asyncio.ensure_future(heartbeat())
        try:
            await worker.run()
        finally:
            beat.cancel()
            report()

    asyncio.run(serve())
    if worker.exit_reason.startswith("burst"):
        return BURST_DONE
    if worker.exit_reason == "no server":
        return NO_SERVER
    if worker.exit_reason.startswith("recycle"):
        logs.log.info("worker process %d: %s", os.getpid(), worker.exit_reason)
    return RECYCLED
