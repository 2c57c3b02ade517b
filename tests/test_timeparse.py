"""Durations (--in, --timeout) and points in time (--at). Every parse_when call
passes an explicit `now`; local-time cases run in a fixed non-UTC zone so that
mixing up local time and UTC shows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from gearctl.errors import ExitCode, UsageError
from gearctl.timeparse import PAST_GRACE, parse_duration, parse_when


@pytest.fixture
def utc_plus_3() -> Iterator[None]:
    """Local time is UTC+3 (POSIX TZ spelling, no DST, no tz database needed)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-3"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


# -- parse_duration --------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("1.5m", 90),
        ("1h30m", 5400),
        ("2d", 172800),
        ("250ms", 0.25),
        ("1w", 604800),
        ("0", 0),
        ("0.5", 0.5),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4 + 0.005),
        (" 1h 30m ", 5400),  # spaces are ignored
        ("1H30M", 5400),  # so is case
        ("30s1h", 3630),  # any order adds up
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "m", "s5", "1m30", "1.5.m", "5x", "1h-30m", "-5", "-1s", "ten", "1,5m", ".5s", "1 h x"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("text", ["nan", "inf", "Infinity"])
def test_parse_duration_rejects_non_finite(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


# -- parse_when: epoch seconds ---------------------------------------------------

NOW = 1_893_499_200.0  # 2030-01-01 12:00:00 UTC


def test_epoch_seconds() -> None:
    assert parse_when("1893502800", now=NOW) == 1_893_502_800
    assert parse_when(" 1893502800\n", now=NOW) == 1_893_502_800
    assert isinstance(parse_when("1893502800", now=NOW), int)


def test_a_little_in_the_past_is_allowed() -> None:
    assert parse_when(str(int(NOW) - 30), now=NOW) == int(NOW) - 30
    assert parse_when(str(int(NOW - PAST_GRACE)), now=NOW) == int(NOW - PAST_GRACE)


@pytest.mark.parametrize("ago", [PAST_GRACE + 1, 3600, 86400 * 365])
def test_past_beyond_grace_is_refused(ago: int) -> None:
    with pytest.raises(UsageError, match="in the past"):
        parse_when(str(int(NOW) - ago), now=NOW)


def test_grace_is_a_minute() -> None:
    assert PAST_GRACE == 60


# -- parse_when: ISO 8601 ----------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T14:00+01:00", NOW + 3600),
        ("2030-01-01T13:00:00+00:00", NOW + 3600),
        ("2030-01-01T13:00:00Z", NOW + 3600),
        ("2030-01-01T08:00-05:00", NOW + 3600),
        ("2030-01-02 12:00:00+00:00", NOW + 86400),
    ],
)
def test_iso_with_offset(text: str, expected: float, utc_plus_3: None) -> None:
    # An explicit offset means the local zone plays no part.
    assert parse_when(text, now=NOW) == int(expected)


def test_naive_iso_is_local_time(utc_plus_3: None) -> None:
    # 16:00 local at UTC+3 is 13:00 UTC, an hour after NOW.
    assert parse_when("2030-01-01T16:00", now=NOW) == int(NOW + 3600)
    assert parse_when("2030-01-02", now=NOW) == int(datetime(2030, 1, 1, 21, 0, tzinfo=timezone.utc).timestamp())


def test_iso_in_the_past_is_refused(utc_plus_3: None) -> None:
    with pytest.raises(UsageError, match="in the past"):
        parse_when("2030-01-01T11:58:59Z", now=NOW)
    assert parse_when("2030-01-01T11:59:30Z", now=NOW) == int(NOW - 30)


@pytest.mark.parametrize("text", ["garbage", "", "12345", "2030-13-01", "2030-01-01T25:00", "tomorrow", "1.5e9"])
def test_unreadable_times(text: str) -> None:
    with pytest.raises(UsageError, match="cannot read time"):
        parse_when(text, now=NOW)


# -- parse_when: HH:MM[:SS] ------------------------------------------------------

def local(*args: int) -> float:
    """A naive local wall-clock time as epoch seconds (in whatever zone is active)."""
    return datetime(*args).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13:00", (2030, 1, 1, 13, 0)),  # later today
        ("23:59:59", (2030, 1, 1, 23, 59, 59)),
        ("12:00", (2030, 1, 1, 12, 0)),  # exactly now: today
        ("12:00:01", (2030, 1, 1, 12, 0, 1)),
        ("11:59", (2030, 1, 2, 11, 59)),  # passed a minute ago: tomorrow, not "now"
        ("11:59:59", (2030, 1, 2, 11, 59, 59)),
        ("9:05", (2030, 1, 2, 9, 5)),
        ("00:00", (2030, 1, 2, 0, 0)),
    ],
)
def test_clock_time_today_or_tomorrow(text: str, expected: tuple[int, ...], utc_plus_3: None) -> None:
    now = local(2030, 1, 1, 12, 0)
    assert parse_when(text, now=now) == int(local(*expected))


def test_clock_time_is_local_time(utc_plus_3: None) -> None:
    now = local(2030, 1, 1, 12, 0)  # 09:00 UTC
    assert parse_when("13:00", now=now) - now == 3600
    assert now == datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc).timestamp()


def test_clock_time_rolls_over_month_and_year(utc_plus_3: None) -> None:
    now = local(2030, 12, 31, 23, 30)
    assert parse_when("00:15", now=now) == int(local(2031, 1, 1, 0, 15))
    assert parse_when("00:15", now=now) - now == timedelta(minutes=45).total_seconds()


@pytest.mark.parametrize("text", ["24:00", "25:00", "12:60", "12:00:60", "99:99"])
def test_clock_time_out_of_range(text: str) -> None:
    with pytest.raises(UsageError, match="cannot read time"):
        parse_when(text, now=NOW)


def test_now_defaults_to_the_clock() -> None:
    soon = int(time.time()) + 3600
    assert parse_when(str(soon)) == soon
    with pytest.raises(UsageError, match="in the past"):
        parse_when(str(int(time.time()) - 3600))
