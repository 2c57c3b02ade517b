"""A worker never dies on a job, never busy-loops on a bad server, and stops when told."""

from __future__ import annotations

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
from conftest import Gearmand, Procs, gearctl, wait_until

PLUGINS = Path(__file__).parent / "plugins_misbehave"
GEARCTL = [sys.executable, "-m", "gearctl"]


def start(procs: Procs, servers: str, *args: str, plugin_dir: Path = PLUGINS) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARCTL_")}
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


@pytest.mark.parametrize("function", ["swallows_everything", "blocks_the_loop", "grandchild"])
def test_timeouts_hold_for_uncooperative_functions(gearmand: Gearmand, procs: Procs, function: str) -> None:
    start(procs, gearmand.address)
    wait_until(lambda: gearmand.status().get("echo", (0, 0, 0))[2] >= 1, 15, what="the worker")
    started = time.monotonic()
    result = gearctl("client", function, "--wait", "-s", gearmand.address, timeout=30)
    assert result.returncode == 1 and b"timed out after 1s" in result.stderr
    assert time.monotonic() - started < 6
    assert gearctl("client", "echo", "--wait", "--data", "alive", "-s", gearmand.address).stdout == b"alive"


def test_sigterm_does_not_start_prefetched_jobs(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    plugin = tmp_path / "slow.py"
    plugin.write_text("import time\nfrom gearctl import job\n\n@job\ndef slow3(j):\n    time.sleep(3)\n")
    assert gearctl("client", "slow3", "-n", "-q", "-s", gearmand.address, input=b"1\n2\n3\n4\n5\n6\n").returncode == 0
    proc = start(procs, gearmand.address, "--prefetch", "4", plugin_dir=tmp_path)
    wait_until(lambda: gearmand.status().get("slow3", (0, 0, 0))[1] >= 1, 15, what="the first job")
    time.sleep(0.5)
    stopped = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 0
    assert time.monotonic() - stopped < 4.5  # one job finished, the three held were not run
    wait_until(lambda: gearmand.status()["slow3"][:2] == (5, 0), 10, what="five jobs back in the queue")


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
        time.sleep(4)
        assert gearctl("client", "echo", "--wait", "--data", "ok", "-s", gearmand.address).stdout == b"ok"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert 1 <= len(accepts) <= 8  # back-off: 0.5, 1, 2, 4 s ... not thousands


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
