"""--prefetch auto against a real gearmand: the window widens for quick jobs
(the worker then holds several: gearmand counts them as running), narrows to
one when a job runs long, is advertised in the client id only while it is
wider than one, and each job's start says how long it was held."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, gearctl, wait_until
from fake_server import FakeServer

from gearctl import Worker
from gearctl.prefetch import AUTO_MAX
from gearctl.protocol import Decoder, Magic, Packet, PacketType, encode
from gearctl.workerstats import JobEvent

PLUGINS = Path(__file__).parent / "plugins"
P = PacketType


def queue(gearmand: Gearmand, function: str, workloads: list[bytes]) -> None:
    """Background jobs, in this order, in one write (gearmand hands them out in order)."""
    with socket.create_connection(("127.0.0.1", gearmand.port), timeout=10) as s:
        s.sendall(b"".join(encode(PacketType.SUBMIT_JOB_BG, function.encode(), b"", w) for w in workloads))
        wait_until(lambda: gearmand.status().get(function, (0,))[0] == len(workloads), 20,
                   what=f"{len(workloads)} {function} jobs queued")


def test_auto_widens_for_quick_jobs_so_one_worker_holds_several(gearmand: Gearmand) -> None:
    running_seen: list[int] = []

    def quick(job):  # type: ignore[no-untyped-def]
        if job.workload() == b"look":  # the worker's loop waits for this job: what it holds is held now
            running_seen.append(gearmand.status()["quick"][1])
        return None

    queue(gearmand, "quick", [b"x"] * 300 + [b"look"] + [b"x"] * 200)
    worker = Worker([{"function_name": "quick", "function": quick}], servers=gearmand.address, burst=True)
    assert worker.window.size == 1  # it starts at one
    worker.run()
    assert gearmand.status()["quick"][:2] == (0, 0)  # every job done
    assert worker.stats.done == 501
    assert running_seen and running_seen[0] > 1  # held: handed to this one worker, not yet started
    assert worker.stats.prefetch == worker.window.size == AUTO_MAX


def test_a_fixed_prefetch_of_one_holds_only_the_running_job(gearmand: Gearmand) -> None:
    running_seen: list[int] = []

    def quick(job):  # type: ignore[no-untyped-def]
        if job.workload() == b"look":
            running_seen.append(gearmand.status()["quick"][1])

    queue(gearmand, "quick", [b"x"] * 300 + [b"look"] + [b"x"] * 10)
    Worker([{"function_name": "quick", "function": quick}], servers=gearmand.address, burst=True,
           prefetch=1).run()
    assert running_seen == [1]


def test_a_job_that_runs_long_narrows_the_window_to_one_as_it_ends(gearmand: Gearmand) -> None:
    windows: dict[bytes, tuple[int, int]] = {}
    worker: Worker

    def varied(job):  # type: ignore[no-untyped-def]
        if job.workload() == b"slow":
            time.sleep(0.06)  # longer than the 20 ms budget below

    def on_event(event: JobEvent) -> None:
        if event.kind == "complete":
            windows[event.handle.encode()] = (worker.window.size, worker.links[0].session.prefetch)

    queue(gearmand, "varied", [b"x"] * 100 + [b"slow"] + [b"x"] * 3)
    handles = [line.split("\t")[0] for line in gearmand.admin("show jobs")]
    worker = Worker([{"function_name": "varied", "function": varied}], servers=gearmand.address, burst=True,
                    prefetch_budget="20ms", on_event=on_event)
    worker.run()
    slow_handle = sorted(handles, key=lambda h: int(h.rsplit(":", 1)[1]))[100].encode()
    before = [w for h, w in windows.items() if int(h.rsplit(b":", 1)[1]) < int(slow_handle.rsplit(b":", 1)[1])]
    assert max(size for size, _ in before) == AUTO_MAX
    assert windows[slow_handle] == (1, 1)  # the window and the connection's share: 1, at once


def test_the_client_id_says_auto_only_while_the_window_is_wider_than_one(gearmand: Gearmand) -> None:
    seen: dict[str, str] = {}

    def client_id() -> str:
        line = next(w for w in gearmand.admin("workers") if w.endswith(" : tagged"))
        return line.split(" : ")[0].split()[-1]

    def tagged(job):  # type: ignore[no-untyped-def]
        what = job.workload().decode()
        if what in ("first", "later"):  # sent before the grabs that brought these jobs: in place
            seen[what] = client_id()
        elif what == "after-slow":  # may have been held before slow ended: its new id may be on its way
            with contextlib.suppress(AssertionError):
                wait_until(lambda: client_id() == "tagme", 10, what="the tag gone")
            seen[what] = client_id()
        elif what == "slow":
            time.sleep(0.2)

    queue(gearmand, "tagged", [b"first"] + [b"x"] * 50 + [b"later", b"slow", b"after-slow"])
    Worker([{"function_name": "tagged", "function": tagged}], servers=gearmand.address, burst=True,
           client_id="tagme").run()
    assert seen == {"first": "tagme", "later": "tagme/prefetch=auto", "after-slow": "tagme"}


def test_cli_refuses_a_bad_prefetch_with_one_line_and_exit_2(gearmand: Gearmand) -> None:
    for args, message in ((["--prefetch", "lots"], "--prefetch must be auto or a number of jobs, not 'lots'"),
                          (["--prefetch", "0"], "--prefetch must be auto or from 1 to 1000, not 0"),
                          (["--prefetch-budget", "0"], "--prefetch-budget must be more than 0")):
        result = gearctl("worker", "-p", str(PLUGINS), "-s", gearmand.address, "--burst", *args)
        assert result.returncode == 2, args
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gearctl: ") and message in lines[0], lines


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_debug_start_lines_say_how_long_each_job_was_held(gearmand: Gearmand, procs: Procs, fmt: str) -> None:
    queue(gearmand, "reverse", [b"abc", b"def"])
    result = gearctl("worker", "-p", str(PLUGINS), "-f", "reverse", "-s", gearmand.address, "--burst",
                     "--log-level", "debug", "--log-format", fmt)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    if fmt == "json":
        starts = [doc for doc in map(json.loads, lines) if doc.get("event") == "start"]
        assert len(starts) == 2
        assert all(isinstance(doc["held"], float) and 0 <= doc["held"] < 60 for doc in starts)
        assert all(doc["function"] == "reverse" and doc["handle"].startswith("H:") for doc in starts)
    else:
        starts = [line for line in lines if " started (held " in line]
        assert len(starts) == 2 and all(line.split(" DEBUG job H:")[0] for line in starts)
        assert all(line.endswith("s)") for line in starts)


class ScriptedJobs:
    """A scripted server's talk: 100 quick `q` jobs, then in one write one more
    `q` job and a `hold` job; NO_JOB after. It notes whether the last quick job's
    WORK_COMPLETE came before `release` was set (by it, or by a timeout)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.done_before_release: list[bool] = []
        self.jobs = [b"warm-%d" % i for i in range(100)]
        self.handed = 0

    def answer(self, packet: Packet) -> bytes:
        if packet.type is P.ECHO_REQ:
            return encode(P.ECHO_RES, packet.args[0], magic=Magic.RES)
        if packet.type is P.WORK_COMPLETE and packet.args[0] == b"H:fake:last":
            self.done_before_release.append(not self.release.is_set())
            self.release.set()
        if packet.type is not P.GRAB_JOB_UNIQ:
            return b""
        self.handed += 1
        if self.handed <= len(self.jobs):
            return encode(P.JOB_ASSIGN_UNIQ, b"H:fake:%d" % self.handed, b"q", b"", self.jobs[self.handed - 1],
                          magic=Magic.RES)
        if self.handed == len(self.jobs) + 1:  # the pair in one write: both ready in the worker at once
            return (encode(P.JOB_ASSIGN_UNIQ, b"H:fake:last", b"q", b"", b"last", magic=Magic.RES)
                    + encode(P.JOB_ASSIGN_UNIQ, b"H:fake:hold", b"hold", b"", b"", magic=Magic.RES))
        return encode(P.NO_JOB, magic=Magic.RES)

    def talk(self, conn: socket.socket, stop: threading.Event) -> None:
        decoder = Decoder(expect=Magic.REQ)
        conn.settimeout(0.2)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            decoder.feed(data)
            out = b"".join(self.answer(packet) for packet in decoder)
            if out:
                conn.sendall(out)


def test_replies_of_quick_jobs_leave_before_a_job_that_may_take_long() -> None:
    """gearmand cannot be made to hand out two functions' jobs in a chosen order,
    so a scripted server does (ScriptedJobs). Without the flush the last quick
    job's reply would sit in the worker's outbox until the blocking job ends, and
    it would come after the 15 s timeout released it."""
    script = ScriptedJobs()

    def hold(job):  # type: ignore[no-untyped-def]
        if not script.release.wait(15):  # set once the quick job's WORK_COMPLETE is in
            script.release.set()  # it was not: the reply came after the release

    with FakeServer(script.talk) as server:
        worker = Worker([{"function_name": "q", "function": lambda job: None},
                         {"function_name": "hold", "function": hold}], servers=server.address, burst=True)
        worker.run()
    assert script.done_before_release == [True]
    assert worker.stats.done == 102


class SilentFarewell:
    """A scripted server's talk: four jobs for four grabs, the ECHO_REQ of the
    probe answered, the goodbye's left unanswered. It notes what came before
    the goodbye, and how long after it the worker closed."""

    def __init__(self) -> None:
        self.before_goodbye: list[PacketType] = []
        self.goodbye_at = 0.0
        self.closed_after = -1.0

    def talk(self, conn: socket.socket, stop: threading.Event) -> None:
        decoder, seen, handed = Decoder(expect=Magic.REQ), [], 0
        conn.settimeout(30)
        while not stop.is_set():
            data = conn.recv(65536)
            if not data:
                self.closed_after = time.monotonic() - self.goodbye_at
                return
            decoder.feed(data)
            for packet in decoder:
                seen.append(packet.type)
                if packet.type is P.ECHO_REQ and not self.goodbye_at and seen.count(P.ECHO_REQ) == 1:
                    conn.sendall(encode(P.ECHO_RES, packet.args[0], magic=Magic.RES))
                elif packet.type is P.ECHO_REQ:
                    self.before_goodbye, self.goodbye_at = seen[:-1], time.monotonic()
                elif packet.type is P.GRAB_JOB_UNIQ and handed < 4:
                    handed += 1
                    conn.sendall(encode(P.JOB_ASSIGN_UNIQ, b"H:fake:%d" % handed, b"q", b"", b"x", magic=Magic.RES))


def test_a_recycling_worker_closes_only_once_the_server_took_its_last_reply() -> None:
    """A socket closed with unread JOB_ASSIGNs is reset, and gearmand then
    re-queued the last job a recycling worker had completed, which ran twice
    (seen in CI). So the worker writes an ECHO_REQ after its replies and closes
    when the echo is back; a server that never answers is waited for no longer
    than --connect-timeout (a lower bound, safe on a slow machine)."""
    script = SilentFarewell()
    with FakeServer(script.talk) as server:
        worker = Worker([{"function_name": "q", "function": lambda job: None}], servers=server.address,
                        prefetch=4, max_jobs=1, connect_timeout=1.0)
        worker.run()
        wait_until(lambda: script.closed_after >= 0, 30, what="the worker to close")
    assert worker.stats.done == 1
    assert script.before_goodbye[-1] is P.WORK_COMPLETE
    assert script.closed_after >= 0.9
