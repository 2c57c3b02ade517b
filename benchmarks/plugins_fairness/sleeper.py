"""bench_fairness.py's job function: it sleeps BENCH_SLEEP seconds (default 0.2)
and records itself. Its name comes from BENCH_FUNCTION, as plugins/noop.py's does.

Each job appends one JSON line, {"handle", "pid", "start", "end"} (epoch
seconds), to the file named by BENCH_RECORD: one write() on an O_APPEND
descriptor, so the lines of the pool's processes never interleave.
"""

import json
import os
import time


def sleeper(job):
    start = time.time()
    time.sleep(float(os.environ.get("BENCH_SLEEP", "0.2")))
    end = time.time()
    line = json.dumps({"handle": job.handle, "pid": os.getpid(), "start": start, "end": end}) + "\n"
    fd = os.open(os.environ["BENCH_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def gearman_functions():
    return [{"function_name": os.environ.get("BENCH_FUNCTION", "sleeper"), "function": sleeper}]
