"""Every admin command gives up on a server that accepts and never answers
after --io-timeout, not after a fixed wait or --connect-timeout (issue 8, 5b)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import Procs, clean_env, free_port, gearctl, wait_until

# --connect-timeout 60 makes an implementation that waits on it (or on a fixed
# 5 s) fail clearly against the 20 s bound below; the work itself needs well
# under a second beyond interpreter start-up.
BOUNDS = ["--connect-timeout", "60", "--io-timeout", "0.3"]
GAVE_UP_WITHIN = 20.0


class SilentServer:
    """Accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        """What a connection gets: nothing, here."""

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class SlowServer(SilentServer):
    """Answers `status` (one function) and `workers` (none), a few bytes at a
    time, `gap` seconds apart: slower in all than --io-timeout, never silent
    that long."""

    ANSWERS = {b"status\n": [b"sl", b"ow\t", b"3\t", b"0\t", b"0\n", b".\n"], b"workers\n": [b".", b"\n"]}

    def __init__(self, gap: float) -> None:
        self.gap = gap
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        asked = b""
        try:
            while True:  # commands come after gearctl's binary SET_CLIENT_ID, one at a time
                command = next((c for c in self.ANSWERS if c in asked), None)
                if command is None:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    asked += chunk
                    continue
                asked = asked.replace(command, b"", 1)
                for piece in self.ANSWERS[command]:
                    time.sleep(self.gap)
                    conn.sendall(piece)
        except OSError:
            return


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.parametrize(("argv", "code"), [
    (["status"], 3),
    (["status", "--json"], 3),
    (["workers"], 3),
    (["jobs"], 3),
    (["jobs", "--unique"], 3),
    (["job", "H:nowhere:1"], 3),
    (["job", "H:nowhere:1", "--watch"], 3),
    (["cancel", "H:nowhere:1"], 3),
    (["drop", "nothing"], 3),
])
def test_admin_commands_give_up_after_the_io_timeout(silent: SilentServer, argv: list[str], code: int) -> None:
    started = time.monotonic()
    result = gearctl(*argv, "-s", silent.address, *BOUNDS, timeout=40)
    elapsed = time.monotonic() - started
    assert result.returncode == code, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gearctl: ") and silent.address in lines[0], lines
    assert "0.3s" in lines[0]
    assert elapsed < GAVE_UP_WITHIN


@pytest.mark.parametrize(("argv", "code", "down"), [
    (["version"], 3, b"down: "),
    (["ping"], 3, b"\tdown\t"),
    (["check"], 2, b"GEARMAN CRITICAL - "),
])
def test_reporting_commands_show_the_server_down_after_the_io_timeout(silent: SilentServer, argv: list[str],
                                                                       code: int, down: bytes) -> None:
    started = time.monotonic()
    result = gearctl(*argv, "-s", silent.address, *BOUNDS, timeout=40)
    elapsed = time.monotonic() - started
    assert result.returncode == code, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if silent.address.encode() in line]
    assert down in line and b"0.3s" in line
    assert elapsed < GAVE_UP_WITHIN


def test_status_watch_shows_the_server_down_after_the_io_timeout(silent: SilentServer) -> None:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "gearctl", "status", "--watch", "--json", "-s", silent.address,
                             *BOUNDS], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=clean_env())
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # blocks until the first snapshot
        elapsed = time.monotonic() - started
        (entry,) = first["servers"]
        assert entry["up"] is False and "0.3s" in entry["error"]
        assert elapsed < GAVE_UP_WITHIN
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_exporter_scrape_gives_up_after_the_io_timeout(silent: SilentServer, procs: Procs) -> None:
    port = free_port()
    procs.start([sys.executable, "-m", "gearctl", "exporter", "--port", str(port), "-s", silent.address, *BOUNDS],
                env=clean_env())

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(listening, 15, what="the exporter")
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=40) as response:
        text = response.read().decode()
    assert f'gearman_up{{server="{silent.address}"}} 0.0' in text
    assert time.monotonic() - started < GAVE_UP_WITHIN


def test_a_slow_answer_is_waited_for_while_it_keeps_coming() -> None:
    # 6 pieces 0.5 s apart: 3 s in all, more than --io-timeout 2, never 2 s silent.
    slow = SlowServer(gap=0.5)
    try:
        result = gearctl("status", "--json", "-s", slow.address, "--connect-timeout", "60", "--io-timeout", "2",
                         timeout=60)
        assert result.returncode == 0, result.stderr
        (entry,) = json.loads(result.stdout)["servers"]
        assert entry["up"] and entry["functions"][0]["function"] == "slow" and entry["functions"][0]["queued"] == 3
    finally:
        slow.close()
