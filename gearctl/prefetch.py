"""How many jobs a worker process holds at once: `--prefetch auto` (the
default) or a fixed `--prefetch N`.

A held job is one the server handed to this process that has not ended: the
one running and the ones waiting behind it. Holding more than one saves a round
trip per job (the next job is already here when one ends), which is what makes
short jobs fast; but a held job waits for the ones before it, while another
process of the pool may sit idle. The rule for `auto`:

    hold no more work than this process can finish within the budget
    (--prefetch-budget, default 50 ms):  window = budget / expected duration

* It starts at 1: nothing is known yet.
* Each function's expected duration is a moving estimate of its jobs' run
  times: it rises at once to a job that ran longer, and falls back a fifth of
  the way per job that ran shorter (so one slow job narrows the window at once,
  and about ten quick ones widen it again).
* The window follows the slowest function seen in the last STALE seconds: a
  worker does not know which function the next job it grabs is for.
* A job that runs longer than the budget narrows the window to 1 as it ends.
  Jobs already held wait behind it: gearmand has no way to hand a job back short
  of closing the connection. That is the one case a held job can wait longer
  than the budget, and it happens once per change of pace, not once per job.
* The window never passes AUTO_MAX, nor HELD_BYTES of workloads as large as the
  largest lately (estimated the same way): a held job's workload is in memory, and
  64 held jobs of 10 MB each would be 640 MB.

A process serving several servers shares its window among them. WindowSize is
sans-IO and takes the time as an argument, so it is tested without sockets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UsageError
from .timeparse import parse_duration

AUTO = "auto"
AUTO_MAX = 64  # jobs held at most with --prefetch auto
BUDGET = 0.05  # seconds: --prefetch-budget's default
STALE = 60.0  # seconds: a function not run for this long stops holding the window down
FALL = 0.2  # how far an estimate moves towards a shorter run time, per job
QUICK = 0.001  # seconds: a function expected to run this fast is "quick" (see quick())
HELD_BYTES = 32 * 1024 * 1024  # workload bytes held at most, at the largest workload's size


@dataclass(frozen=True)
class PrefetchSetting:
    """What --prefetch says: a fixed number of jobs, or auto within a budget."""

    fixed: int | None = None  # None: auto
    budget: float = BUDGET

    @property
    def auto(self) -> bool:
        return self.fixed is None

    def __str__(self) -> str:
        return AUTO if self.fixed is None else str(self.fixed)


def parse_prefetch(text: str | int) -> PrefetchSetting:
    """`auto` or a whole number from 1 to 1000; ValueError otherwise."""
    if isinstance(text, int) or str(text).strip().isdigit():
        n = int(text)
        if not 1 <= n <= 1000:
            raise ValueError(f"--prefetch must be auto or from 1 to 1000, not {n}")
        return PrefetchSetting(fixed=n)
    if str(text).strip().lower() == AUTO:
        return PrefetchSetting()
    raise ValueError(f"--prefetch must be auto or a number of jobs, not {text!r}")


def prefetch_setting(prefetch: int | str | PrefetchSetting = AUTO,
                     budget: float | str | None = None) -> PrefetchSetting:
    """--prefetch and --prefetch-budget (Worker's prefetch and prefetch_budget) as
    one setting; UsageError (exit 2) when either is bad."""
    try:
        setting = prefetch if isinstance(prefetch, PrefetchSetting) else parse_prefetch(prefetch)
        if budget is not None:
            seconds = parse_duration(budget, "--prefetch-budget") if isinstance(budget, str) else float(budget)
            if not seconds > 0:
                raise ValueError(f"--prefetch-budget must be more than 0, not {budget!r}")
            setting = PrefetchSetting(setting.fixed, seconds)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return setting


class WindowSize:
    """The jobs a worker process may hold now, from its jobs' measured run times."""

    __slots__ = ("_estimates", "budget", "fixed", "largest", "maximum", "size")

    def __init__(self, setting: PrefetchSetting | None = None, maximum: int = AUTO_MAX) -> None:
        setting = setting or PrefetchSetting()
        self.fixed = setting.fixed
        self.budget = setting.budget
        self.maximum = maximum
        self.size = setting.fixed or 1
        self._estimates: dict[str, tuple[float, float]] = {}  # function -> (seconds expected, when last run)
        self.largest = 0.0  # workload bytes expected at most (any function)

    def record(self, function: str, seconds: float, now: float, size: int = 0) -> int:
        """A job of `function` with a workload of `size` bytes ran for `seconds`;
        returns the window now."""
        if self.fixed is not None:
            return self.size
        expected, _ = self._estimates.get(function, (seconds, now))
        expected = seconds if seconds >= expected else expected + FALL * (seconds - expected)
        self._estimates[function] = (expected, now)
        self.largest = size if size >= self.largest else self.largest + FALL * (size - self.largest)
        if seconds > self.budget:
            self.size = 1  # it ran long: narrow at once, whatever the others say
            return 1
        if len(self._estimates) == 1:  # one function (the usual case): no others to weigh
            slowest = expected
        else:
            slowest = max(e for e, last in self._estimates.values() if now - last < STALE)  # this one's is fresh
        most = self.maximum if slowest <= 0 else math.floor(self.budget / slowest)
        if self.largest > 0:
            most = min(most, math.floor(HELD_BYTES / self.largest))
        self.size = max(1, min(self.maximum, most))
        return self.size

    def quick(self, function: str) -> bool:
        """Is `function` known to run in about a millisecond or less? (The worker
        writes finished jobs' replies before it starts one that is not.)"""
        known = self._estimates.get(function)
        return known is not None and known[0] <= QUICK

    def share(self, servers: int) -> int:
        """Each of `servers` connections' part of the window (a fixed
        --prefetch N is per server, as it always was)."""
        if self.fixed is not None or servers <= 1:
            return self.size
        return max(1, self.size // servers)
