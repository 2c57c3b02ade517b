"""What the servers say about themselves, gathered across servers. No printing.

`each_server()` is the one way to ask every server something: all at once,
one answer or one GearctlError per server, in the order given. `collect()`
uses it to ask, over the text admin protocol, for the parts wanted (status,
workers, jobs, unique jobs, version), one connection per server; a server
that does not answer is reported as down, with the reason, instead of failing
the whole view. `ask_all()` runs one admin command everywhere, and ops.py's
actions (cancel, drop, ping) go through the same two. Every wait is bounded by
the two documented timeouts: connect_timeout for the connection, io_timeout
for a server that owes an answer and says nothing. The rest turns reports into
totals, the JSON documents, Nagios check results and Prometheus metrics.

What the figures mean: gearmand's `status` gives per function a total (jobs
it holds), running (jobs handed to a worker) and workers (connections that
registered the function). queued is total minus running. gearmand counts a
job a worker has prefetched as running though it has not started, so where
gearctl workers with --prefetch > 1 serve a function (they say so in their
client id, see admin.PREFETCH_TAG), `held` is how many of the running jobs at
least are only held: each worker connection runs one job at a time, so running
jobs beyond the connections serving the function wait inside a worker.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Union

from . import admin
from .addresses import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, ServerAddress, TLSOptions
from .admin import FunctionStatus, JobInfo, WorkerInfo
from .adminio import ADMIN_CLIENT_ID, admin_request, admin_session
from .deadletter import is_dead_letter_function, original_function
from .errors import ExitCode, GearctlError, NoServerAvailable, RemoteProtocolError, ServerError, UsageError, reason_at

if TYPE_CHECKING:
    import ssl

    from .clientjob import JobStatus

T = TypeVar("T")
# TLS for admin connections: the options (a context is made from them per call),
# or a context made once by a caller that asks again and again (status --watch).
TLS = Union[TLSOptions, "ssl.SSLContext", None]


def ssl_context(tls: TLS) -> ssl.SSLContext | None:
    return tls.context() if isinstance(tls, TLSOptions) else tls


@dataclass(frozen=True)
class ServerReport:
    address: str
    up: bool
    error: str | None = None
    why: ExitCode = ExitCode.OK  # down: its error's exit code (3 unreachable, 7 another protocol, ...)
    status: tuple[FunctionStatus, ...] = ()
    workers: tuple[WorkerInfo, ...] = ()
    jobs: tuple[JobInfo, ...] = ()
    uniques: tuple[str, ...] = ()
    version: str | None = None
    seconds: float = 0.0  # how long the server took to answer

    @property
    def reason(self) -> str:
        """Why it is down, for a line that names the address already (`error`
        names it too, for JSON and a line of its own)."""
        return reason_at(self.address, self.error or "down")

    @property
    def worker_connections(self) -> int:
        """Connections that registered at least one function (clients and
        admin connections register none)."""
        return sum(1 for w in self.workers if w.functions)

    @functools.cached_property
    def _prefetched(self) -> frozenset[str]:
        return frozenset(f for w in self.workers if w.prefetch > 1 for f in w.functions)

    def prefetching(self, function: str) -> bool:
        """A gearctl worker with --prefetch > 1 serves `function` here (needs
        the workers part)."""
        return function in self._prefetched

    @functools.cached_property
    def _dead(self) -> dict[str, int]:
        return {original_function(fs.function): fs.total for fs in self.status if is_dead_letter_function(fs.function)}

    def dead(self, function: str) -> int:
        """The jobs in `function`'s dead-letter queue here (`function.dead`'s total:
        no worker runs them; a `gearctl dead` command may hold some for a moment)."""
        return self._dead.get(function, 0)

    @functools.cached_property
    def functions(self) -> tuple[FunctionStatus, ...]:
        """The status rows without the dead-letter queues (they are `dead` counts),
        plus an empty row for a function known here only by its dead jobs."""
        rows = tuple(fs for fs in self.status if not is_dead_letter_function(fs.function))
        known = {fs.function for fs in rows}
        return rows + tuple(FunctionStatus(f, 0, 0, 0) for f in sorted(self._dead) if f not in known)

    def held(self, fs: FunctionStatus) -> int:
        """How many of fs.running at least are prefetched and not started
        (see the module docstring); 0 unless a prefetching worker serves it."""
        return max(fs.running - fs.workers, 0) if self.prefetching(fs.function) else 0


async def each_server(servers: Sequence[ServerAddress],
                      ask: Callable[[ServerAddress], Awaitable[T]]) -> list[tuple[ServerAddress, T | GearctlError]]:
    """`ask` every server at once: its answer, or the GearctlError it raised,
    per server in the order given. Other exceptions are bugs and propagate."""
    async def one(address: ServerAddress) -> tuple[ServerAddress, T | GearctlError]:
        try:
            return address, await ask(address)
        except GearctlError as e:
            return address, e

    return list(await asyncio.gather(*(one(a) for a in servers)))


def _report(address: ServerAddress, wanted: Sequence[str], results: Sequence[list[str] | ServerError],
            seconds: float) -> ServerReport:
    """One server's admin answers as a report (down when one was ERR or unparsable)."""
    parts: dict[str, list[str]] = {}
    for name, result in zip(wanted, results, strict=True):
        if isinstance(result, ServerError):
            return ServerReport(str(address), False, str(result), why=result.exit_code)
        parts[name] = result
    try:
        return ServerReport(
            str(address), True,
            status=tuple(admin.parse_status(parts["status"])) if "status" in parts else (),
            workers=tuple(w for w in admin.parse_workers(parts["workers"]) if w.client_id != ADMIN_CLIENT_ID)
            if "workers" in parts else (),
            jobs=tuple(admin.parse_jobs(parts["show jobs"])) if "show jobs" in parts else (),
            uniques=tuple(admin.parse_unique_jobs(parts["show unique jobs"])) if "show unique jobs" in parts else (),
            version=admin.parse_version(parts["version"]) if "version" in parts else None,
            seconds=seconds)
    except GearctlError as e:
        return ServerReport(str(address), False, str(e), why=e.exit_code)


async def collect(servers: Sequence[ServerAddress], *, status: bool = True, workers: bool = False,
                  jobs: bool = False, uniques: bool = False, version: bool = False,
                  connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                  tls: TLS = None) -> list[ServerReport]:
    """One report per server, in the order given."""
    wanted = [name for name, on in (("status", status), ("workers", workers), ("show jobs", jobs),
                                    ("show unique jobs", uniques), ("version", version)) if on]
    ctx = ssl_context(tls)
    started = time.monotonic()

    async def ask(address: ServerAddress) -> list[list[str] | ServerError]:
        return await admin_session(address, [(c,) for c in wanted], timeout=connect_timeout,
                                   io_timeout=io_timeout, tls=ctx)

    return [ServerReport(str(address), False, str(result), result.exit_code, seconds=time.monotonic() - started)
            if isinstance(result, GearctlError) else _report(address, wanted, result, time.monotonic() - started)
            for address, result in await each_server(servers, ask)]


async def ask_all(servers: Sequence[ServerAddress], command: str, *args: str,
                  connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, io_timeout: float | None = DEFAULT_IO_TIMEOUT,
                  tls: TLS = None) -> list[tuple[ServerAddress, list[str] | GearctlError]]:
    """One admin command on every server at once: its lines, or the error
    (an ERR answer as ServerError), per server in the order given. An
    io_timeout of None leaves the whole exchange to connect_timeout."""
    ctx = ssl_context(tls)

    async def ask(address: ServerAddress) -> list[str]:
        return await admin_request(address, command, *args, timeout=connect_timeout, io_timeout=io_timeout, tls=ctx)

    return await each_server(servers, ask)


def answered(reports: list[ServerReport]) -> list[ServerReport]:
    """The reports, when at least one server answered; else NoServerAvailable
    (exit 3) naming every server's reason, or RemoteProtocolError (exit 7) when
    a server answered in another protocol, as the client says."""
    if not any(r.up for r in reports):
        raise none_answered([(r.address, str(r.error), r.why) for r in reports])
    return reports


def none_answered(failures: Sequence[tuple[str, str, int]]) -> GearctlError:
    """The error of a command no server answered, from each server's (address,
    reason, exit code): naming every reason, with the exit code down_code() gives,
    and the servers in its `down`."""
    why = "no job server answered: " + "; ".join(reason for _, reason, _ in failures)
    error = (RemoteProtocolError if down_code(code for *_, code in failures) is ExitCode.PROTOCOL
             else NoServerAvailable)(why)
    error.down = tuple((address, reason) for address, reason, _ in failures)
    return error


def down_code(whys: Iterable[int]) -> ExitCode:
    """The exit code of servers that did not answer, as the client's: 7 when one
    of them spoke another protocol (a wrong port), else 3."""
    return ExitCode.PROTOCOL if ExitCode.PROTOCOL in set(whys) else ExitCode.NO_SERVER


def matches(function: str, patterns: Sequence[str]) -> bool:
    """No patterns: everything; else any shell-style pattern (resize_*) matches."""
    return not patterns or any(fnmatch.fnmatchcase(function, p) for p in patterns)


@dataclass
class Totals:
    """One function summed over the servers that answered."""

    function: str
    queued: int = 0
    running: int = 0
    workers: int = 0
    held: int = 0  # of running: prefetched by gearctl workers, not started (at least)
    dead: int = 0  # jobs in its dead-letter queue (FUNCTION.dead)
    prefetching: bool = False  # a gearctl worker with --prefetch > 1 serves it somewhere
    by_server: dict[str, FunctionStatus] = field(default_factory=dict)
    held_by_server: dict[str, int] = field(default_factory=dict)
    dead_by_server: dict[str, int] = field(default_factory=dict)

    @property
    def stuck(self) -> bool:
        """Jobs wait on a server with no worker for them (gearmand does not move
        jobs between servers, so workers elsewhere do not help)."""
        return any(fs.queued > 0 and fs.workers == 0 for fs in self.by_server.values())


SORT_KEYS = ("function", "queued", "running", "workers", "dead")


def totals(reports: Iterable[ServerReport], patterns: Sequence[str] = (), sort: str = "function") -> list[Totals]:
    if sort not in SORT_KEYS:
        raise UsageError(f"--sort takes one of {', '.join(SORT_KEYS)}, not {sort!r}")
    rows: dict[str, Totals] = {}
    for report in reports:
        for fs in report.functions:
            if not matches(fs.function, patterns):
                continue
            row = rows.setdefault(fs.function, Totals(fs.function))
            row.queued += fs.queued
            row.running += fs.running
            row.workers += fs.workers
            row.held += report.held(fs)
            row.dead += report.dead(fs.function)
            row.prefetching = row.prefetching or report.prefetching(fs.function)
            row.by_server[report.address] = fs
            row.held_by_server[report.address] = report.held(fs)
            row.dead_by_server[report.address] = report.dead(fs.function)
    ordered = sorted(rows.values(), key=lambda r: r.function)
    if sort != "function":
        ordered.sort(key=lambda r: getattr(r, sort), reverse=True)
    return ordered


def status_document(reports: Sequence[ServerReport], patterns: Sequence[str] = (),
                    sort: str = "function") -> dict[str, Any]:
    """`gearctl status --json` (schema in README)."""
    def row(r: ServerReport, fs: FunctionStatus) -> dict[str, Any]:
        return {"function": fs.function, "queued": fs.queued, "running": fs.running, "workers": fs.workers,
                "total": fs.total, "held": r.held(fs), "prefetching": r.prefetching(fs.function),
                "dead": r.dead(fs.function)}

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "servers": [{"address": r.address, "up": r.up, "error": r.error,
                     "worker_connections": r.worker_connections if r.up else None,
                     "functions": [row(r, fs) for fs in r.functions if matches(fs.function, patterns)]}
                    for r in reports],
        "functions": [{"function": t.function, "queued": t.queued, "running": t.running, "workers": t.workers,
                       "held": t.held, "prefetching": t.prefetching, "stuck": t.stuck, "dead": t.dead}
                      for t in totals(reports, patterns, sort)],
    }


def workers_document(reports: Sequence[ServerReport]) -> dict[str, Any]:
    """`gearctl workers --json` (schema in README)."""
    return {"servers": [{"address": r.address, "up": r.up, "error": r.error,
                         "workers": [{"fd": w.fd, "address": w.address, "client_id": w.client_id,
                                      "functions": list(w.functions)} for w in r.workers]} for r in reports]}


def jobs_document(reports: Sequence[ServerReport], unique: bool = False) -> dict[str, Any]:
    """`gearctl jobs [--unique] --json`: per server its jobs, or with `unique`
    the unique keys it holds (reports collected with the matching part)."""
    def entry(r: ServerReport) -> dict[str, Any]:
        doc: dict[str, Any] = {"address": r.address, "up": r.up, "error": r.error}
        if unique:
            doc["uniques"] = list(r.uniques)
        else:
            doc["jobs"] = [{"handle": j.handle, "retries": j.retries, "ignored": j.ignore, "queued": j.queued}
                           for j in r.jobs]
        return doc

    return {"servers": [entry(r) for r in reports]}


def version_document(reports: Sequence[ServerReport], gearctl_version: str) -> dict[str, Any]:
    """`version --json`: gearctl's version and each server's (null when down)."""
    return {"gearctl": gearctl_version,
            "servers": [{"address": r.address, "up": r.up, "error": r.error, "version": r.version} for r in reports]}


def job_status_document(statuses: Sequence[JobStatus]) -> list[dict[str, Any]]:
    """`gearctl job --json`: one record per GET_STATUS answer."""
    return [{"handle": s.handle, "unique": s.unique, "server": s.server, "known": s.known, "running": s.running,
             "numerator": s.numerator, "denominator": s.denominator,
             "percent": None if s.percent is None else round(s.percent, 2), "waiting": s.waiting}
            for s in statuses]


# -- Nagios / Icinga ------------------------------------------------------------------

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


@dataclass(frozen=True)
class Threshold:
    """'PATTERN=CRIT' or 'PATTERN=WARN,CRIT' for one function pattern."""

    pattern: str
    warning: int | None
    critical: int

    @classmethod
    def parse(cls, text: str, flag: str, default_pattern: str | None = None) -> Threshold:
        """With `default_pattern`, a bare [WARN,]CRIT applies to it."""
        if default_pattern is not None and "=" not in text:
            text = f"{default_pattern}={text}"
        pattern, sep, numbers = text.partition("=")
        parts = numbers.split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if not sep or not pattern or len(values) not in (1, 2):
            raise UsageError(f"{flag} takes FUNCTION=CRIT or FUNCTION=WARN,CRIT (numbers), not {text!r}")
        return cls(pattern, values[0] if len(values) == 2 else None, values[-1])


def check(reports: Sequence[ServerReport], max_queued: Sequence[Threshold],
          min_workers: Sequence[Threshold], max_dead: Sequence[Threshold] = ()) -> tuple[int, str]:
    """The plugin result: (exit state, one status line with perfdata). The
    reports need the workers part: workers counts worker connections, and a
    function registered by each of them is a registration of its own. A
    function's dead jobs are its dead-letter queue's (`max_dead`)."""
    problems: list[tuple[int, str]] = []
    down = [r for r in reports if not r.up]
    for r in down:
        problems.append((CRITICAL, f"{r.address} down ({r.reason})"))
    up = [r for r in reports if r.up]
    rows = totals(up)
    by_name = {t.function: t for t in rows}
    problems += _breaches(max_queued, by_name, "queued", above=True)
    problems += _breaches(min_workers, by_name, "workers", above=False)
    problems += _breaches(max_dead, by_name, "dead", above=True)
    state = max((p[0] for p in problems), default=OK)
    if down and len(down) == len(reports):
        state = CRITICAL
    queued = sum(t.queued for t in rows)
    held = sum(t.held for t in rows)
    workers = sum(r.worker_connections for r in up)
    registrations = sum(t.workers for t in rows)
    ordered = sorted(problems, key=lambda p: -p[0])
    summary = "; ".join(_printable(text).replace("|", "/") for _, text in ordered) or (
        f"{len(rows)} functions, {queued} queued, {sum(t.running for t in rows)} running"
        f"{f' ({held} of them held by prefetching workers)' if held else ''}, {workers} workers "
        f"({registrations} function registrations) on {len(up)}/{len(reports)} servers")
    perf = [f"servers_up={len(up)};;;0;{len(reports)}", f"workers={workers};;;0",
            f"registrations={registrations};;;0", f"dead={sum(t.dead for t in rows)};;;0"]
    for t in rows:
        qw = _limits(max_queued, t.function)
        ww = _limits(min_workers, t.function, minimum=True)
        perf.append(f"'{_perf_name(t.function)}_queued'={t.queued};{qw}")
        perf.append(f"'{_perf_name(t.function)}_workers'={t.workers};{ww}")
        if any(fnmatch.fnmatchcase(t.function, th.pattern) for th in max_dead):
            perf.append(f"'{_perf_name(t.function)}_dead'={t.dead};{_limits(max_dead, t.function)}")
    return state, f"GEARMAN {STATE_NAMES[state]} - {summary} | {' '.join(perf)}"


def _breaches(thresholds: Sequence[Threshold], by_name: dict[str, Totals], what: str,
              above: bool) -> list[tuple[int, str]]:
    """(state, text) for each function a threshold matches (a pattern matching
    nothing checks a function of that name, which then has 0)."""
    found = []
    sign = ">" if above else "<"
    for th in thresholds:
        for name in [n for n in by_name if fnmatch.fnmatchcase(n, th.pattern)] or [th.pattern]:
            value = getattr(by_name[name], what) if name in by_name else 0
            for state, limit in ((CRITICAL, th.critical), (WARNING, th.warning)):
                if limit is not None and (value > limit if above else value < limit):
                    found.append((state, f"{name} has {value} {what} ({sign} {limit})"))
                    break
    return found


def _limits(thresholds: Sequence[Threshold], function: str, minimum: bool = False) -> str:
    """warn;crit in Nagios range syntax: N alerts above N, N: alerts below N."""
    for th in thresholds:
        if fnmatch.fnmatchcase(function, th.pattern):
            tail = ":" if minimum else ""
            warning = "" if th.warning is None else f"{th.warning}{tail}"
            return f"{warning};{th.critical}{tail}"
    return ";"


def _perf_name(function: str) -> str:
    """A perfdata label: quoted, so only ' and = (and | , which ends the status
    text) are replaced."""
    return "".join("_" if c in "'=|" else c for c in _printable(function))


def _printable(text: str) -> str:
    """Bytes that are not UTF-8 as U+FFFD: monitoring systems want valid text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- Prometheus ----------------------------------------------------------------------

PER_SERVER_METRICS = frozenset({"gearman_up", "gearman_worker_connections"})  # the others are per function too


def prometheus_samples(reports: Sequence[ServerReport]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """metric name -> [(labels, value)], for the exporter."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {
        "gearman_up": [], "gearman_worker_connections": [], "gearman_queued": [], "gearman_running": [],
        "gearman_held": [], "gearman_workers": [], "gearman_dead_jobs": []}
    for r in reports:
        out["gearman_up"].append(({"server": r.address}, 1.0 if r.up else 0.0))
        if r.up:
            out["gearman_worker_connections"].append(({"server": r.address}, float(r.worker_connections)))
        for fs in r.functions:
            labels = {"server": r.address, "function": _printable(fs.function)}
            out["gearman_dead_jobs"].append((labels, float(r.dead(fs.function))))
            out["gearman_queued"].append((labels, float(fs.queued)))
            out["gearman_running"].append((labels, float(fs.running)))
            out["gearman_held"].append((labels, float(r.held(fs))))
            out["gearman_workers"].append((labels, float(fs.workers)))
    return out


METRIC_HELP = {
    "gearman_up": "1 when the server answered the admin protocol",
    "gearman_worker_connections": "worker connections (each registered one or more functions)",
    "gearman_queued": "jobs waiting for a worker (total minus running)",
    "gearman_running": "jobs handed to a worker (running, or prefetched and held)",
    "gearman_held": "of the running jobs, at least this many are held by prefetching gearctl workers",
    "gearman_workers": "workers registered for the function",
    "gearman_dead_jobs": "jobs in the function's dead-letter queue (FUNCTION.dead)",
}


def metric_families(reports: Sequence[ServerReport]) -> Iterator[Any]:
    """prometheus_client gauge families for these reports (imported here: the
    other commands do not pay for prometheus_client)."""
    from prometheus_client.core import GaugeMetricFamily

    for name, samples in prometheus_samples(reports).items():
        labels = ["server"] if name in PER_SERVER_METRICS else ["server", "function"]
        family = GaugeMetricFamily(name, METRIC_HELP[name], labels=labels)
        for sample_labels, value in samples:
            family.add_metric([sample_labels[label] for label in labels], value)
        yield family


class GearmanCollector:
    """A prometheus_client collector that asks the servers on every scrape
    (register it: `REGISTRY.register(GearmanCollector(servers))`). collect()
    runs its own event loop, as prometheus_client calls it from its HTTP
    server's threads; do not call it from inside a running loop."""

    def __init__(self, servers: Sequence[ServerAddress], *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 io_timeout: float = DEFAULT_IO_TIMEOUT, tls: TLS = None) -> None:
        self.servers = list(servers)
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.tls = ssl_context(tls)  # made once, not per scrape

    def describe(self) -> list[Any]:
        return []  # so registering does not scrape the servers before the port is open

    def collect(self) -> Iterator[Any]:
        reports = asyncio.run(collect(self.servers, workers=True, connect_timeout=self.connect_timeout,
                                      io_timeout=self.io_timeout, tls=self.tls))
        yield from metric_families(reports)
