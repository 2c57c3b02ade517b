#!/usr/bin/env python3
"""The embedded server (`gearctl server`) beside gearmand, in one run.

    python3 benchmarks/bench_server.py [--jobs 20000] [--repeat 3]

End to end in the background, on a fresh server per run: one submitter and one
worker started together, timed until all --jobs are done, against gearmand and
against `python -m gearctl.server` (in memory), with gearctl's peers
(`gearctl client F -n -q`, pipelined, and `gearctl worker`, default flags) and with
the C tools' (`gearman -b -n` and `gearman -w -c N`). Checked as bench_e2e.py
checks: every job done, the C worker exits after its N jobs, the gearctl worker
logged one "complete" line a job. Best of --repeat. The target: the embedded
server at 0.5x gearmand or better with gearctl's peers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_e2e import run
from bench_worker import gearctl_worker
from benchlib import (
    GEARCTL,
    BenchError,
    Row,
    Server,
    Target,
    best,
    lines_file,
    machine,
    parser,
    per_second,
    print_table,
    require_c_tools,
    spawn,
    stop,
    wait_for,
)

FUNCTION = "e2e"


class Embedded(Server):
    """`python -m gearctl.server` on a free port, in the shape of benchlib.Server."""

    def __init__(self, tmp: Path) -> None:  # (Server.__init__ starts gearmand: not called)
        self.dir = Path(tempfile.mkdtemp(dir=tmp, prefix="embedded-"))
        log = self.dir / "server.out"
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gearctl.server", "--port", "0"], stdout=out,
                                         stderr=subprocess.DEVNULL)
        wait_for(lambda: log.read_bytes().endswith(b"\n") or self.proc.poll() is not None, "the server's start line",
                 timeout=30)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())
        if not match:
            raise BenchError(f"the embedded server did not start: {log.read_text()!r}")
        self.port = int(match.group(1))

    def stop(self) -> None:
        stop(self.proc)


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=20_000)
    args = p.parse_args()
    require_c_tools()
    n = args.jobs
    with tempfile.TemporaryDirectory(prefix="gearctl-bench-") as name:
        tmp = Path(name)
        lines = lines_file(tmp / "jobs.txt", "s", n)

        def c(server: Server) -> tuple[list[subprocess.Popen[bytes]], list[subprocess.Popen[bytes]]]:
            return ([spawn(["gearman", *server.c, "-b", "-n", "-f", FUNCTION], lines)],
                    [spawn(["gearman", *server.c, "-w", "-f", FUNCTION, "-c", str(n)])])

        def gearctl(server: Server) -> tuple[list[subprocess.Popen[bytes]], list[subprocess.Popen[bytes]]]:
            return ([spawn([*GEARCTL, "client", FUNCTION, "-n", "-q", *server.gearctl], lines)],
                    [gearctl_worker(server, server.dir / "worker-1.log", function=FUNCTION)])

        t = best(args.repeat, {
            "g-gearmand": lambda: run(tmp, gearctl, False, n, Server),
            "g-embedded": lambda: run(tmp, gearctl, False, n, Embedded),
            "c-gearmand": lambda: run(tmp, c, True, n, Server),
            "c-embedded": lambda: run(tmp, c, True, n, Embedded)})
    rows = [Row(f"{n:,} background jobs end to end, gearctl peers (pipelined submit, worker)",
                per_second(n, t["g-embedded"]), per_second(n, t["g-gearmand"]),
                t["g-gearmand"] / t["g-embedded"], Target(">=", 0.5)),
            Row("the same with the C tools' peers (`gearman -b -n`, `gearman -w`)",
                per_second(n, t["c-embedded"]), per_second(n, t["c-gearmand"]), t["c-gearmand"] / t["c-embedded"])]
    print_table(f"the embedded server vs gearmand ({machine()}, best of {args.repeat}, whole processes)", rows,
                reference="gearmand",
                notes=["gearctl column: the embedded server (`python -m gearctl.server`, in memory); gearmand: "
                       "gearmand 1.1.20 with its defaults. ratio: the embedded server's rate over gearmand's."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
