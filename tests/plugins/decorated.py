"""Test plugin in the decorator form."""

import asyncio
import time

from gearctl import job


@job
def reverse(j):
    return j.workload()[::-1]


@job("boom")
def explode(j):
    raise ValueError("cannot handle " + j.workload().decode())


@job("sleepy", timeout=1)
def sleepy(j):
    time.sleep(30)


@job("progress", encoding="json")
async def progress(j):
    for i in range(1, 4):
        j.send_status(i, 3)
        j.send_data(f"part{i};")
        await asyncio.sleep(0.01)
    j.send_warning("almost done")
    return {"total": sum(j.data)}
