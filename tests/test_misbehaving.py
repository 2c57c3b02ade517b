"""Issue 11's misbehaving servers: every command that talks to a server, pointed
at a loopback port that answers with garbage, a truncated packet, a header
claiming a 4 GB body, one byte a second, nothing at all, an unknown packet type,
or half a reply. Each ends with its documented exit code and one clear line,
within a small multiple of its timeout, and never allocates the claimed size."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import clean_env, free_port
from fake_server import FOUR_GB, MISBEHAVIOURS, FakeServer, header

import gearctl
from gearctl.errors import RemoteProtocolError
from gearctl.protocol import DEFAULT_MAX_PACKET, Decoder, Magic

PLUGINS = Path(__file__).parent / "plugins"
HAS_DEAD = (Path(gearctl.__file__).parent / "cli" / "dead.py").exists()
TIMEOUT = 2.0  # --connect-timeout/--io-timeout at half of it
LONGER = 2 * TIMEOUT  # --timeout: past those (a slow machine must not turn a silence into a timeout)
BOUND = 4 * LONGER + 20  # 4x the timeout plus a slow machine's interpreter start-up
RSS_LIMIT_MB = 500  # the 4 GB header must never be believed


@dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: bytes
    stdout: bytes
    seconds: float
    peak_rss_mb: float  # the process's and its children's (the worker's processes)


def run(argv: list[str]) -> Ran:
    """gearctl in a subprocess, timed, with its peak RSS from wait4 (its own and
    its reaped children's: a worker's processes count)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "gearctl", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    hung = threading.Timer(60, proc.kill)  # a hang fails the test below, it does not hang pytest
    hung.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        hung.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(10)
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        pipe.close()
    seconds = time.monotonic() - started
    assert seconds < 60, f"gearctl {' '.join(argv)} hung until killed"
    return Ran(proc.returncode, b"".join(err), b"".join(out), seconds, usage.ru_maxrss / 1024)


COMMANDS: dict[str, list[str]] = {
    "client": ["client", "f", "--data", "x", "--timeout", str(LONGER)],
    "client-wait": ["client", "f", "--data", "x", "--wait", "--timeout", str(LONGER)],
    "status": ["status", "--timeout", str(LONGER)],
    "worker-burst": ["worker", "-p", str(PLUGINS), "--burst", "--log-level", "warning",
                     "--connect-timeout", str(TIMEOUT / 2)],
    "dead-list": ["dead", "list", "--timeout", str(LONGER)],
}


def bounds(case: str, command: str) -> list[str]:
    """--connect-timeout and --io-timeout of 1s; for one byte a second, whose gaps
    a loaded machine may stretch past 1s, long ones: there --timeout must end it."""
    if command == "worker-burst":
        return []
    io = "30" if case == "one-byte-a-second" else str(TIMEOUT / 2)
    return ["--connect-timeout", str(TIMEOUT / 2), "--io-timeout", io]


def dripped_side_by_side(argvs: dict[str, list[str]]) -> tuple[dict[str, Ran], str]:
    """Each command line (with `-s` the server added) against one server that sends
    one byte a second, all at once (a FakeServer thread each): the runs, by name, and
    the server's address. Only for runs that nothing but --timeout can end, however
    slow the machine: N waits then take the time of one."""
    ran: dict[str, Ran] = {}
    with FakeServer(MISBEHAVIOURS["one-byte-a-second"]) as fake:
        def one(name: str) -> None:
            ran[name] = run([*argvs[name], "-s", fake.address])

        threads = [threading.Thread(target=one, args=(name,)) for name in argvs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    return ran, fake.address


class SideBySide:
    """The one-byte-a-second runs of client, client-wait, status and dead-list (with
    --io-timeout 30 only --timeout, 4s, ends each), run side by side the first time
    one is asked for; each test checks its own."""

    COMMANDS = ("client", "client-wait", "status", "dead-list")

    def __init__(self) -> None:
        self.ran: dict[str, Ran] = {}

    def get(self, command: str) -> Ran:
        if not self.ran:
            self.ran, _ = dripped_side_by_side({c: [*COMMANDS[c], *bounds("one-byte-a-second", c)]
                                                for c in self.COMMANDS})
        return self.ran[command]


@pytest.fixture(scope="module")
def side_by_side() -> SideBySide:
    return SideBySide()


def ran_against(case: str, command: str, side_by_side: SideBySide) -> Ran:
    if case == "one-byte-a-second":
        return side_by_side.get(command)
    with FakeServer(MISBEHAVIOURS[case]) as fake:
        return run([*COMMANDS[command], *bounds(case, command), "-s", fake.address])


# What each command says, and its exit code (README): 7 the peer spoke nonsense,
# 3 no server (it went away, or stayed silent past --io-timeout), 4 --timeout.
CLIENT: dict[str, tuple[int, str]] = {
    "garbage": (7, r"bad magic"),
    "truncated": (3, r"connection lost|not connected"),
    "four-gb-header": (7, r"declares 4294967295 bytes, over the limit"),
    "one-byte-a-second": (4, r"timed out"),
    "silent": (3, r"no reply within 1s \(--io-timeout\)"),
    "unknown-packet-type": (7, r"unknown packet type 999"),
    "closes-mid-reply": (3, r"connection lost"),
}
STATUS: dict[str, tuple[int, str]] = {
    "garbage": (3, r"no answer to 'status' within 1s"),
    # A close with our request still unread in the server's buffer is a reset: either is that fault, told.
    "truncated": (3, r"closed the connection: not a gearmand admin port|connection reset by peer"),
    "four-gb-header": (7, r"admin reply line longer than 1048576 bytes: not gearmand"),
    "one-byte-a-second": (4, r"timed out after 4s \(--timeout\) talking to"),
    "silent": (3, r"no answer to 'status' within 1s"),
    "unknown-packet-type": (3, r"no answer to 'status' within 1s"),
    "closes-mid-reply": (3, r"closed the connection: not a gearmand admin port|connection reset by peer"),
}
WORKER: dict[str, str] = {  # --burst: exit 3 (no server to drain from), the cause logged once
    "garbage": r"bad magic",
    "truncated": r"connection lost",
    "four-gb-header": r"over the limit",
    "one-byte-a-second": r"no answer to the probe within 1s \(--connect-timeout\)",
    "silent": r"no answer to the probe within 1s \(--connect-timeout\)",
    "unknown-packet-type": r"unknown packet type 999",
    "closes-mid-reply": r"connection lost",
}


def one_clear_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gearctl: "), stderr
    assert "Traceback" not in lines[0]
    return lines[0]


def bounded(ran: Ran) -> None:
    assert ran.seconds < BOUND, f"took {ran.seconds:.1f}s, over {BOUND}s"
    assert ran.peak_rss_mb < RSS_LIMIT_MB, f"peak RSS {ran.peak_rss_mb:.0f} MB"


@pytest.mark.parametrize("case", list(MISBEHAVIOURS))
@pytest.mark.parametrize("command", ["client", "client-wait"])
def test_client_ends_with_its_code_and_one_line(case: str, command: str, side_by_side: SideBySide) -> None:
    ran = ran_against(case, command, side_by_side)
    code, said = CLIENT[case]
    assert ran.returncode == code, ran
    assert re.search(said, one_clear_line(ran.stderr)), ran.stderr
    assert ran.stdout == b""  # no handle printed: a failed submit never reports success
    bounded(ran)


@pytest.mark.parametrize("case", list(MISBEHAVIOURS))
def test_status_ends_with_its_code_and_one_line(case: str, side_by_side: SideBySide) -> None:
    ran = ran_against(case, "status", side_by_side)
    code, said = STATUS[case]
    assert ran.returncode == code, ran
    line = one_clear_line(ran.stderr)
    assert re.search(said, line) and ("no job server answered" in line or code == 4), line
    bounded(ran)


@pytest.mark.parametrize("case", list(MISBEHAVIOURS))
def test_a_burst_worker_exits_3_naming_the_fault(case: str) -> None:
    with FakeServer(MISBEHAVIOURS[case]) as fake:
        ran = run([*COMMANDS["worker-burst"], "-s", fake.address])
        assert fake.connections >= 1
    assert ran.returncode == 3, ran
    # A worker logs: at --log-level warning, the fault once and the verdict once.
    lines = ran.stderr.decode(errors="replace").splitlines()
    assert len(lines) == 2, ran.stderr
    assert "WARNING" in lines[0] and re.search(WORKER[case], lines[0]), lines
    assert "ERROR no job server reachable" in lines[1], lines
    assert "Traceback" not in ran.stderr.decode(errors="replace")
    bounded(ran)


@pytest.mark.skipif(not HAS_DEAD, reason="gearctl dead is the dead helper's (gearctl/cli/dead.py), not there yet")
@pytest.mark.parametrize("case", list(MISBEHAVIOURS))
def test_dead_list_ends_with_its_code_and_one_line(case: str, side_by_side: SideBySide) -> None:
    ran = ran_against(case, "dead-list", side_by_side)
    assert ran.returncode in (3, 4, 7), ran
    one_clear_line(ran.stderr)
    bounded(ran)


DRIPPED = ["status", "workers", "jobs", "ping", "version", "cancel", "drop", "job"]


def test_timeout_bounds_every_command_whose_server_drips_forever() -> None:
    # One byte a second is never silent for --io-timeout (60 here) and --connect-timeout
    # is long too: only --timeout ends it, with exit 4; the commands run side by side.
    args = {"cancel": ["H:x:1"], "drop": ["f"], "job": ["H:x:1"]}
    ran, address = dripped_side_by_side({
        command: [command, *args.get(command, []), "--connect-timeout", "60", "--io-timeout", "60",
                  "--timeout", str(TIMEOUT)] for command in DRIPPED})
    assert sorted(ran) == sorted(DRIPPED)
    for command in DRIPPED:
        assert ran[command].returncode == 4, (command, ran[command])
        line = one_clear_line(ran[command].stderr)
        assert f"timed out after {TIMEOUT:g}s (--timeout) talking to {address}" in line, (command, line)
        bounded(ran[command])


def test_check_says_unknown_when_timeout_runs_out() -> None:
    with FakeServer(MISBEHAVIOURS["one-byte-a-second"]) as fake:
        ran = run(["check", "-s", fake.address, "--connect-timeout", "60", "--io-timeout", "60",
                   "--timeout", str(TIMEOUT)])
    assert ran.returncode == 3, ran  # Nagios UNKNOWN: the check could not run
    assert ran.stdout.startswith(b"GEARMAN UNKNOWN - timed out after 2s (--timeout)"), ran.stdout
    bounded(ran)


@pytest.mark.parametrize(("argv", "flag"), [
    (["client", "f", "--data", "x", "--timeout", "5x"], "--timeout"),
    (["client", "f", "--in", "5x"], "--in"),
    (["worker", "-p", str(PLUGINS), "--max-lifetime", "5x"], "--max-lifetime"),
    (["worker", "-p", str(PLUGINS), "--graceful-timeout", "5x"], "--graceful-timeout"),
    (["worker", "-p", str(PLUGINS), "--prefetch-budget", "5x"], "--prefetch-budget"),
    (["server", "--graceful-timeout", "5x"], "--graceful-timeout"),
])
def test_a_bad_duration_names_its_flag(argv: list[str], flag: str) -> None:
    ran = run([*argv, *(["--port", str(free_port())] if argv[0] == "server" else ["-s", "127.0.0.1:1"])])
    assert (ran.returncode, ran.stderr.decode()) == (
        2, f"gearctl: {flag}: cannot read duration '5x'; use e.g. 30s, 5m, 1h30m, 2d\n")


def test_timeout_is_a_duration() -> None:
    ran = run(["status", "--timeout", "soon"])
    assert ran.returncode == 2
    assert "--timeout: cannot read duration 'soon'" in one_clear_line(ran.stderr)  # it names the flag


def test_timeout_is_in_the_help_of_every_command_that_talks_to_servers() -> None:
    from typer.main import get_command

    from gearctl.cli import app, load_commands

    load_commands()  # main() registers only the command it runs
    group = get_command(app)
    offered = {name for name, cmd in group.commands.items()  # type: ignore[attr-defined]
               if any("--timeout" in p.opts for p in cmd.params)}
    talking = {name for name, cmd in group.commands.items()  # type: ignore[attr-defined]
               if any("--servers" in p.opts for p in cmd.params)}
    # worker serves until stopped (--burst ends it), exporter serves metrics: no overall bound.
    assert talking - offered == {"worker", "exporter"}, talking - offered


def test_the_decoder_refuses_a_4gb_header_without_allocating_it() -> None:
    decoder = Decoder(Magic.RES)
    decoder.feed(header(8, FOUR_GB) + b"H:x:1\0")
    with pytest.raises(RemoteProtocolError, match="declares 4294967295 bytes, over the limit of 1073741824"):
        decoder.next()
    assert decoder.pending < 100  # it kept what came, not what was claimed
    assert DEFAULT_MAX_PACKET <= 1 << 30


@pytest.mark.parametrize("helper", ["wait_at_most", "within"])
def test_a_cancel_that_comes_as_the_wait_ends_is_not_lost(helper: str) -> None:
    # asyncio.wait_for before Python 3.12 returned the result instead: a command's
    # --timeout (a cancel) then waited as long as the server kept dripping bytes.
    import asyncio

    from gearctl.deadlines import deadline_after, wait_at_most, within

    async def main() -> str:
        read: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting = (wait_at_most(read, 60) if helper == "wait_at_most"
                   else within(read, deadline_after(60), "reading"))
        task = asyncio.ensure_future(waiting)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        read.set_result(b"x")  # a byte arrives...
        task.cancel()  # ...as the deadline cancels, before the task runs again
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "lost"

    assert asyncio.run(main()) == "cancelled"


def test_wait_at_most_times_out_and_cancels_what_it_waited_for() -> None:
    import asyncio

    from gearctl.deadlines import wait_at_most

    async def main() -> tuple[bool, bool]:
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timed_out = False
        try:
            await wait_at_most(never, 0.01)
        except asyncio.TimeoutError:
            timed_out = True
        return timed_out, never.cancelled()

    assert asyncio.run(main()) == (True, True)
    assert asyncio.run(wait_at_most(asyncio.sleep(0, "done"), 5)) == "done"  # type: ignore[arg-type]
