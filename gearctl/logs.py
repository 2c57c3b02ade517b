"""Log lines for long-running commands (the worker): text or JSON, one per event.

On a terminal the live table shows jobs, so only problems are logged there, and
through rich's console so they print above the table instead of through it. A
failing job is a problem the table already shows (its count and last error):
there its log line, traceback included, is shown only with --log-level debug.

Under journald (JOURNAL_STREAM names the device and inode of our stderr), text
lines carry no time of their own (the journal stamps each) and start with a
syslog priority, `<3>` error, `<4>` warning, `<6>` info, `<7>` debug, on every
line of a traceback too, so `journalctl -p err` finds them. JSON lines stay as
they are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .errors import UsageError
from .workerstats import JobEventKind

log = logging.getLogger("gearctl")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
PRIORITIES = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}  # syslog's, by level name


# One way to write a line, whether it goes through logging (most lines) or
# straight from the job logger below (a finished job's line: the one line per
# job, where logging's record machinery cost about 10-15 us a job, as much as
# running a no-op job and replying to it).

class _Clock:
    """A line's time: logging's default asctime (local, "2026-12-01 14:00:00,123")
    for text, UTC ISO 8601 with milliseconds for JSON; each formats the whole
    second once (strftime is most of a line's cost)."""

    def __init__(self, when: Callable[[float], time.struct_time], pattern: str, millis: str) -> None:
        self.when, self.pattern, self.millis = when, pattern, millis
        self.second, self.text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, time.strftime(self.pattern, self.when(second))
        return self.text + self.millis % int((created - second) * 1000)


_TEXT_CLOCK = _Clock(time.localtime, "%Y-%m-%d %H:%M:%S", ",%03d")
_JSON_CLOCK = _Clock(time.gmtime, "%Y-%m-%dT%H:%M:%S", ".%03dZ")


def text_line(created: float, level: str, message: str) -> str:
    """'2026-12-01 14:00:00,123 INFO message'."""
    return f"{_TEXT_CLOCK(created)} {level} {message}"


def json_line(created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> str:
    """One JSON object: time, level, logger, message and the event's fields."""
    doc: dict[str, Any] = {"time": _JSON_CLOCK(created), "level": level, "logger": logger, "message": message}
    doc.update(fields)
    return json.dumps(doc, ensure_ascii=False)


def journal_line(level: str, message: str) -> str:
    """'<6>message' for journald: the level's syslog priority before each line."""
    prefix = f"<{PRIORITIES.get(level, 6)}>"
    return prefix + message.replace("\n", "\n" + prefix)


def under_journald(fd: int = 2, environ: Any = None) -> bool:
    """Whether `fd` is the journal stream systemd gave us (JOURNAL_STREAM is its
    'device:inode'; a stderr redirected elsewhere by the unit's command is not)."""
    device, _, inode = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class TextFormatter(logging.Formatter):
    """'time LEVEL message', and a traceback below when there is one; for
    journald (`journal`), '<priority>message' on each line instead."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def line(self, created: float, level: str, message: str) -> str:
        return journal_line(level, message) if self.journal else text_line(created, level, message)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return self.line(record.created, record.levelname, message)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json_line(record.created, record.levelname.lower(), record.name, record.getMessage(), fields)


class _LineHandler(logging.Handler):
    """Formatted lines to a callable (a worker process's pipe to its supervisor)."""

    def __init__(self, write_line: Callable[[str], None]) -> None:
        super().__init__()
        self.write_line = write_line

    def emit(self, record: logging.LogRecord) -> None:
        self.write_line(self.format(record))


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(self.format(record), markup=False, highlight=False)


class _StreamLines(logging.Handler):
    """Lines to stderr. A finished job's line (add()) waits in a buffer until
    flush(), which the worker calls as it writes finished jobs' replies to the
    server: a run of short jobs costs one write, not one per job, and a job's
    line shows when the server hears of its end. Any other line is written at
    once, after the buffered ones, so the order holds."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream
        self.pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record) + "\n")
            self.flush()
        except Exception:
            self.handleError(record)

    def add(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock() made it
            self.pending.append(line + "\n")

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.pending:
                text, self.pending = "".join(self.pending), []
                with contextlib.suppress(OSError, ValueError):  # a closed stderr loses lines, not jobs
                    self.stream.write(text)
                    self.stream.flush()


def setup(fmt: str, level: str, console: Any = None, write_line: Callable[[str], None] | None = None) -> None:
    if level.lower() not in LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    handler: logging.Handler
    if write_line is not None:
        handler = _LineHandler(write_line)
    elif console is not None:
        handler = _ConsoleHandler(console)
    else:
        handler = _StreamLines(sys.stderr)
    journal = isinstance(handler, _StreamLines) and under_journald()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(journal))
    log.handlers[:] = [handler]
    log.setLevel(LEVELS[level.lower()])
    if (console is not None or write_line is not None) and LEVELS[level.lower()] == logging.INFO:
        log.setLevel(logging.WARNING)  # the live table shows what info lines would
    log.propagate = False


class JobLog:
    """A Worker.on_event callback: one log line per finished job. `live`: a
    table shows the jobs, so successes are not logged and failures only at
    debug level. Its flush() writes the buffered lines (Worker calls it)."""

    def __init__(self, live: bool = False) -> None:
        self.live = live
        self.jobs = logging.getLogger("gearctl.worker")

    def flush(self) -> None:
        for handler in log.handlers:
            handler.flush()

    def __call__(self, event: Any) -> None:
        jobs = self.jobs
        kind = event.kind
        if kind is JobEventKind.COMPLETE:  # the one line per job: first, and building only what it needs
            if not self.live and jobs.isEnabledFor(logging.INFO):
                self._complete(event)
            return
        if kind == "start":
            if jobs.isEnabledFor(logging.DEBUG):
                jobs.debug("job %s %s started (held %.3fs)", event.handle, event.function, event.held,
                           extra={"fields": {"event": "start", "function": event.function, "handle": event.handle,
                                             "held": round(event.held, 6)}})
            return
        fields = {"event": event.kind, "function": event.function, "handle": event.handle,
                  "server": event.server, "seconds": round(event.seconds, 6)}
        if kind in ("retry", "dead"):
            _resubmitted(jobs, event, fields, self.live)
            return
        if kind == "complete":  # a str rather than the enum member: the same line
            if not self.live and jobs.isEnabledFor(logging.INFO):
                self._complete(event)
            return
        fields["error"] = event.message
        text = f"job {event.handle} {event.function} {event.kind}: {event.message}"
        if event.traceback:
            fields["traceback"] = event.traceback
            if not any(isinstance(h.formatter, JsonFormatter) for h in log.handlers):
                text += "\n" + event.traceback.rstrip()
        jobs.log(logging.DEBUG if self.live else logging.ERROR, text, extra={"fields": fields})

    def _complete(self, event: Any) -> None:
        message = f"job {event.handle} {event.function} complete in {event.seconds:.3f}s"
        handler = log.handlers[0] if len(log.handlers) == 1 else None
        if isinstance(handler, _StreamLines) and isinstance(handler.formatter, TextFormatter):
            handler.add(handler.formatter.line(time.time(), "INFO", message))  # text: no fields to build
            return
        fields = {"event": "complete", "function": event.function, "handle": event.handle,
                  "server": event.server, "seconds": round(event.seconds, 6)}
        if isinstance(handler, _StreamLines):
            handler.add(json_line(time.time(), "info", self.jobs.name, message, fields))
        else:  # a pipe or a console: through logging
            self.jobs.info(message, extra={"fields": fields})


def job_event_logger(live: bool = False) -> JobLog:
    """A Worker.on_event callback that logs each job (JobLog)."""
    return JobLog(live)


def iso_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _resubmitted(jobs: logging.Logger, event: Any, fields: dict[str, Any], live: bool) -> None:
    """A failed attempt's next attempt was submitted, or the job went to dead letters."""
    del fields["seconds"]
    fields.update(attempt=event.attempt, attempts=event.attempts, error=event.message)
    if event.kind == "retry":
        fields["due"] = iso_time(event.due)
        fields["delay"] = round(event.delay, 3)
        text = (f"job {event.handle} {event.function}: attempt {event.attempt + 1} of {event.attempts} "
                f"scheduled for {fields['due']}")
        level = logging.INFO
    else:
        fields["dead_function"] = event.dead_function
        text = (f"job {event.handle} {event.function}: failed for good after {event.attempt} of {event.attempts} "
                f"attempt(s), kept in {event.dead_function}")
        level = logging.WARNING
    jobs.log(logging.DEBUG if live else level, text, extra={"fields": fields})
