"""Supervision test plugin: a job the test holds open, so it is still running when
the test signals or kills a process, however slow the machine.

`held` waits until the file $GEARCTL_TEST_RELEASE exists (at most 120 s), then
records the run as `nap` does ('workload pid' appended to $GEARCTL_TEST_RECORD).
Async, so the worker's event loop stays free while it waits."""

import asyncio
import os
import time

from gearctl import job


@job
async def held(j):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.environ["GEARCTL_TEST_RELEASE"]):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the job")
        await asyncio.sleep(0.02)
    with open(os.environ["GEARCTL_TEST_RECORD"], "a") as f:
        f.write(f"{j.workload().decode()} {os.getpid()}\n")
    return f"rested {j.workload().decode()}"
