"""The one back-off helper (gearctl/backoff.py), without sockets or sleeps, and the
parameters each of its three users gives it."""

from __future__ import annotations

import math

import pytest

from gearctl import connection
from gearctl.backoff import Backoff
from gearctl.connection import ServerAddress, ServerPool
from gearctl.errors import ConnectionFailed


def exact(low: float, high: float) -> float:
    return 1.0  # no jitter: the un-spread delays


@pytest.mark.parametrize(("initial", "cap", "expected"), [
    (0.5, 30.0, [0.5, 1, 2, 4, 8, 16, 30, 30, 30]),  # worker.py: reconnecting to a lost server
    (1.0, 30.0, [1, 2, 4, 8, 16, 30, 30]),  # connection.py: a server marked down in a client's pool
    (0.25, 30.0, [0.25, 0.5, 1, 2, 4, 8, 16, 30, 30]),  # supervisor.py: respawning a process that died young
    (0.25, 5.0, [0.25, 0.5, 1, 2, 4, 5, 5]),
    (2.0, 0.5, [0.5, 0.5, 0.5]),  # a cap below the first delay caps that one too
    (0.0, 30.0, [0, 0, 0]),
])
def test_delays_double_up_to_the_cap(initial: float, cap: float, expected: list[float]) -> None:
    backoff = Backoff(initial, cap, uniform=exact)
    assert [backoff.next() for _ in expected] == expected
    assert backoff.attempts == len(expected)


def test_another_factor() -> None:
    backoff = Backoff(1.0, 100.0, factor=3.0, uniform=exact)
    assert [backoff.next() for _ in range(6)] == [1, 3, 9, 27, 81, 100]


def test_reset_starts_again_at_the_first_delay() -> None:
    backoff = Backoff(0.5, 30.0, uniform=exact)
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.attempts == 0
    assert [backoff.next() for _ in range(3)] == [0.5, 1, 2]


def test_jitter_spreads_each_delay_within_its_range() -> None:
    asked: list[tuple[float, float]] = []

    def spread(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    backoff = Backoff(0.5, 30.0, uniform=spread)
    assert [backoff.next() for _ in range(3)] == pytest.approx([0.6, 1.2, 2.4])
    assert asked == [(0.8, 1.2)] * 3  # the default range, as each of the three places had it
    randomised = Backoff(0.5, 30.0)
    delays = [randomised.next() for _ in range(200)]
    bases = [min(0.5 * 2 ** i, 30.0) for i in range(200)]
    assert all(0.8 * b <= d <= 1.2 * b for d, b in zip(delays, bases, strict=True))
    assert len({round(d / b, 6) for d, b in zip(delays[-50:], bases[-50:], strict=True)}) > 1  # it does vary


def test_a_crash_loop_of_days_stays_at_the_cap() -> None:
    # The supervisor's own formula, 0.25 * 2 ** (failures - 1), raised OverflowError
    # (int too large to convert to float) at its 1,025th consecutive failure: after
    # about 8.5 hours of a plugin crashing on start, the supervisor itself died.
    backoff = Backoff(0.25, 30.0, uniform=exact)
    delays = [backoff.next() for _ in range(5000)]
    assert delays[-1] == 30.0 and max(delays) == 30.0 and all(math.isfinite(d) for d in delays)


@pytest.mark.parametrize("kwargs", [
    {"initial": -1.0, "cap": 1.0}, {"initial": 1.0, "cap": -1.0}, {"initial": 1.0, "cap": 1.0, "factor": 0.5},
    {"initial": 1.0, "cap": 1.0, "jitter": (1.2, 0.8)}, {"initial": 1.0, "cap": 1.0, "jitter": (-0.1, 1.0)},
])
def test_nonsense_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(**kwargs)


def test_server_pool_skips_a_down_server_for_1s_then_2s(monkeypatch: pytest.MonkeyPatch) -> None:
    """ServerPool.mark_down: 1 s, then 2 s, then 4 s, each +-20 %."""
    now = [1000.0]
    monkeypatch.setattr(connection.time, "monotonic", lambda: now[0])
    address = ServerAddress("127.0.0.1", 1)
    pool = ServerPool([address])
    error = ConnectionFailed("refused")

    def down_for(delay: float) -> tuple[bool, bool]:
        start = now[0]
        shortest = []
        for offset in (0.79, 1.21):
            now[0] = start + offset * delay
            shortest.append(pool.is_down(address))
        now[0] = start
        return shortest[0], shortest[1]

    for delay in (1.0, 2.0, 4.0):
        pool.mark_down(address, error)
        assert down_for(delay) == (True, False), delay
    assert pool.errors[address] is error
