#!/usr/bin/env python3
"""gearctl worker beside the C `gearman -w`, in one run, on private gearmands.

    python3 benchmarks/bench_worker.py [--jobs 20000] [--prefetch 16] [--repeat 3]

Queues --jobs background jobs on a fresh gearmand (checked there), then times how
long one worker takes to drain them, process start included:
  C:        `gearman -w -f F -c N` (it exits after N jobs)
  default:  `gearctl worker -p benchmarks/plugins` with no other flag: the default
            prefetch and log level, its stderr to a file as a journal would take it
  --prefetch 16, and --prefetch 1 for reference (one round trip a job, as the C worker)
  the Python floor, for reference: `floor.py drain` with 64 and with 16 grabs (asyncio
            and typer imported, then a bare blocking socket: no job object, no log,
            no supervisor; the least any Python worker command takes)
The gearctl worker runs a no-op plugin function; it is watched through the admin
protocol until the queue is empty and nothing runs, then stopped with SIGTERM;
its log must hold one "complete" line a job (the default level logs each).
Best of --repeat. "Once started" is the rate from the first job done to the last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    FLOOR,
    GEARCTL,
    PLUGINS,
    POLL,
    BenchError,
    Row,
    Server,
    Target,
    best,
    counts,
    expect,
    finish,
    lines_file,
    machine,
    parser,
    per_second,
    print_table,
    rate_row,
    require_c_tools,
    spawn,
    stop,
    timed,
    workdir,
)


def fill(server: Server, function: str, jobs: Path, expected: int) -> None:
    finish(spawn([*GEARCTL, "client", function, "-n", "-q", *server.gearctl], jobs), "queueing the jobs", 300)
    expect(f"jobs queued for {function}", expected, counts(server.port, function)[0])


def gearctl_worker(server: Server, log: Path, *flags: str, function: str = "f") -> subprocess.Popen[bytes]:
    """`gearctl worker` on the no-op plugin, serving `function`, stderr to `log`."""
    return spawn([*GEARCTL, "worker", "-p", str(PLUGINS), *server.gearctl, *flags], log=log,
                 env=dict(os.environ, BENCH_FUNCTION=function))


def completed(*logs: Path) -> int:
    """Jobs the gearctl workers logged complete: one info line a job at the default level."""
    return sum(log.read_bytes().count(b" complete in ") for log in logs)


def drained(server: Server, function: str, proc: subprocess.Popen[bytes], full: int) -> tuple[float, float | None]:
    """Wait until `function` has nothing queued or running while `proc` serves
    it: (the time it happened, the rate from the first job done to then)."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + 600
    while (now := counts(server.port, function)) != (0, 0):
        if first is None and now[0] < full:
            first = (time.perf_counter(), now[0])
        if proc.poll() is not None:
            raise BenchError(f"the worker exited ({proc.returncode}) with {now[0]:,} jobs left")
        if time.monotonic() > deadline:
            raise BenchError(f"the worker did not drain the queue in 600 s ({now[0]:,} left)")
        time.sleep(POLL)
    end = time.perf_counter()
    return end, (first[1] / (end - first[0]) if first is not None and end > first[0] else None)


class Drains:
    """Drain runs on fresh gearmands, each filled with the same jobs."""

    def __init__(self, tmp: Path, jobs: int) -> None:
        self.tmp, self.jobs = tmp, jobs
        self.lines = lines_file(tmp / "jobs.txt", "job", jobs)
        self.once: dict[str, list[float]] = {}

    def c(self) -> float:
        with Server(self.tmp) as server:
            fill(server, "f", self.lines, self.jobs)
            seconds, _err = timed(["gearman", *server.c, "-w", "-f", "f", "-c", str(self.jobs)])
            expect("jobs left after the C worker", 0, counts(server.port, "f")[0])
        return seconds

    def floor(self, window: int) -> float:
        with Server(self.tmp) as server:
            fill(server, "f", self.lines, self.jobs)
            seconds, _err = timed([*FLOOR, "drain", server.address, "f", str(self.jobs), str(window)])
            expect("jobs left after the Python floor's drain", 0, counts(server.port, "f")[0])
        return seconds

    def gearctl(self, name: str, *flags: str) -> float:
        with Server(self.tmp) as server:
            fill(server, "f", self.lines, self.jobs)
            start = time.perf_counter()
            log = server.dir / "worker.log"
            proc = gearctl_worker(server, log, *flags)
            try:
                end, once = drained(server, "f", proc, self.jobs)
            finally:
                stop(proc)
            expect("jobs the gearctl worker logged complete", self.jobs, completed(log))
        if once is not None:
            self.once.setdefault(name, []).append(once)
        return end - start


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--prefetch", type=int, default=16)
    args = p.parse_args()
    require_c_tools()
    n, k = args.jobs, args.prefetch
    with workdir() as tmp:
        d = Drains(tmp, n)
        t = best(args.repeat, {
            "c": d.c,
            "default": lambda: d.gearctl("default"),
            "k": lambda: d.gearctl("k", "--prefetch", str(k)),
            "1": lambda: d.gearctl("1", "--prefetch", "1"),
            "floor 64": lambda: d.floor(64),
            "floor k": lambda: d.floor(k),
        })

    def once(name: str) -> Row:
        rate = max(d.once.get(name, [0.0]))
        return Row("  the same, once its first job was done", f"{rate:,.0f} jobs/s", per_second(n, t["c"]),
                   rate * t["c"] / n)

    rows = [
        rate_row(f"default drain, {n:,} no-op jobs: `worker` (no flags)", n, t["default"], t["c"], Target(">=", 2)),
        once("default"),
        rate_row(f"`--prefetch {k}` drain", n, t["k"], t["c"], Target(">=", 4) if k == 16 else None),
        once("k"),
        rate_row("`--prefetch 1` drain (one round trip a job, as C)", n, t["1"], t["c"]),
        rate_row("the Python floor's drain, 64 grabs (`floor.py drain`)", n, t["floor 64"], t["c"]),
        rate_row(f"  the same, {k} grabs", n, t["floor k"], t["c"]),
    ]
    print_table(f"gearctl worker vs `gearman -w -c N` ({machine()}, best of {args.repeat}, whole processes)", rows,
                notes=["C: `gearman -w -f F -c N`, one process; gearctl: a supervisor and one worker process."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
