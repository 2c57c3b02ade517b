"""A worker never dies on a job, never busy-loops on a bad server, and stops when told."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, Terminal, clean_env, gearctl, wait_until, worker_processes

PLUGINS = Path(__file__).parent / "plugins_misbehave"
LIVE_PLUGINS = Path(__file__).parent / "plugins_live"
GEARCTL = [sys.executable, "-m", "gearctl"]


def start(procs: Procs, servers: str, *args: str, plugin_dir: Path = PLUGINS,
          release: Path | None = None) -> subprocess.Popen:
    """A worker; `release` is the file that lets plugins_misbehave/held.py's functions end."""
    env = clean_env(GEARCTL_TEST_RELEASE=str(release)) if release else clean_env()
    return procs.start([*GEARCTL, "worker", "-p", str(plugin_dir), "-s", servers, *args], env=env)


@pytest.mark.parametrize(("function", "data", "text"), [
    ("calls_exit", "3", b"SystemExit: 3"),
    ("calls_exit", "0", b"SystemExit"),
    ("raises_interrupt", "", b"KeyboardInterrupt"),
    ("raises_timeout_error", "", b"TimeoutError: the database did not answer"),
    ("raises_cancelled", "", b"CancelledError"),
])
def test_whatever_a_job_raises_fails_only_the_job(gearmand: Gearmand, procs: Procs, function: str, data: str,
                                                  text: bytes) -> None:
    start(procs, gearmand.address)
    wait_until(lambda: gearmand.status().get("echo", (0, 0, 0))[2] >= 1, 15, what="the worker")
    result = gearctl("client", function, "--wait", "--data", data, "-s", gearmand.address, timeout=30)
    assert result.returncode == 5, result.stderr
    assert text in result.stderr
    assert gearctl("client", "echo", "--wait", "--data", "alive", "-s", gearmand.address).stdout == b"alive"


# The *_until_released functions run until the test releases them (at most 120 s):
# a "timed out" reply within the client's 60 s can only be the timeout holding,
# however slow the machine. blocks_the_loop blocks the event loop for 2 s, so its
# timeout can only be reported once it returns; its reply says "timed out", not "late".
@pytest.mark.parametrize("function", ["swallows_until_released", "blocks_the_loop", "grandchild_until_released"])
def test_timeouts_hold_for_uncooperative_functions(gearmand: Gearmand, procs: Procs, tmp_path: Path,
                                                   function: str) -> None:
    release = tmp_path / "release"
    start(procs, gearmand.address, release=release)
    wait_until(lambda: gearmand.status().get("echo", (0, 0, 0))[2] >= 1, 15, what="the worker")
    try:
        result = gearctl("client", function, "--wait", "-s", gearmand.address, timeout=60)
        assert result.returncode == 1 and b"timed out after 1s" in result.stderr
        assert gearctl("client", "echo", "--wait", "--data", "alive", "-s", gearmand.address).stdout == b"alive"
    finally:
        release.touch()


def test_sigterm_does_not_start_prefetched_jobs(gearmand: Gearmand, tmp_path: Path) -> None:
    # Six plain jobs held open by the test (plugins_live `hold` runs until its
    # workload's file exists); the worker runs one and holds three (--prefetch 4).
    release = tmp_path / "release"
    assert gearctl("client", "hold", "-n", "-q", "-s", gearmand.address,
                   input=f"{release}\n".encode() * 6).returncode == 0
    with Terminal(["worker", "-p", str(LIVE_PLUGINS), "--functions", "hold", "--prefetch", "4",
                   "-s", gearmand.address]) as term:
        wait_until(lambda: gearmand.status().get("hold", (0, 0, 0))[:2] == (6, 4), 30,
                   what="one job running and three held by the worker")
        # Handed out is not started: the process must say it is busy with the first
        # one, or the SIGTERM could come before it and all four would go back.
        term.wait_for(lambda t: [r[1] for r in worker_processes(t.frame("gearctl worker"))] == ["busy"],
                      what="the worker process running its first job")
        os.kill(term.proc.pid, signal.SIGTERM)
        # The live table shows the process's own report: it has taken the SIGTERM.
        term.wait_for(lambda t: [r[1] for r in worker_processes(t.frame("gearctl worker"))] == ["stopping"],
                      what="the worker process stopping")
        release.touch()  # from now on a started job ends at once: any prefetched one run would leave the queue
        assert term.proc.wait(60) == 0
    wait_until(lambda: gearmand.status()["hold"][:2] == (5, 0), 30, what="five jobs back in the queue")


def test_a_server_that_hangs_up_gets_backed_off(gearmand: Gearmand, procs: Procs) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepts = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepts.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        start(procs, f"127.0.0.1:{listener.getsockname()[1]},{gearmand.address}")
        wait_until(lambda: gearmand.status().get("echo", (0, 0, 0))[2] >= 1, 15, what="the worker")
        wait_until(lambda: len(accepts) >= 4, 60, what="four connections to the server that hangs up")
        assert gearctl("client", "echo", "--wait", "--data", "ok", "-s", gearmand.address).stdout == b"ok"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    # Back-off of 0.5, 1, 2 s, each +-20 %: lower bounds on the gaps, which a slow
    # machine only widens. A worker reconnecting at once would show gaps of milliseconds.
    gaps = [later - earlier for earlier, later in itertools.pairwise(accepts)]
    assert gaps[0] >= 0.35 and gaps[1] >= 0.7 and gaps[2] >= 1.4, gaps


def test_children_stop_when_the_supervisor_is_killed(gearmand: Gearmand, procs: Procs) -> None:
    proc = start(procs, gearmand.address, "--concurrency", "2")
    wait_until(lambda: gearmand.status().get("echo", (0, 0, 0))[2] == 2, 15, what="two workers")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    wait_until(lambda: gearmand.status()["echo"][2] == 0, 15, what="the orphaned workers to leave")


def test_plugin_prints_do_not_reach_stdout() -> None:
    listing = gearctl("functions", "-p", str(PLUGINS), "--json")
    assert listing.returncode == 0
    assert "talks" in {f["name"] for f in json.loads(listing.stdout)["functions"]}
    assert b"a plugin printing at import" in listing.stderr
    ran = gearctl("run", "talks", "-p", str(PLUGINS))
    assert ran.stdout == b"result"
    assert b"printed by the job" in ran.stderr


def test_plugin_dir_flag_replaces_the_environment(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "echo.py").write_text("from gearctl import job\n\n@job\ndef echo(j):\n    return b'other'\n")
    result = gearctl("run", "echo", "-p", str(PLUGINS), "--data", "mine", env={"GEARCTL_PLUGIN_PATH": str(other)})
    assert result.returncode == 0 and result.stdout == b"mine"


def test_decorator_and_hook_disagreeing_is_a_conflict(tmp_path: Path) -> None:
    (tmp_path / "both.py").write_text(
        "from gearctl import job\n\n@job('dup', timeout=5)\ndef f(j):\n    return b''\n\n"
        "def gearman_functions():\n    return [{'function_name': 'dup', 'function': f, 'timeout': 60}]\n")
    result = gearctl("run", "dup", "-p", str(tmp_path))
    assert result.returncode == 2 and b"more than once" in result.stderr


def test_empty_functions_flag_is_refused(gearmand: Gearmand) -> None:
    result = gearctl("worker", "-p", str(PLUGINS), "--functions", " , ", "-s", gearmand.address)
    assert result.returncode == 2 and b"--functions is empty" in result.stderr
