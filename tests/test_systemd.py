"""systemd: the notify protocol (sdnotify.py), what is sent when (systemd.py),
`gearctl worker` under a fake NOTIFY_SOCKET, journald log lines, and a lint of
the example units."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Embedded, Procs, clean_env, free_port, gearctl, wait_until

from gearctl import logs, sdnotify
from gearctl.supervision import ChildReport, ChildState, decode, encode
from gearctl.supervisor import ChildProcess
from gearctl.systemd import CRASH_LOOP, STALE, STATUS_GAP, PoolView, ProcessView, SystemdState, ready, unhealthy
from gearctl.workerstats import ServerState

UNITS = Path(__file__).parent.parent / "examples" / "systemd"
GEARCTL = [sys.executable, "-m", "gearctl"]

PLUGIN = '''
import os
from gearctl import job

@job
def notify_env(j):
    """What a worker process sees of systemd's variables."""
    return ",".join(os.environ.get(name, "unset") for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC"))
'''

# Imported by the command (to check the functions) and then by each worker
# process: the first import leaves a mark, every later one dies at once.
CRASHING_PLUGIN = '''
import os
import signal
from pathlib import Path
from gearctl import job

MARK = Path(__file__).with_name("imported")
if MARK.exists():
    os.kill(os.getpid(), signal.SIGKILL)
MARK.touch()

@job
def doomed(j):
    return b""
'''


# -- sdnotify: the datagrams ---------------------------------------------------------
@pytest.fixture
def datagram_path() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket at a short path (sun_path holds 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="gearctl-sd-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()
    shutil.rmtree(folder)


def test_a_notifier_sends_one_datagram_to_a_path(datagram_path: tuple[socket.socket, str]) -> None:
    sock, path = datagram_path
    notifier = sdnotify.Notifier(path)
    assert notifier.enabled and notifier.send("READY=1", "STATUS=1 process")
    assert sock.recv(4096) == b"READY=1\nSTATUS=1 process"
    notifier.close()


def test_a_notifier_sends_to_an_abstract_socket_named_with_an_at() -> None:
    name = f"gearctl-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = sdnotify.Notifier("@" + name)
        assert notifier.send("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent_and_a_failed_send_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not sdnotify.Notifier(None).enabled
    assert sdnotify.Notifier(None).send("READY=1") is False
    gone = sdnotify.Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.DEBUG, logger="gearctl.sdnotify"):
        assert gone.send("READY=1") is False
        assert gone.send("STATUS=x") is False  # never raises
    gone.close()
    assert [r.levelno for r in caplog.records if r.name == "gearctl.sdnotify"] == [logging.DEBUG]


def test_from_environment_takes_the_variables_out_and_halves_the_watchdog() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "42", "PATH": "/bin"}
    notifier, interval = sdnotify.from_environment(env, pid=42)
    assert notifier.address == "@x" and interval == pytest.approx(0.2)
    assert env == {"PATH": "/bin"}  # the worker processes must not talk to systemd
    assert sdnotify.from_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "7"},
                                     pid=42)[1] is None  # another process's watchdog
    assert sdnotify.from_environment({"WATCHDOG_USEC": "0"})[1] is None
    assert sdnotify.from_environment({"WATCHDOG_USEC": "soon"})[1] is None
    kept = {"NOTIFY_SOCKET": "@x"}
    assert not sdnotify.from_environment({})[0].enabled
    sdnotify.from_environment(kept, unset=False)
    assert kept == {"NOTIFY_SOCKET": "@x"}


# -- systemd.py: what is sent when, without processes ----------------------------------
def pool(*processes: ProcessView, slots: int = 1, **kwargs: object) -> PoolView:
    return PoolView(slots=slots, processes=processes, **kwargs)  # type: ignore[arg-type]


FINE = ProcessView(0, age=1.0, since_report=0.1, ready=True)


def test_ready_waits_for_every_slot_to_have_a_registered_process() -> None:
    assert not ready(pool(ProcessView(0, 1.0, 0.1, ready=False)))
    assert not ready(pool(FINE, slots=2))  # slot 1 has no process yet
    assert ready(pool(FINE, ProcessView(1, 1.0, 0.1, ready=True), slots=2))
    assert ready(pool(FINE, slots=2, finished=frozenset({1})))  # --burst: slot 1 drained and gone
    state = SystemdState()
    assert [a for a in state.update(pool(ProcessView(0, 0.5)), 0.0) if a == "READY=1"] == []
    assert state.update(pool(FINE), 1.0)[:2] == ["READY=1", "STATUS=1 process, 0 busy, 0 done, 0 failed"]
    assert "READY=1" not in state.update(pool(FINE), 2.0)  # once


def test_a_child_is_ready_once_it_tried_every_server_and_one_is_up() -> None:
    def child(*reports: dict[str, ServerState]) -> ChildProcess:
        proc = ChildProcess(pid=1, slot=0)
        for servers in reports:
            proc.apply(ChildReport(ChildState.IDLE, servers=servers))
        return proc

    up, down, connecting = ServerState.UP, ServerState.DOWN, ServerState.CONNECTING
    assert not child({"a": connecting, "b": connecting}).ready
    assert not child({"a": up, "b": connecting}).ready  # b is still on its first try
    assert child({"a": up, "b": down}).ready  # b refused: only a is reachable
    assert child({"a": up, "b": down}, {"a": up, "b": connecting}).ready  # b's retries do not hold READY
    assert not child({"a": down, "b": down}).ready  # none reachable: READY waits for the first up
    assert child({"a": down, "b": down}, {"a": up, "b": connecting}).ready


def test_a_report_carries_the_servers_states_through_the_pipe() -> None:
    report = ChildReport(ChildState.IDLE, servers={"h:4730": ServerState.UP, "[::1]:4730": ServerState.DOWN})
    assert decode(encode(report).rstrip(b"\n")) == report
    assert decode(encode(report).replace(b'"up"', b'"sideways"').rstrip(b"\n")) is None


def test_status_changes_are_sent_at_most_once_a_second() -> None:
    state = SystemdState()
    state.update(pool(FINE), 10.0)  # READY, with its status
    busy = pool(ProcessView(0, 1.0, 0.1, ready=True, busy=True), done=1)
    assert state.update(busy, 10.3) == []  # changed, too soon
    assert state.next_due(10.3) == pytest.approx(STATUS_GAP - 0.3)
    assert state.update(busy, 10.0 + STATUS_GAP) == ["STATUS=1 process, 1 busy, 1 done, 0 failed"]
    assert state.update(busy, 20.0) == [] and state.next_due(20.0) is None  # no change, nothing due


def test_a_status_that_changes_back_is_not_due_any_more() -> None:
    state = SystemdState()
    state.update(pool(FINE), 10.0)
    state.update(pool(FINE, done=1), 10.5)
    assert state.next_due(10.5) is not None
    assert state.update(pool(FINE), 10.6) == [] and state.next_due(10.6) is None


def test_the_watchdog_is_pinged_every_interval_while_healthy() -> None:
    state = SystemdState(watchdog=0.25)
    assert "WATCHDOG=1" in state.update(pool(ProcessView(0, 0.1)), 0.0)  # starting, within the grace
    assert "WATCHDOG=1" not in state.update(pool(FINE), 0.125)
    assert state.next_due(0.125) == pytest.approx(0.125)
    assert "WATCHDOG=1" in state.update(pool(FINE), 0.25)
    assert SystemdState().next_due(0.0) is None  # no watchdog, nothing due


def test_unhealthy_a_crash_loop_every_process_stale_or_none() -> None:
    assert unhealthy(pool(FINE)) == ""
    assert unhealthy(pool(FINE, crashes={0: CRASH_LOOP - 1})) == ""  # a crash or two: respawned
    assert "3 processes in a row died" in unhealthy(pool(ProcessView(0, 0.2), crashes={0: CRASH_LOOP}))
    assert "died" in unhealthy(pool(crashes={0: CRASH_LOOP}))  # waiting for its next respawn
    assert unhealthy(pool(ProcessView(0, 11.0, 0.1), crashes={0: CRASH_LOOP})) == ""  # the new one lived
    stale = ProcessView(0, 30.0, since_report=STALE + 0.5, ready=True)
    assert "reported" in unhealthy(pool(stale))  # stopped, or frozen where its reporter cannot run
    assert unhealthy(pool(stale, ProcessView(1, 30.0, 0.2), slots=2)) == ""  # one stuck job is not the unit's
    assert unhealthy(pool(ProcessView(0, 5.0), start_grace=60.0)) == ""  # still importing
    assert "reported" in unhealthy(pool(ProcessView(0, 61.0), start_grace=60.0))
    assert "no worker process" in unhealthy(pool())
    assert unhealthy(pool(crashes={0: 1}, respawning=frozenset({0}))) == ""  # a crash, its replacement due


def test_an_unhealthy_pool_stops_the_pings_and_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    state = SystemdState(watchdog=0.25)
    looping = pool(crashes={0: CRASH_LOOP})
    with caplog.at_level(logging.WARNING, logger="gearctl.systemd"):
        assert "WATCHDOG=1" in state.update(pool(FINE), 0.0)
        assert "WATCHDOG=1" not in state.update(looping, 0.25)
        assert "WATCHDOG=1" not in state.update(looping, 0.5)
        assert "WATCHDOG=1" in state.update(pool(FINE), 0.75)
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]
    assert "died within" in caplog.records[0].getMessage()


def test_reloading_then_ready_again_once_the_reload_is_over() -> None:
    state = SystemdState()
    state.update(pool(FINE), 0.0)
    assert state.reloading(pool(FINE), 1.0) == ["RELOADING=1", "STATUS=reloading: 1 process, 0 busy, 0 done, 0 failed"]
    assert "READY=1" not in state.update(pool(FINE, reload_pending=True), 1.5)
    assert state.update(pool(FINE), 2.0)[0] == "READY=1"


def test_stopping_is_sent_once_and_the_watchdog_goes_on_while_stopping() -> None:
    state = SystemdState(watchdog=0.25)
    state.update(pool(FINE), 0.0)
    assert state.stopping(pool(FINE), 1.0)[0] == "STOPPING=1"
    assert state.stopping(pool(), 1.1) == [] and state.reloading(pool(), 1.1) == []
    assert "WATCHDOG=1" in state.update(pool(), 1.2)  # its processes end on purpose


# -- journald -------------------------------------------------------------------------
def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("gearctl", level, __file__, 1, message, None, None)


def test_the_journal_formatter_puts_a_priority_on_every_line_and_no_time() -> None:
    journal = logs.TextFormatter(journal=True)
    assert journal.format(record(logging.ERROR, "boom\nTraceback:\n  x")) == "<3>boom\n<3>Traceback:\n<3>  x"
    assert journal.format(record(logging.WARNING, "w")) == "<4>w"
    assert journal.format(record(logging.INFO, "i")) == "<6>i"
    assert journal.format(record(logging.DEBUG, "d")) == "<7>d"
    assert logs.TextFormatter().format(record(logging.INFO, "i")).endswith(" INFO i")  # off the journal: as before


def test_under_journald_compares_journal_stream_with_the_fd(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as f, open(tmp_path / "other", "w") as other:
        st = os.fstat(f.fileno())
        assert logs.under_journald(f.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.under_journald(other.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.under_journald(f.fileno(), {})
        assert not logs.under_journald(f.fileno(), {"JOURNAL_STREAM": "garbage"})


# -- gearctl worker under a fake NOTIFY_SOCKET -------------------------------------------
class FakeSystemd:
    """The datagram socket NOTIFY_SOCKET names (abstract): what the worker sent, in order."""

    def __init__(self) -> None:
        self.address = f"@gearctl-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.lines: list[str] = []

    def receive(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        with contextlib.suppress(TimeoutError):
            self.lines += self.sock.recv(65536).decode().split("\n")

    def wait_for(self, predicate: Callable[[list[str]], object], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {self.lines}")
            self.receive(min(left, 0.5))

    def drain(self) -> None:
        """Everything sent so far."""
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.lines += self.sock.recv(65536).decode().split("\n")

    def after(self, first: str, then: Callable[[str], bool]) -> bool:
        """A line matching `then` came after the first `first`."""
        return first in self.lines and any(then(line) for line in self.lines[self.lines.index(first) + 1:])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    yield fake
    fake.close()


def start_worker(procs: Procs, tmp_path: Path, systemd: FakeSystemd, plugin: str, servers: str,
                 *args: str, **env: str) -> tuple[subprocess.Popen, Path]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "p.py").write_text(plugin)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        if env.pop("journal", ""):
            st = os.fstat(out.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = procs.start([*GEARCTL, "worker", "-p", str(plugins), "-s", servers, *args], stderr=out,
                           env=clean_env(NOTIFY_SOCKET=systemd.address, **env))
    return proc, log


def test_worker_tells_systemd_ready_status_watchdog_and_stopping_and_logs_for_journald(
        procs: Procs, tmp_path: Path, systemd: FakeSystemd, embedded: Embedded) -> None:
    dead = f"127.0.0.1:{free_port()}"  # refuses: tried once, it does not hold READY back
    proc, log = start_worker(procs, tmp_path, systemd, PLUGIN, f"{embedded.address},{dead}",
                             WATCHDOG_USEC="400000", journal="1")
    systemd.wait_for(lambda lines: "READY=1" in lines, "READY=1")
    assert embedded.status()["notify_env"][2] == 1  # registered by the time READY is sent
    assert systemd.after("READY=1", lambda line: line == "STATUS=1 process, 0 busy, 0 done, 0 failed")
    done = gearctl("client", "notify_env", "--wait", "-s", embedded.address)
    assert done.returncode == 0 and done.stdout == b"unset,unset"  # the processes do not talk to systemd
    systemd.wait_for(lambda _: systemd.after("READY=1", lambda line: line.startswith("STATUS=") and "1 done" in line),
                     "STATUS= with the job done")
    systemd.wait_for(lambda lines: lines.count("WATCHDOG=1") >= 3, "three WATCHDOG=1")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0
    systemd.wait_for(lambda lines: "STOPPING=1" in lines, "STOPPING=1")
    lines = systemd.lines
    status_done = next(i for i, line in enumerate(lines) if line.startswith("STATUS=") and "1 done" in line)
    assert lines.index("READY=1") < status_done < lines.index("STOPPING=1")
    assert lines.count("READY=1") == 1 and lines.count("STOPPING=1") == 1

    text = [line for line in log.read_text().splitlines() if line]
    assert text and all(line[:1] == "<" and line[2:3] == ">" for line in text), text  # no timestamps
    assert any(line.startswith("<6>serving notify_env") for line in text)
    assert any(line.startswith("<6>job ") and "complete in" in line for line in text)  # a process's own line
    assert any(line.startswith("<4>SIGTERM: stopping") for line in text)


def test_sighup_sends_reloading_then_ready_once_the_new_processes_serve(
        procs: Procs, tmp_path: Path, systemd: FakeSystemd, embedded: Embedded) -> None:
    proc, _log = start_worker(procs, tmp_path, systemd, PLUGIN, embedded.address)
    systemd.wait_for(lambda lines: "READY=1" in lines, "READY=1")
    os.kill(proc.pid, signal.SIGHUP)
    systemd.wait_for(lambda _: systemd.after("RELOADING=1", lambda line: line == "READY=1"),
                     "RELOADING=1 then READY=1")
    assert systemd.lines.index("READY=1") < systemd.lines.index("RELOADING=1")
    os.kill(proc.pid, signal.SIGTERM)
    systemd.wait_for(lambda _: systemd.after("RELOADING=1", lambda line: line == "STOPPING=1"), "STOPPING=1")
    assert proc.wait(30) == 0


def test_a_crash_loop_stops_the_watchdog_pings(procs: Procs, tmp_path: Path, systemd: FakeSystemd) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # its processes die before they connect anyway
    proc, log = start_worker(procs, tmp_path, systemd, CRASHING_PLUGIN, nobody, WATCHDOG_USEC="400000")
    wait_until(lambda: "watchdog: not telling systemd" in log.read_text(), 30, what="the watchdog to stop")
    assert "processes in a row died within 10s of their start" in log.read_text()  # why, said once
    systemd.drain()  # the pings sent before it stopped
    assert "WATCHDOG=1" in systemd.lines  # they went out while the first process started
    pings = systemd.lines.count("WATCHDOG=1")
    deadline = time.monotonic() + 2.0  # ten intervals of 0.2 s
    while time.monotonic() < deadline:
        systemd.receive(max(0.01, deadline - time.monotonic()))
    assert systemd.lines.count("WATCHDOG=1") == pings
    assert "READY=1" not in systemd.lines  # it never served
    assert log.read_text().count("watchdog: not telling systemd") == 1
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0


# -- the example units ------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_example_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that each Exec path exists: point gearctl's at one that does.
    true = shutil.which("true") or "/bin/true"
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/gearctl/bin/gearctl", true)
        if not os.path.exists("/bin/kill"):
            text = text.replace("/bin/kill", true)
        (tmp_path / unit.name).write_text(text)
    names = ["gearctl-worker@notifications.service", "gearctl-submit-nightly.service", "gearctl-submit-nightly.timer"]
    assert {p.name for p in UNITS.iterdir()} == {"gearctl-worker@.service", *names[1:]}
    done = subprocess.run(["systemd-analyze", "verify", *(f"./{name}" for name in names)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # an unknown key is only a warning
    worker = (UNITS / "gearctl-worker@.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=",
                 "Restart=on-failure", "KillMode=mixed", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "DynamicUser=yes"):
        assert f"\n{line}" in worker, line
    stop = int(worker.split("\nTimeoutStopSec=")[1].split("s")[0])
    graceful = int(worker.split("--graceful-timeout ")[1].split("s")[0])
    assert stop > graceful  # the processes' running jobs end before systemd kills the group
