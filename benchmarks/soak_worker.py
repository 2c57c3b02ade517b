#!/usr/bin/env python3
"""Soak: does a gearctl worker process leak? On a private gearmand.

    python3 benchmarks/soak_worker.py [--jobs 100000] [--baseline 10000] [--batch 10000] [--tolerance 10]
                                      [--plugin-dir DIR]

One `gearctl worker` (one worker process under its supervisor, `--prefetch 16`,
the no-op plugin, or the function of --plugin-dir's plugin named by
$BENCH_FUNCTION, as benchmarks/plugins/noop.py does) drains --jobs background jobs, queued --batch at a time, each
batch once the last is drained. The worker process's resident memory (VmRSS in
/proc/<pid>/status of the child, not the supervisor) is read once --baseline
jobs are done and again after all of them. Prints both and the growth; exits 1
when the growth passes --tolerance percent (a leak), 2 when the run itself
went wrong (the process was replaced, a job was left).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import GEARCTL, PLUGINS, ROOT, Server, children, counts, stop, wait_for


def vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


class Soak:
    def __init__(self, port: int, batch: int, plugin_dir: Path, function: str = "soak") -> None:
        self.port, self.batch, self.function = port, batch, function
        self.done = 0
        env = dict(os.environ, BENCH_FUNCTION=function)
        self.proc = subprocess.Popen([*GEARCTL, "worker", "-p", str(plugin_dir), "-s", f"127.0.0.1:{port}",
                                      "--prefetch", "16", "--log-level", "error"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        wait_for(lambda: len(children(self.proc.pid)) == 1, "the worker process")
        (self.child,) = children(self.proc.pid)

    def drain(self, upto: int) -> None:
        """Queue batches until `upto` jobs were submitted; return once all are done."""
        while self.done < upto:
            n = min(self.batch, upto - self.done)
            lines = b"".join(b"soak-%d\n" % i for i in range(self.done, self.done + n))
            subprocess.run([*GEARCTL, "client", self.function, "-n", "-q", "-s", f"127.0.0.1:{self.port}"],
                           input=lines, check=True, timeout=300, cwd=ROOT)
            wait_for(lambda: counts(self.port, self.function) == (0, 0), "the batch to drain")
            if self.proc.poll() is not None or children(self.proc.pid) != [self.child]:
                raise SystemExit(2)  # the measured process went away: the figures would mean nothing
            self.done += n

    def stop(self) -> None:
        stop(self.proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--tolerance", type=float, default=10.0, help="percent")
    parser.add_argument("--plugin-dir", type=Path, default=PLUGINS)
    args = parser.parse_args()
    if not 0 < args.baseline < args.jobs:
        parser.error("--baseline must be between 0 and --jobs")
    tmp = Path(tempfile.mkdtemp(prefix="gearctl-soak-"))
    server = Server(tmp)
    soak: Soak | None = None
    try:
        soak = Soak(server.port, args.batch, args.plugin_dir)
        started = time.perf_counter()
        soak.drain(args.baseline)
        base = vm_rss_kb(soak.child)
        soak.drain(args.jobs)
        end = vm_rss_kb(soak.child)
        elapsed = time.perf_counter() - started
    except SystemExit as e:
        print(f"soak: the run went wrong ({e.code}): the worker process was replaced or a job was left",
              file=sys.stderr)
        return 2
    finally:
        if soak is not None:
            soak.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    growth = (end - base) * 100.0 / base
    print(f"worker process RSS after {args.baseline:,} jobs: {base:,} kB; after {args.jobs:,}: {end:,} kB; "
          f"growth {growth:+.1f}% (limit {args.tolerance:g}%); {args.jobs / elapsed:,.0f} jobs/s")
    if growth > args.tolerance:
        print(f"soak: LEAK: resident memory grew {growth:.1f}% between job {args.baseline:,} and {args.jobs:,}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
