"""The supervisor run in this process over children that are plain functions: no
gearmand, no plugins, no CLI. Each child is really forked; it reports through
child.StatusReporter and exits with a ChildExit code, and the test reads what
the parent made of it (its return code, its totals, its callbacks, its log).
tests/test_supervisor.py runs the whole `gearctl worker` against gearmand."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gearctl.child import StatusReporter
from gearctl.supervision import ChildExit, ChildReport, ChildState, FunctionReport, Launch, LogLine, Refusal
from gearctl.supervisor import Supervisor, SupervisorOptions

ChildMain = Callable[[int, Launch], int]


def supervise(child_main: ChildMain, **options: object) -> tuple[int, Supervisor, list[str]]:
    lines: list[str] = []
    supervisor = Supervisor(child_main, SupervisorOptions(**options), on_log=lines.append)  # type: ignore[arg-type]
    return supervisor.run(), supervisor, lines


def launches(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def record_launch(path: Path, launch: Launch) -> int:
    """Append this launch to `path`; returns how many there were before it."""
    before = len(launches(path))
    with path.open("a") as f:
        f.write(json.dumps({"serving": sorted(launch.serving), "reload": launch.reload, "first": launch.first,
                            "pid": os.getpid()}) + "\n")
    return before


def test_reports_and_log_lines_reach_the_parent_and_burst_ends_the_run() -> None:
    def child_main(fd: int, launch: Launch) -> int:
        reporter = StatusReporter(fd)
        reporter.send(ChildReport(ChildState.BUSY, "f H:1", 0, 0, 1.0, {"f": FunctionReport(running=1)}))
        reporter.send(LogLine(f"hello from {os.getpid()}"))
        reporter.send(ChildReport(ChildState.IDLE, "", 3, 1, 1.0, {
            "f": FunctionReport(2, 1, 0, f"boom {os.getpid()}", float(os.getpid())),
            "g": FunctionReport(1, 0, 0)}))
        return ChildExit.BURST_DONE

    code, supervisor, lines = supervise(child_main, concurrency=2, burst=True)
    assert code == 0 and supervisor.children == {}
    assert len(lines) == 2 and all(line.startswith("hello from ") for line in lines), lines
    pids = sorted(int(line.removeprefix("hello from ")) for line in lines)
    assert pids[0] != pids[1]
    # Both processes' final counts, summed; the error with the later time (the larger pid) wins.
    assert supervisor.retired == {"f": FunctionReport(4, 2, 0, f"boom {pids[1]}", float(pids[1])),
                                  "g": FunctionReport(2, 0, 0)}


def test_a_refusing_then_crashing_process_is_respawned_with_what_it_served(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    record = tmp_path / "launches"

    def child_main(fd: int, launch: Launch) -> int:
        attempt = record_launch(record, launch)
        if attempt == 0:
            StatusReporter(fd).send(Refusal("/srv/a.py: cannot import: SyntaxError"))
            return ChildExit.PLUGINS_BROKEN
        if attempt == 1:
            raise RuntimeError("a crash in the child")  # -> CRASHED, after its traceback on stderr
        return ChildExit.BURST_DONE

    with caplog.at_level(logging.INFO, logger="gearctl.supervisor"):
        code, _supervisor, _lines = supervise(child_main, burst=True, functions=frozenset({"f", "g"}))
    assert code == 0
    seen = launches(record)
    assert [(s["serving"], s["reload"], s["first"]) for s in seen] == [
        (["f", "g"], False, True), (["f", "g"], False, False), (["f", "g"], False, False)]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"worker process {seen[0]['pid']} cannot start: /srv/a.py: cannot import: SyntaxError; "
               f"trying again in" in m for m in messages), messages
    assert any(f"worker process {seen[1]['pid']} died (status {int(ChildExit.CRASHED)})" in m
               for m in messages), messages


def test_no_server_in_burst_mode_is_the_commands_exit_code() -> None:
    code, _supervisor, _lines = supervise(lambda fd, launch: ChildExit.NO_SERVER, burst=True)
    assert code == 3


def test_garbage_on_the_status_pipe_does_not_stop_the_parent() -> None:
    def child_main(fd: int, launch: Launch) -> int:
        # What the parent once took on trust: a count that is not a number, functions
        # that are not a mapping; then half a line, bytes that are not UTF-8 and
        # unknown kinds. Only the whole, well-typed report counts.
        os.write(fd, b'{"state": "idle", "done": "x"}\n{"state": "idle", "functions": {"f": 1}}\n'
                     b'{"kind": "report", "state": "idle", "done": "x"}\n{"kind": "rep\n\xff\xfe\n[1]\n'
                     b'{"kind": "report", "state": "busy", "current": "", "done": 1, "failed": 0, '
                     b'"memory_mb": 1, "functions": {"f": 7}}\n')
        StatusReporter(fd).send(ChildReport(ChildState.IDLE, done=1, functions={"f": FunctionReport(done=1)}))
        return ChildExit.BURST_DONE

    code, supervisor, _lines = supervise(child_main, burst=True)
    assert code == 0 and supervisor.retired == {"f": FunctionReport(done=1)}


@pytest.mark.slow
def test_a_crash_loop_past_a_thousand_respawns_keeps_respawning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The respawn back-off was 0.25 * 2 ** (failures - 1): at the 1,025th death in a
    # row it raised OverflowError and the supervisor itself died. With no cap on the
    # delay that is ~8.5 hours of a plugin crashing on start; max_backoff=0 gets
    # there in seconds (no waits at all, the same count of failures).
    counter = tmp_path / "count"
    wanted = 1100

    def child_main(fd: int, launch: Launch) -> int:
        with counter.open("ab") as f:
            f.write(b".")
        return ChildExit.BURST_DONE if counter.stat().st_size >= wanted else ChildExit.CRASHED

    with caplog.at_level(logging.ERROR, logger="gearctl.supervisor"):  # not 1,100 warnings kept in memory
        code, _supervisor, _lines = supervise(child_main, burst=True, max_backoff=0.0)
    assert code == 0 and counter.stat().st_size == wanted
