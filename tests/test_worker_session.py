"""The worker's sans-IO session, fed packets and job outcomes, without sockets:
what it sends (decoded with the protocol's own Decoder) and what it reports."""

from __future__ import annotations

import pytest

from gearctl.execution import Outcome, OutcomeState
from gearctl.protocol import Decoder, Magic, Packet, PacketType, decode_all, encode
from gearctl.sessions import OUTBOX_JOBS, OUTBOX_SECONDS, Happened, WorkerSession, drained, reply_for

P = PacketType
REGISTRATION = encode(P.ECHO_REQ, b"probe") + encode(P.CAN_DO, b"f")
DONE = Outcome(OutcomeState.COMPLETE, result=b"ok")


def sent(data: bytes) -> list[PacketType]:
    """The packet types in bytes a worker sends (requests), in order."""
    return [p.type for p in decode_all(data, expect=Magic.REQ)]


def packet(ptype: PacketType, *args: bytes) -> Packet:
    decoder = Decoder(expect=Magic.RES)
    decoder.feed(encode(ptype, *args, magic=Magic.RES))
    found = decoder.next()
    assert found is not None
    return found


def assign(n: int) -> Packet:
    return packet(P.JOB_ASSIGN_UNIQ, b"H:%d" % n, b"f", b"u%d" % n, b"data")


NO_JOB = packet(P.NO_JOB)
NOOP = packet(P.NOOP)


def connected(prefetch: int = 1) -> WorkerSession:
    session = WorkerSession(REGISTRATION, prefetch)
    session.connect()
    return session


@pytest.mark.parametrize("prefetch", [1, 4, 16])
def test_registration_goes_first_then_a_grab_per_prefetch_slot(prefetch: int) -> None:
    data = WorkerSession(REGISTRATION, prefetch).connect()
    assert data.startswith(REGISTRATION)
    assert sent(data[len(REGISTRATION):]) == [P.GRAB_JOB_UNIQ] * prefetch


def test_a_prefetch_window_is_kept_full_and_a_job_end_goes_out_with_the_next_grab() -> None:
    session = connected(prefetch=3)
    reactions = [session.receive(assign(n)) for n in range(3)]
    assert [r.happened for r in reactions] == [Happened.JOB] * 3 and all(r.send == b"" for r in reactions)
    assert reactions[1].job == assign(1)
    assert (session.grabs, session.held) == (0, 3)
    assert session.finish(session.epoch, b"H:0", DONE, now=1.0)
    out = session.take_outbox()
    assert sent(out) == [P.WORK_COMPLETE, P.GRAB_JOB_UNIQ]  # one write: the end and the refill
    assert decode_all(out, expect=Magic.REQ)[0].args == (b"H:0", b"ok")
    assert (session.grabs, session.held) == (1, 2)
    assert session.take_outbox() == b""


def test_dry_mode_grabs_one_at_a_time_until_a_job_comes() -> None:
    session = connected(prefetch=4)
    for n in range(3):
        session.receive(assign(n))
    assert session.receive(NO_JOB).happened is Happened.NOTHING  # jobs still held: no sleep
    assert session.dry and session.grabs == 0
    session.finish(session.epoch, b"H:0", DONE, now=0.0)
    assert sent(session.take_outbox()) == [P.WORK_COMPLETE, P.GRAB_JOB_UNIQ]  # one grab, not the window's two
    session.receive(assign(3))
    assert not session.dry
    session.finish(session.epoch, b"H:1", DONE, now=0.0)  # not dry: the window refills, 4 - 0 grabs - 2 held
    assert sent(session.take_outbox()) == [P.WORK_COMPLETE, P.GRAB_JOB_UNIQ, P.GRAB_JOB_UNIQ]
    session.finish(session.epoch, b"H:2", DONE, now=0.0)  # 4 - 2 grabs - 1 held
    assert sent(session.take_outbox()) == [P.WORK_COMPLETE, P.GRAB_JOB_UNIQ]


def test_no_job_with_nothing_outstanding_sleeps_and_noop_wakes_a_full_window() -> None:
    session = connected(prefetch=2)
    assert session.receive(NO_JOB).happened is Happened.NOTHING  # one grab still outstanding
    assert not session.sleeping
    reaction = session.receive(NO_JOB)
    assert reaction.happened is Happened.SLEEPING and sent(reaction.send) == [P.PRE_SLEEP]
    assert session.sleeping and session.idle and session.grabs == 0
    woken = session.receive(NOOP)
    assert woken.happened is Happened.NOTHING and sent(woken.send) == [P.GRAB_JOB_UNIQ] * 2
    assert not session.sleeping and not session.dry and session.grabs == 2


def test_noop_while_awake_and_poll_while_awake_send_nothing() -> None:
    session = connected(prefetch=2)
    assert session.receive(NOOP).send == b""
    assert session.poll() == b""
    session.receive(NO_JOB)
    session.receive(NO_JOB)
    assert sent(session.poll()) == [P.GRAB_JOB_UNIQ]  # asleep: one grab, for scheduled jobs


def test_pre_sleep_waits_until_no_job_is_held() -> None:
    session = connected(prefetch=1)
    session.receive(assign(1))
    session.finish(session.epoch, b"H:1", DONE, now=0.0)
    session.take_outbox()
    assert session.receive(NO_JOB).happened is Happened.SLEEPING
    session.receive(NOOP)
    session.receive(assign(2))  # held, and the window is full
    session.receive(NOOP)  # not asleep: ignored
    assert session.held == 1 and session.grabs == 0


def test_an_error_about_an_old_job_is_not_a_grab_answer() -> None:
    session = connected(prefetch=2)
    reaction = session.receive(packet(P.ERROR, b"JOB_NOT_FOUND", b"Job given in work result not found"))
    assert reaction.happened is Happened.ERROR and reaction.send == b""
    assert reaction.error == "server error JOB_NOT_FOUND: Job given in work result not found"
    assert session.grabs == 2  # both grabs still count as outstanding
    assert session.receive(NO_JOB).happened is Happened.NOTHING  # so one NO_JOB does not put it to sleep
    assert session.receive(NO_JOB).happened is Happened.SLEEPING


def test_the_probe_echo_confirms_once() -> None:
    session = connected()
    echo = packet(P.ECHO_RES, b"probe")
    assert session.receive(echo).happened is Happened.CONFIRMED and session.confirmed
    assert session.receive(echo).happened is Happened.NOTHING


def test_a_stop_grabs_no_more_and_does_not_run_what_arrives() -> None:
    session = connected(prefetch=3)
    session.receive(assign(1))
    session.stop()
    late = session.receive(assign(2))
    assert late.happened is Happened.NOTHING and late.job is None and session.held == 2
    assert session.receive(NO_JOB).happened is Happened.NOTHING  # no PRE_SLEEP while stopping
    session.finish(session.epoch, b"H:1", DONE, now=0.0)
    assert sent(session.take_outbox()) == [P.WORK_COMPLETE]  # the running job's end, and no grab
    assert session.poll() == b""
    session.receive(NOOP)
    assert session.take_outbox() == b""


def test_a_stop_before_connecting_sends_only_the_registration() -> None:
    session = WorkerSession(REGISTRATION, prefetch=4)
    session.stop()
    assert session.connect() == REGISTRATION


def test_a_lost_connection_forgets_its_jobs_and_a_new_one_starts_afresh() -> None:
    session = connected(prefetch=2)
    session.receive(assign(1))
    session.receive(packet(P.ECHO_RES, b"probe"))
    old = session.epoch
    session.finish(old, b"H:1", DONE, now=0.0)  # queued, not yet written ...
    session.receive(assign(2))
    session.lose()
    assert session.take_outbox() == b""  # ... and dropped: that server runs the job again
    assert session.confirmed  # it did get going: a loss, not a failed attempt
    assert not session.finish(old, b"H:2", DONE, now=0.0)  # a job from the lost connection: not reported
    data = session.connect()
    assert data.startswith(REGISTRATION) and sent(data[len(REGISTRATION):]) == [P.GRAB_JOB_UNIQ] * 2
    assert (session.grabs, session.held, session.confirmed, session.epoch) == (2, 0, False, old + 1)
    assert not session.current(old) and session.current(old + 1)
    assert not session.finish(old, b"H:2", DONE, now=0.0) and session.take_outbox() == b""


def test_the_outbox_is_written_when_full_or_old() -> None:
    session = connected(prefetch=OUTBOX_JOBS + 1)
    for n in range(OUTBOX_JOBS):
        session.receive(assign(n))
    assert not session.flush_due(now=0.0)  # empty
    session.finish(session.epoch, b"H:0", DONE, now=10.0)
    assert not session.flush_due(now=10.0)
    assert not session.flush_due(now=10.0 + OUTBOX_SECONDS / 2)
    assert session.flush_due(now=10.0 + OUTBOX_SECONDS * 2)  # held too long
    for n in range(1, OUTBOX_JOBS - 1):
        session.finish(session.epoch, b"H:%d" % n, DONE, now=10.0)
    assert not session.flush_due(now=10.0)
    session.finish(session.epoch, b"H:%d" % (OUTBOX_JOBS - 1), DONE, now=10.0)
    assert session.flush_due(now=10.0)  # full
    out = decode_all(session.take_outbox(), expect=Magic.REQ)
    assert [p.args[0] for p in out if p.type is P.WORK_COMPLETE] == [b"H:%d" % n for n in range(OUTBOX_JOBS)]


@pytest.mark.parametrize(("outcome", "types", "text"), [
    (Outcome(OutcomeState.COMPLETE, result=b"r"), [P.WORK_COMPLETE], b"r"),
    (Outcome(OutcomeState.EXCEPTION, message="ValueError: bad"), [P.WORK_EXCEPTION], b"ValueError: bad"),
    (Outcome(OutcomeState.FAILED), [P.WORK_FAIL], None),
    (Outcome(OutcomeState.TIMEOUT, message="timed out after 1s"), [P.WORK_WARNING, P.WORK_FAIL],
     b"gearctl: job timed out after 1s"),
])
def test_how_each_outcome_ends_the_job(outcome: Outcome, types: list[PacketType], text: bytes | None) -> None:
    packets = decode_all(reply_for(b"H:9", outcome), expect=Magic.REQ)
    assert [p.type for p in packets] == types and all(p.args[0] == b"H:9" for p in packets)
    if text is not None:
        assert packets[0].args[1] == text


def test_burst_is_drained_only_when_every_connected_server_sleeps_with_nothing_held() -> None:
    a, b = connected(), connected()
    down = WorkerSession(REGISTRATION)  # never connected: does not count
    assert not drained([a, b, down])
    a.receive(NO_JOB)
    assert not drained([a, b, down])  # b still grabbing
    b.receive(assign(1))
    b.receive(NO_JOB)  # b said NO_JOB but holds a job: not asleep
    assert not b.sleeping and not drained([a, b])
    b.finish(b.epoch, b"H:1", DONE, now=0.0)
    b.take_outbox()  # dry: one grab went out with the end
    assert b.receive(NO_JOB).happened is Happened.SLEEPING
    assert drained([a, b, down])
    assert not drained([down]) and not drained([])  # nothing connected: nothing drained
    b.lose()
    assert drained([a, b])


def test_a_goodbye_is_an_echo_whose_answer_says_the_replies_before_it_were_taken() -> None:
    session = connected()
    assert session.goodbye() == b""  # not confirmed yet: nothing to wait for
    session.receive(packet(P.ECHO_RES, b"probe"))
    bye = decode_all(session.goodbye(), expect=Magic.REQ)
    assert [p.type for p in bye] == [P.ECHO_REQ]
    assert session.receive(packet(P.ECHO_RES, b"probe")).happened is Happened.NOTHING  # not the goodbye's
    assert session.receive(packet(P.ECHO_RES, *bye[0].args)).happened is Happened.FAREWELL
    session.lose()
    assert session.goodbye() == b""
