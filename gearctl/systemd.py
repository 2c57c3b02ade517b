"""What `gearctl worker` tells systemd, and when: no I/O (sdnotify.py sends).

The supervisor hands `SystemdState` a `PoolView` (its processes as their
reports say, and the time) after every step, and on SIGHUP and on stop; the
state answers with the assignments to send now. The rules:

- READY=1 once every slot has a process that has tried each server once and
  is registered on at least one: "every reachable server has its
  registrations". A server that refuses counts as tried at once; one that
  swallows the connection, after --connect-timeout. With no server up, READY
  waits for the first to come up, so systemd's start times out (its
  TimeoutStartSec) instead of calling a worker that serves nothing ready.
- STATUS= "2 processes, 1 busy, 120 done, 3 failed" (prefixed with
  "starting: ", "reloading: " or "stopping: " outside the running phase), when
  it changes, at most once a second; READY, RELOADING and STOPPING carry it.
- WATCHDOG=1 every half WATCHDOG_USEC while the pool is healthy: no slot
  crash-loops (CRASH_LOOP processes in a row died within YOUNG seconds of their
  start, and the one now in the slot, if any, is younger than that too), and
  at least one process is alive and well: it reported within STALE seconds
  (a process reports every second from a thread of its own, even while a
  plain job function blocks it), or it is still starting within the start
  grace (--start-timeout), or a slot's process died and its replacement is
  due (short of a crash loop). So a crash loop, or every process stuck (stopped,
  or frozen where its reporter thread cannot run), stops the pings and
  systemd restarts the unit; one slow job does not. While stopping, the pings
  go on: the stop is bounded by --graceful-timeout and systemd's own timeout.
- RELOADING=1 on SIGHUP, READY=1 again once the reload is over (done or
  abandoned: either way the pool serves) and the pool is ready.
- STOPPING=1 once, on the first SIGTERM/SIGINT or when the supervisor ends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from .supervision import YOUNG

log = logging.getLogger("gearctl.systemd")

STALE = 3.0  # seconds without a report: three of a worker process's heartbeats missed
CRASH_LOOP = 3  # processes in a row that died young
STATUS_GAP = 1.0  # seconds between two STATUS= at least


class Phase(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"


@dataclass(frozen=True)
class ProcessView:
    """One live worker process, as the supervisor knows it."""

    slot: int
    age: float  # seconds since it was started
    since_report: float | None = None  # seconds since its last report; None: it has not reported yet
    ready: bool = False  # it tried every server and is registered on at least one
    busy: bool = False


@dataclass(frozen=True)
class PoolView:
    """The supervisor's processes at one moment."""

    slots: int  # --concurrency
    processes: tuple[ProcessView, ...] = ()
    crashes: Mapping[int, int] = field(default_factory=dict)  # slot -> processes in a row that died young
    respawning: frozenset[int] = frozenset()  # slots whose next process starts after a back-off
    finished: frozenset[int] = frozenset()  # --burst: slots whose process found no more jobs
    done: int = 0  # jobs, over every process that ever ran (the exited included)
    failed: int = 0
    reload_pending: bool = False  # a reload is under way
    start_grace: float = 60.0  # how long a process may take to report for the first time


def ready(view: PoolView) -> bool:
    """Every slot has a process that is registered where it can be (or, with --burst, is done)."""
    return all(slot in view.finished or any(p.ready for p in view.processes if p.slot == slot)
               for slot in range(view.slots))


def unhealthy(view: PoolView) -> str:
    """Why the watchdog must not be pinged, or "" when it may."""
    for slot, crashes in sorted(view.crashes.items()):
        if crashes >= CRASH_LOOP and not any(p.slot == slot and p.age >= YOUNG for p in view.processes):
            return f"worker slot {slot}: {crashes} processes in a row died within {YOUNG:g}s of their start"

    def well(p: ProcessView) -> bool:
        return p.since_report <= STALE if p.since_report is not None else p.age <= view.start_grace

    if not any(well(p) for p in view.processes) and not view.respawning:
        return (f"no worker process reported within {STALE:g}s" if view.processes
                else "no worker process is running")
    return ""


def status_text(view: PoolView, phase: Phase) -> str:
    """'2 processes, 1 busy, 120 done, 3 failed', with the phase before it unless running."""
    count = len(view.processes)
    busy = sum(p.busy for p in view.processes)
    text = f"{count} process{'' if count == 1 else 'es'}, {busy} busy, {view.done} done, {view.failed} failed"
    return text if phase is Phase.RUNNING else f"{phase.value}: {text}"


class SystemdState:
    """What to send, given the pool and the time (monotonic seconds); sans-IO.
    `watchdog`: seconds between pings (half WATCHDOG_USEC), None: no watchdog."""

    def __init__(self, watchdog: float | None = None) -> None:
        self.watchdog = watchdog
        self.phase = Phase.STARTING
        self.why_unhealthy = ""  # the last reason the pings stopped, "" while they go on
        self._next_ping = 0.0
        self._status = ""  # the last STATUS= text sent
        self._status_at = float("-inf")
        self._status_due: float | None = None  # a changed status waits for STATUS_GAP until then

    def update(self, view: PoolView, now: float) -> list[str]:
        """After a step of the supervisor: READY, STATUS, WATCHDOG as due."""
        out: list[str] = []
        if self.phase in (Phase.STARTING, Phase.RELOADING) and not view.reload_pending and ready(view):
            self.phase = Phase.RUNNING
            out += ["READY=1", self._status_now(view, now)]
        else:
            text = status_text(view, self.phase)
            if text == self._status:
                self._status_due = None
            elif now - self._status_at >= STATUS_GAP:
                out.append(self._status_now(view, now))
            else:
                self._status_due = self._status_at + STATUS_GAP
        if self.watchdog is not None and now >= self._next_ping:
            self._next_ping = now + self.watchdog
            why = "" if self.phase is Phase.STOPPING else unhealthy(view)
            if why and not self.why_unhealthy:
                log.error("watchdog: not telling systemd the worker is alive (it restarts the unit "
                          "within WatchdogSec): %s", why)
            elif self.why_unhealthy and not why:
                log.warning("watchdog: healthy again, telling systemd the worker is alive")
            self.why_unhealthy = why
            if not why:
                out.append("WATCHDOG=1")
        return out

    def reloading(self, view: PoolView, now: float) -> list[str]:
        """SIGHUP started a reload."""
        if self.phase is Phase.STOPPING:
            return []
        self.phase = Phase.RELOADING
        return ["RELOADING=1", self._status_now(view, now)]

    def stopping(self, view: PoolView, now: float) -> list[str]:
        """The supervisor stops (a signal, or its end): once."""
        if self.phase is Phase.STOPPING:
            return []
        self.phase = Phase.STOPPING
        return ["STOPPING=1", self._status_now(view, now)]

    def next_due(self, now: float) -> float | None:
        """Seconds until update() has something to send with no change in the pool."""
        due = [t for t in (self._status_due, self._next_ping if self.watchdog is not None else None)
               if t is not None]
        return max(0.0, min(due) - now) if due else None

    def _status_now(self, view: PoolView, now: float) -> str:
        self._status = status_text(view, self.phase)
        self._status_at, self._status_due = now, None
        return f"STATUS={self._status}"
