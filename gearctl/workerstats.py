"""What a worker reports about itself, no I/O: per-function stats, the servers'
states, each job's start and end (JobEvent), and why it stopped (ExitReason).
The live table, the JSON log lines and the supervisor's reports read these."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum


def memory_mb() -> float:
    """This process's resident memory, from /proc (Linux); 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


class ServerState(str, Enum):
    """A server as the worker sees it (WorkerStats.servers)."""

    CONNECTING = "connecting"
    UP = "up"  # gearmand echoed our probe
    DOWN = "down"

    def __str__(self) -> str:
        return self.value


@dataclass
class FunctionStats:
    done: int = 0
    failed: int = 0
    running: int = 0
    last_error: str = ""
    last_error_at: float = 0.0  # epoch seconds: the latest error of several processes wins
    retried: int = 0  # failed attempts whose next attempt was submitted
    dead: int = 0  # jobs sent to the dead-letter function


@dataclass
class WorkerStats:
    """Counts per function, for the live table and for tests."""

    functions: dict[str, FunctionStats] = field(default_factory=dict)
    servers: dict[str, ServerState] = field(default_factory=dict)  # address -> its state
    current: str = ""  # "function handle" of the running job
    prefetch: int = 1  # jobs it may hold at once now (prefetch.WindowSize)

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
    """Why Worker.serve() (and run()) returned (exit_detail says more, for RECYCLE)."""

    STOPPED = "stopped"  # stop() from outside: a signal, the caller
    RECYCLE = "recycle"  # --max-jobs, --max-lifetime or --max-memory reached: make way for a fresh process
    BURST_DONE = "burst"  # --burst: every connected server said NO_JOB and nothing is held
    NO_SERVER = "no server"  # --burst and no server could be reached
    PARENT_GONE = "supervisor gone"  # the supervisor died (kill -9)


class JobEventKind(str, Enum):
    """A job started, or how it ended (complete..timeout are OutcomeState's
    values); after a bad end, its next attempt was submitted or it went to
    the dead-letter function (retry.Step's values)."""

    START = "start"
    COMPLETE = "complete"
    EXCEPTION = "exception"
    FAILED = "failed"
    TIMEOUT = "timeout"
    RETRY = "retry"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class JobEvent:
    """A job started or ended; what the CLI logs or draws. (Slotted, not
    frozen: two are made per job, and a frozen one costs about 2.5 us more.)"""

    kind: JobEventKind
    function: str
    handle: str
    server: str
    seconds: float = 0.0
    message: str = ""
    traceback: str = ""
    attempt: int = 0  # retry/dead: the attempt that ended, of `attempts`
    attempts: int = 0
    due: float | None = None  # retry: when the next attempt is due (epoch seconds)
    delay: float = 0.0  # retry: the back-off drawn for it
    dead_function: str = ""  # dead: where the job went
    held: float = 0.0  # start: seconds it waited in this worker, from its arrival to its start
