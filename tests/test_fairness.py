"""The fairness property of --prefetch auto (the default): with slow jobs a
worker process holds no job while another process of the pool sits idle.

`gearctl worker -c 2` serves 40 jobs of 200 ms (benchmarks/plugins_fairness:
each job records its handle, pid, start and end); the worker's debug start
lines say how long each job was held. benchmarks/fairness.py, which the
fairness benchmark uses too, turns them into the longest time a job sat held
while another process was idle. Timing-free as well: no job arrived at a
process while that process was still running another job (the held window
stayed at 1 for jobs longer than the budget).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
from pathlib import Path

from conftest import Gearmand, Procs, child_pids, clean_env, wait_until

from gearctl.prefetch import BUDGET
from gearctl.protocol import PacketType, encode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import fairness  # noqa: E402  (benchmarks/fairness.py)

JOBS, SLEEP = 40, 0.2


def test_slow_jobs_are_never_held_while_another_process_is_idle(gearmand: Gearmand, procs: Procs,
                                                                tmp_path: Path) -> None:
    record, log = tmp_path / "record.jsonl", tmp_path / "worker.log"
    env = clean_env(BENCH_FUNCTION="fair", BENCH_SLEEP=str(SLEEP), BENCH_RECORD=str(record))
    with log.open("wb") as err:
        worker = procs.start(
            [sys.executable, "-m", "gearctl", "worker", "-p", str(ROOT / "benchmarks" / "plugins_fairness"),
             "-c", "2", "-s", gearmand.address, "--log-format", "json", "--log-level", "debug"],
            stderr=err, env=env)
    wait_until(lambda: gearmand.status().get("fair", (0, 0, 0))[2] == 2, 30, what="2 worker processes registered")
    pool = child_pids(worker.pid)
    assert len(pool) == 2
    with socket.create_connection(("127.0.0.1", gearmand.port), timeout=10) as s:
        s.sendall(b"".join(encode(PacketType.SUBMIT_JOB_BG, b"fair", b"", b"%d" % i) for i in range(JOBS)))
        wait_until(lambda: record.exists() and len(record.read_text().splitlines()) == JOBS, 120,
                   what=f"{JOBS} jobs run")
    wait_until(lambda: log.read_text().count('"event": "start"') >= JOBS, 30, what="every start line logged")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0

    records = fairness.read_records(record.read_text().splitlines())
    held = fairness.read_held(log.read_text().splitlines())
    assert len(records) == JOBS and set(held) >= set(records)  # every job ran once, each with its start line
    assert {pid for pid, _, _ in records.values()} <= set(pool)
    spans = fairness.spans(records, held)
    longest = fairness.longest_held_while_idle(spans, pids=pool)
    assert longest <= BUDGET, fairness.holds_while_idle(spans, pids=pool)[:3]
    # The mechanism: a job reached its process only once that process had ended the one before.
    for pid in pool:
        mine = sorted((s for s in spans if s.pid == pid), key=lambda s: s.start)
        for before, after in itertools.pairwise(mine):
            assert after.start - after.held >= before.end - 0.002, (before, after)
    assert gearmand.status()["fair"][:2] == (0, 0)
