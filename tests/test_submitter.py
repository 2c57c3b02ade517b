"""The client's state without sockets: Job's transitions and the Submitter's
choices (servers to try, the one error when none took a request, what a
SUBMIT's answer does), driven by hand the way a connection would drive them."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gearctl.clientjob import Job
from gearctl.connection import Connection, ServerAddress
from gearctl.errors import (
    ConnectionFailed,
    GearctlError,
    NoServerAvailable,
    RemoteProtocolError,
    ServerError,
    Timeout,
)
from gearctl.protocol import Packet, PacketType, decode_all
from gearctl.submitter import Submitter

P = PacketType
SERVERS = [ServerAddress("127.0.0.1", 4730 + i) for i in range(3)]


def submitter(servers: list[ServerAddress] = SERVERS) -> Submitter:
    return Submitter(servers, connect_timeout=1.0, io_timeout=1.0, tls=None)


# -- Job's transitions ---------------------------------------------------------
def test_created_makes_a_foreground_job_wait_and_leaves_a_background_one_to_be_finished() -> None:
    fg, bg = Job("f", background=False), Job("f")
    fg.state = bg.state = "sent"
    fg.created(b"H:x:1", SERVERS[0])
    bg.created(b"H:x:2", SERVERS[1])
    assert (fg.state, fg.handle, fg.server) == ("created", "H:x:1", SERVERS[0])
    assert (bg.state, bg.handle, bg.server, bg.done) == ("sent", "H:x:2", SERVERS[1], False)


def test_finish_ends_a_job_once_and_tells_on_finished_once() -> None:
    job = Job("f", background=False)
    seen: list[str] = []
    job.on_finished = lambda j: seen.append(j.state)
    error = Timeout("too slow")
    job.finish("timeout", error)
    job.finish("complete")  # too late: the job ended already
    assert (job.state, job.error, seen) == ("timeout", error, ["timeout"])


def test_apply_work_keeps_data_warnings_and_status_and_ends_on_complete() -> None:
    job = Job("f", background=False)
    seen: list[Any] = []
    job.on_data = lambda _j, chunk: seen.append(chunk)
    job.on_status = lambda _j, n, d: seen.append((n, d))
    assert not job.apply_work(Packet(P.WORK_DATA, (b"H:x:1", b"part")))
    assert not job.apply_work(Packet(P.WORK_WARNING, (b"H:x:1", b"careful")))
    assert not job.apply_work(Packet(P.WORK_STATUS, (b"H:x:1", b"1", b"4")))
    assert job.apply_work(Packet(P.WORK_COMPLETE, (b"H:x:1", b"done")))
    assert (job.state, job.result, job.chunks, job.warnings) == ("complete", b"done", [b"part"], [b"careful"])
    assert (job.numerator, job.denominator, seen) == (1, 4, [b"part", (1, 4)])


@pytest.mark.parametrize(("kind", "state"), [(P.WORK_FAIL, "failed"), (P.WORK_EXCEPTION, "exception")])
def test_apply_work_ends_the_job_on_fail_and_exception(kind: PacketType, state: str) -> None:
    job = Job("f", background=False)
    args = (b"H:x:1",) if kind is P.WORK_FAIL else (b"H:x:1", b"boom")
    assert job.apply_work(Packet(kind, args))
    assert job.state == state


def test_abort_wait_wakes_the_waiter_with_the_callers_error_and_keeps_the_state() -> None:
    job = Job("f", background=False)
    job.state = "created"

    async def go() -> None:
        waiter = asyncio.ensure_future(job.wait())
        await asyncio.sleep(0)  # the waiter is now waiting on the job's future
        job.abort_wait(BrokenPipeError("stdout closed"))
        await asyncio.wait_for(waiter, 30)  # a wake-up that never came fails, not hangs

    with pytest.raises(BrokenPipeError):
        asyncio.run(go())
    assert job.state == "created"


def test_server_key_is_the_unique_key_or_nothing_for_a_generated_one() -> None:
    assert Job("f", unique="k1").server_key == b"k1"
    assert Job("f").server_key == b""


# -- choosing servers ------------------------------------------------------------
def test_a_unique_key_always_starts_at_the_same_server_and_other_jobs_rotate() -> None:
    s = submitter()
    keyed = [s.candidates(Job("f", unique="user-42"))[0] for _ in range(6)]
    rotated = [s.candidates(Job("f"))[0] for _ in range(6)]
    assert len(set(keyed)) == 1
    assert len(set(rotated)) == 3 and rotated[:3] == rotated[3:]
    assert sorted(s.candidates(Job("f")), key=str) == sorted(SERVERS, key=str)  # every server, for failover


def test_a_server_marked_down_is_tried_last_only_when_all_are_down() -> None:
    s = submitter()
    s.pool.mark_down(SERVERS[0], ConnectionFailed("refused"))
    assert all(SERVERS[0] not in s.candidates(Job("f")) for _ in range(3))
    for address in SERVERS[1:]:
        s.pool.mark_down(address, ConnectionFailed("refused"))
    assert sorted(s.candidates(Job("f")), key=str) == sorted(SERVERS, key=str)


def test_no_ready_connection_without_open_connections() -> None:
    s = submitter()
    assert s.ready_connection(Job("f"), 0) is None
    assert s.ready_connection(Job("f", unique="k"), 0) is None


# -- the error when no server took a request ------------------------------------------
def test_no_server_error_prefers_a_protocol_error() -> None:
    broken = RemoteProtocolError("not gearmand")
    assert submitter().no_server_error([ConnectionFailed("refused"), broken, ServerError("E", "full", "s")]) is broken


def test_no_server_error_is_the_refusal_when_every_server_refused() -> None:
    last = ServerError("QUEUE_ERROR", "full", "b")
    assert submitter().no_server_error([ServerError("QUEUE_ERROR", "full", "a"), last]) is last


def test_no_server_error_is_the_timeout_when_every_server_timed_out() -> None:
    last = Timeout("b: slow")
    assert submitter().no_server_error([Timeout("a: slow"), last]) is last


def test_no_server_error_names_each_reason_when_they_differ() -> None:
    error = submitter().no_server_error([ConnectionFailed("a: refused"), ServerError("QUEUE_ERROR", "full", "b")])
    assert isinstance(error, NoServerAvailable)
    assert "a: refused" in str(error) and "full" in str(error) and "GEARCTL_SERVERS" in str(error)


def test_no_server_error_defaults_to_what_each_server_last_said_else_names_the_servers() -> None:
    s = submitter()
    assert all(str(a) in str(s.no_server_error()) for a in SERVERS)
    s.pool.mark_down(SERVERS[1], ConnectionFailed("b: connection refused"))
    error = s.no_server_error()
    assert isinstance(error, NoServerAvailable) and "b: connection refused" in str(error)
    assert str(SERVERS[0]) not in str(error)


# -- a SUBMIT and its answer, on a stand-in connection --------------------------------
class FakeConnection:
    """What Submitter.send uses of a Connection: it records what was written."""

    def __init__(self, address: ServerAddress) -> None:
        self.address = address
        self.options: set[str] = set()
        self.written = b""
        self.callbacks: list[Any] = []
        self.failed: GearctlError | None = None

    def request_many(self, data: bytes, callbacks: list[Any]) -> None:
        self.written += data
        self.callbacks.extend(callbacks)

    def fail(self, error: GearctlError) -> None:
        self.failed = error


def send(s: Submitter, jobs: list[Job]) -> tuple[FakeConnection, list[tuple[str, GearctlError | None]]]:
    conn = FakeConnection(SERVERS[0])
    answers: list[tuple[str, GearctlError | None]] = []
    s.send(cast(Connection, conn), jobs, lambda job, error: answers.append((job.state, error)))
    return conn, answers


def test_send_writes_the_exceptions_option_once_then_a_submit_per_job() -> None:
    s = submitter()
    jobs = [Job("f", b"one", background=False), Job("f", b"two")]
    conn, _ = send(s, jobs)
    assert [p.type for p in decode_all(conn.written)] == [P.OPTION_REQ, P.SUBMIT_JOB, P.SUBMIT_JOB_BG]
    assert [job.state for job in jobs] == ["sent", "sent"] and conn.options == {"exceptions"}
    conn.written = b""
    s.send(cast(Connection, conn), [Job("f", b"three", background=False)], lambda _j, _e: None)
    assert [p.type for p in decode_all(conn.written)] == [P.SUBMIT_JOB]  # the option is set once per connection


def test_a_background_job_is_answered_then_finished_as_queued() -> None:
    s = submitter()
    job = Job("f")
    order: list[str] = []
    job.on_finished = lambda j: order.append(f"finished {j.state}")
    conn = FakeConnection(SERVERS[0])
    s.send(cast(Connection, conn), [job], lambda j, e: order.append(f"answered {j.state} {e}"))
    conn.callbacks[0](Packet(P.JOB_CREATED, (b"H:x:7",)))
    assert order == ["answered sent None", "finished queued"]
    assert (job.handle, job.server) == ("H:x:7", SERVERS[0])


def test_a_foreground_job_waits_for_its_work_packets_on_its_connection() -> None:
    s = submitter()
    job, other = Job("f", background=False), Job("f", background=False)
    conn, answers = send(s, [job, other])
    conn.callbacks[1](Packet(P.JOB_CREATED, (b"H:x:1",)))
    conn.callbacks[2](Packet(P.JOB_CREATED, (b"H:x:2",)))
    assert answers == [("created", None), ("created", None)]
    assert s.pool.on_packet is not None
    s.pool.on_packet(cast(Connection, conn), Packet(P.WORK_COMPLETE, (b"H:x:1", b"result")))
    s.pool.on_packet(cast(Connection, conn), Packet(P.WORK_COMPLETE, (b"H:x:1", b"stray")))  # no longer waited for
    assert (job.state, job.result, other.state) == ("complete", b"result", "created")
    s.pool.on_packet(cast(Connection, conn), Packet(P.WORK_DATA, (b"H:x:9", b"not ours")))
    assert other.chunks == []


def test_a_lost_connection_ends_the_foreground_jobs_on_it_with_an_error() -> None:
    s = submitter()
    job = Job("f", background=False)
    conn, _ = send(s, [job])
    conn.callbacks[1](Packet(P.JOB_CREATED, (b"H:x:1",)))
    assert s.pool.on_close is not None
    s.pool.on_close(cast(Connection, conn), ConnectionFailed("reset"))
    assert job.state == "error" and isinstance(job.error, ConnectionFailed)
    assert "connection lost while waiting for job H:x:1" in str(job.error)


def test_an_error_answer_is_a_refusal_and_a_wrong_packet_fails_the_connection() -> None:
    s = submitter()
    refused, confused = Job("f"), Job("f")
    conn, answers = send(s, [refused, confused])
    conn.callbacks[0](Packet(P.ERROR, (b"QUEUE_ERROR", b"full")))
    conn.callbacks[1](Packet(P.NO_JOB))
    assert isinstance(answers[0][1], ServerError) and "full" in str(answers[0][1])
    assert isinstance(answers[1][1], RemoteProtocolError) and conn.failed is answers[1][1]
    assert not refused.done and not confused.done  # the caller decides: fail over, or end them


def test_a_connection_error_reaches_every_job_of_the_write() -> None:
    s = submitter()
    conn, answers = send(s, [Job("f"), Job("f")])
    lost = ConnectionFailed("gone")
    for callback in conn.callbacks:
        callback(lost)
    assert answers == [("sent", lost), ("sent", lost)]


def test_a_run_that_expires_names_each_job_by_its_handle_or_as_not_yet_created() -> None:
    from gearctl.pipeline import IterSource, ManyRun

    async def go() -> list[str]:
        run = ManyRun(submitter(), IterSource([]), 2, None, None, None)
        created, sent = Job("mail", background=False), Job("mail", background=False)
        created.state = sent.state = "sent"
        created.created(b"H:x:7", SERVERS[0])
        run.inflight = {created, sent}
        run.expire(Timeout("timed out waiting for the jobs"))
        return sorted(str(job.error) for job in (created, sent))

    assert asyncio.run(go()) == ["job H:x:7 (mail): timed out waiting for the jobs",
                                 "mail: no JOB_CREATED yet: timed out waiting for the jobs"]
