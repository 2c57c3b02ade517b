"""Job functions for tests/test_retries.py. Each run appends one JSON line
(attempt, attempts, unique, workload, time) to $RETRY_RECORD/<function>.jsonl."""

import json
import os
import time

from gearctl import JobFailed, job


def record(j):
    directory = os.environ.get("RETRY_RECORD")
    if directory:
        line = {"attempt": j.attempt, "attempts": j.attempts, "unique": j.unique, "handle": j.handle,
                "workload": j.workload().decode("utf-8", "replace"), "time": time.time()}
        with open(os.path.join(directory, f"{j.function_name}.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")


@job(retries=2, retry_backoff="1s")
def flaky(j):
    """Fails its first two attempts, then completes."""
    record(j)
    if j.attempt < 3:
        raise RuntimeError(f"flaky attempt {j.attempt}")
    return b"done on attempt 3"


@job(retries=1, retry_backoff=0.2)
def always(j):
    record(j)
    raise ValueError(f"always broken: {j.workload().decode()}")


@job(retries=3, retry_on="exception")
def says_no(j):
    """WORK_FAIL (JobFailed), which retry_on=exception does not retry."""
    record(j)
    raise JobFailed("said no")


@job(dead_letter=False)
def forgotten(j):
    record(j)
    raise ValueError("forgotten")


@job(retries=1, retry_backoff=0.2)
def refused(j):
    record(j)
    raise ValueError("refused attempt")


@job(retries=1, retry_backoff=0.2)
def stuck(j):
    record(j)
    raise ValueError("stuck attempt")


def gearman_functions():
    def hooked(j):
        record(j)
        raise ValueError("hooked")

    return [{"function_name": "hooked", "function": hooked, "retries": 0, "dead_letter_suffix": ".failed"}]


@job
def plain_fail(j):
    """No retry options of its own: the worker's flags decide."""
    record(j)
    raise ValueError("plain failure")


@job(retries=2, retry_backoff=0.2)
def until_fixed(j):
    """Fails until the test creates $RETRY_RECORD/fixed (the outage is over)."""
    record(j)
    if not os.path.exists(os.path.join(os.environ.get("RETRY_RECORD", ""), "fixed")):
        raise RuntimeError("SMTP server refused the connection")
    return b"sent"
