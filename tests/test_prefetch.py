"""--prefetch auto's window (prefetch.py), without sockets: the time is passed in."""

from __future__ import annotations

import pytest

from gearctl.errors import UsageError
from gearctl.prefetch import (
    AUTO_MAX,
    BUDGET,
    HELD_BYTES,
    STALE,
    PrefetchSetting,
    WindowSize,
    parse_prefetch,
    prefetch_setting,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("auto", PrefetchSetting()), ("AUTO", PrefetchSetting()), (" auto ", PrefetchSetting()),
    ("1", PrefetchSetting(fixed=1)), ("16", PrefetchSetting(fixed=16)), (1000, PrefetchSetting(fixed=1000)),
])
def test_prefetch_is_auto_or_a_number(text: str | int, expected: PrefetchSetting) -> None:
    assert parse_prefetch(text) == expected


@pytest.mark.parametrize("text", ["0", "1001", "-1", "lots", "", "1.5", "auto16"])
def test_a_bad_prefetch_is_refused_with_its_value(text: str) -> None:
    with pytest.raises(ValueError, match="--prefetch must be auto"):
        parse_prefetch(text)


def test_prefetch_setting_reads_the_budget_as_a_duration_and_says_what_is_wrong() -> None:
    assert prefetch_setting("auto", "250ms") == PrefetchSetting(None, 0.25)
    assert prefetch_setting("8", 0.5) == PrefetchSetting(8, 0.5)
    assert prefetch_setting() == PrefetchSetting(None, BUDGET)
    assert str(prefetch_setting()) == "auto" and str(prefetch_setting(4)) == "4"
    with pytest.raises(UsageError, match="--prefetch-budget must be more than 0"):
        prefetch_setting("auto", "0")
    with pytest.raises(UsageError, match="--prefetch must be auto"):
        prefetch_setting("many")
    with pytest.raises(UsageError):
        prefetch_setting("auto", "soon")


def test_auto_starts_at_one_and_widens_to_its_most_for_quick_jobs() -> None:
    window = WindowSize()
    assert window.size == 1  # nothing measured yet
    assert window.record("resize", 0.0001, now=0.0) == min(AUTO_MAX, int(BUDGET / 0.0001))
    assert window.record("resize", 0.0, now=0.1) == AUTO_MAX  # immeasurably quick


def test_auto_holds_what_fits_in_the_budget() -> None:
    window = WindowSize(PrefetchSetting(budget=0.05))
    for i in range(5):
        window.record("report", 0.01, now=i)
    assert window.size == 5  # 5 jobs of 10 ms: 50 ms of work held at most
    for i in range(5):
        window.record("report", 0.02, now=10 + i)
    assert window.size == 2


def test_one_job_longer_than_the_budget_narrows_to_one_at_once_and_quick_ones_widen_it_again() -> None:
    window = WindowSize()
    for i in range(20):
        window.record("f", 0.0001, now=i)
    assert window.size == AUTO_MAX
    assert window.record("f", 0.2, now=20) == 1  # ran long: 1 at once, not after a moving average caught up
    sizes = [window.record("f", 0.0001, now=21 + i) for i in range(40)]
    assert sizes[0] == 1  # one quick job does not undo it
    assert sizes == sorted(sizes) and sizes[-1] == AUTO_MAX  # it widens again, step by step
    assert sizes.index(next(s for s in sizes if s > 1)) < 15  # within about ten quick jobs


def test_a_job_near_the_budget_holds_one() -> None:
    window = WindowSize()
    assert window.record("f", BUDGET * 0.9, now=0) == 1  # 2 of them would not fit


def test_the_slowest_function_seen_lately_sets_the_window() -> None:
    window = WindowSize()
    window.record("quick", 0.0001, now=0)
    window.record("slow", 0.03, now=1)  # within the budget, but 2 of them are not
    assert window.record("quick", 0.0001, now=2) == 1  # the next job may be slow's
    assert window.record("quick", 0.0001, now=1 + STALE + 1) == AUTO_MAX  # slow has not run for a while


def test_a_fixed_prefetch_never_moves() -> None:
    window = WindowSize(PrefetchSetting(fixed=8))
    assert window.size == 8
    assert window.record("f", 10.0, now=0) == 8
    assert window.record("f", 0.0, now=1) == 8
    assert window.share(3) == 8  # per server, as --prefetch N always was


def test_auto_shares_its_window_among_servers() -> None:
    window = WindowSize()
    window.record("f", 0.0, now=0)
    assert window.share(1) == AUTO_MAX
    assert window.share(2) == AUTO_MAX // 2
    assert window.share(AUTO_MAX * 2) == 1  # never 0
    slow = WindowSize()
    assert slow.share(3) == 1


def test_quick_means_measured_at_about_a_millisecond_or_less() -> None:
    window = WindowSize()
    assert not window.quick("f")  # not known
    window.record("f", 0.0002, now=0)
    assert window.quick("f")
    window.record("f", 0.01, now=1)
    assert not window.quick("f")


def test_large_workloads_hold_fewer_jobs() -> None:
    window = WindowSize()
    assert window.record("f", 0.0, now=0, size=1000) == AUTO_MAX
    assert window.record("f", 0.0, now=1, size=HELD_BYTES // 4) == 4  # 4 of them: HELD_BYTES in memory
    assert window.record("f", 0.0, now=2, size=HELD_BYTES * 2) == 1  # one at a time, never 0
    sizes = [window.record("f", 0.0, now=3 + i, size=10) for i in range(60)]
    assert sizes[0] == 1 and sizes[-1] == AUTO_MAX  # small ones widen it again
