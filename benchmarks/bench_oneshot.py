#!/usr/bin/env python3
"""One-shot submits: `gearctl client F --data x`, one process a job, against the import floor.

    python3 benchmarks/bench_oneshot.py [--runs 20] [--repeat 3]

Each round runs, --runs times and in turn: the floor `python3 -c 'import asyncio, typer'`
(what any asyncio + typer CLI pays before doing anything), `gearctl client F --data x`
(background, the default: it prints the job handle) and, for reference, the C
`gearman -b -f F x`; all against one private gearmand. Per kind, the median
seconds a run of a round; the best round counts (best of --repeat). Checked: the
server holds exactly one queued job per gearctl run and per C run.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from benchlib import GEARCTL, Row, Server, Target, counts, expect, machine, parser, print_table, timed, workdir


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=20, help="processes of each kind a round")
    args = p.parse_args()
    kinds = ("floor", "gearctl", "c")
    medians: dict[str, list[float]] = {k: [] for k in kinds}
    means: dict[str, list[float]] = {k: [] for k in kinds}
    with workdir() as tmp, Server(tmp) as server:
        argv = {"floor": [sys.executable, "-c", "import asyncio, typer"],
                "gearctl": [*GEARCTL, "client", "one_g", "--data", "x", *server.gearctl],
                "c": ["gearman", *server.c, "-b", "-f", "one_c", "x"]}
        for _ in range(args.repeat):
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.runs):
                for kind in kinds:
                    times[kind].append(timed(argv[kind], what=kind)[0])
            for kind in kinds:
                medians[kind].append(statistics.median(times[kind]))
                means[kind].append(statistics.mean(times[kind]))
        total = args.runs * args.repeat
        expect("jobs queued by gearctl client", total, counts(server.port, "one_g")[0])
        expect("jobs queued by gearman -b", total, counts(server.port, "one_c")[0])
    g, floor, c = (min(medians[k]) for k in ("gearctl", "floor", "c"))
    rows = [
        Row("one-shot `client F --data x` (median) vs the import floor", ms(g), ms(floor), g / floor,
            Target("<=", 1.2)),
        Row("the same, vs C `gearman -b -f F x` (reference)", ms(g), ms(c), g / c),
    ]
    mean = {k: min(means[k]) for k in kinds}
    print_table(f"one-shot submits, {args.runs} processes of each kind a round ({machine()}, best of {args.repeat})",
                rows, reference="floor / C",
                notes=[f"floor: `{Path(sys.executable).name} -c 'import asyncio, typer'`. Means of the best round: "
                       f"gearctl {ms(mean['gearctl'])}, floor {ms(mean['floor'])}, C {ms(mean['c'])}. "
                       "ratio: gearctl's time over the reference's (lower is better)."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
