#!/usr/bin/env python3
"""gearctl client beside the C `gearman` tool, in one run, on private gearmands.

    python3 benchmarks/bench_client.py [--jobs 20000] [--roundtrips 2000] [--repeat 3]

Whole commands (process start included), best of --repeat, each run on a fresh gearmand:
  bg submit:      `gearman -b -n -f F < lines`  vs `gearctl client F -n -q < lines`
                  (--summary too: one line at the end, the rate once started)
  fg one-by-one:  `gearman -n -f F < lines`     vs `gearctl client F -n --wait --inflight 1 < lines`,
                  each served by one C `gearman -w -f F -c N` worker, started and registered first
and, for reference, gearctl's pipelined foreground (`--wait` with the default window) and
the Python floor's one by one (`floor.py fg`: asyncio and typer imported, then a bare
blocking socket: the least any Python command line can take for the same work).
Checked on the server: the bg run left exactly --jobs jobs queued; in a fg run the
C worker served exactly --roundtrips jobs (it exits after N) and none is left.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    FLOOR,
    GEARCTL,
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
    summary,
    timed,
    wait_for,
    workdir,
    workers,
)

Command = Callable[[Server], list[str]]  # the command line, given the server it talks to


def c_tool(*args: str) -> Command:
    return lambda server: ["gearman", *server.c, *args]


def gearctl(*args: str) -> Command:
    return lambda server: [*GEARCTL, *args, *server.gearctl]


def bg_run(tmp: Path, command: Command, lines: Path, jobs: int, rates: list[float] | None = None) -> float:
    """One background submit of `lines` on a fresh gearmand (one that already
    holds the last run's 20,000 jobs is slower, and the second tool would pay)."""
    with Server(tmp) as server:
        seconds, err = timed(command(server), lines)
        expect("jobs queued", jobs, counts(server.port, "bg")[0])
    if rates is not None:
        if (found := summary(err)) is None:
            raise BenchError(f"no --summary line from gearctl client:\n{err.decode(errors='replace')}")
        rates.append(found[1])
    return seconds


def fg_run(tmp: Path, command: Command, lines: Path, jobs: int) -> float:
    """Foreground jobs one after another, served by a C worker that exits after `jobs`."""
    with Server(tmp) as server:
        worker = spawn(["gearman", *server.c, "-w", "-f", "rt", "-c", str(jobs)])
        try:
            wait_for(lambda: workers(server.port, "rt") == 1, "the C worker to register", timeout=30)
            seconds, _err = timed(command(server), lines)
            finish(worker, f"the C worker serving {jobs} jobs", timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()  # it did not get its N jobs: finish() raised already
                worker.wait()
        expect("jobs left on the server", 0, counts(server.port, "rt")[0])
    return seconds


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="background jobs per run")
    p.add_argument("--roundtrips", type=int, default=2_000, help="foreground jobs per run")
    args = p.parse_args()
    require_c_tools()
    with workdir() as tmp:
        bg = lines_file(tmp / "bg.txt", "payload", args.jobs)
        fg = lines_file(tmp / "fg.txt", "rt", args.roundtrips)
        rates: list[float] = []
        n, r = args.jobs, args.roundtrips
        t = best(args.repeat, {
            "c bg": lambda: bg_run(tmp, c_tool("-b", "-n", "-f", "bg"), bg, n),
            "g bg": lambda: bg_run(tmp, gearctl("client", "bg", "-n", "-q", "--summary"), bg, n, rates),
            "c fg": lambda: fg_run(tmp, c_tool("-n", "-f", "rt"), fg, r),
            "g fg": lambda: fg_run(tmp, gearctl("client", "rt", "-n", "--wait", "-q", "--inflight", "1"), fg, r),
            "g pipe": lambda: fg_run(tmp, gearctl("client", "rt", "-n", "--wait", "-q"), fg, r),
            "floor fg": lambda: fg_run(tmp, lambda server: [*FLOOR, "fg", server.address, "rt"], fg, r),
        })
    once = max(rates)
    rows = [
        rate_row(f"bg submit, {n:,} jobs: `client F -n -q`", n, t["g bg"], t["c bg"], Target(">=", 10)),
        Row("  the same, once started (`--summary`)", f"{once:,.0f} jobs/s", per_second(n, t["c bg"]),
            once * t["c bg"] / n),
        rate_row(f"fg one-by-one, {r:,} jobs: `-n --wait --inflight 1`", r, t["g fg"], t["c fg"], Target(">=", 1)),
        rate_row(f"fg pipelined, {r:,} jobs: `-n --wait` (vs C one-by-one)", r, t["g pipe"], t["c fg"]),
        rate_row("  the Python floor, one by one (`floor.py fg`)", r, t["floor fg"], t["c fg"]),
    ]
    print_table(f"gearctl client vs the C gearman tool ({machine()}, best of {args.repeat}, whole commands)", rows,
                notes=["C: `gearman -b -n -f F` and `gearman -n -f F`, fed the same lines; fg served by one C worker."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
