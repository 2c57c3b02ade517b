"""How long a job sat held by a busy worker process while another process of the pool was idle.

Pure functions over job spans, no I/O: benchmarks/bench_fairness.py measures
with them, and tests/test_fairness.py imports this module (with benchmarks/ on
sys.path) to test the worker's fairness property.

A span is one job as a process ran it: `start` and `end` (epoch seconds, read by
the job function itself) and `held`, the seconds the job waited inside the
worker between its arrival and its start (the worker's debug start line, field
"held"). So the job was held during [start - held, start].

A process is idle between its jobs, before its first job once the run has begun,
and after its last until the run ends; a process of the pool that ran no job was
idle all along. The figure is the longest overlap of one job's held interval
with one idle interval of ANOTHER process: time a job could have been running
but waited behind a busy process instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Interval = tuple[float, float]


@dataclass(frozen=True)
class Span:
    """One job as a worker process ran it (times in epoch seconds)."""

    handle: str
    pid: int
    start: float
    end: float
    held: float = 0.0  # seconds inside the worker between the job's arrival and its start

    @property
    def held_interval(self) -> Interval:
        return (self.start - self.held, self.start)


@dataclass(frozen=True)
class Hold:
    """A job held by its process `pid` for `seconds` while process `idle_pid` was idle."""

    handle: str
    pid: int
    idle_pid: int
    seconds: float


def overlap(a: Interval, b: Interval) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def idle_intervals(spans: Iterable[Span], pid: int, begin: float, end: float) -> list[Interval]:
    """When process `pid` ran none of its jobs, within [begin, end]."""
    idle, at = [], begin
    for start, stop in sorted((s.start, s.end) for s in spans if s.pid == pid):
        if start > at:
            idle.append((at, min(start, end)))
        at = max(at, stop)
    if at < end:
        idle.append((at, end))
    return [(a, b) for a, b in idle if b > a]


def holds_while_idle(spans: Sequence[Span], begin: float | None = None, end: float | None = None,
                     pids: Iterable[int] | None = None) -> list[Hold]:
    """For each job held while another process was idle, its longest such
    overlap (one idle interval of one other process), longest first.

    begin/end: the run's bounds (default: the first held or started job, the
    last end); pids: the pool's processes (default: those that ran a job; pass
    them all so that a process that got no job counts as idle)."""
    if not spans:
        return []
    begin = min(s.held_interval[0] for s in spans) if begin is None else begin
    end = max(s.end for s in spans) if end is None else end
    pool = sorted(set(pids if pids is not None else ()) | {s.pid for s in spans})
    idle = {pid: idle_intervals(spans, pid, begin, end) for pid in pool}
    holds = []
    for span in spans:
        worst = max(((overlap(span.held_interval, gap), other) for other in pool if other != span.pid
                     for gap in idle[other]), default=(0.0, 0))
        if worst[0] > 0:
            holds.append(Hold(span.handle, span.pid, worst[1], worst[0]))
    return sorted(holds, key=lambda h: h.seconds, reverse=True)


def longest_held_while_idle(spans: Sequence[Span], begin: float | None = None, end: float | None = None,
                            pids: Iterable[int] | None = None) -> float:
    """The longest time any job sat held by its busy process while another
    process of the pool was idle (0.0 if none did); arguments as holds_while_idle."""
    holds = holds_while_idle(spans, begin, end, pids)
    return holds[0].seconds if holds else 0.0


def read_records(lines: Iterable[str]) -> dict[str, tuple[int, float, float]]:
    """The job function's records, one JSON object a line ({"handle", "pid",
    "start", "end"}): handle -> (pid, start, end)."""
    records = {}
    for line in lines:
        if line.strip():
            doc = json.loads(line)
            records[doc["handle"]] = (int(doc["pid"]), float(doc["start"]), float(doc["end"]))
    return records


def read_held(log_lines: Iterable[str]) -> dict[str, float]:
    """From a worker's `--log-format json --log-level debug` log: handle -> the
    "held" seconds of its start line (0.0 where the field is missing). Lines
    that are not JSON (a traceback, a text line) are skipped."""
    held = {}
    for line in log_lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == "start" and "handle" in doc:
            held[str(doc["handle"])] = float(doc.get("held", 0.0))
    return held


def spans(records: Mapping[str, tuple[int, float, float]], held: Mapping[str, float]) -> list[Span]:
    """Records joined with the held seconds by handle (0.0 for a handle with none)."""
    return [Span(handle, pid, start, end, held.get(handle, 0.0)) for handle, (pid, start, end) in records.items()]
