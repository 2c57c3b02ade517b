"""Reliability test plugin: what ran, and what finished.

Every job appends 'workload pid' to $GEARCTL_TEST_STARTED when it starts and
'workload unique pid' to $GEARCTL_TEST_RECORD when it is done (append-only, one
line each, no fsync: a line written before a kill -9 of the worker is in the
kernel already). `held` also waits, first, until the file $GEARCTL_TEST_RELEASE
exists (at most 120 s), so it is still running when the test kills something."""

import asyncio
import os
import time

from gearctl import job


def _append(variable, line):
    with open(os.environ[variable], "a") as f:
        f.write(line + "\n")


@job
def record(j):
    key = j.workload().decode()
    _append("GEARCTL_TEST_STARTED", f"{key} {os.getpid()}")
    _append("GEARCTL_TEST_RECORD", f"{key} {j.unique} {os.getpid()}")


@job
async def held(j):
    key = j.workload().decode()
    _append("GEARCTL_TEST_STARTED", f"{key} {os.getpid()}")
    deadline = time.monotonic() + 120
    while not os.path.exists(os.environ["GEARCTL_TEST_RELEASE"]):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the job")
        await asyncio.sleep(0.02)
    _append("GEARCTL_TEST_RECORD", f"{key} {j.unique} {os.getpid()}")
    return f"done {key}"
