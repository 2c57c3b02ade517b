"""The benchmark's no-op job function; its name comes from BENCH_FUNCTION."""

import os


def noop(job):
    return None


def gearman_functions():
    return [{"function_name": os.environ.get("BENCH_FUNCTION", "noop"), "function": noop}]
