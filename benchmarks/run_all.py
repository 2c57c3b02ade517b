#!/usr/bin/env python3
"""Every speed benchmark in turn, each printing its table.

    python3 benchmarks/run_all.py [--repeat 3] [--small]

--small runs each with small counts (a smoke run that the benchmarks work, about
a minute; its figures mostly measure process start-up). A benchmark that fails
is reported and the others still run; the exit status is 1 if any failed.
soak_worker.py (the memory soak) is not a speed benchmark and is not run here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchlib import HERE, ROOT, machine

BENCHMARKS = {  # script -> its flags for --small
    "bench_client.py": ["--jobs", "2000", "--roundtrips", "200"],
    "bench_worker.py": ["--jobs", "2000"],
    "bench_e2e.py": ["--jobs", "2000"],
    "bench_oneshot.py": ["--runs", "5"],
    "bench_fairness.py": ["--jobs", "10"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--small", action="store_true", help="small counts: check that every benchmark runs")
    args = p.parse_args()
    print(f"gearctl benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}", flush=True)
    failed = []
    for script, small in BENCHMARKS.items():
        started = time.monotonic()
        argv = [sys.executable, str(HERE / script), "--repeat", str(args.repeat), *(small if args.small else [])]
        if subprocess.run(argv, cwd=ROOT).returncode != 0:
            failed.append(script)
        print(f"({script}: {time.monotonic() - started:.0f} s)", flush=True)
    if failed:
        print(f"\nrun_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
