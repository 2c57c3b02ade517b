"""The worker's live table on a real pseudo-terminal, while plain-function jobs the test holds open run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import Gearmand, Terminal, gearctl, table_cells, wait_until, worker_processes

PLUGINS = Path(__file__).parent / "plugins_live"
TITLE = "gearctl worker"


def function_row(frame: str, name: str) -> list[str]:
    """function, done, failed, retried, dead, running, last error."""
    return next((row for row in table_cells(frame) if row[0] == name and len(row) == 7), [])


def test_live_table_shows_plain_jobs_running_and_failures_in_the_table(gearmand: Gearmand, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with Terminal(["worker", "-p", str(PLUGINS), "-c", "3", "-s", gearmand.address]) as term:
        wait_until(lambda: gearmand.status().get("hold", (0, 0, 0))[2] >= 3, 20, what="3 worker processes")
        # Every function is listed from the start, and the header names what is served.
        term.wait_for(lambda t: function_row(t.frame(TITLE), "never_runs")
                      and len(worker_processes(t.frame(TITLE))) == 3,
                      what="the table with 3 processes and every function")
        header = " ".join(term.frame(TITLE).split())
        assert f"gearctl worker serving chatter, fails, hold, never_runs on {gearmand.address}" in header
        assert function_row(term.frame(TITLE), "hold")[1:6] == ["0", "0", "0", "0", "0"]

        lines = f"{release}\n" * 3
        assert gearctl("client", "hold", "-n", "-q", "-s", gearmand.address, input=lines.encode()).returncode == 0
        wait_until(lambda: gearmand.status()["hold"][1] == 3, 20, what="3 jobs running")

        def all_busy(t: Terminal) -> bool:
            frame = t.frame(TITLE)
            rows = worker_processes(frame)
            return (len(rows) == 3 and all(r[1] == "busy" and r[2].startswith("hold H:") for r in rows)
                    and function_row(frame, "hold")[5:6] == ["3"])

        term.wait_for(all_busy, what="3 busy processes running hold, and running 3")
        release.touch()

        def all_done(t: Terminal) -> bool:
            frame = t.frame(TITLE)
            rows = worker_processes(frame)
            return (function_row(frame, "hold")[1:6] == ["3", "0", "0", "0", "0"]
                    and len(rows) == 3 and all(r[1] == "idle" and r[2] == "-" for r in rows))

        term.wait_for(all_done, what="the jobs done and the processes idle")

        failed = gearctl("client", "fails", "--wait", "--data", "x1", "-s", gearmand.address)
        assert failed.returncode == 5
        # no retries declared: failed once, and kept in fails.dead (dead letters are on by default)
        term.wait_for(lambda t: function_row(t.frame(TITLE), "fails")[2:5] == ["1", "0", "1"]
                      and "ValueError: bad payload x1" in function_row(t.frame(TITLE), "fails")[6],
                      what="the failure counted, with its error, and the job kept as dead")
        # A plugin's print() shows above the table (on stderr), not through it.
        assert gearctl("client", "chatter", "--wait", "--data", "hi", "-s", gearmand.address).stdout == b"said"
        term.wait_for(lambda t: "chatter says hi" in t.text() and function_row(t.frame(TITLE), "chatter")[1:2] == ["1"],
                      what="the print and the table after it")
        os.kill(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(20) == 0
    assert "Traceback" not in term.text()  # failures are in the table; tracebacks only with --log-level debug


def test_live_table_shows_tracebacks_with_log_level_debug(gearmand: Gearmand) -> None:
    with Terminal(["worker", "-p", str(PLUGINS), "-s", gearmand.address, "--log-level", "debug"]) as term:
        wait_until(lambda: gearmand.status().get("fails", (0, 0, 0))[2] >= 1, 20, what="the worker")
        assert gearctl("client", "fails", "--wait", "--data", "x2", "-s", gearmand.address).returncode == 5
        term.wait_for(lambda t: "Traceback" in t.text() and "bad payload x2" in t.text(), what="the traceback")
        os.kill(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(20) == 0
