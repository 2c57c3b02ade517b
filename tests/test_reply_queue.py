"""replies.ReplyQueue, h11-style: replies matched to requests in order, failure,
and the silence rule, fed packets and clock readings by hand. No sockets, no
event loop. The last tests check that Connection hands its reads to the queue,
over a transport that only records writes."""

from __future__ import annotations

import asyncio
from typing import Any, Union

import pytest

from gearctl.addresses import ServerAddress
from gearctl.connection import Connection
from gearctl.errors import ConnectionFailed, GearctlError
from gearctl.protocol import Magic, Packet, PacketType, encode
from gearctl.replies import REPLIES, ReplyCallback, ReplyQueue

P = PacketType
Reply = Union[Packet, GearctlError]


def created(handle: str) -> Packet:
    return Packet(P.JOB_CREATED, (handle.encode(),), Magic.RES)


class Waiter:
    """A reply callback that records what it was given."""

    def __init__(self) -> None:
        self.got: list[Reply] = []

    def __call__(self, reply: Reply) -> None:
        self.got.append(reply)


# -- matching ----------------------------------------------------------------------

def test_pipelined_requests_get_their_replies_in_order() -> None:
    queue = ReplyQueue()
    first, second, third, fourth = Waiter(), Waiter(), Waiter(), Waiter()
    queue.expect_many([first, second, third], now=0.0)  # one write of three submits
    queue.expect(fourth, now=0.0)
    assert len(queue) == 4 and queue.owed
    replies = [created("H:1"), created("H:2"), created("H:3"), created("H:4")]
    for reply in replies:
        assert queue.deliver(reply) is True
    assert [first.got, second.got, third.got, fourth.got] == [[r] for r in replies]
    assert len(queue) == 0 and not queue.owed


def test_an_error_answers_the_oldest_request_in_its_place() -> None:
    queue = ReplyQueue()
    first, second = Waiter(), Waiter()
    queue.expect_many([first, second], now=0.0)
    error = Packet(P.ERROR, (b"queue_full", b"Job queue is full"), Magic.RES)
    assert queue.deliver(error)
    assert queue.deliver(created("H:2"))
    assert first.got == [error] and second.got == [created("H:2")]


@pytest.mark.parametrize("ptype", [P.WORK_COMPLETE, P.WORK_DATA, P.WORK_STATUS, P.NOOP])
def test_a_packet_that_is_no_reply_is_the_owners(ptype: PacketType) -> None:
    queue = ReplyQueue()
    waiter = Waiter()
    queue.expect(waiter, now=0.0)
    packet = Packet(ptype, (), Magic.RES)
    assert ptype not in REPLIES
    assert queue.deliver(packet) is False
    assert waiter.got == [] and len(queue) == 1  # still owed: the next reply is its


def test_a_reply_when_none_is_owed_is_the_owners() -> None:
    # A worker counts its GRAB_JOBs itself: their JOB_ASSIGN/NO_JOB come with nothing queued.
    queue = ReplyQueue()
    assert queue.deliver(Packet(P.NO_JOB, (), Magic.RES)) is False
    assert queue.deliver(created("H:1")) is False


def test_every_reply_type_is_a_response_and_noop_is_not_a_reply() -> None:
    assert P.JOB_CREATED in REPLIES and P.STATUS_RES in REPLIES and P.ECHO_RES in REPLIES and P.ERROR in REPLIES
    assert P.NOOP not in REPLIES


def test_a_request_made_by_a_callback_is_answered_by_the_next_reply() -> None:
    queue = ReplyQueue()
    followup = Waiter()
    got: list[Reply] = []

    def first(reply: Reply) -> None:  # e.g. a status asked for as soon as the job is created
        got.append(reply)
        queue.expect(followup, now=1.0)

    last = Waiter()
    queue.expect(first, now=0.0)
    queue.expect(last, now=0.0)
    status = Packet(P.STATUS_RES, (b"H:1", b"1", b"0", b"0", b"0"), Magic.RES)
    assert queue.deliver(created("H:1"))
    assert queue.deliver(created("H:2"))
    assert queue.deliver(status)
    assert got == [created("H:1")] and last.got == [created("H:2")] and followup.got == [status]


# -- failure -----------------------------------------------------------------------

def test_failure_fails_every_waiter_once_with_the_error() -> None:
    queue = ReplyQueue()
    waiters = [Waiter() for _ in range(5)]
    queue.expect_many(waiters[:3], now=0.0)
    queue.expect(waiters[3], now=0.0)
    queue.expect(waiters[4], now=0.0)
    assert queue.deliver(created("H:1"))  # the first one was answered before the loss
    lost = ConnectionFailed("gear1:4730: connection lost")
    queue.fail(lost)
    assert waiters[0].got == [created("H:1")]
    assert all(w.got == [lost] for w in waiters[1:])
    assert queue.error is lost and not queue.owed


def test_a_second_failure_changes_nothing() -> None:
    queue = ReplyQueue()
    waiter = Waiter()
    queue.expect(waiter, now=0.0)
    first = ConnectionFailed("first")
    queue.fail(first)
    queue.fail(ConnectionFailed("second"))
    assert waiter.got == [first] and queue.error is first


def test_a_waiter_added_after_failure_fails_at_once() -> None:
    queue = ReplyQueue()
    error = ConnectionFailed("closed")
    queue.fail(error)
    one, many = Waiter(), [Waiter(), Waiter()]
    queue.expect(one, now=5.0)
    queue.expect_many(many, now=5.0)
    assert one.got == [error] and all(w.got == [error] for w in many)
    assert not queue.owed  # never left waiting: a request is not silently dropped


def test_a_waiter_added_by_a_failing_callback_fails_too_once() -> None:
    queue = ReplyQueue()
    late = Waiter()
    got: list[Reply] = []

    def retry(reply: Reply) -> None:  # a caller that asks again on the same connection
        got.append(reply)
        queue.expect(late, now=1.0)

    queue.expect(retry, now=0.0)
    error = ConnectionFailed("lost")
    queue.fail(error)
    assert got == [error] and late.got == [error]
    assert not queue.owed


def test_a_packet_after_failure_is_the_owners() -> None:
    queue = ReplyQueue()
    waiter = Waiter()
    queue.expect(waiter, now=0.0)
    queue.fail(ConnectionFailed("lost"))
    assert queue.deliver(created("H:1")) is False
    assert len(waiter.got) == 1


# -- silence -----------------------------------------------------------------------

def test_owed_and_silent_for_the_io_timeout_is_silent() -> None:
    queue = ReplyQueue()
    queue.expect(Waiter(), now=100.0)
    assert not queue.silent(now=102.9, io_timeout=3.0)
    assert queue.next_check(now=102.0, io_timeout=3.0) == pytest.approx(1.0)
    assert queue.silent(now=103.0, io_timeout=3.0)
    assert queue.next_check(now=104.0, io_timeout=3.0) == 0.0


def test_nothing_owed_is_never_silent() -> None:
    queue = ReplyQueue()
    assert not queue.silent(now=1e9, io_timeout=1.0)
    assert queue.next_check(now=1e9, io_timeout=1.0) is None
    waiter = Waiter()
    queue.expect(waiter, now=0.0)
    assert queue.deliver(created("H:1"))  # answered: nothing owed any more
    assert not queue.silent(now=1e9, io_timeout=1.0)
    assert queue.next_check(now=1e9, io_timeout=1.0) is None


def test_a_read_resets_the_silence() -> None:
    queue = ReplyQueue()
    queue.expect(Waiter(), now=0.0)
    queue.received(now=2.5)  # bytes came (a WORK_DATA, half a packet): the peer is alive
    assert not queue.silent(now=5.0, io_timeout=3.0)
    assert queue.next_check(now=5.0, io_timeout=3.0) == pytest.approx(0.5)
    assert queue.silent(now=5.5, io_timeout=3.0)


def test_silence_counts_from_when_a_reply_is_first_owed() -> None:
    queue = ReplyQueue()
    queue.received(now=0.0)
    queue.expect(Waiter(), now=50.0)  # idle for 50 s before asking: that was no silence
    assert not queue.silent(now=52.0, io_timeout=3.0)
    queue.expect(Waiter(), now=52.0)  # more requests do not restart the clock
    assert queue.silent(now=53.0, io_timeout=3.0)


def test_a_failed_queue_is_not_silent() -> None:
    queue = ReplyQueue()
    queue.expect(Waiter(), now=0.0)
    queue.fail(ConnectionFailed("lost"))
    assert not queue.silent(now=100.0, io_timeout=1.0)
    assert queue.next_check(now=100.0, io_timeout=1.0) is None


# -- Connection hands its reads to the queue (a recording transport, no socket) -----

class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True


def connection() -> tuple[Connection, RecordingTransport, list[Packet]]:
    owned: list[Packet] = []
    conn = Connection(ServerAddress("gear1"), on_packet=lambda _c, p: owned.append(p))
    transport = RecordingTransport()
    conn.connection_made(transport)
    return conn, transport, owned


def test_connection_matches_replies_through_its_queue() -> None:
    conn, transport, owned = connection()
    first, second = Waiter(), Waiter()
    callbacks: list[ReplyCallback] = [first, second]
    conn.request_many(b"two submits", callbacks)
    assert transport.written == [b"two submits"] and len(conn.replies) == 2
    complete = encode(P.WORK_COMPLETE, "H:0", "done", magic=Magic.RES)
    # Split mid-packet: the decoder joins the pieces, the queue sees whole packets.
    wire = encode(P.JOB_CREATED, "H:1", magic=Magic.RES) + complete + encode(P.JOB_CREATED, "H:2", magic=Magic.RES)
    conn.data_received(wire[:15])
    conn.data_received(wire[15:])
    assert first.got == [created("H:1")] and second.got == [created("H:2")]
    assert [p.type for p in owned] == [P.WORK_COMPLETE]


def test_connection_reads_into_one_reused_buffer_and_keeps_what_it_delivered() -> None:
    # asyncio reads into get_buffer() (BufferedProtocol); the next read overwrites
    # that buffer, so what was delivered must be copies, and a packet split over
    # two reads must still come whole.
    conn, _, owned = connection()
    first, second = Waiter(), Waiter()
    conn.request_many(b"two submits", [first, second])
    wire = encode(P.JOB_CREATED, "H:1", magic=Magic.RES) + encode(P.JOB_CREATED, "H:2", magic=Magic.RES)
    for piece in (wire[:20], wire[20:]):
        buffer = conn.get_buffer(-1)
        assert buffer is conn.get_buffer(-1) and len(buffer) >= len(piece)
        buffer[: len(piece)] = piece
        conn.buffer_updated(len(piece))
        buffer[: len(piece)] = b"\xff" * len(piece)  # asyncio's next read lands here
    assert first.got == [created("H:1")] and second.got == [created("H:2")]
    assert owned == []


def test_closing_a_connection_fails_its_waiters_once() -> None:
    closes: list[GearctlError] = []
    conn, transport, _ = connection()
    conn.on_close = lambda _c, e: closes.append(e)
    waiter = Waiter()
    conn.request(b"submit", waiter)
    conn.close()
    conn.connection_lost(None)  # the transport's own report afterwards changes nothing
    assert len(waiter.got) == 1 and isinstance(waiter.got[0], ConnectionFailed)
    assert "connection closed" in str(waiter.got[0])
    assert closes == waiter.got and conn.closed and conn.replies.error is waiter.got[0]
    with pytest.raises(ConnectionFailed, match="connection closed"):
        conn.request(b"again", Waiter())  # refused by send(): nothing queued, nothing written
    assert transport.written == [b"submit"]
