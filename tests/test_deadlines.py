"""deadlines.py: one deadline per request, what is left of it, and a wait bounded by it. No sockets."""

from __future__ import annotations

import asyncio
import time

import pytest

from gearctl.deadlines import deadline_after, remaining, within
from gearctl.errors import Timeout


def test_no_timeout_is_no_deadline_throughout() -> None:
    assert deadline_after(None) is None
    assert remaining(None) is None


def test_a_deadline_is_timeout_seconds_from_now() -> None:
    before = time.monotonic()
    deadline = deadline_after(30.0)
    after = time.monotonic()
    assert deadline is not None and before + 30.0 <= deadline <= after + 30.0
    left = remaining(deadline)
    assert left is not None and 0.0 < left <= 30.0


def test_what_is_left_of_a_past_deadline_is_zero_not_negative() -> None:
    assert remaining(time.monotonic() - 5.0) == 0.0


def test_within_gives_the_result_before_the_deadline_and_without_one() -> None:
    async def answer() -> int:
        return 42

    async def go() -> tuple[int, int]:
        return await within(answer(), deadline_after(30.0), "answering"), await within(answer(), None, "answering")

    assert asyncio.run(go()) == (42, 42)


def test_within_raises_timeout_naming_what_timed_out() -> None:
    async def go() -> None:
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await within(never, deadline_after(0.0), "waiting for the jobs")

    with pytest.raises(Timeout, match=r"^timed out waiting for the jobs$"):
        asyncio.run(go())
