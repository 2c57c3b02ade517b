"""What the embedded server holds, as data: jobs, functions and their
queues, connections; the priorities and the job store's interface. The rules
that move them are serverstate.py's."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from .errors import ConfigError
from .protocol import PacketType

P = PacketType


class Priority(IntEnum):
    """Queue order: a lower value is served first (gearmand's enum order)."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


# What each submit packet asks for: (priority, background).
SUBMITS: dict[PacketType, tuple[Priority, bool]] = {
    P.SUBMIT_JOB: (Priority.NORMAL, False),
    P.SUBMIT_JOB_HIGH: (Priority.HIGH, False),
    P.SUBMIT_JOB_LOW: (Priority.LOW, False),
    P.SUBMIT_JOB_BG: (Priority.NORMAL, True),
    P.SUBMIT_JOB_HIGH_BG: (Priority.HIGH, True),
    P.SUBMIT_JOB_LOW_BG: (Priority.LOW, True),
    P.SUBMIT_JOB_EPOCH: (Priority.NORMAL, True),
}

@dataclass(eq=False, slots=True)
class Job:
    handle: bytes
    function: Function
    unique: bytes
    data: bytes
    priority: Priority
    background: bool
    when: float = 0.0  # SUBMIT_JOB_EPOCH: not before this time (0: now)
    clients: list[Conn] = field(default_factory=list)  # foreground connections waiting on it
    worker: Conn | None = None  # the connection running it
    numerator: bytes = b"0"
    denominator: bytes = b"0"
    retries: int = 0  # times a worker left with it (admin `show jobs`)
    deadline: float = 0.0  # CAN_DO_TIMEOUT: fail it at this time (0: none)
    ended: bool = False
    stored: int = 0  # its row in the job store (0: not stored)

    @property
    def key(self) -> bytes:
        """What coalesces it with other submits ('' for none)."""
        return self.data if self.unique == b"-" else self.unique


@dataclass(eq=False, slots=True)
class Function:
    name: bytes
    queues: tuple[deque[Job], deque[Job], deque[Job]] = field(
        default_factory=lambda: (deque(), deque(), deque()))
    scheduled: int = 0  # jobs due later, not yet in a queue
    running: int = 0
    workers: list[Conn] = field(default_factory=list)  # registration order
    max_queue: tuple[int, int, int] | None = None  # admin `maxqueue`, per priority (0: no limit)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self.queues) + self.scheduled

    @property
    def total(self) -> int:
        """Jobs known for this function, running ones included (admin `status`'s TOTAL)."""
        return self.queued + self.running


@dataclass(eq=False, slots=True)
class Conn:
    """One connection: a client, a worker, an admin session, or all three."""

    id: int
    host: str
    fd: int
    client_id: bytes = b"-"
    abilities: dict[bytes, float] = field(default_factory=dict)  # function -> timeout seconds (0: none)
    exceptions: bool = False  # OPTION_REQ "exceptions"
    sleeping: bool = False
    noop_sent: bool = False
    held: dict[bytes, Job] = field(default_factory=dict)  # jobs it runs, by handle
    waiting: dict[bytes, Job] = field(default_factory=dict)  # foreground jobs it is attached to, by handle




class StoreFailed(ConfigError):
    """The job store could not be opened, or could not write or delete a job
    (exit 2, like any setting that cannot be used)."""


class JobStore(Protocol):
    """Where background jobs are kept across restarts (serverstore.SqliteStore).
    add() runs before the job's JOB_CREATED is queued, and sets job.stored;
    both raise StoreFailed."""

    def add(self, job: Job) -> None: ...

    def remove(self, job: Job) -> None: ...
