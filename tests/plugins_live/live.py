"""Live-table test plugin: plain (non-async) functions, which block the worker's event loop."""

import os
import time

from gearctl import job


@job
def hold(j):
    """Workload: a path. Runs until the test creates that file."""
    release = j.workload().decode()
    while not os.path.exists(release):
        time.sleep(0.02)
    return b"released"


@job
def fails(j):
    raise ValueError("bad payload " + j.workload().decode())


@job
def never_runs(j):
    return b""


@job
def chatter(j):
    print("chatter says " + j.workload().decode())
    return b"said"
