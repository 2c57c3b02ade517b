#!/usr/bin/env python3
"""gearctl worker beside the C `gearman -w`, in one run, on a private gearmand.

    python3 benchmarks/bench_worker.py [--jobs 20000] [--prefetch 16] [--repeat 3]

Queues --jobs background jobs, then times how long a worker takes to drain them
(process start included): `gearman -w -f F -c N` against `gearctl worker` with a
no-op plugin function, one process each. The C worker exits after N jobs; the
gearctl worker is watched through the admin protocol until the queue is empty
and nothing runs, then stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_client import Server, admin

HERE = Path(__file__).parent


def counts(port: int, function: str) -> tuple[int, int]:
    for line in admin(port, "status"):
        name, total, running, _workers = line.rsplit("\t", 3)
        if name == function:
            return int(total), int(running)
    return 0, 0


def fill(port: int, function: str, jobs: Path, expect: int) -> None:
    with jobs.open("rb") as f:
        subprocess.run([sys.executable, "-m", "gearctl", "client", function, "-n", "-q", "-s", f"127.0.0.1:{port}"],
                       stdin=f, check=True, timeout=300)
    if counts(port, function)[0] != expect:
        raise SystemExit(f"{function}: expected {expect} queued jobs")


def drain_c(port: int, function: str, n: int) -> float:
    start = time.perf_counter()
    subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(port), "-w", "-f", function, "-c", str(n)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600)
    elapsed = time.perf_counter() - start
    if counts(port, function)[0] != 0:
        raise SystemExit(f"{function}: the C worker left jobs behind")
    return elapsed


IN_RUN: dict[int, list[float]] = {}  # prefetch -> drain rates once the first job was done


def drain_gearctl(port: int, function: str, prefetch: int) -> float:
    env = dict(os.environ, BENCH_FUNCTION=function)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gearctl", "worker", "-p", str(HERE / "plugins"),
                             "-s", f"127.0.0.1:{port}", "--prefetch", str(prefetch), "--log-level", "error"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first: tuple[float, int] | None = None
    try:
        deadline = time.monotonic() + 600
        while (now := counts(port, function)) != (0, 0):
            if first is None and now[0] < FULL:
                first = (time.perf_counter(), now[0])
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the gearctl worker stopped before draining the queue")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    if first is not None and time.perf_counter() > first[0]:
        IN_RUN.setdefault(prefetch, []).append(first[1] / (start + elapsed - first[0]))
    return elapsed


FULL = 0  # set in main(): the queue's size before a drain


def main() -> int:
    global FULL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    FULL = args.jobs
    if not shutil.which("gearman"):
        raise SystemExit("the C gearman tool is not installed (Debian: gearman-tools)")
    tmp = Path(tempfile.mkdtemp(prefix="gearctl-bench-"))
    jobs = tmp / "jobs.txt"
    jobs.write_bytes(b"".join(b"job-%d\n" % i for i in range(args.jobs)))
    c_times: list[float] = []
    g_times: list[float] = []
    g1_times: list[float] = []
    try:
        for _ in range(args.repeat):
            for times, drain in ((c_times, lambda port: drain_c(port, "f", args.jobs)),
                                 (g_times, lambda port: drain_gearctl(port, "f", args.prefetch)),
                                 (g1_times, lambda port: drain_gearctl(port, "f", 1))):
                server = Server(tmp)  # a fresh gearmand for every run: the same start for each tool
                try:
                    fill(server.port, "f", jobs, args.jobs)
                    times.append(drain(server.port))
                finally:
                    server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c_rate, g_rate, g1_rate = (args.jobs / min(t) for t in (c_times, g_times, g1_times))
    in_run = max(IN_RUN.get(args.prefetch, [0.0]))
    print(f"worker drain of {args.jobs} queued jobs, no-op function ({os.cpu_count()} cores, best of {args.repeat},"
          " process start included)")
    print(f"{'C gearman -w -c N':36} {c_rate:>10,.0f} jobs/s")
    print(f"{f'gearctl worker --prefetch {args.prefetch}':36} {g_rate:>10,.0f} jobs/s")
    print(f"{'gearctl worker --prefetch 1':36} {g1_rate:>10,.0f} jobs/s")
    print(f"ratio gearctl (--prefetch {args.prefetch}) / C: {g_rate / c_rate:6.2f}x")
    print(f"ratio gearctl (--prefetch 1) / C:  {g1_rate / c_rate:6.2f}x")
    print(f"  gearctl --prefetch {args.prefetch} once its first job was done (start-up left out): "
          f"{in_run:,.0f} jobs/s, {in_run / c_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
