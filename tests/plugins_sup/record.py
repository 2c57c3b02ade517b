"""Supervision test plugin: every run appends 'workload pid' to $GEARCTL_TEST_RECORD."""

import os
import time

from gearctl import job


def _record(j):
    with open(os.environ["GEARCTL_TEST_RECORD"], "a") as f:
        f.write(f"{j.workload().decode()} {os.getpid()}\n")


@job
def nap(j):
    """Workload 'name:seconds': sleeps, then records the run."""
    _, _, seconds = j.workload().decode().partition(":")
    time.sleep(float(seconds or 0))
    _record(j)
    return f"rested {j.workload().decode()}"
