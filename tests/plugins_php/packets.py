"""One function per WORK_* packet a gearctl worker sends, for PHP clients to receive
(tests/test_php_interop.py)."""

import time

from gearctl import job


@job
def wk_status(job):
    job.send_status(1, 2)
    job.send_status(2, 2)
    return "done"


@job
def wk_data(job):
    job.send_data(b"part1;")
    job.send_data("part2;")
    return "end"


@job
def wk_warning(job):
    job.send_warning("careful now")
    return "ok"


@job
def wk_exception(job):
    raise ValueError("boom: " + str(job.data))


@job(timeout=0.5)
def wk_timeout(job):
    time.sleep(60)  # interrupted by the timeout


@job
def wk_return(job):
    return {"got": job.data, "encoding": job.encoding}


@job
def wk_decode(job):
    return job.data  # a workload that does not decode fails the job here
