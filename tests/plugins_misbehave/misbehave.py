"""Job functions that misbehave, for the worker's robustness tests."""

import asyncio
import sys
import time

from gearctl import job

print("a plugin printing at import")  # must not reach stdout


@job
def calls_exit(j):
    sys.exit(int(j.workload() or 0))


@job
def raises_interrupt(j):
    raise KeyboardInterrupt()


@job
def raises_timeout_error(j):
    raise TimeoutError("the database did not answer")


@job(timeout=1)
def swallows_everything(j):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # a plugin that swallows errors must still time out
        try:  # noqa: SIM105
            time.sleep(0.05)
        except Exception:
            pass
    return b"should not get here"


@job(timeout=1)
async def blocks_the_loop(j):
    time.sleep(2)  # blocking in an async function: cannot be cancelled, still fails as timed out
    return b"late"


@job
async def raises_cancelled(j):
    raise asyncio.CancelledError()


@job
def talks(j):
    print("printed by the job")
    return b"result"


@job
def echo(j):
    return j.workload()


def gearman_functions():
    return [{"function_name": "grandchild", "command": ["sh", "-c", "sleep 30; echo done"], "timeout": 1}]
