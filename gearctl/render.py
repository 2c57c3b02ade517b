"""Everything gearctl draws: progress bars, live tables, summaries. No network I/O.

rich is imported only when something is drawn on a terminal, so scripts that
pipe gearctl's output pay nothing for it at start-up.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker's live table only: the client's start-up does not pay for it
    from .supervision import FunctionReport


def is_tty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineEnd:
    """How a foreground result written to stdout ended, so that on a terminal it
    ends its line (the shell prompt then starts on one of its own). Piped or
    redirected output stays byte-exact: nothing is added."""

    def __init__(self, stream: IO[Any] | None = None) -> None:
        self.tty = is_tty(stream if stream is not None else sys.stdout)
        self.last = b"\n"  # nothing written yet: nothing to end

    def seen(self, data: bytes) -> bytes:
        """`data`, as it goes to stdout, noted."""
        if data:
            self.last = data[-1:]
        return data

    def missing(self) -> bytes:
        """The newline a terminal still needs after what was written (else b"")."""
        return b"\n" if self.tty and self.last != b"\n" else b""


def json_line(record: dict[str, Any]) -> str:
    import json  # here, not at the top: a one-shot submit without --json starts without it

    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class JobProgress:
    """A progress bar on stderr driven by WORK_STATUS; silent off a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, numerator: int, denominator: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                      MofNCompleteColumn(), console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=denominator or None)
        self._progress.update(self._task, completed=numerator, total=denominator or None)

    def print_warning(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + ("" if text.endswith("\n") else "\n"))
            sys.stderr.flush()


@dataclass
class SubmitStats:
    """Counts for a run of many jobs (--each-line)."""

    background: bool
    submitted: int = 0
    created: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def done(self, state: str) -> None:
        self.by_state[state] = self.by_state.get(state, 0) + 1

    @property
    def finished(self) -> int:
        return sum(self.by_state.values())

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.by_state.items() if s not in ("queued", "complete"))

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.finished / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        ok = "queued" if self.background else "complete"
        parts = [f"{self.submitted} submitted", f"{self.by_state.get(ok, 0)} {ok}"]
        for state in ("failed", "exception", "timeout", "error", "invalid"):
            if self.by_state.get(state):
                parts.append(f"{self.by_state[state]} {state}")
        elapsed = time.monotonic() - self.started
        return ", ".join(parts) + f" in {elapsed:.2f}s ({self.rate():,.0f} jobs/s)"


class SubmitView:
    """A live table of a many-job run on stderr; silent off a terminal."""

    def __init__(self, stats: SubmitStats, function: str, enabled: bool) -> None:
        self.stats = stats
        self.function = function
        self.enabled = enabled
        self._live: Any = None

    def __enter__(self) -> SubmitView:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(get_renderable=self._table, console=Console(stderr=True),
                              refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def _table(self) -> Any:
        from rich.table import Table

        s = self.stats
        table = Table(title=f"gearctl client {self.function}", title_justify="left")
        # the words of the summary line: a background job is done once queued (created)
        ok = "queued" if s.background else "complete"
        names = ("submitted", ok) if s.background else ("submitted", "created", ok)
        for name in (*names, "failed", "jobs/s"):
            table.add_column(name, justify="right")
        counts = (s.submitted, s.by_state.get(ok, 0)) if s.background else (s.submitted, s.created,
                                                                               s.by_state.get(ok, 0))
        failed = s.failed
        table.add_row(*map(str, counts), f"[red]{failed}[/]" if failed else "0", f"{s.rate():,.0f}")
        return table


def print_table(title: str, columns: list[str], rows: list[list[str]], stream: IO[str] | None = None) -> None:
    """A rich table on a terminal; tab-separated lines with a header row
    otherwise, so scripts can cut and awk it whatever the width."""
    out = stream or sys.stdout
    if is_tty(out):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(shown(cell) for cell in row))
        Console(file=out).print(table)
        return
    lines = ["\t".join(columns)] + ["\t".join(row) for row in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8", "replace"))


class SupervisorView:
    """The worker's live table on stderr: one row per process, one per function
    (every function served, from the start, and those that ran before a reload)."""

    SHOWN_NAMES = 4  # functions named in the title; the table below lists them all

    def __init__(self, client_id: str, servers: str, enabled: bool, functions: Sequence[str] = ()) -> None:
        self.client_id = client_id
        self.servers = servers
        self.functions = sorted(functions)  # what the command was started to serve
        self.enabled = enabled
        self.console: Any = None
        self._live: Any = None
        self._children: list[Any] = []
        self._retired: dict[str, FunctionReport] = {}

    def __enter__(self) -> SupervisorView:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(stderr=True)
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, supervisor: Any) -> None:
        self._children = list(supervisor.children.values())
        self._retired = dict(supervisor.retired)

    def served(self) -> list[str]:
        """The functions the processes serve (after a reload: the new set)."""
        return sorted(set().union(*(c.serving for c in self._children))) or self.functions

    def title(self) -> str:
        """'gearctl worker [ID] serving a, b, c, d +2 more on SERVERS'."""
        served = self.served()
        names = ", ".join(served[:self.SHOWN_NAMES])
        if len(served) > self.SHOWN_NAMES:
            names += f" +{len(served) - self.SHOWN_NAMES} more"
        who = f"gearctl worker {self.client_id}" if self.client_id else "gearctl worker"
        return f"{who} serving {names or '(nothing yet)'} on {self.servers}"

    def print_line(self, line: str) -> None:
        if self.console is not None:
            self.console.print(line, markup=False, highlight=False)
        else:
            sys.stderr.write(line + "\n")

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        from .supervision import FunctionReport, summed

        now = time.monotonic()
        # every function served, then what the processes report, then what exited processes had done
        children = sorted(self._children, key=lambda c: c.slot)
        totals = summed({name: FunctionReport() for name in self.served()}, self._retired,
                        *(c.functions for c in children))
        # Processes grouped by what they serve (functions with processes of their own,
        # the shared pool): one table each, titled, when there is more than one group.
        groups: dict[frozenset[str], list[Any]] = {}
        for c in children:
            groups.setdefault(frozenset(c.serving), []).append(c)
        tables = []
        for serving, members in groups.items():
            procs = Table(title=shown(f"serving {', '.join(sorted(serving)) or '(nothing yet)'}")
                          if len(groups) > 1 else None, title_justify="left")
            for name in ("pid", "state", "current job", "done", "failed", "prefetch", "memory", "uptime"):
                procs.add_column(name, justify="left" if name in ("state", "current job") else "right")
            for c in members:
                procs.add_row(str(c.pid), c.state.value, shown(c.current or "-"), str(c.done),
                              f"[red]{c.failed}[/]" if c.failed else "0", str(c.prefetch), f"{c.memory_mb:.0f} MB",
                              _duration(now - c.started))
            tables.append(procs)
        funcs = Table(title_justify="left")
        for name in ("function", "done", "failed", "retried", "dead", "running", "last error"):
            funcs.add_column(name, justify="left" if name in ("function", "last error") else "right")
        for name, f in sorted(totals.items()):
            funcs.add_row(shown(name), str(f.done), f"[red]{f.failed}[/]" if f.failed else "0", str(f.retried),
                          f"[red]{f.dead}[/]" if f.dead else "0", str(f.running),
                          shown(" ".join(f.last_error.split())[:80]))
        return Group(shown(self.title()), *tables, funcs)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# -- status, workers, jobs --------------------------------------------------------------

def shown(text: str) -> Any:
    """Text from a server or a plugin, for a rich table: never read as markup,
    and bytes that are not UTF-8 shown as \ufffd rather than crashing the terminal."""
    from rich.text import Text

    return Text(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def status_renderable(reports: list[Any], rows: list[Any], title: str = "gearman status") -> Any:
    """Functions with queued (waiting), running and available workers, per server
    when there are several, summed. A server's row is red when it holds jobs and
    no worker for them (gearmand does not move jobs between servers). Running
    jobs that prefetching gearctl workers only hold show as "(N held)", with a
    note under the table. Down servers first, so a table taller than the screen
    cannot hide them."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    several = len(reports) > 1
    dead = any(row.dead for row in rows)  # a dead column only when some function has dead jobs
    table = Table(title=title, title_justify="left")
    table.add_column("function")
    if several:
        table.add_column("server")
    for name in ("queued", "running", "workers") + (("dead",) if dead else ()):
        table.add_column(name, justify="right")
    for row in rows:
        if several:
            for address, fs in sorted(row.by_server.items()):
                table.add_row(shown(row.function), address, str(fs.queued),
                              _running(fs.running, row.held_by_server.get(address, 0)), str(fs.workers),
                              *_dead_cell(dead, row.dead_by_server.get(address, 0)),
                              style="bold red" if fs.queued and not fs.workers else None)
            table.add_row(shown(row.function), "all", str(row.queued), _running(row.running, row.held),
                          str(row.workers), *_dead_cell(dead, row.dead), style="bold", end_section=True)
        else:
            table.add_row(shown(row.function), str(row.queued), _running(row.running, row.held), str(row.workers),
                          *_dead_cell(dead, row.dead), style="bold red" if row.stuck else None)
    down = [Text(f"{r.address}: down ({r.reason})", style="bold red") for r in reports if not r.up]
    notes = [Text("running counts jobs handed to a worker; (N held): at least N of them are prefetched by "
                  "gearctl workers (--prefetch) and wait to start", style="dim")] if any(r.held for r in rows) else []
    return Group(*down, table, *notes)


def _dead_cell(shown: bool, dead: int) -> tuple[str, ...]:
    return ((f"[red]{dead}[/]" if dead else "0"),) if shown else ()


def _running(running: int, held: int) -> str:
    return f"{running} ({held} held)" if held else str(running)


def status_lines(reports: list[Any], rows: list[Any]) -> bytes:
    """Tab-separated lines with a header: per server, and an "all" row per function
    when there are several servers. Names go out as the server sent them. held
    and dead come last, so scripts that cut the first five columns are unaffected."""
    several = len(reports) > 1
    out = ["function\tserver\tqueued\trunning\tworkers\theld\tdead"]
    for r in rows:
        if several:
            out += [f"{r.function}\t{address}\t{fs.queued}\t{fs.running}\t{fs.workers}\t{r.held_by_server[address]}"
                    f"\t{r.dead_by_server[address]}" for address, fs in sorted(r.by_server.items())]
        out.append(f"{r.function}\t{'all' if several else next(iter(r.by_server))}\t{r.queued}\t{r.running}"
                   f"\t{r.workers}\t{r.held}\t{r.dead}")
    return ("\n".join(out) + "\n").encode("utf-8", "surrogateescape")


def print_workers(reports: Sequence[Any]) -> None:
    """`gearctl workers`: one row per connection (monitor.ServerReport's workers)."""
    print_table("gearman workers", ["server", "fd", "address", "client id", "functions"],
                [[r.address, str(w.fd), w.address, w.client_id, " ".join(w.functions)]
                 for r in reports for w in r.workers])


def print_jobs(reports: Sequence[Any], unique: bool = False) -> None:
    """`gearctl jobs`: `show jobs` rows, or with `unique` the unique keys."""
    if unique:
        print_table("gearman unique jobs", ["server", "unique"], [[r.address, u] for r in reports for u in r.uniques])
        return
    print_table("gearman jobs", ["server", "handle", "retries", "ignored", "queued"],
                [[r.address, j.handle, str(j.retries), _yes(j.ignore), _yes(j.queued)]
                 for r in reports for j in r.jobs])


def print_job_statuses(statuses: Sequence[Any]) -> None:
    """`gearctl job`: one row per GET_STATUS answer (client.JobStatus)."""
    print_table("gearman jobs", ["job", "server", "known", "running", "progress", "percent", "waiting"],
                [[s.handle or s.unique or "", s.server, _yes(s.known), _yes(s.running),
                  f"{s.numerator}/{s.denominator}" if s.denominator else "-",
                  f"{s.percent:.0f}%" if s.percent is not None else "-",
                  "-" if s.waiting is None else str(s.waiting)] for s in statuses])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def print_renderable(renderable: Any, stream: IO[str] | None = None) -> None:
    from rich.console import Console

    Console(file=stream or sys.stdout).print(renderable)
