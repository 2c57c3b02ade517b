"""What the benchmarks share: a private gearmand, its admin counts, whole
commands timed, best-of runs, and the one table each benchmark prints.

Every benchmark follows the same rules (benchmarks/README.md): default flags
unless its row says otherwise, whole processes (start-up included), gearctl and
the C tools in one run, a fresh gearmand wherever an earlier run's jobs would
skew the next, every job count checked on the server (a mismatch raises
BenchError: the benchmark fails instead of printing a figure), best of
--repeat. Subprocesses run from the repository's root, so `python -m gearctl`
is this checkout's gearctl.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLUGINS = HERE / "plugins"
FLOOR = [sys.executable, str(HERE / "floor.py")]  # the Python floor: see floor.py
GEARCTL = [sys.executable, "-m", "gearctl"]
POLL = 0.005  # how often a drain is checked on the server: 1% of a 0.5 s run


class BenchError(SystemExit):
    """The run went wrong (a command failed, a count did not match): no figure."""

    def __init__(self, message: str) -> None:
        super().__init__(f"benchmark failed: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(port: int, command: str) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not (buf == b".\n" or buf.endswith(b"\n.\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [line for line in buf.decode().split("\n") if line and line != "."]


def status(port: int) -> dict[str, tuple[int, int, int]]:
    """gearmand's `status`: function -> (jobs queued or running, running, workers)."""
    table = {}
    for line in admin(port, "status"):
        name, total, running, workers = line.rsplit("\t", 3)
        table[name] = (int(total), int(running), int(workers))
    return table


def counts(port: int, function: str) -> tuple[int, int]:
    """(jobs queued or running, running) for one function."""
    total, running, _workers = status(port).get(function, (0, 0, 0))
    return total, running


def workers(port: int, function: str) -> int:
    return status(port).get(function, (0, 0, 0))[2]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 600, interval: float = POLL) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Server:
    """A private gearmand on a free loopback port, stopped by pid."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(dir=tmp, prefix=f"run-{self.port}-"))  # this run's files: logs, records
        self.proc = subprocess.Popen(
            [shutil.which("gearmand") or "/usr/sbin/gearmand", "-L", "127.0.0.1", "-p", str(self.port),
             "-l", str(self.dir / "gearmand.log"), "-P", str(self.dir / "gearmand.pid"),
             "--verbose", "ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.accepting, "gearmand to accept connections", timeout=10, interval=0.05)

    def accepting(self) -> bool:
        if self.proc.poll() is not None:
            raise BenchError("gearmand exited at start")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    @property
    def gearctl(self) -> list[str]:
        """gearctl's server flag for this server."""
        return ["-s", self.address]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def c(self) -> list[str]:
        """The C tools' server flags for this server."""
        return ["-h", "127.0.0.1", "-p", str(self.port)]

    def stop(self) -> None:
        stop(self.proc)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM one process we started, by its pid, and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout)


def children(pid: int) -> list[int]:
    """The pids of a process's children (a supervisor's worker processes)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@contextlib.contextmanager
def workdir(prefix: str = "gearctl-bench-") -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def lines_file(path: Path, prefix: str, n: int, first: int = 0) -> Path:
    """n job payloads, one a line."""
    path.write_bytes(b"".join(b"%s-%d\n" % (prefix.encode(), i) for i in range(first, first + n)))
    return path


def spawn(argv: Sequence[str], stdin: Path | None = None, log: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a command from the repository root: stdin from a file, stdout
    discarded, stderr to `log` (a file, as a journal would take it) or a pipe."""
    with contextlib.ExitStack() as files:
        inp: IO[bytes] | int = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        err: IO[bytes] | int = files.enter_context(log.open("ab")) if log else subprocess.PIPE
        return subprocess.Popen(list(argv), stdin=inp, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                                env=env)


def command_line(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    return " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)


def finish(proc: subprocess.Popen[bytes], what: str, timeout: float = 600) -> bytes:
    """Wait for a command that must succeed; its stderr (when piped)."""
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise BenchError(f"{what} did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        raise BenchError(f"{what} exited {proc.returncode}: {command_line(proc)}\n"
                         f"{(err or b'').decode(errors='replace')}")
    return err or b""


def timed(argv: Sequence[str], stdin: Path | None = None, what: str = "") -> tuple[float, bytes]:
    """Run one whole command that must succeed: (seconds, its stderr)."""
    start = time.perf_counter()
    err = finish(spawn(argv, stdin), what or argv[0])
    return time.perf_counter() - start, err


def best(repeat: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The least seconds of each run over `repeat` rounds; each round runs every
    command once, in turn, so that the machine's noise falls on all of them."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(run())
    return {name: min(t) for name, t in times.items()}


def expect(what: str, want: int, got: int) -> None:
    """A count check: `what` (jobs queued, jobs left, ...) must be `want`."""
    if want != got:
        raise BenchError(f"{what}: expected {want:,}, found {got:,}")


SUMMARY = re.compile(rb"gearctl: (\d[\d,]*) submitted.* \(([\d,.]+) jobs/s\)")


def summary(stderr: bytes) -> tuple[int, float] | None:
    """What `gearctl client -n --summary` printed: (jobs submitted, the rate once started)."""
    if (match := SUMMARY.search(stderr)) is None:
        return None
    return int(match.group(1).replace(b",", b"")), float(match.group(2).replace(b",", b""))


# --- the table ---------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What a ratio must be: at least (">=") or at most ("<=") `value`."""

    op: str
    value: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}x"


@dataclass(frozen=True)
class Row:
    """One line of a benchmark's table; `ratio` is gearctl's figure over the
    reference's (rates: higher is better; times: lower is)."""

    run: str
    gearctl: str
    reference: str = ""
    ratio: float | None = None
    target: Target | None = None

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        met = "" if self.target is None or self.ratio is None else ("yes" if self.target.met(self.ratio) else "NO")
        return [self.run, self.gearctl, self.reference, ratio, str(self.target or ""), met]


def per_second(jobs: int, seconds: float) -> str:
    return f"{jobs / seconds:,.0f} jobs/s"


def rate_row(run: str, jobs: int, gearctl_seconds: float, c_seconds: float | None,
             target: Target | None = None) -> Row:
    """A throughput row: jobs/s of each and gearctl / C."""
    if c_seconds is None:
        return Row(run, per_second(jobs, gearctl_seconds))
    return Row(run, per_second(jobs, gearctl_seconds), per_second(jobs, c_seconds), c_seconds / gearctl_seconds,
               target)


COLUMNS = ["run", "gearctl", "C", "ratio", "target", "met?"]


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned Markdown table: readable in a terminal, and the shape of
    README's benchmark table, so that a run pastes into it."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "| " + " | ".join("-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)) + " |"
    return "\n".join([line(table[0]), rule, *(line(cells) for cells in table[1:])])


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in a benchmark's output (what run_all gathers)."""
    rows, header_next = [], True
    for raw in text.splitlines():
        if not raw.startswith("| "):
            header_next = True
            continue
        cells = [c.strip() for c in raw.strip().strip("|").split("|")]
        if header_next or set(raw) <= set("|-: "):
            header_next = False
            continue
        rows.append(cells)
    return rows


def print_table(title: str, rows: Sequence[Row], reference: str = "C", notes: Sequence[str] = ()) -> None:
    """A benchmark's one table, its title above and notes below, on stdout."""
    header = [reference if c == "C" else c for c in COLUMNS]
    print(f"\n{title}\n\n{markdown(header, [row.cells() for row in rows])}")
    for note in notes:
        print(f"\n{note}")
    sys.stdout.flush()


def machine() -> str:
    return f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"


def compile_gearctl() -> None:
    """Write gearctl's bytecode, as `pip install` does for an installed copy: with
    PYTHONDONTWRITEBYTECODE set (CI images often set it) a checkout's modules would
    be compiled anew by every process timed, which no user's install pays, while
    the floor's (asyncio, typer) come compiled. compileall writes whatever the
    variable says."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "gearctl")], check=True,
                   stdout=subprocess.DEVNULL)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """Every benchmark's command line (and its start: gearctl's bytecode is written first)."""
    compile_gearctl()
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each command; the best counts (default 3)")
    return p


def require_c_tools() -> None:
    if not shutil.which("gearman"):
        raise SystemExit("the C gearman tool is not installed (Debian: gearman-tools)")
