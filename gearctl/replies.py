"""Replies matched to requests, in order: the client side's sans-IO state (a
module of its own so that a one-shot client does not import the worker's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Union

from .errors import GearctlError
from .protocol import RESPONSES, Packet, PacketType

# -- replies matched to requests, in order ------------------------------------
# Gearman servers answer the requests of one connection in order, so every
# request that expects a reply (SUBMIT_JOB* -> JOB_CREATED, GET_STATUS ->
# STATUS_RES, OPTION_REQ, ECHO_REQ, ...) queues a callback here, and each reply,
# or an ERROR in its place, goes to the oldest one. A packet that is no reply
# (WORK_* for foreground jobs, NOOP), or one that comes when none is owed (the
# worker counts its grabs instead of queueing them), is the owner's. This is
# what makes pipelining cheap: thousands of submits go out in one write and
# their JOB_CREATEDs are matched in order with no per-job round trip.
#
# A server that accepts requests and then says nothing must not hang its
# client: when replies are owed and nothing was read for io_timeout seconds,
# the peer is silent, and the owner drops the connection. The queue keeps the
# clock readings for that; the owner passes the time in and runs the timer.

# Packets that answer a request (matched in order while requests wait); NOOP never does.
REPLIES = RESPONSES - {PacketType.NOOP}

ReplyCallback = Callable[[Union[Packet, GearctlError]], None]


class ReplyQueue:
    """The replies one connection owes, in request order, and when it last heard from its peer."""

    __slots__ = ("_waiting", "error", "last_read")

    def __init__(self) -> None:
        self._waiting: deque[ReplyCallback] = deque()
        self.last_read = 0.0  # when bytes last came, or replies became owed (time.monotonic() seconds)
        self.error: GearctlError | None = None  # what failed the queue; it takes no more waiters after

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def owed(self) -> bool:
        """Are replies owed?"""
        return bool(self._waiting)

    def expect(self, callback: ReplyCallback, now: float) -> None:
        """A request was sent: `callback` gets its reply, or the error that fails the queue first.
        On a queue that has failed, it gets that error at once: a request is never dropped."""
        if self.error is not None:
            callback(self.error)
            return
        if not self._waiting:
            self.last_read = now  # silence counts from when a reply is first owed
        self._waiting.append(callback)

    def expect_many(self, callbacks: Iterable[ReplyCallback], now: float) -> None:
        """Several requests were sent at once, in this order."""
        if self.error is not None:
            for callback in callbacks:
                callback(self.error)
            return
        if not self._waiting:
            self.last_read = now
        self._waiting.extend(callbacks)

    def received(self, now: float) -> None:
        """Bytes came from the peer (whether or not they held a reply)."""
        self.last_read = now

    def deliver(self, packet: Packet) -> bool:
        """Give `packet` to the oldest waiter if it is a reply and one is owed. False: it is the owner's."""
        if packet.type in REPLIES and self._waiting:
            self._waiting.popleft()(packet)
            return True
        return False

    def fail(self, error: GearctlError) -> None:
        """Fail every waiter with `error`, once; later calls do nothing, later waiters fail at once."""
        if self.error is not None:
            return
        self.error = error
        waiting, self._waiting = self._waiting, deque()
        for callback in waiting:
            callback(error)

    def silent(self, now: float, io_timeout: float) -> bool:
        """Replies are owed and nothing was read for `io_timeout` seconds."""
        return bool(self._waiting) and now - self.last_read >= io_timeout

    def next_check(self, now: float, io_timeout: float) -> float | None:
        """Seconds until the peer would turn silent (0: it is); None while nothing is owed."""
        if not self._waiting:
            return None
        return max(io_timeout - (now - self.last_read), 0.0)
