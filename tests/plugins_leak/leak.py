"""A job function that leaks 2 kB a job, for benchmarks/soak_worker.py to catch.
Its name comes from BENCH_FUNCTION, as benchmarks/plugins/noop.py's does."""

import os

_kept = []


def leak(job):
    _kept.append(os.urandom(2048))


def gearman_functions():
    return [{"function_name": os.environ.get("BENCH_FUNCTION", "leak"), "function": leak}]
