"""Retries and the dead-letter queue: the names and formats they share, no I/O.

A job whose attempt ends badly is resubmitted by the worker as a new background
job to the same function with the identical workload, under a unique key that
says which attempt it is (`attempt_unique`). gearmand neither coalesces it with
the attempt still running (its key differs) nor loses it across a restart with
a persistent queue (it is a background job). A PHP worker serving the function
sees the same workload; only the unique key tells the attempts apart.

A job out of attempts goes, in a JSON `Envelope`, to the function's dead-letter
function (`notifications_send_users.dead`). No worker registers those, so the
jobs sit in gearmand's queue until `gearctl dead` lists, retries or purges them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from .errors import PayloadError

DEAD_SUFFIX = ".dead"  # notifications_send_users -> notifications_send_users.dead
SUFFIX_ENV = "GEARCTL_DEAD_LETTER_SUFFIX"  # another suffix for every command (worker, dead, status)
ENVELOPE_FORMAT = 1  # "gearctl_dead_letter": the envelope's version
MAX_UNIQUE = 64  # gearmand's GEARMAN_MAX_UNIQUE_SIZE

# <original>~a<attempt>.<first failure, unix seconds>: the second attempt of "job-7"
# that first failed at 1764590400 is "job-7~a2.1764590400".
_DEAD_TAIL = re.compile(r"~dead\.\d+$")  # dead_unique()'s tail
_ATTEMPT = re.compile(r"^(?P<original>.*)~a(?P<attempt>[2-9]|[1-9]\d+)\.(?P<first>\d{1,12})$", re.DOTALL)


def default_suffix() -> str:
    """The dead-letter suffix the commands use: GEARCTL_DEAD_LETTER_SUFFIX, else `.dead`."""
    return os.environ.get(SUFFIX_ENV) or DEAD_SUFFIX


def dead_letter_function(function: str, suffix: str | None = None) -> str:
    """The function a job of `function` goes to when it is out of attempts."""
    return function + (suffix or default_suffix())


def is_dead_letter_function(name: str, suffix: str | None = None) -> bool:
    suffix = suffix or default_suffix()
    return name.endswith(suffix) and len(name) > len(suffix)


def original_function(dead: str, suffix: str | None = None) -> str:
    """`notifications_send_users.dead` -> `notifications_send_users`."""
    suffix = suffix or default_suffix()
    return dead[: -len(suffix)] if is_dead_letter_function(dead, suffix) else dead


@dataclass(frozen=True)
class Attempt:
    """Where a job stands, read from its unique key: attempt 1 is the first run."""

    original: str  # the unique key the job was first submitted with
    number: int = 1
    first_failure: int = 0  # unix seconds of the first attempt's failure; 0 on attempt 1


def attempt_unique(original: str, number: int, first_failure: int) -> str:
    """The unique key of attempt `number` (2 or more). A key that would pass
    gearmand's 64 bytes keeps a hash of the original in its place."""
    if number < 2:
        raise ValueError("attempt 1 is the original job and keeps its key")
    return _fit(original, f"~a{number}.{int(first_failure)}")


def dead_unique(original: str, last_failure: float) -> str:
    """The unique key of a dead job: the original's plus the time it died, so a
    job that dies again after `dead retry` is a second dead job, not coalesced
    into the first (gearmand would drop it as a duplicate)."""
    return _fit(original, f"~dead.{int(last_failure * 1000)}")


def is_dead_unique(key: str) -> bool:
    """Does `key` end as dead_unique() ends a dead job's key (`~dead.MILLISECONDS`)?"""
    return _DEAD_TAIL.search(key) is not None


def _fit(original: str, tail: str) -> str:
    """`original + tail`, with a hash of the original in its place when that
    would pass gearmand's 64 bytes (the same hash on every worker)."""
    if len((original + tail).encode("utf-8", "surrogateescape")) > MAX_UNIQUE:
        digest = hashlib.sha256(original.encode("utf-8", "surrogateescape")).hexdigest()
        original = "h:" + digest[: MAX_UNIQUE - len(tail) - 2]
    return original + tail


def attempt_number(unique: str) -> int:
    """parse_attempt(unique).number, without making an Attempt (the worker asks once per job)."""
    match = _ATTEMPT.match(unique) if "~a" in unique else None
    return 1 if match is None else int(match["attempt"])


def parse_attempt(unique: str) -> Attempt:
    """The attempt a unique key names; a key without the suffix is attempt 1."""
    match = _ATTEMPT.match(unique) if "~a" in unique else None  # (the test first: once per job)
    if match is None:
        return Attempt(unique)
    return Attempt(match["original"], int(match["attempt"]), int(match["first"]))


@dataclass(frozen=True)
class Envelope:
    """What a dead job carries: enough to see what failed and to run it again.
    Never TLS paths, never the environment."""

    function: str  # the original function
    unique: str  # the original unique key
    workload: bytes
    attempts: int  # attempts made
    error: str  # the last attempt's error (exception message, "failed", "timed out after 30s")
    traceback: str
    host: str  # the worker host that gave up
    first_failure: float  # unix seconds
    last_failure: float
    handle: str = ""  # the last attempt's job handle
    state: str = "exception"  # how the last attempt ended: exception, failed, timeout

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"gearctl_dead_letter": ENVELOPE_FORMAT, **asdict(self)}
        doc["workload"] = base64.b64encode(self.workload).decode("ascii")
        try:
            return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
        except UnicodeEncodeError:  # a lone surrogate in an error's text: JSON keeps it escaped
            return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """An envelope from a dead job's workload; PayloadError when it is not one."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise PayloadError(f"not a gearctl dead-letter envelope: {e}", data) from e
        if not isinstance(doc, dict) or doc.get("gearctl_dead_letter") != ENVELOPE_FORMAT:
            raise PayloadError("not a gearctl dead-letter envelope (no gearctl_dead_letter: 1)", data)
        try:
            return cls(
                function=str(doc["function"]), unique=str(doc["unique"]),
                workload=base64.b64decode(doc["workload"], validate=True), attempts=int(doc["attempts"]),
                error=str(doc["error"]), traceback=str(doc.get("traceback", "")), host=str(doc.get("host", "")),
                first_failure=float(doc["first_failure"]), last_failure=float(doc["last_failure"]),
                handle=str(doc.get("handle", "")), state=str(doc.get("state", "exception")))
        except (KeyError, TypeError, ValueError) as e:
            raise PayloadError(f"a dead-letter envelope with a bad or missing field: {e}", data) from e

    def as_json(self) -> dict[str, Any]:
        """The envelope as `gearctl dead ... --json` shows it: the workload as
        text when it is UTF-8, else as base64."""
        doc: dict[str, Any] = asdict(self)
        try:
            doc["workload"] = self.workload.decode("utf-8")
        except UnicodeDecodeError:
            del doc["workload"]
            doc["workload_base64"] = base64.b64encode(self.workload).decode("ascii")
        return doc
