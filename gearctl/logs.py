"""Log lines for long-running commands (the worker): text or JSON, one per event.

On a terminal the live table shows jobs, so only problems are logged there, and
through rich's console so they print above the table instead of through it. A
failing job is a problem the table already shows (its count and last error):
there its log line, traceback included, is shown only with --log-level debug.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from .errors import UsageError

log = logging.getLogger("gearctl")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


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


def setup(fmt: str, level: str, console: Any = None, write_line: Callable[[str], None] | None = None) -> None:
    if level.lower() not in LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    handler: logging.Handler
    if write_line is not None:
        handler = _LineHandler(write_line)
    elif console is not None:
        handler = _ConsoleHandler(console)
    else:
        handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(LEVELS[level.lower()])
    if (console is not None or write_line is not None) and LEVELS[level.lower()] == logging.INFO:
        log.setLevel(logging.WARNING)  # the live table shows what info lines would
    log.propagate = False


def job_event_logger(live: bool = False) -> Callable[[Any], None]:
    """A Worker.on_event callback: one log line per finished job. `live`: a
    table shows the jobs, so successes are not logged and failures only at
    debug level."""
    jobs = logging.getLogger("gearctl.worker")

    def on_event(event: Any) -> None:
        if event.kind == "start":
            if jobs.isEnabledFor(logging.DEBUG):
                jobs.debug("job %s %s started", event.handle, event.function,
                           extra={"fields": {"event": "start", "function": event.function, "handle": event.handle}})
            return
        fields = {"event": event.kind, "function": event.function, "handle": event.handle,
                  "server": event.server, "seconds": round(event.seconds, 6)}
        if event.kind in ("retry", "dead"):
            _resubmitted(jobs, event, fields, live)
            return
        if event.kind == "complete":
            if not live and jobs.isEnabledFor(logging.INFO):
                jobs.info("job %s %s complete in %.3fs", event.handle, event.function, event.seconds,
                          extra={"fields": fields})
            return
        fields["error"] = event.message
        text = f"job {event.handle} {event.function} {event.kind}: {event.message}"
        if event.traceback:
            fields["traceback"] = event.traceback
            if not any(isinstance(h.formatter, JsonFormatter) for h in log.handlers):
                text += "\n" + event.traceback.rstrip()
        jobs.log(logging.DEBUG if live else logging.ERROR, text, extra={"fields": fields})

    return on_event


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
