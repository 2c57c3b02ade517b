"""`gearctl server`, the command: the seed's job end to end on it (README's first
command, with examples/notifications), its start line, --pidfile, --store across a
restart, graceful SIGTERM, and bad flags with one line and exit 2. The server's
protocol is test_server.py's and test_serverstate.py's."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Procs, clean_env, gearctl, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "notifications"


class CliServer:
    """`gearctl server --port 0 ...` in a subprocess; its address from its start line."""

    def __init__(self, procs: Procs, log: Path, *args: str) -> None:
        with log.open("wb") as err:
            self.proc = procs.start([sys.executable, "-m", "gearctl", "server", "--port", "0", *args],
                                    stderr=err, env=clean_env())
        wait_until(lambda: log.read_bytes().endswith(b"\n") or self.proc.poll() is not None, 30, what="the start line")
        self.start_line = log.read_text().splitlines()[0]
        match = re.search(r"gearctl server: listening on (127\.0\.0\.1:(\d+))", self.start_line)
        assert match, self.start_line
        self.address, self.port = match.group(1), int(match.group(2))

    def stop(self) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def server(procs: Procs, tmp_path: Path) -> Iterator[CliServer]:
    yield CliServer(procs, tmp_path / "server.log")


def test_the_seeds_job_runs_end_to_end_on_the_embedded_server(server: CliServer, procs: Procs) -> None:
    assert "the queue is in memory" in server.start_line
    procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(EXAMPLE), "-s", server.address],
                env=clean_env())
    wait_until(lambda: "notifications_send_users" in gearctl("workers", "-s", server.address).stdout.decode(), 30,
               what="the example worker registered")
    result = gearctl("client", "notifications_send_users", "--wait", "-s", server.address,
                     "--data", '{"users": [3, 5, 8], "message": "hello"}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sent": 3, "message": "hello"}
    status = gearctl("status", "--json", "-s", server.address)
    assert status.returncode == 0, status.stderr
    assert server.stop() == 0


def test_pidfile_and_a_graceful_sigterm(procs: Procs, tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = CliServer(procs, tmp_path / "server.log", "--pidfile", str(pidfile))
    assert int(pidfile.read_text()) == server.proc.pid
    second = gearctl("server", "--port", "0", "--pidfile", str(pidfile))
    assert second.returncode == 2
    running = f"gearctl: pidfile {pidfile} names process {server.proc.pid}, which is running"
    assert second.stderr.decode().strip() == running
    assert server.stop() == 0
    assert not pidfile.exists()


def test_store_keeps_background_jobs_across_a_restart(procs: Procs, tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    first = CliServer(procs, tmp_path / "first.log", "--store", str(store))
    assert f"background jobs are stored in {store} (0 loaded)" in first.start_line
    assert gearctl("client", "later", "--data", "x", "-s", first.address).returncode == 0
    assert first.stop() == 0
    second = CliServer(procs, tmp_path / "second.log", "--store", str(store))
    assert "(1 loaded)" in second.start_line
    status = json.loads(gearctl("status", "--json", "-s", second.address).stdout)
    assert [(f["function"], f["queued"]) for f in status["functions"]] == [("later", 1)]
    assert second.stop() == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--log-format", "xml"], "gearctl: --log-format must be text or json, not 'xml'"),
    (["--log-level", "loud"], "gearctl: --log-level must be one of"),
    (["--graceful-timeout", "soon"], "gearctl: "),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = gearctl("server", "--port", "0", *args)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_a_port_in_use_exits_2_with_one_line(server: CliServer) -> None:
    result = gearctl("server", "--port", str(server.port))
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gearctl: ") and str(server.port) in lines[0], lines
