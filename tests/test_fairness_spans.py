"""benchmarks/fairness.py (the fairness benchmark's and test_fairness.py's
computation) on synthetic spans, no sockets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from fairness import Span, holds_while_idle, idle_intervals, longest_held_while_idle, read_held, read_records
from fairness import spans as join_spans

P, Q = 100, 200


def test_no_job_held_means_nothing_held_while_idle() -> None:
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.0, 2.0), Span("c", Q, 0.0, 0.5), Span("d", Q, 0.5, 2.0)]
    assert longest_held_while_idle(run) == 0.0
    assert holds_while_idle(run) == []


def test_a_job_held_behind_a_busy_process_while_the_other_is_idle() -> None:
    # P prefetched b and held it while running a; Q finished c at 0.5 and sat idle until the end.
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.0, 2.0, held=1.0), Span("c", Q, 0.0, 0.5)]
    assert longest_held_while_idle(run) == pytest.approx(0.5)
    (hold,) = holds_while_idle(run)
    assert (hold.handle, hold.pid, hold.idle_pid) == ("b", P, Q) and hold.seconds == pytest.approx(0.5)


def test_held_while_every_other_process_was_busy_counts_nothing() -> None:
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.0, 2.0, held=1.0), Span("c", Q, 0.0, 1.2), Span("d", Q, 1.2, 2.0)]
    assert longest_held_while_idle(run) == 0.0


def test_the_holding_process_own_idleness_does_not_count() -> None:
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.5, 2.0, held=1.5)]
    assert longest_held_while_idle(run) == 0.0


def test_the_longest_single_idle_interval_counts_not_their_sum() -> None:
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.0, 1.5, held=1.0),
           Span("c", Q, 0.0, 0.1), Span("d", Q, 0.2, 0.5), Span("e", Q, 0.7, 1.5)]
    assert longest_held_while_idle(run) == pytest.approx(0.2)  # Q's gap 0.5-0.7, not 0.1 + 0.2


def test_a_pool_process_that_got_no_job_was_idle_all_along() -> None:
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.0, 2.0, held=0.8)]
    assert longest_held_while_idle(run) == 0.0  # Q is unknown without the pool's pids
    assert longest_held_while_idle(run, pids=[P, Q]) == pytest.approx(0.8)


def test_idle_before_the_first_job_counts_from_the_run_begin() -> None:
    run = [Span("a", P, 0.0, 1.0), Span("b", P, 1.0, 2.0, held=1.0), Span("c", Q, 0.6, 2.0)]
    assert longest_held_while_idle(run) == pytest.approx(0.6)
    assert longest_held_while_idle(run, begin=0.4) == pytest.approx(0.2)


def test_idle_intervals_merge_overlapping_jobs_and_clip_to_the_run() -> None:
    run = [Span("a", P, 1.0, 3.0), Span("b", P, 2.0, 4.0), Span("c", P, 6.0, 7.0)]
    assert idle_intervals(run, P, 0.0, 6.5) == [(0.0, 1.0), (4.0, 6.0)]
    assert idle_intervals(run, Q, 0.0, 6.5) == [(0.0, 6.5)]
    assert idle_intervals([], P, 1.0, 1.0) == []


def test_records_and_log_lines_join_into_spans_with_a_missing_held_as_zero() -> None:
    records = read_records([json.dumps({"handle": "H:x:1", "pid": P, "start": 10.0, "end": 10.2}),
                            "", json.dumps({"handle": "H:x:2", "pid": Q, "start": 10.1, "end": 10.3})])
    log = ['{"event": "start", "handle": "H:x:1", "function": "f", "held": 0.05}',
           "Traceback (most recent call last):", '{"event": "complete", "handle": "H:x:1", "seconds": 0.2}',
           '{"event": "start", "handle": "H:x:2", "function": "f"}', "[1, 2]"]
    held = read_held(log)
    assert held == {"H:x:1": 0.05, "H:x:2": 0.0}
    assert sorted(join_spans(records, held), key=lambda s: s.handle) == [
        Span("H:x:1", P, 10.0, 10.2, 0.05), Span("H:x:2", Q, 10.1, 10.3, 0.0)]
