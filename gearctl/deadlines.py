"""Deadlines: a timeout turned into a point on the monotonic clock, once.

A request made of several waits (connect, then submit, then the result) gets
one deadline at its start, and each wait is bounded by what is left of it, so
the caller's `--timeout` bounds the whole and not each step. `None` means no
deadline throughout: every helper passes it through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from .errors import Timeout

T = TypeVar("T")


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic time `timeout` seconds from now (None: no deadline)."""
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until `deadline`, never below 0 (None: no deadline)."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


async def within(awaitable: Awaitable[T], deadline: float | None, what: str) -> T:
    """Await `awaitable` until `deadline`; past it, Timeout("timed out <what>")."""
    if deadline is None:
        return await awaitable
    try:
        return await wait_at_most(awaitable, remaining(deadline))
    except asyncio.TimeoutError:
        raise Timeout(f"timed out {what}") from None


async def wait_at_most(awaitable: Awaitable[T], timeout: float | None) -> T:
    """asyncio.wait_for(awaitable, timeout), without its flaw before Python
    3.12: a cancel that arrives as the awaitable finishes is lost there (its
    result is returned instead), so a caller's own deadline, which cancels, could
    be waited past for as long as a peer keeps sending (one byte a second)."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()  # we were cancelled: so is what we waited for
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})  # let it clean up (close its connection), as wait_for does
        raise asyncio.TimeoutError
    return task.result()
