"""The embedded server's state without sockets: packets in, packets out, per
connection; and its admin answers, byte for byte as gearmand 1.1.20 printed
them (the samples were taken from a real gearmand 1.1.20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearctl import admin
from gearctl.protocol import Magic, Packet, PacketType, decode_all, encode
from gearctl.serveradmin import Shutdown, answer, atoi
from gearctl.serverjobs import Job, Priority, StoreFailed
from gearctl.serverstate import ServerState
from gearctl.serverstore import SqliteStore, StoredJob

P = PacketType
NOW = 1_000_000.0
CLIENT, WORKER, OTHER, ADMIN = 1, 2, 3, 4


class Harness:
    """A ServerState with connections; send() returns what each connection got."""

    def __init__(self, **kwargs: object) -> None:
        self.state = ServerState("test", **kwargs)  # type: ignore[arg-type]
        for conn in (CLIENT, WORKER, OTHER, ADMIN):
            self.state.connect(conn, "127.0.0.1", fd=10 + conn)

    def send(self, conn: int, ptype: PacketType, *args: bytes | str, now: float = NOW,
             magic: Magic = Magic.REQ) -> dict[int, list[Packet]]:
        (packet,) = decode_all(encode(ptype, *args, magic=magic))
        return self.got(self.state.receive(conn, packet, now))

    @staticmethod
    def got(sends: list[tuple[int, bytes]]) -> dict[int, list[Packet]]:
        out: dict[int, list[Packet]] = {}
        for conn, data in sends:
            out.setdefault(conn, []).extend(decode_all(data, Magic.RES))
        return out

    def types(self, conn: int, ptype: PacketType, *args: bytes | str, now: float = NOW) -> dict[int, list[str]]:
        return {c: [p.type.name for p in ps] for c, ps in self.send(conn, ptype, *args, now=now).items()}

    def submit(self, function: str = "f", data: str = "x", unique: str = "", ptype: PacketType = P.SUBMIT_JOB_BG,
               conn: int = CLIENT) -> bytes:
        (created,) = self.send(conn, ptype, function, unique, data)[conn]
        assert created.type is P.JOB_CREATED, created
        return created.args[0]

    def grab(self, conn: int = WORKER, ptype: PacketType = P.GRAB_JOB_UNIQ, now: float = NOW) -> Packet:
        (packet,) = self.send(conn, ptype, now=now)[conn]
        return packet

    def admin(self, line: str) -> bytes:
        return answer(self.state, line.encode(), 4242, "0.1+gearctl").text


def test_a_background_submit_gets_a_handle_and_a_worker_gets_the_job() -> None:
    h = Harness()
    assert h.submit(data="hello") == b"H:test:1"
    h.send(WORKER, P.CAN_DO, "f")
    job = h.grab()
    assert (job.type, job.args) == (P.JOB_ASSIGN_UNIQ, (b"H:test:1", b"f", b"", b"hello"))
    assert h.grab().type is P.NO_JOB


def test_each_grab_packet_gets_its_assignment() -> None:
    h = Harness()
    h.send(WORKER, P.CAN_DO, "f")
    for _ in range(3):
        h.submit(unique="u")
        h.submit(unique="")
    assert h.grab(ptype=P.GRAB_JOB).args == (b"H:test:1", b"f", b"x")  # JOB_ASSIGN: no unique
    assert h.grab(ptype=P.GRAB_JOB_ALL).type is P.JOB_ASSIGN_UNIQ  # no reducer: as gearmand
    assert h.grab(ptype=P.GRAB_JOB).type is P.JOB_ASSIGN


def test_priorities_high_then_normal_then_low_each_in_order() -> None:
    h = Harness()
    for data, ptype in [("low1", P.SUBMIT_JOB_LOW_BG), ("n1", P.SUBMIT_JOB_BG), ("high1", P.SUBMIT_JOB_HIGH_BG),
                        ("low2", P.SUBMIT_JOB_LOW), ("n2", P.SUBMIT_JOB), ("high2", P.SUBMIT_JOB_HIGH)]:
        h.submit(data=data, ptype=ptype)
    h.send(WORKER, P.CAN_DO, "f")
    order = [h.grab().args[-1].decode() for _ in range(6)]
    assert order == ["high1", "high2", "n1", "n2", "low1", "low2"]
    assert h.admin("prioritystatus") == b"f\t0\t0\t0\t1\n.\n"


def test_the_most_recently_registered_function_is_served_first_as_gearmand() -> None:
    h = Harness()
    h.submit("a", "from a")
    h.submit("b", "from b")
    h.send(WORKER, P.CAN_DO, "a")
    h.send(WORKER, P.CAN_DO, "b")
    assert h.grab().args[1] == b"b"
    assert h.grab().args[1] == b"a"


def test_a_unique_key_coalesces_and_every_attached_client_gets_every_work_packet() -> None:
    h = Harness()
    first = h.submit(unique="same", ptype=P.SUBMIT_JOB)
    assert h.submit(unique="same", ptype=P.SUBMIT_JOB, conn=OTHER) == first
    assert h.submit(unique="same", ptype=P.SUBMIT_JOB_BG, conn=ADMIN) == first  # background: same job
    assert h.submit(unique="other", ptype=P.SUBMIT_JOB) != first
    h.send(WORKER, P.CAN_DO, "f")
    assert h.grab().args[0] == first
    for ptype, args in [(P.WORK_DATA, (first, b"d")), (P.WORK_WARNING, (first, b"w")),
                        (P.WORK_STATUS, (first, b"1", b"2")), (P.WORK_COMPLETE, (first, b"done"))]:
        got = h.send(WORKER, ptype, *args)
        assert set(got) == {CLIENT, OTHER}
        for conn in (CLIENT, OTHER):
            assert [(p.type, p.args) for p in got[conn]] == [(ptype, args)]
    assert h.submit(unique="same") != first  # it ended: the key is free again


def test_the_unique_dash_means_the_data_is_the_key() -> None:
    h = Harness()
    assert h.submit(unique="-", data="abc") == h.submit(unique="-", data="abc")
    assert h.submit(unique="-", data="abd") != h.submit(unique="-", data="abc")
    assert h.submit(unique="", data="abc") != h.submit(unique="", data="abc")  # no key: never coalesced


def test_a_sleeping_worker_gets_one_noop_until_it_grabs_again() -> None:
    h = Harness()
    h.send(WORKER, P.CAN_DO, "f")
    h.send(OTHER, P.CAN_DO, "g")
    assert h.grab().type is P.NO_JOB
    assert h.send(WORKER, P.PRE_SLEEP) == {}
    assert h.types(CLIENT, P.SUBMIT_JOB_BG, "f", "", "1") == {CLIENT: ["JOB_CREATED"], WORKER: ["NOOP"]}
    assert h.types(CLIENT, P.SUBMIT_JOB_BG, "f", "", "2") == {CLIENT: ["JOB_CREATED"]}
    assert h.grab().type is P.JOB_ASSIGN_UNIQ


def test_pre_sleep_with_work_waiting_is_answered_with_noop() -> None:
    h = Harness()
    h.submit()
    h.send(WORKER, P.CAN_DO, "f")
    assert h.types(WORKER, P.PRE_SLEEP) == {WORKER: ["NOOP"]}


def test_a_worker_that_disconnects_hands_its_job_back_to_the_tail_of_its_queue() -> None:
    h = Harness()
    h.submit(data="a", ptype=P.SUBMIT_JOB)
    h.send(WORKER, P.CAN_DO, "f")
    h.send(OTHER, P.CAN_DO, "f")
    assert h.grab().args[-1] == b"a"
    h.submit(data="b", ptype=P.SUBMIT_JOB)
    h.state.disconnect(WORKER, NOW)
    assert [h.grab(OTHER).args[-1] for _ in range(2)] == [b"b", b"a"]  # gearmand 1.1.20: the tail
    assert h.admin("show jobs") == b"H:test:1\t1\t0\t0\nH:test:2\t0\t0\t0\n.\n"  # a retry counted


def test_a_job_handed_back_wakes_a_sleeping_worker() -> None:
    h = Harness()
    h.submit()
    h.send(WORKER, P.CAN_DO, "f")
    h.send(OTHER, P.CAN_DO, "f")
    h.grab()
    h.send(OTHER, P.PRE_SLEEP)
    assert h.got(h.state.disconnect(WORKER, NOW)) == {OTHER: [Packet(P.NOOP, (), Magic.RES)]}
    assert h.admin("workers").count(b" : f\n") == 1


def test_a_client_that_disconnects_leaves_its_job_to_run() -> None:
    h = Harness()
    handle = h.submit(ptype=P.SUBMIT_JOB)
    h.state.disconnect(CLIENT, NOW)
    h.send(WORKER, P.CAN_DO, "f")
    assert h.grab().args[0] == handle
    assert h.send(WORKER, P.WORK_COMPLETE, handle, "r") == {}
    assert h.state.jobs == {}


def test_a_job_due_later_waits_wakes_the_sleeper_when_due_and_blocks_nothing() -> None:
    h = Harness()
    h.send(WORKER, P.CAN_DO, "f")
    h.send(WORKER, P.PRE_SLEEP)
    got = h.send(CLIENT, P.SUBMIT_JOB_EPOCH, "f", "", str(int(NOW) + 10), "later")
    assert [p.type for p in got[CLIENT]] == [P.JOB_CREATED] and WORKER not in got
    assert h.state.next_wakeup() == NOW + 10
    assert h.admin("status") == b"f\t1\t0\t1\n.\n"
    h.submit(data="now", ptype=P.SUBMIT_JOB_LOW_BG)
    assert h.grab().args[-1] == b"now"  # gearmand 1.1.20: NO_JOB (its NORMAL list holds only a job due later)
    assert h.grab(now=NOW + 9).type is P.NO_JOB
    h.send(WORKER, P.PRE_SLEEP, now=NOW + 9)
    assert h.got(h.state.tick(NOW + 9.5)) == {}
    assert h.got(h.state.tick(NOW + 10)) == {WORKER: [Packet(P.NOOP, (), Magic.RES)]}
    assert h.state.next_wakeup() is None
    assert h.grab(now=NOW + 10).args[-1] == b"later"


def test_an_epoch_in_the_past_is_due_at_once_and_a_bad_epoch_is_refused() -> None:
    h = Harness()
    h.send(CLIENT, P.SUBMIT_JOB_EPOCH, "f", "", "5", "old")
    h.send(WORKER, P.CAN_DO, "f")
    assert h.grab().args[-1] == b"old"
    (refused,) = h.send(CLIENT, P.SUBMIT_JOB_EPOCH, "f", "", "soon", "x")[CLIENT]
    assert refused.type is P.ERROR and refused.args[0] == b"INVALID_ARGUMENT"


def test_can_do_timeout_fails_the_job_when_its_seconds_pass() -> None:
    h = Harness()
    handle = h.submit(ptype=P.SUBMIT_JOB)
    h.send(WORKER, P.CAN_DO_TIMEOUT, "f", "5")
    h.grab()
    assert h.state.next_wakeup() == NOW + 5
    assert h.got(h.state.tick(NOW + 4.9)) == {}
    assert h.got(h.state.tick(NOW + 5)) == {CLIENT: [Packet(P.WORK_FAIL, (handle,), Magic.RES)]}
    (late,) = h.send(WORKER, P.WORK_COMPLETE, handle, "too late")[WORKER]
    assert (late.type, late.args) == (P.ERROR, (b"JOB_NOT_FOUND", b"Job given in work result not found"))
    assert h.admin("status") == b"f\t0\t0\t1\n.\n"


def test_a_finished_job_leaves_no_timer_behind() -> None:
    h = Harness()
    handle = h.submit(ptype=P.SUBMIT_JOB)
    h.send(WORKER, P.CAN_DO_TIMEOUT, "f", "5")
    h.grab()
    h.send(WORKER, P.WORK_COMPLETE, handle, "r")
    assert h.got(h.state.tick(NOW + 6)) == {}


def test_past_max_queue_a_submit_is_refused_with_error() -> None:
    h = Harness(max_queue=2)
    h.submit()
    h.send(WORKER, P.CAN_DO, "f")
    running = h.grab().args[0]
    h.submit()
    (refused,) = h.send(CLIENT, P.SUBMIT_JOB, "f", "", "x")[CLIENT]
    assert (refused.type, refused.args) == (P.ERROR, (b"QUEUE_ERROR", b"Job queue is full"))
    h.send(WORKER, P.WORK_COMPLETE, running, "")
    h.submit()
    assert h.admin("maxqueue f 3") == b"OK\r\n"
    h.submit()
    assert h.send(CLIENT, P.SUBMIT_JOB_LOW_BG, "f", "", "x")[CLIENT][0].type is P.ERROR


def test_a_negative_max_queue_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        ServerState(max_queue=-1)


def test_a_coalescing_submit_is_not_refused_by_a_full_queue() -> None:
    h = Harness(max_queue=1)
    handle = h.submit(unique="k")
    assert h.submit(unique="k", ptype=P.SUBMIT_JOB) == handle


def test_work_exception_goes_to_clients_that_asked_and_work_fail_to_the_others() -> None:
    h = Harness()
    assert h.types(CLIENT, P.OPTION_REQ, "exceptions") == {CLIENT: ["OPTION_RES"]}
    handle = h.submit(unique="k", ptype=P.SUBMIT_JOB)
    h.submit(unique="k", ptype=P.SUBMIT_JOB, conn=OTHER)
    h.send(WORKER, P.CAN_DO, "f")
    h.grab()
    got = h.send(WORKER, P.WORK_EXCEPTION, handle, "boom")
    assert [(p.type, p.args) for p in got[CLIENT]] == [(P.WORK_EXCEPTION, (handle, b"boom"))]
    assert [(p.type, p.args) for p in got[OTHER]] == [(P.WORK_FAIL, (handle,))]
    assert h.state.jobs == {}


def test_an_unknown_option_is_refused() -> None:
    (error,) = Harness().send(CLIENT, P.OPTION_REQ, "nope")[CLIENT]
    assert (error.type, error.args) == (P.ERROR, (b"UNKNOWN_OPTION", b"Server does not recognize given option"))


def test_get_status_and_get_status_unique() -> None:
    h = Harness()
    handle = h.submit(unique="k", ptype=P.SUBMIT_JOB)
    (status,) = h.send(OTHER, P.GET_STATUS, handle)[OTHER]
    assert status.args == (handle, b"1", b"0", b"0", b"0")
    h.send(WORKER, P.CAN_DO, "f")
    h.grab()
    h.send(WORKER, P.WORK_STATUS, handle, "3", "7")
    (status,) = h.send(OTHER, P.GET_STATUS, handle)[OTHER]
    assert status.args == (handle, b"1", b"1", b"3", b"7")
    (status,) = h.send(OTHER, P.GET_STATUS_UNIQUE, "k")[OTHER]
    assert status.args == (b"k", b"1", b"1", b"3", b"7", b"1")
    (status,) = h.send(OTHER, P.GET_STATUS, "H:test:99")[OTHER]
    assert status.args == (b"H:test:99", b"0", b"0", b"0", b"0")
    (status,) = h.send(OTHER, P.GET_STATUS_UNIQUE, "nope")[OTHER]
    assert status.args == (b"nope", b"0", b"0", b"0", b"0", b"0")


def test_echo_and_refusals() -> None:
    h = Harness()
    assert h.send(CLIENT, P.ECHO_REQ, b"a\0b")[CLIENT] == [Packet(P.ECHO_RES, (b"a\0b",), Magic.RES)]
    (error,) = h.send(CLIENT, P.NOOP, magic=Magic.RES)[CLIENT]
    assert error.args == (b"INVALID_MAGIC", b"Request magic expected")
    for ptype, args in [(P.SUBMIT_JOB_SCHED, ("f", "", "1", "2", "3", "4", "5", "x")), (P.ALL_YOURS, ())]:
        (error,) = h.send(CLIENT, ptype, *args)[CLIENT]
        assert error.args == (b"INVALID_COMMAND", b"Command not expected")
    (error,) = h.send(CLIENT, P.SUBMIT_JOB, "f", "u" * 65, "x")[CLIENT]
    assert error.args == (b"ARGUMENT_TOO_LARGE", b"Unique value too large")
    (error,) = h.send(CLIENT, P.CAN_DO_TIMEOUT, "f", "soon")[CLIENT]
    assert error.args[0] == b"INVALID_ARGUMENT"


def test_work_packets_about_a_job_the_connection_does_not_hold_are_errors() -> None:
    h = Harness()
    handle = h.submit()
    h.send(WORKER, P.CAN_DO, "f")
    h.grab()
    for ptype, args, text in [
        (P.WORK_COMPLETE, (handle, b""), b"Job given in work result not found"),
        (P.WORK_DATA, (handle, b""), b"Job does not exist on server"),
        (P.WORK_EXCEPTION, (handle, b""), b"An exception was received for a job that does not exist"),
        (P.WORK_STATUS, (handle, b"1", b"2"), b"Job given in work result not found"),
    ]:
        (error,) = h.send(OTHER, ptype, *args)[OTHER]
        assert error.args == (b"JOB_NOT_FOUND", text)
    assert handle in h.state.jobs


def test_cant_do_and_reset_abilities() -> None:
    h = Harness()
    h.submit("f")
    h.submit("g")
    for name in ("f", "g"):
        h.send(WORKER, P.CAN_DO, name)
    h.send(WORKER, P.CANT_DO, "g")
    assert h.admin("status") == b"f\t1\t0\t1\ng\t1\t0\t0\n.\n"
    h.send(WORKER, P.RESET_ABILITIES)
    assert h.grab().type is P.NO_JOB
    assert h.admin("status") == b"f\t1\t0\t0\ng\t1\t0\t0\n.\n"
    h.send(WORKER, P.CANT_DO, "never registered")  # nothing to do, no error


def test_draining_hands_out_nothing_and_refuses_submits() -> None:
    h = Harness()
    h.submit()
    h.send(WORKER, P.CAN_DO, "f")
    h.state.draining = True
    assert h.grab().type is P.NO_JOB
    (error,) = h.send(CLIENT, P.SUBMIT_JOB_BG, "f", "", "x")[CLIENT]
    assert error.args[0] == b"QUEUE_ERROR"


# -- admin answers ----------------------------------------------------------------

# As gearmand 1.1.20 printed them (captured from a real one).
GEARMAND_SAMPLES = {
    "cancel job H:x:1": b"ERR UNKNOWN_JOB\r\n",
    "cancel job": b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n",
    "drop function nope": b"ERR function not found\r\n",
    "drop function": b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n",
    "maxqueue": b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n",
    "maxqueue fx 5": b"OK\r\n",
    "bogus": b"ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n",
    "show": b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n",
    "show foo": b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n",
    "": b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n",
    "create function zz": b"OK\r\n",
    "getpid": b"OK 4242\n",
    "verbose": b"OK WARNING\n",  # gearmand: its --verbose level ("OK ERROR" for -v ERROR)
}


@pytest.mark.parametrize("line", sorted(GEARMAND_SAMPLES))
def test_admin_answers_as_gearmand_prints_them(line: str) -> None:
    assert Harness().admin(line) == GEARMAND_SAMPLES[line]


def test_admin_lists_as_gearmand_prints_them_and_admin_py_reads_them() -> None:
    h = Harness()
    h.submit("fx", unique="u1")
    h.submit("fx", unique="e486d4a0")
    h.send(WORKER, P.SET_CLIENT_ID, "w1")
    h.send(WORKER, P.CAN_DO, "fx")
    h.send(WORKER, P.CAN_DO, "gx")
    h.grab()
    status = h.admin("STATUS")
    assert status == b"fx\t2\t1\t1\ngx\t0\t0\t1\n.\n"
    assert h.admin("show jobs") == b"H:test:1\t0\t0\t1\nH:test:2\t0\t0\t1\n.\n"
    assert h.admin("show unique jobs") == b"u1\ne486d4a0\n.\n"
    workers = h.admin("workers")
    assert workers == b"11 127.0.0.1 - :\n12 127.0.0.1 w1 : gx fx\n13 127.0.0.1 - :\n14 127.0.0.1 - :\n.\n"
    lines = [line for line in workers.decode().splitlines() if line != "."]
    assert admin.parse_workers(lines)[1] == admin.WorkerInfo(12, "127.0.0.1", "w1", ("gx", "fx"))
    rows = admin.parse_status([line for line in status.decode().splitlines() if line != "."])
    assert rows[0] == admin.FunctionStatus("fx", 2, 1, 1)
    assert admin.parse_version([h.admin("version").decode().strip()]) == "0.1+gearctl"


def test_admin_cancel_drop_and_shutdown() -> None:
    h = Harness()
    handle = h.submit(ptype=P.SUBMIT_JOB)
    assert h.admin(f"cancel job {handle.decode()}") == b"OK\r\n"
    assert h.got(h.state.flush()) == {CLIENT: [Packet(P.WORK_FAIL, (handle,), Magic.RES)]}
    assert h.admin("cancel jobs x") == b"ERR UNKNOWN_ERROR\r\n"
    h.submit("g")
    assert h.admin("drop function G") == b"ERR there are still connected workers or executing clients\r\n"
    assert h.admin("drop function f") == b"OK\r\n"
    assert h.admin("status") == b"g\t1\t0\t0\n.\n"
    assert answer(h.state, b"shutdown", 1, "v").shutdown is Shutdown.NOW
    assert answer(h.state, b"shutdown graceful", 1, "v").shutdown is Shutdown.GRACEFUL
    assert answer(h.state, b"status", 1, "v").shutdown is None


def test_maxqueue_per_priority() -> None:
    h = Harness()
    h.submit()
    assert h.admin("maxqueue f 0 2 0") == b"OK\r\n"  # HIGH unlimited, NORMAL 2, LOW unlimited
    h.submit()
    assert h.send(CLIENT, P.SUBMIT_JOB_BG, "f", "", "x")[CLIENT][0].type is P.ERROR
    h.submit(ptype=P.SUBMIT_JOB_HIGH_BG)
    assert h.admin("maxqueue f -3") == b"OK\r\n"  # negative: no limit
    h.submit()


@pytest.mark.parametrize(("word", "value"), [(b"12", 12), (b"-4", -4), (b"+7x", 7), (b"x", 0), (b"", 0)])
def test_atoi_reads_numbers_as_c_does(word: bytes, value: int) -> None:
    assert atoi(word) == value


# -- the job store -------------------------------------------------------------------

class FakeStore:
    """Records what the state asks of a store, and what it had sent by then."""

    def __init__(self, state: ServerState, fail_add: bool = False, fail_remove: bool = False) -> None:
        self.state, self.fail_add, self.fail_remove = state, fail_add, fail_remove
        self.rows: dict[int, bytes] = {}
        self.queued_replies_at_add: list[int] = []

    def add(self, job: Job) -> None:
        if self.fail_add:
            raise StoreFailed("disk full")
        self.queued_replies_at_add.append(len(self.state.out))
        job.stored = len(self.rows) + 1
        self.rows[job.stored] = job.data

    def remove(self, job: Job) -> None:
        if self.fail_remove:
            raise StoreFailed("disk gone")
        del self.rows[job.stored]


def stored(**kwargs: bool) -> tuple[Harness, FakeStore]:
    h = Harness()
    store = FakeStore(h.state, **kwargs)
    h.state.store = store
    return h, store


def test_a_background_job_is_stored_before_its_job_created_and_deleted_when_it_ends() -> None:
    h, store = stored()
    handle = h.submit(data="kept")
    h.submit(data="foreground", ptype=P.SUBMIT_JOB)  # not stored
    assert store.rows == {1: b"kept"} and store.queued_replies_at_add == [0]
    h.send(WORKER, P.CAN_DO, "f")
    assert h.grab().args[0] == handle
    h.state.disconnect(WORKER, NOW)  # handed back: still stored
    assert store.rows == {1: b"kept"}
    h.send(OTHER, P.CAN_DO, "f")
    h.grab(OTHER)
    h.grab(OTHER)
    h.send(OTHER, P.WORK_FAIL, handle)
    assert store.rows == {}


def test_a_job_the_store_refuses_is_refused_and_not_queued() -> None:
    h, _ = stored(fail_add=True)
    (error,) = h.send(CLIENT, P.SUBMIT_JOB_BG, "f", "", "x")[CLIENT]
    assert (error.type, error.args) == (P.ERROR, (b"QUEUE_ERROR", b"disk full"))
    assert h.state.jobs == {} and h.admin("status") == b"f\t0\t0\t0\n.\n"


def test_a_stored_job_that_cannot_be_deleted_is_a_warning() -> None:
    h, _ = stored(fail_remove=True)
    handle = h.submit()
    assert h.admin(f"cancel job {handle.decode()}") == b"OK\r\n"
    assert h.state.warnings == ["disk gone (it will run again after a restart)"]


def test_restored_jobs_queue_in_order_and_coalesce() -> None:
    h, store = stored()
    store.rows = {7: b"a", 8: b"dup", 9: b"b"}
    h.state.restore(b"f", b"k", b"a", Priority.NORMAL, 0.0, 7, NOW)
    h.state.restore(b"f", b"k", b"dup", Priority.NORMAL, 0.0, 8, NOW)  # the same key: deleted
    h.state.restore(b"f", b"", b"b", Priority.HIGH, NOW + 60, 9, NOW)  # due later
    assert store.rows == {7: b"a", 9: b"b"}
    h.send(WORKER, P.CAN_DO, "f")
    assert h.grab().args[-1] == b"a"
    assert h.grab().type is P.NO_JOB
    assert h.grab(now=NOW + 60).args[-1] == b"b"


def test_sqlite_store_keeps_jobs_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    state = ServerState("a")
    store = SqliteStore(path)
    state.store = store
    job = state.create(state.function(b"f"), b"u", b"\0bytes\xff", Priority.LOW, True, 5.0, NOW)
    gone = state.create(state.function(b"f"), b"", b"done", Priority.HIGH, True, 0.0, NOW)
    state.end(gone)
    store.close()
    again = SqliteStore(path)
    assert again.load() == [StoredJob(job.stored, b"f", b"u", Priority.LOW, 5.0, b"\0bytes\xff")]
    again.close()


def test_sqlite_store_that_cannot_open_says_where(tmp_path: Path) -> None:
    with pytest.raises(StoreFailed, match=str(tmp_path / "missing")):
        SqliteStore(tmp_path / "missing" / "jobs.db")


def test_a_connection_attached_twice_is_detached_entirely() -> None:
    h = Harness()
    handle = h.submit(unique="k", ptype=P.SUBMIT_JOB)
    assert h.submit(unique="k", ptype=P.SUBMIT_JOB) == handle  # gearmand too attaches it once per submit
    h.state.disconnect(CLIENT, NOW)
    h.send(WORKER, P.CAN_DO, "f")
    h.grab()
    assert h.send(WORKER, P.WORK_COMPLETE, handle, "r") == {}
