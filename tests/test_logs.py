"""The worker's log lines (logs.py), without a worker: a finished job's line is
written without logging's record machinery, batched until flush(), and reads
exactly as the same line written through logging does."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from gearctl import logs
from gearctl.workerstats import JobEvent, JobEventKind

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|DEBUG|WARNING|ERROR) (.*)$")


class Stderr:
    """What reached sys.stderr so far (pytest's capture: monkeypatching sys.stderr in
    a fixture would be undone as the test body starts)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.seen = ""

    def getvalue(self) -> str:
        self.seen += self.capsys.readouterr().err
        return self.seen


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    """What reached stderr; logs.setup()'s changes to the gearctl logger are undone
    after (other tests read its records through caplog, which needs propagation)."""
    saved = logs.log.handlers[:], logs.log.level, logs.log.propagate
    yield Stderr(capsys)
    logs.log.handlers[:], level, logs.log.propagate = saved
    logs.log.setLevel(level)  # (setLevel, not the attribute: it clears logging's level cache)


def complete(handle: str = "H:web1:42", seconds: float = 0.0123) -> JobEvent:
    return JobEvent(JobEventKind.COMPLETE, "resize", handle, "127.0.0.1:4730", seconds)


def test_a_finished_jobs_text_line_waits_for_flush_and_reads_as_before(stderr: Stderr) -> None:
    logs.setup("text", "info")
    job_log = logs.JobLog()
    job_log(complete())
    job_log(complete("H:web1:43"))
    assert stderr.getvalue() == ""  # batched: written with the replies
    job_log.flush()
    lines = stderr.getvalue().splitlines()
    assert [TEXT_LINE.match(line).group(2) for line in lines] == [  # type: ignore[union-attr]
        "job H:web1:42 resize complete in 0.012s", "job H:web1:43 resize complete in 0.012s"]
    # the same format logging itself writes, for any other line
    logs.log.warning("a server went away")
    last = stderr.getvalue().splitlines()[-1]
    assert TEXT_LINE.match(last).group(1, 2) == ("WARNING", "a server went away")  # type: ignore[union-attr]
    stamp = lines[0].split(" INFO ")[0]
    assert abs(time.mktime(time.strptime(stamp.split(",")[0], "%Y-%m-%d %H:%M:%S")) - time.time()) < 120


def test_a_finished_jobs_json_line_has_the_fields_it_had(stderr: Stderr) -> None:
    logs.setup("json", "info")
    job_log = logs.JobLog()
    job_log(complete())
    job_log.flush()
    doc = json.loads(stderr.getvalue())
    assert list(doc) == ["time", "level", "logger", "message", "event", "function", "handle", "server", "seconds"]
    assert doc["level"] == "info" and doc["logger"] == "gearctl.worker" and doc["event"] == "complete"
    assert doc["message"] == "job H:web1:42 resize complete in 0.012s" and doc["seconds"] == 0.0123
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"])


def test_other_lines_are_written_at_once_after_the_buffered_ones(stderr: Stderr) -> None:
    logs.setup("text", "info")
    job_log = logs.JobLog()
    job_log(complete())
    failed = JobEvent(JobEventKind.EXCEPTION, "resize", "H:web1:44", "127.0.0.1:4730", 0.1, "ValueError: bad")
    job_log(failed)  # through logging: at once, and the buffered line before it
    lines = stderr.getvalue().splitlines()
    assert [TEXT_LINE.match(line).group(1) for line in lines] == ["INFO", "ERROR"]  # type: ignore[union-attr]
    assert lines[1].endswith("job H:web1:44 resize exception: ValueError: bad")


def test_no_line_below_the_level_and_none_on_a_live_table(stderr: Stderr) -> None:
    logs.setup("text", "warning")
    job_log = logs.JobLog()
    job_log(complete())
    job_log.flush()
    assert stderr.getvalue() == ""
    lines: list[str] = []
    logs.setup("text", "info", write_line=lines.append)  # a worker process on a terminal: the table shows jobs
    live = logs.JobLog(live=True)
    live(complete())
    live.flush()
    assert lines == []


def test_debug_start_lines_carry_the_held_seconds(stderr: Stderr) -> None:
    logs.setup("json", "debug")
    logs.JobLog()(JobEvent(JobEventKind.START, "resize", "H:web1:42", "127.0.0.1:4730", held=0.25))
    doc = json.loads(stderr.getvalue())
    assert (doc["event"], doc["held"], doc["level"]) == ("start", 0.25, "debug")
    assert doc["message"] == "job H:web1:42 resize started (held 0.250s)"


def test_the_clock_formats_each_second_once_and_the_milliseconds_each_time() -> None:
    clock = logs.TextFormatter()
    record = logging.LogRecord("gearctl", logging.INFO, __file__, 1, "m", None, None)
    assert TEXT_LINE.match(clock.format(record))
    assert logs.text_line(1_800_000_000.5, "INFO", "x").endswith(",500 INFO x")
    assert logs.text_line(1_800_000_000.125, "INFO", "x").endswith(",125 INFO x")
    assert json.loads(logs.json_line(1_800_000_001.25, "info", "l", "m", {}))["time"].endswith(":01.250Z")
