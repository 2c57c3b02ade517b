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
  or busy) before an old one is asked to stop, and a reload whose new child
  cannot start, or finds any plugin error, is abandoned and keeps the old ones;
- a child whose plugins break where they served before (PLUGINS_BROKEN, see
  child.py) is retried with the crash back-off, never started serving less;
- with --burst, children that find no job exit with BURST_DONE and are not
  replaced; the parent exits once all are gone.
- with `notify` (NOTIFY_SOCKET set: sdnotify.py), after every step it sends
  systemd what systemd.py says is due from a PoolView of the children (READY,
  STATUS, WATCHDOG), and RELOADING/STOPPING on the signals.

Children report their state on a pipe (supervision.ChildReport): starting,
idle, busy (with function and handle), stopping, jobs done and failed per
function, resident memory. The live table is drawn from these. What a child
runs after the fork, and how it reports, is child.py's.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import pidfile
from .backoff import Backoff
from .child import after_fork
from .errors import UsageError
from .supervision import (
    YOUNG,
    ChildExit,
    ChildReport,
    ChildState,
    FunctionReport,
    Launch,
    LogLine,
    MessageReader,
    Refusal,
    summed,
)
from .systemd import PoolView, ProcessView, SystemdState
from .workerstats import ServerState

log = logging.getLogger("gearctl.supervisor")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


@dataclass
class ChildProcess:
    """What the parent knows about one child, from its reports."""

    pid: int
    slot: int
    started: float = field(default_factory=time.monotonic)
    state: ChildState = ChildState.STARTING
    serving: frozenset[str] = frozenset()  # its functions: given at the start, then as it reports them
    refused: str = ""  # why it would not start (PLUGINS_BROKEN), as it said
    current: str = ""
    done: int = 0
    failed: int = 0
    memory_mb: float = 0.0
    functions: Mapping[str, FunctionReport] = field(default_factory=dict)
    prefetch: int = 1  # jobs it may hold at once now, as it reports
    retiring: bool = False  # replaced by a reload; asked to stop once its successor is ready
    reader: MessageReader = field(default_factory=MessageReader)
    status_fd: int = -1
    reported_at: float | None = None  # monotonic time of its last report
    servers: Mapping[str, ServerState] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)  # servers it has seen up or down: tried once at least

    @property
    def ready(self) -> bool:
        """Tried every server once, and registered on one at least (systemd's READY)."""
        return (self.tried >= set(self.servers)
                and any(state is ServerState.UP for state in self.servers.values()))

    def apply(self, report: ChildReport) -> None:
        self.reported_at = time.monotonic()
        self.servers = report.servers
        self.tried |= {address for address, state in report.servers.items() if state is not ServerState.CONNECTING}
        if self.state is not ChildState.STOPPING:  # asked to stop by a reload: it says so until it exits
            self.state = report.state
        self.current = report.current
        self.done = report.done
        self.failed = report.failed
        self.memory_mb = report.memory_mb
        self.functions = report.functions
        self.prefetch = report.prefetch
        if report.functions:
            self.serving = frozenset(report.functions)


@dataclass
class SupervisorOptions:
    concurrency: int = 1
    graceful_timeout: float = 30.0
    pidfile: str | None = None
    burst: bool = False
    max_backoff: float = 30.0
    functions: frozenset[str] = frozenset()  # what the first processes are to serve
    start_timeout: float = 60.0  # how long a reload's new process may take to be ready
    watchdog: float | None = None  # with `notify`: seconds between systemd watchdog pings
    plan: tuple[frozenset[str], ...] = ()  # per slot, the functions it has to itself (supervision.slot_plan)

    def slot_launch(self, slot: int, launch: Launch) -> Launch:
        """`launch` for one slot of the plan: a dedicated slot serves its functions
        alone, a pool slot everything else (empty plan: every slot the same)."""
        if not self.plan:
            return launch
        only = self.plan[slot]
        dedicated = frozenset().union(*self.plan)
        serving = launch.serving & only if only else launch.serving - dedicated
        return replace(launch, only=only, serving=serving)


class Supervisor:
    """Runs `child_main(status_fd, launch)` in `concurrency` forked children."""

    def __init__(self, child_main: Callable[[int, Launch], int], options: SupervisorOptions,
                 on_change: Callable[[Supervisor], None] | None = None,
                 on_log: Callable[[str], None] | None = None,
                 notify: Callable[..., object] | None = None) -> None:
        self.child_main = child_main
        self.notify = notify  # sdnotify.Notifier.send: what systemd.py says is sent to systemd
        self.systemd = SystemdState(options.watchdog) if notify is not None else None
        self._slot_crashes: dict[int, int] = {}  # slot -> its processes in a row that died young
        self.options = options
        self.on_change = on_change
        self.on_log = on_log  # children's log lines, when they send them through the pipe
        self.children: dict[int, ChildProcess] = {}
        self.stopping = False
        self.exit_code = 0
        self._slot_backoff: dict[int, Backoff] = {}  # slot -> its respawn back-off, while children die young
        self._slot_wait: dict[int, float] = {}  # slot -> monotonic time it may respawn
        self._slot_serving: dict[int, frozenset[str]] = {}  # slot -> what its respawn must serve
        self._burst_done: set[int] = set()
        self._reload_queue: list[int] = []  # pids of old children to replace
        self._reload_new: int | None = None  # pid of the replacement we wait to be ready
        self._reload_new_since = 0.0  # when it started
        self._reload_stopped: set[int] = set()  # old children the reload asked to stop
        self._stop_deadline: float | None = None
        # done/failed per function of the processes that have exited, so the live
        # table's totals survive recycling
        self.retired: dict[str, FunctionReport] = {}  # running is always 0
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
                self._spawn(slot, Launch(self.options.functions, first=True))
            while self.children or not self._finished():
                self._step()
        finally:
            if self.systemd is not None:
                self._tell(self.systemd.stopping(self.pool_view(), time.monotonic()))
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
        due = self.systemd.next_due(time.monotonic()) if self.systemd is not None else None
        if due is not None:
            timeout = min(timeout, due)
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
        if self.systemd is not None:
            self._tell(self.systemd.update(self.pool_view(), time.monotonic()))

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
                    if self.systemd is not None:
                        self._tell(self.systemd.stopping(self.pool_view(), time.monotonic()))
                else:
                    log.warning("stopping now; the servers re-queue the jobs that were held")
                    self._kill_all(signal.SIGKILL)
            elif signum == signal.SIGHUP and not self.stopping and self._start_reload() and self.systemd:
                self._tell(self.systemd.reloading(self.pool_view(), time.monotonic()))

    # -- children ---------------------------------------------------------------------
    def _spawn(self, slot: int, launch: Launch) -> int:
        launch = self.options.slot_launch(slot, launch)
        status_r, status_w = os.pipe()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(status_r)
                after_fork(self.child_main, status_w, launch, old_mask)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(status_w)
        os.set_blocking(status_r, False)
        self.children[pid] = ChildProcess(pid=pid, slot=slot, status_fd=status_r, serving=launch.serving)
        log.info("worker process %d started", pid)
        self._changed()
        return pid

    def _read_status(self, fd: int) -> None:
        proc = next((c for c in self.children.values() if c.status_fd == fd), None)
        if proc is not None:
            self._read_child(proc)

    def _read_child(self, proc: ChildProcess) -> None:
        fd = proc.status_fd
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            os.close(fd)
            proc.status_fd = -1
            return
        for message in proc.reader.feed(data):
            if isinstance(message, LogLine):
                if self.on_log is not None:
                    self.on_log(message.text)
            elif isinstance(message, Refusal):
                proc.refused = message.reason
            else:
                proc.apply(message)
        self._changed()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.children.pop(pid, None)
            if proc is None:
                continue
            for _ in range(64):  # its last reports (final counts, why it refused) first
                if proc.status_fd < 0:
                    break
                self._read_child(proc)
            if proc.status_fd >= 0:  # a grandchild holds the pipe open
                os.close(proc.status_fd)
            code = os.waitstatus_to_exitcode(status)
            for name, counts in proc.functions.items():  # kept for the live table
                self.retired[name] = self.retired.get(name, FunctionReport()).merged(replace(counts, running=0))
            self._exited(proc, code)
            self._changed()

    def _exited(self, child: ChildProcess, code: int) -> None:
        if self._reload_exit(child, code) or self.stopping:
            return
        if code == ChildExit.BURST_DONE and self.options.burst:
            self._burst_done.add(child.slot)
            log.info("worker process %d found no more jobs", child.pid)
        elif code == ChildExit.NO_SERVER and self.options.burst:
            log.error("no job server reachable")
            self.exit_code = int(ChildExit.NO_SERVER)
            self.stopping = True
            self._kill_all(signal.SIGTERM)
        elif code == ChildExit.RECYCLED:
            log.info("worker process %d recycled after %.0fs, %d jobs", child.pid,
                     time.monotonic() - child.started, child.done)
            self._slot_backoff.pop(child.slot, None)
            self._slot_crashes.pop(child.slot, None)
            self._spawn(child.slot, Launch(child.serving))
        elif code == ChildExit.USAGE:
            log.error("worker process %d could not load its job functions; not restarting it", child.pid)
            self.exit_code = int(ChildExit.USAGE)
            if not any(c.slot != child.slot for c in self.children.values()):
                self.stopping = True
        else:
            self._respawn_later(child, code)

    def _reload_exit(self, child: ChildProcess, code: int) -> bool:
        """What a reload makes of a child's exit; True when nothing else is to be done."""
        if self._reload_new == child.pid:  # the replacement died before it was ready
            if not self.stopping:
                why = child.refused.replace("\n", " ") or f"the new worker process exited with {code}"
                log.error("reload failed, the old worker processes keep serving: %s", why)
            self._reload_new = None
            self._reload_queue.clear()
            for other in self.children.values():
                other.retiring = False
            return True
        if self.stopping:
            return True
        if child.pid in self._reload_stopped:
            self._reload_stopped.discard(child.pid)
            return True  # replaced by a reload
        if child.retiring:  # ended on its own (recycled, crashed) before the reload reached it:
            child.retiring = False  # its slot is respawned as any other, or it would be lost
            if child.pid in self._reload_queue:
                self._reload_queue.remove(child.pid)
        return False

    def _respawn_later(self, child: ChildProcess, code: int) -> None:
        """A crash (signal or error), or plugins that broke: respawn after a
        back-off while children die young."""
        lived = time.monotonic() - child.started
        backoff = self._slot_backoff.get(child.slot)
        if backoff is None:
            backoff = self._slot_backoff[child.slot] = Backoff(0.25, self.options.max_backoff)
        elif lived >= YOUNG:
            backoff.reset()
        delay = backoff.next()
        self._slot_wait[child.slot] = time.monotonic() + delay
        self._slot_serving[child.slot] = child.serving
        if code != ChildExit.PLUGINS_BROKEN:  # a refusal waits for a whole file: not a crash
            self._slot_crashes[child.slot] = self._slot_crashes.get(child.slot, 0) + 1 if lived < YOUNG else 0
        if code == ChildExit.PLUGINS_BROKEN:
            log.error("worker process %d cannot start: %s; trying again in %.1fs", child.pid, child.refused, delay)
            return
        how = f"signal {-code}" if code < 0 else f"status {code}"
        log.warning("worker process %d died (%s) after %.1fs; a new one starts in %.1fs",
                    child.pid, how, lived, delay)

    def _respawn_due(self) -> None:
        if self.stopping:
            self._slot_wait.clear()
            return
        now = time.monotonic()
        for slot, when in list(self._slot_wait.items()):
            if when <= now:
                del self._slot_wait[slot]
                self._spawn(slot, Launch(self._slot_serving.pop(slot, self.options.functions)))

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise

    # -- reload -----------------------------------------------------------------------
    def _start_reload(self) -> bool:
        if self._reload_queue or self._reload_new is not None:
            log.warning("SIGHUP: a reload is already under way")
            return False
        log.warning("SIGHUP: replacing %d worker process(es) with ones that read the plugins anew",
                    len(self.children))
        self._reload_queue = list(self.children)
        for child in self.children.values():
            child.retiring = True
        return True

    def _advance_reload(self) -> None:
        if self._reload_new is not None:
            new = self.children.get(self._reload_new)
            if new is not None and new.state is ChildState.STARTING:
                if time.monotonic() - self._reload_new_since > self.options.start_timeout and not new.refused:
                    # A plugin that hangs at import, or no server to register with:
                    # give up on it; _exited abandons the reload when it is gone.
                    new.refused = f"the new worker process was not ready within {self.options.start_timeout:g}s"
                    os.kill(new.pid, signal.SIGKILL)
                return
            if new is None:
                return
            self._reload_new = None  # ready: now retire one old child
            while self._reload_queue:
                old = self._reload_queue.pop(0)
                if old in self.children:
                    self._retire(old)
                    break
            else:
                # The old ones it would replace ended on their own and were respawned
                # (they read the plugins anew too): this one is one too many.
                if len(self.children) > self.options.concurrency:
                    self._retire(new.pid)
        if self._reload_new is None and self._reload_queue and not self.stopping:
            pred = self.children.get(self._reload_queue[0])
            self._reload_new = self._spawn(pred.slot if pred else 0,
                                           Launch(pred.serving if pred else self.options.functions, reload=True))
            self._reload_new_since = time.monotonic()

    def _retire(self, pid: int) -> None:
        """Ask a child to stop for a reload: its exit is not respawned."""
        os.kill(pid, signal.SIGTERM)
        self.children[pid].state = ChildState.STOPPING
        self._reload_stopped.add(pid)

    # -- bookkeeping -----------------------------------------------------------------
    def pool_view(self) -> PoolView:
        """The processes as systemd.py weighs them (READY, STATUS, the watchdog)."""
        now = time.monotonic()
        totals = summed(self.retired, *(c.functions for c in self.children.values()))
        return PoolView(
            slots=self.options.concurrency,
            processes=tuple(ProcessView(c.slot, now - c.started,
                                        None if c.reported_at is None else now - c.reported_at,
                                        c.ready, c.state is ChildState.BUSY) for c in self.children.values()),
            crashes=dict(self._slot_crashes), respawning=frozenset(self._slot_wait),
            finished=frozenset(self._burst_done),
            done=sum(f.done for f in totals.values()), failed=sum(f.failed for f in totals.values()),
            reload_pending=bool(self._reload_queue) or self._reload_new is not None,
            start_grace=self.options.start_timeout)

    def _tell(self, assignments: list[str]) -> None:
        if assignments and self.notify is not None:
            self.notify(*assignments)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def _write_pidfile(self) -> None:
        if self.options.pidfile:
            pidfile.claim(self.options.pidfile)

    def _remove_pidfile(self) -> None:
        if self.options.pidfile:
            pidfile.release(self.options.pidfile)


class JobsCollector:
    """A prometheus_client collector: gearctl_worker_jobs_total{function,outcome}
    from the processes' reports (and those of processes that have exited), read
    on every scrape. `failed` counts every attempt that ended badly, `retried`
    and `dead` what became of them."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        sup = self.supervisor
        totals = summed(dict(sup.retired), *(c.functions for c in list(sup.children.values())))
        family = CounterMetricFamily("gearctl_worker_jobs", "Jobs per function and how they ended",
                                     labels=["function", "outcome"])
        for name, f in sorted(totals.items()):
            for outcome, count in (("complete", f.done), ("failed", f.failed), ("retried", f.retried),
                                   ("dead", f.dead)):
                family.add_metric([name, outcome], count)
        yield family


def serve_metrics(supervisor: Supervisor, port: int, address: str = "127.0.0.1") -> None:
    """Serve the supervisor's job counts on http://ADDRESS:PORT/metrics, from a thread."""
    try:
        from prometheus_client.core import CollectorRegistry
        from prometheus_client.exposition import start_http_server
    except ImportError as e:
        raise UsageError(f"--metrics-port needs prometheus_client ({e}); pip install prometheus-client") from None
    registry = CollectorRegistry()
    registry.register(JobsCollector(supervisor))  # type: ignore[arg-type]
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as e:
        raise UsageError(f"--metrics-port: cannot listen on {address}:{port}: {e.strerror or e}") from e
