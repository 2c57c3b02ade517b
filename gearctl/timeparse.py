"""Durations and points in time from the command line (--in, --at, --timeout). No I/O."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta

from .errors import UsageError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
PAST_GRACE = 60  # seconds: --at a little in the past (clock skew, cron jitter) runs now


def parse_duration(text: str, flag: str = "") -> float:
    """'90', '90s', '1.5m', '1h30m', '2d', '250ms' -> seconds. UsageError when
    it is not one, naming `flag` (`--timeout`) when given."""
    where = f"{flag}: " if flag else ""
    spec = text.strip().lower().replace(" ", "")
    if not spec:
        raise UsageError(f"{where}empty duration; use e.g. 30s, 5m, 1h30m")
    try:
        value = float(spec)
    except ValueError:
        pos, value = 0, 0.0
        for match in _PART.finditer(spec):
            if match.start() != pos:
                break
            value += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(spec) or pos == 0:
            value = math.nan  # not a duration: said below
    if not math.isfinite(value):
        raise UsageError(f"{where}cannot read duration {text!r}; use e.g. 30s, 5m, 1h30m, 2d")
    if value < 0:
        raise UsageError(f"{where}duration {text!r} is negative")
    return value


def parse_limit(text: str, flag: str) -> float | None:
    """A --timeout: its seconds, or None for 0 (no limit, as GNU timeout reads it)."""
    return parse_duration(text, flag) or None


def parse_when(text: str, now: float | None = None) -> int:
    """--at: epoch seconds, an ISO 8601 date-time (naive means local time), or
    HH:MM[:SS] (the next such time today or tomorrow) -> epoch seconds."""
    now = time.time() if now is None else now
    spec = text.strip()
    if re.fullmatch(r"\d{9,}", spec):
        when = float(spec)
    elif re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", spec):
        parts = [int(p) for p in spec.split(":")] + [0]
        base = datetime.fromtimestamp(now)
        try:
            moment = base.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
        except ValueError:
            raise UsageError(f"cannot read time {text!r}") from None
        if moment.timestamp() < now:
            moment += timedelta(days=1)
        when = moment.timestamp()
    else:
        try:
            moment = datetime.fromisoformat(spec.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"cannot read time {text!r}; use epoch seconds, 2026-12-01T06:00[+01:00] or HH:MM"
            ) from None
        when = moment.timestamp()
    if when < now - PAST_GRACE:
        raise UsageError(f"--at {text} is in the past")
    return int(when)
