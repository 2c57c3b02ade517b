#!/usr/bin/env python3
"""Every speed benchmark in turn, each printing its table.

    python3 benchmarks/run_all.py [--repeat 3] [--small]

At the end it prints every table's rows again as one table, the shape of
README's benchmark table, to paste there. --small runs each with small counts
(a smoke run that the benchmarks work, about 15 s; its figures mostly measure
process start-up). A benchmark that fails is reported and the others still
run; the exit status is 1 if any failed.
soak_worker.py (the memory soak) is not a speed benchmark and is not run here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchlib import COLUMNS, HERE, ROOT, machine, markdown, table_rows

BENCHMARKS = {  # script -> its flags for --small
    "bench_client.py": ["--jobs", "2000", "--roundtrips", "200"],
    "bench_worker.py": ["--jobs", "2000"],
    "bench_e2e.py": ["--jobs", "2000"],
    "bench_oneshot.py": ["--runs", "5"],
    "bench_fairness.py": ["--jobs", "10"],
    "bench_server.py": ["--jobs", "2000"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--small", action="store_true", help="small counts: check that every benchmark runs")
    args = p.parse_args()
    print(f"gearctl benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}", flush=True)
    failed, rows = [], []
    for script, small in BENCHMARKS.items():
        started = time.monotonic()
        argv = [sys.executable, str(HERE / script), "--repeat", str(args.repeat), *(small if args.small else [])]
        with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            output = []
            for line in proc.stdout:  # shown as it comes, and kept for the README table
                print(line, end="", flush=True)
                output.append(line)
        if proc.returncode != 0:
            failed.append(script)
        rows += table_rows("".join(output))
        print(f"({script}: {time.monotonic() - started:.0f} s)", flush=True)
    header = [c if c != "C" else "C, floor or budget" for c in COLUMNS]
    print(f"\nREADME's table, from this run ({machine()}, best of {args.repeat}):\n\n{markdown(header, rows)}")
    if failed:
        print(f"\nrun_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
