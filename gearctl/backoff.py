"""Exponential back-off with jitter and a cap: the one helper every retry loop uses.

Three loops wait this way: a client's server pool skipping a server that is
down (connection.py), a worker reconnecting to a server it lost (worker.py)
and the supervisor respawning a process that died young (supervisor.py).
Each delay is the previous one times `factor`, at most `cap`, then spread by
a random factor within `jitter`, so that processes that failed together do
not all come back at the same instant. The un-jittered delay is kept capped,
so a loop that retries for days never grows a number past the cap (and never
overflows a float). No clock and no sleeping here: a caller asks for the
next delay and waits it in its own way.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays of initial, initial*factor, ... up to cap, each times U(jitter)."""

    __slots__ = ("_base", "_uniform", "attempts", "cap", "factor", "initial", "jitter")

    def __init__(self, initial: float, cap: float, *, factor: float = 2.0,
                 jitter: tuple[float, float] = (0.8, 1.2),
                 uniform: Callable[[float, float], float] = random.uniform) -> None:
        if initial < 0 or cap < 0 or factor < 1 or not 0 <= jitter[0] <= jitter[1]:
            raise ValueError(f"back-off needs initial >= 0, cap >= 0, factor >= 1 and 0 <= jitter low <= high; "
                             f"got initial={initial}, cap={cap}, factor={factor}, jitter={jitter}")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._uniform = uniform  # a fixed one makes the delays exact, for tests
        self.attempts = 0  # delays handed out since the start or the last reset()
        self._base = initial

    def next(self) -> float:
        """The delay to wait before the next attempt; the one after grows."""
        delay = min(self._base, self.cap)
        self._base = delay * self.factor
        self.attempts += 1
        return delay * self._uniform(*self.jitter)

    def reset(self) -> None:
        """After a success: the next delay is `initial` again."""
        self._base = self.initial
        self.attempts = 0
