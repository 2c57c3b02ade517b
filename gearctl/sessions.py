"""Sans-IO protocol state, h11-style: plain objects that take packets (and job
outcomes) and return the bytes to send. No sockets, no asyncio: the code in
connection.py and worker.py moves the bytes; these decide what they are.

The client's side, replies matched to requests, is replies.py's (the client
imports that alone); the embedded server's side is serverstate.py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from .protocol import Packet, PacketType, encode

# -- the worker's side of one server connection -------------------------------
#
# Per server there is one connection and a small state machine:
#
#     registered --GRAB_JOB_UNIQ x n--> grabbing --JOB_ASSIGN_UNIQ--> (job to run)
#                                          |--NO_JOB (none outstanding, none held)--> PRE_SLEEP, sleeping
#     sleeping --NOOP--> grabbing          (and every poll interval: one GRAB, for
#                                           scheduled jobs gearmand does not wake us for)
#
# `prefetch` bounds the jobs a connection holds: grabs outstanding plus jobs
# received and not yet finished. gearmand hands out one job per grab and puts
# back the jobs a closed connection held, so prefetching never loses a job: on a
# lost server its prefetched jobs are dropped unstarted (it hands them out
# again), and on a stop they are handed back by closing the connection.
#
# Grabs are counted, not matched to replies, so an ERROR about an old job
# (JOB_NOT_FOUND after a server-side timeout) cannot be mistaken for the answer
# to a grab. After NO_JOB the session is "dry": it asks for one job at a time
# until a job comes or NOOP says there is work again.
#
# A finished job's reply and the next grab go into an outbox, written in one
# go: while more prefetched jobs are ready to run a run of short jobs leaves in
# one write, at most OUTBOX_JOBS replies, never held past OUTBOX_SECONDS.
#
# Each connection is an epoch: a job carries the epoch it came in on, and a
# job from a connection since lost is neither counted nor reported (the server
# runs it again). WorkerSession is sans-IO: Worker (worker.py) moves its bytes.

class OutcomeState(str, Enum):
    """How a job ended. A str, so code comparing it to "complete" keeps working;
    str() and JSON give the bare value."""

    COMPLETE = "complete"  # WORK_COMPLETE with the result
    EXCEPTION = "exception"  # WORK_EXCEPTION with the message
    FAILED = "failed"  # WORK_FAIL
    TIMEOUT = "timeout"  # WORK_WARNING saying so, then WORK_FAIL

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class Outcome:
    """How a job ended: complete (result), exception (message), fail, or timeout.
    (Slotted, not frozen: a frozen dataclass costs about 1 us more to make, once per job.)"""

    state: OutcomeState
    result: bytes = b""
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    warning: str = ""  # a WORK_WARNING sent just before the end (a retry scheduled, a job kept as dead)


OUTBOX_JOBS = 64  # finished jobs' replies written together at most
OUTBOX_SECONDS = 0.05  # ... and never held longer than this

P = PacketType
GRAB = encode(P.GRAB_JOB_UNIQ)
FAREWELL = b"gearctl: closing"  # the last ECHO_REQ's payload (see WorkerSession.goodbye)
PRE_SLEEP = encode(P.PRE_SLEEP)
_ASSIGNMENTS = frozenset({P.JOB_ASSIGN_UNIQ, P.JOB_ASSIGN, P.JOB_ASSIGN_ALL})


class Happened(str, Enum):
    """What a packet from the server meant to the worker."""

    JOB = "job"  # a job to run (Reaction.job)
    CONFIRMED = "confirmed"  # the probe's echo: this server is gearmand, and up
    SLEEPING = "sleeping"  # nothing to do: PRE_SLEEP sent
    FAREWELL = "farewell"  # the goodbye's echo: everything written before it was handled
    ERROR = "error"  # an ERROR packet about some old job: log it (Reaction.error)
    NOTHING = "nothing"  # counted, nothing for the worker to do


class Reaction(NamedTuple):
    """What WorkerSession.receive() decided: bytes to send, and what happened.
    (A NamedTuple, as Packet: one per packet on the hot path.)"""

    happened: Happened
    send: bytes = b""
    job: Packet | None = None
    error: str = ""


_NOTHING = Reaction(Happened.NOTHING)


def reply_for(handle: bytes, outcome: Outcome) -> bytes:
    """The packets that end a job on the server."""
    state = outcome.state
    if state is OutcomeState.COMPLETE:
        return encode(P.WORK_COMPLETE, handle, outcome.result)
    warning = encode(P.WORK_WARNING, handle, outcome.warning.encode("utf-8", "replace")) if outcome.warning else b""
    if state is OutcomeState.EXCEPTION:
        # gearmand 1.1.20 ends the job on WORK_EXCEPTION (a client without the
        # exceptions option gets WORK_FAIL); a WORK_FAIL after it would be
        # answered with ERROR JOB_NOT_FOUND.
        return warning + encode(P.WORK_EXCEPTION, handle, outcome.message.encode("utf-8", "replace"))
    if state is OutcomeState.TIMEOUT:
        note = f"gearctl: job {outcome.message}".encode()
        return encode(P.WORK_WARNING, handle, note) + warning + encode(P.WORK_FAIL, handle)
    return warning + encode(P.WORK_FAIL, handle)


class WorkerSession:
    """One server connection of a worker, as state: what it asked for, holds and owes."""

    def __init__(self, registration: bytes, prefetch: int = 1) -> None:
        self.registration = registration  # sent first on every connection (PROBE, SET_CLIENT_ID, CAN_DO...)
        self.prefetch = max(1, prefetch)
        self.epoch = 0  # which connection this is; jobs carry it
        self.connected = False
        self.confirmed = False  # the server echoed our probe (kept after a loss: did it ever get going?)
        self.grabs = 0  # GRAB_JOB_UNIQs sent and not answered
        self.held = 0  # jobs received and not finished
        self.sleeping = False
        self.dry = False  # the last answer was NO_JOB: grab one at a time
        self.stopping = False
        self.outbox: list[bytes] = []  # finished jobs' replies not yet written
        self.outbox_since = 0.0

    # -- the connection --------------------------------------------------------
    def connect(self) -> bytes:
        """A new connection: fresh counts; returns the registration and the first grabs."""
        self.epoch += 1
        self.connected, self.confirmed = True, False
        self.grabs = self.held = 0
        self.sleeping = self.dry = False
        self.outbox.clear()  # replies for the old connection's jobs: that server re-runs them
        return self.registration + self._grab(self.prefetch)

    def lose(self) -> None:
        """The connection is gone: its held jobs and unsent replies with it."""
        self.connected = False
        self.outbox.clear()

    def stop(self) -> None:
        """No more grabs (nor PRE_SLEEP); the caller hands held jobs back by closing."""
        self.stopping = True

    def goodbye(self) -> bytes:
        """Before a graceful close: an ECHO_REQ after the last replies. The
        server handles a connection's packets in order, so its echo (FAREWELL)
        says every job end written before it has been taken. Closing without
        waiting can lose the last ones: a socket closed with unread JOB_ASSIGNs
        is reset, and gearmand then re-queued a job its worker had completed."""
        return encode(P.ECHO_REQ, FAREWELL) if self.connected and self.confirmed else b""

    def current(self, epoch: int) -> bool:
        """Is a job that came in on `epoch` still this session's to report?"""
        return self.connected and epoch == self.epoch

    @property
    def idle(self) -> bool:
        """Asleep with nothing held: this server has nothing for us."""
        return self.sleeping and self.held == 0

    def _grab(self, count: int) -> bytes:
        if count <= 0 or not self.connected or self.stopping:
            return b""
        self.grabs += count
        self.sleeping = False
        return GRAB * count

    # -- packets in ------------------------------------------------------------
    def receive(self, packet: Packet) -> Reaction:
        kind = packet.type
        if kind in _ASSIGNMENTS:
            self.grabs -= 1
            self.held += 1
            self.dry = False
            if self.stopping:  # not started: the closing connection hands it back
                return _NOTHING
            return Reaction(Happened.JOB, job=packet)
        if kind is P.NO_JOB:
            return self._no_job()
        if kind is P.NOOP:
            if self.sleeping:
                self.dry = False
                return Reaction(Happened.NOTHING, self._grab(self.prefetch - self.held))
            return _NOTHING
        if kind is P.ECHO_RES:
            if self.confirmed:
                return Reaction(Happened.FAREWELL) if packet.args == (FAREWELL,) else _NOTHING
            self.confirmed = True
            return Reaction(Happened.CONFIRMED)
        if kind is P.ERROR:
            # Not an answer to a grab (those are NO_JOB or JOB_ASSIGN): about a job
            # the server no longer knows. Logged, nothing else changes.
            code, text = (a.decode(errors="replace") for a in packet.args[:2])
            return Reaction(Happened.ERROR, error=f"server error {code}: {text}")
        return _NOTHING

    def _no_job(self) -> Reaction:
        self.grabs -= 1
        self.dry = True
        if self.grabs <= 0 and self.held <= 0 and not self.stopping:
            self.grabs = 0
            self.sleeping = True
            return Reaction(Happened.SLEEPING, PRE_SLEEP)
        return _NOTHING

    def poll(self) -> bytes:
        """Now and then while asleep: one grab (gearmand does not wake sleeping
        workers when a scheduled job comes due)."""
        return self._grab(1) if self.sleeping else b""

    # -- jobs out --------------------------------------------------------------
    def finish(self, epoch: int, handle: bytes, outcome: Outcome, now: float) -> bool:
        """Queue how a job ended and, in the same write, the next grab (one when
        dry, else up to the prefetch window). False: the job came in on a
        connection since lost; nothing is queued, the server runs it again."""
        if not self.current(epoch):
            return False
        self.held = max(self.held - 1, 0)
        reply = reply_for(handle, outcome)
        if not self.stopping:
            reply += self._grab(1 if self.dry else self.prefetch - self.grabs - self.held)
        if not self.outbox:
            self.outbox_since = now
        self.outbox.append(reply)
        return True

    def flush_due(self, now: float) -> bool:
        """With more jobs ready to run: is the outbox full or old enough to write anyway?"""
        return len(self.outbox) >= OUTBOX_JOBS or (bool(self.outbox) and now - self.outbox_since > OUTBOX_SECONDS)

    def take_outbox(self) -> bytes:
        """The replies to write now, in one go (empty when none)."""
        data = b"".join(self.outbox)
        self.outbox.clear()
        return data


def drained(sessions: Iterable[WorkerSession]) -> bool:
    """--burst: every connected server's session is asleep with nothing held."""
    connected = [s for s in sessions if s.connected]
    return bool(connected) and all(s.idle for s in connected)

