#!/usr/bin/env python3
"""End to end, in the background: 2 submitters and 2 workers at once, gearctl beside the C tools.

    python3 benchmarks/bench_e2e.py [--jobs 20000] [--repeat 3]

On a fresh gearmand per run, four processes are started together and timed until
all --jobs are done (both submitters exited, and nothing queued or running):
  C:        `gearman -b -n -f F < half` x2 and `gearman -w -f F -c half` x2
  gearctl:  `gearctl client F -n -q < half` x2 and `gearctl worker` x2 (default flags,
            the no-op plugin, stderr to a file)
and, for reference, the Python floor: `floor.py submit` x2 and `floor.py drain` x2
(asyncio and typer imported, then bare blocking sockets; the least any Python
command lines take).
Checked: every submitter exits 0 (gearctl exits non-zero when any line was not
queued), the server ends with nothing queued or running, the two C workers exit
by themselves, having served exactly half the jobs each, and the two gearctl
workers' logs hold one "complete" line a job, --jobs in all. Best of --repeat.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_worker import completed, gearctl_worker
from benchlib import (
    FLOOR,
    GEARCTL,
    POLL,
    BenchError,
    Server,
    Target,
    best,
    command_line,
    counts,
    expect,
    finish,
    lines_file,
    machine,
    parser,
    print_table,
    rate_row,
    require_c_tools,
    spawn,
    stop,
    workdir,
)

Processes = Callable[[Server], tuple[list[subprocess.Popen[bytes]], list[subprocess.Popen[bytes]]]]


def until_done(server: Server, submitters: list[subprocess.Popen[bytes]],
               workers: list[subprocess.Popen[bytes]]) -> float:
    """Poll until every submitter has exited and the function is empty; the time then."""
    deadline = time.monotonic() + 600
    while True:
        if all(p.poll() is not None for p in submitters) and counts(server.port, "e2e") == (0, 0):
            return time.perf_counter()
        if dead := [p for p in workers if p.poll() is not None and p.returncode != 0]:
            raise BenchError(f"a worker exited {dead[0].returncode}: {command_line(dead[0])}")
        if time.monotonic() > deadline:
            raise BenchError(f"the jobs were not done in 600 s ({counts(server.port, 'e2e')[0]:,} left)")
        time.sleep(POLL)


def run(tmp: Path, start_all: Processes, c_workers: bool, n: int,
        server_kind: Callable[[Path], Server] = Server, logged: bool = True) -> float:
    """One timed run on a fresh server (gearmand unless `server_kind` says);
    `logged`: gearctl workers, whose logs must hold a complete line a job."""
    with server_kind(tmp) as server:
        start = time.perf_counter()
        submitters, workers = start_all(server)
        try:
            end = until_done(server, submitters, workers)
            for p in submitters:
                finish(p, "a submitter")
            if c_workers:  # each exits after its N jobs: that is the count check
                for p in workers:
                    finish(p, "a C worker", timeout=60)
        finally:
            for p in (*submitters, *workers):
                stop(p)
        expect("jobs left", 0, counts(server.port, "e2e")[0])
        if logged and not c_workers:
            expect("jobs the gearctl workers logged complete", n, completed(*server.dir.glob("worker-*.log")))
    return end - start


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs in all, half from each submitter")
    args = p.parse_args()
    require_c_tools()
    half = args.jobs // 2
    n = 2 * half
    with workdir() as tmp:
        halves = [lines_file(tmp / "a.txt", "a", half), lines_file(tmp / "b.txt", "b", half)]

        def c(server: Server) -> tuple[list[subprocess.Popen[bytes]], list[subprocess.Popen[bytes]]]:
            return ([spawn(["gearman", *server.c, "-b", "-n", "-f", "e2e"], lines) for lines in halves],
                    [spawn(["gearman", *server.c, "-w", "-f", "e2e", "-c", str(half)]) for _ in halves])

        def gearctl(server: Server) -> tuple[list[subprocess.Popen[bytes]], list[subprocess.Popen[bytes]]]:
            return ([spawn([*GEARCTL, "client", "e2e", "-n", "-q", *server.gearctl], lines) for lines in halves],
                    [gearctl_worker(server, server.dir / f"worker-{i}.log", function="e2e") for i in (1, 2)])

        def floor(server: Server) -> tuple[list[subprocess.Popen[bytes]], list[subprocess.Popen[bytes]]]:
            return ([spawn([*FLOOR, "submit", server.address, "e2e"], lines) for lines in halves],
                    [spawn([*FLOOR, "drain", server.address, "e2e", "0"]) for _ in halves])

        t = best(args.repeat, {"c": lambda: run(tmp, c, True, n), "g": lambda: run(tmp, gearctl, False, n),
                               "floor": lambda: run(tmp, floor, False, n, logged=False)})
    rows = [rate_row(f"end to end, 2 submitters x {half:,} + 2 workers, at once", n, t["g"], t["c"], Target(">=", 5)),
            rate_row("  the Python floor, the same (`floor.py submit` x2, `drain` x2)", n, t["floor"], t["c"])]
    print_table(f"background end to end, gearctl vs the C tools ({machine()}, best of {args.repeat}, "
                "whole processes)", rows,
                notes=["C: `gearman -b -n` x2 and `gearman -w -c N` x2; gearctl: `client -n -q` x2 and `worker` x2."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
