"""Status, admin and monitoring commands: status, workers, jobs, job, cancel, drop,
version, ping, check, exporter. Thin: flags in, a call into monitor.py (what the
servers say) or ops.py (cancel, drop, ping), render.py draws the answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Annotated, Any

import typer

from .. import __version__, monitor, ops, render
from ..client import AsyncClient, JobStatus
from ..errors import ExitCode, GearctlError, NotFound, UsageError, reason_at
from .app import NO_SERVER_OPTIONS, ServerOptions, app, with_servers
from .completion import complete_functions, complete_unique_keys
from .helptext import examples
from .streams import Out

AsJson = Annotated[bool, typer.Option("--json", help="A JSON document instead of a table.")]


def _collect(server: ServerOptions, **parts: Any) -> list[monitor.ServerReport]:
    """One admin report per server (down ones included)."""
    return server.run(monitor.collect(server.addresses(), **server.bounds(), **parts))


# ANSWERED: with --json the document goes out before monitor.answered() fails a
# command no server answered (exit 3, or 7), each server `"up": false` in it, so that
# `gearctl status --json | jq` always has a document to read.


def _warn_down(reports: list[monitor.ServerReport]) -> None:
    for r in reports:
        if not r.up:
            sys.stderr.write(f"gearctl: {r.address} is down: {r.reason}\n")


@app.command(epilog=examples("gearctl status",
                             "gearctl status 'resize_*' --sort queued",
                             "gearctl status --watch -s gear1,gear2"))
@with_servers()
def status(
    patterns: Annotated[list[str] | None, typer.Argument(
        metavar="[PATTERN]...", help="Only functions matching these shell patterns (resize_*).")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.1, metavar="SECONDS",
                                            help="With --watch: seconds between redraws.")] = 1.0,
    sort: Annotated[str, typer.Option("--sort", metavar="KEY",
                                      help="function, queued, running, workers or dead (largest first).")] = "function",
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Queued, running and available workers per function, per server and summed."""
    wanted = patterns or []
    if sort not in monitor.SORT_KEYS:
        raise UsageError(f"--sort takes one of {', '.join(monitor.SORT_KEYS)}, not {sort!r}")
    if watch:
        return _watch_status(server, wanted, sort, interval, as_json)
    reports = _collect(server, workers=True)  # workers: who prefetches (held jobs)
    if as_json:  # first: a script's parser gets a document whatever the servers did (ANSWERED)
        _print_status(reports, wanted, sort, as_json)
    monitor.answered(reports)
    if not as_json:
        _print_status(reports, wanted, sort, as_json)
    return ExitCode.OK


def _print_status(reports: list[monitor.ServerReport], patterns: list[str], sort: str, as_json: bool,
                  indent: int | None = 2) -> None:
    if as_json:
        Out().line(json.dumps(monitor.status_document(reports, patterns, sort), indent=indent))
        return
    rows = monitor.totals(reports, patterns, sort)
    if render.is_tty(sys.stdout):
        render.print_renderable(render.status_renderable(reports, rows))
    else:
        _warn_down(reports)
        Out().write(render.status_lines(reports, rows))


def _watch_status(server: ServerOptions, patterns: list[str], sort: str, interval: float, as_json: bool) -> int:
    """On a terminal a table redrawn in place; otherwise (or with --json) one
    snapshot per interval: tab-separated lines after a '# time' line, or one JSON
    document per line. Ctrl-C ends it with exit 0."""
    addresses, bounds = server.addresses(), {**server.bounds(), "tls": server.ssl_context()}  # one context

    async def loop() -> None:
        if as_json or not render.is_tty(sys.stdout):
            while True:
                reports = await monitor.collect(addresses, workers=True, **bounds)
                if not as_json:
                    Out().line(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')}")
                _print_status(reports, patterns, sort, as_json, indent=None)
                await asyncio.sleep(interval)
        from rich.console import Console
        from rich.live import Live

        with Live(console=Console(), refresh_per_second=4, transient=False) as live:
            while True:
                reports = await monitor.collect(addresses, workers=True, **bounds)
                rows = monitor.totals(reports, patterns, sort)
                stamp = time.strftime("%H:%M:%S")
                live.update(render.status_renderable(reports, rows, f"gearman status {stamp} (Ctrl-C to stop)"))
                await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(loop())
    return ExitCode.OK


@app.command(epilog=examples("gearctl workers",
                             "gearctl workers --json | jq '.servers[].workers | length'"))
@with_servers()
def workers(
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Connections per server: fd, address, client id and registered functions."""
    reports = _collect(server, status=False, workers=True)
    if as_json:  # ANSWERED
        Out().line(json.dumps(monitor.workers_document(reports), indent=2))
    monitor.answered(reports)
    if as_json:
        return ExitCode.OK
    _warn_down(reports)
    render.print_workers(reports)
    return ExitCode.OK


@app.command(epilog=examples("gearctl jobs",
                             "gearctl jobs --unique --json"))
@with_servers()
def jobs(
    unique: Annotated[bool, typer.Option("--unique", help="The unique keys of the jobs instead (show unique jobs).")
                      ] = False,
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """The jobs each server holds (show jobs): handle, retries, ignored, queued."""
    reports = _collect(server, status=False, jobs=not unique, uniques=unique)
    if as_json:  # ANSWERED
        Out().line(json.dumps(monitor.jobs_document(reports, unique), indent=2))
    monitor.answered(reports)
    if as_json:
        return ExitCode.OK
    _warn_down(reports)
    render.print_jobs(reports, unique)
    return ExitCode.OK


@app.command(epilog=examples("gearctl job H:gear1:42",
                             "gearctl job --unique signup-17 --json",
                             "gearctl job H:gear1:42 --watch"))
@with_servers()
def job(
    handles: Annotated[list[str] | None, typer.Argument(metavar="[HANDLE]...", help="Job handles (H:host:N).")] = None,
    unique: Annotated[str | None, typer.Option("--unique", "-u", metavar="KEY", help="Look the job up by unique key.",
                                               autocompletion=complete_unique_keys)] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Progress bars until the jobs finish.")] = False,
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.05, metavar="SECONDS")] = 0.5,
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Known, running and progress of jobs (GET_STATUS; GET_STATUS_UNIQUE with --unique)."""
    if not handles and unique is None:
        raise UsageError("give one or more job handles, or --unique KEY")
    gear = server.client()
    keys = [("unique", unique)] if unique is not None else [("handle", h) for h in handles or []]

    async def ask(client: AsyncClient) -> list[JobStatus]:  # bounded by the client's two timeouts
        return list(await asyncio.gather(*(
            client.status_unique(k, timeout=None) if kind == "unique"
            else client.status(k, timeout=None) for kind, k in keys)))

    if watch:
        try:
            return asyncio.run(_watch_jobs(gear, ask, interval))
        except KeyboardInterrupt:
            return ExitCode.OK

    async def once() -> list[JobStatus]:
        async with gear:
            return await ask(gear)

    answers = server.run(once())
    if as_json:
        Out().line(json.dumps(monitor.job_status_document(answers), indent=2))
    else:
        render.print_job_statuses(answers)
    return ExitCode.OK


async def _watch_jobs(gear: AsyncClient, ask: Any, interval: float) -> int:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[state]}"))
    tasks: dict[str, Any] = {}
    async with gear:
        first = await ask(gear)
        unknown = [s.handle or s.unique or "?" for s in first if not s.known]
        if unknown:
            raise NotFound(f"no server knows {', '.join(unknown)} (finished, or never submitted)")
        if not render.is_tty(sys.stdout):
            return await _watch_jobs_lines(gear, ask, interval, first)
        with progress:
            while True:
                answers = await ask(gear)
                for s in answers:
                    key = s.handle or s.unique or "?"
                    if key not in tasks:
                        tasks[key] = progress.add_task(key, total=None, state="")
                    state = "running" if s.running else ("queued" if s.known else "done")
                    if s.known and s.denominator:
                        progress.update(tasks[key], total=s.denominator, completed=s.numerator, state=state)
                    elif not s.known:
                        total = progress.tasks[tasks[key]].total or 1
                        progress.update(tasks[key], total=total, completed=total, state=state)
                    else:
                        progress.update(tasks[key], state=state)
                if all(not s.known for s in answers):
                    return ExitCode.OK
                await asyncio.sleep(interval)


async def _watch_jobs_lines(gear: AsyncClient, ask: Any, interval: float, answers: list[JobStatus]) -> int:
    """`job --watch` off a terminal: no progress bars, a line `JOB<tab>STATE<tab>N/D`
    whenever a job's state or progress changes, until every job is done."""
    out, shown = Out(), dict[str, str]()
    while True:
        for s in answers:
            key = s.handle or s.unique or "?"
            line = (f"{key}\t{'running' if s.running else ('queued' if s.known else 'done')}"
                    f"\t{f'{s.numerator}/{s.denominator}' if s.denominator else '-'}")
            if shown.get(key) != line:
                shown[key] = line
                out.line(line)
        if all(not s.known for s in answers):
            return ExitCode.OK
        await asyncio.sleep(interval)
        answers = await ask(gear)


@app.command(epilog=examples("gearctl cancel H:gear1:42",
                             "gearctl cancel H:gear1:42 -s gear1"))
@with_servers()
def cancel(
    handle: Annotated[str, typer.Argument(help="Handle of a queued background job.", show_default=False)],
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Cancel a queued job (admin `cancel job`). Exit 8 when no server knows it."""
    cancelled = server.run(ops.cancel(server.addresses(), handle, **server.bounds()))
    if cancelled.already:
        Out().line(f"{handle} on {cancelled.server} was already cancelled")
    else:
        Out().line(f"cancelled {handle} on {cancelled.server}")
    return ExitCode.OK


@app.command(epilog=examples("gearctl drop old_function",
                             "gearctl drop old_function --force   # its queued jobs are orphaned"))
@with_servers()
def drop(
    function: Annotated[str, typer.Argument(help="Function to remove from the servers.", show_default=False,
                                            autocompletion=complete_functions)],
    force: Annotated[bool, typer.Option("--force", help="Drop it even with jobs queued (they are orphaned).")
                     ] = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Remove a function from the servers' status (admin `drop function`)."""
    result = server.run(ops.drop(server.addresses(), function, force=force, **server.bounds()))
    dropped = result.where(ops.DropOutcome.DROPPED)
    if dropped:
        Out().line(f"dropped {function} on {', '.join(s.address for s in dropped)}")
    for s in result.refused:  # a REFUSED detail is the server's error, which names it
        sys.stderr.write(f"gearctl: {s.address + ': ' if s.outcome is ops.DropOutcome.BUSY else ''}{s.detail}\n")
    for s in result.where(ops.DropOutcome.DOWN):
        sys.stderr.write(f"gearctl: {s.address} is down: {reason_at(s.address, s.detail)}\n")
    if result.refused:
        return ExitCode.SERVER_REFUSED
    if not dropped:
        raise NotFound(f"no server knows the function {function}", "ERR")
    return ExitCode.OK


@app.command(epilog=examples("gearctl version",
                             "gearctl version -s gear1,gear2"))
@with_servers()
def version(
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """gearctl's version and each server's."""
    out = Out()
    reports = _collect(server, status=False, version=True)
    code = ExitCode.OK if any(r.up for r in reports) else monitor.down_code(r.why for r in reports)
    if as_json:
        out.line(json.dumps(monitor.version_document(reports, __version__), indent=2))
        return code
    out.line(f"gearctl {__version__}")
    for r in reports:
        out.line(f"{r.address}\t{r.version if r.up else 'down: ' + r.reason}")
    return code


@app.command(epilog=examples("gearctl ping",
                             "gearctl ping -s gear1,gear2 || echo 'a server is down'"))
@with_servers()
def ping(
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Exit 0 when every server answers (ECHO round trip), else 3 (7 when one speaks another protocol)."""
    out = Out()
    pongs = server.run(ops.ping(server.addresses(), **server.bounds()))
    code = ExitCode.OK if all(p.ok for p in pongs) else monitor.down_code(
        p.error.exit_code for p in pongs if p.error is not None)
    if as_json:
        out.line(json.dumps(ops.ping_document(pongs), indent=2))
        return code
    for pong in pongs:
        if pong.seconds is not None:
            out.line(f"{pong.address}\tok\t{pong.seconds * 1000:.2f} ms")
        else:
            out.line(f"{pong.address}\tdown\t{reason_at(pong.address, pong.error)}")
    return code


@app.command(epilog=examples("gearctl check --max-queued resize=100,1000",
                             "gearctl check --min-workers 'notifications_*=1' --max-dead 0"))
@with_servers()
def check(
    max_queued: Annotated[list[str] | None, typer.Option(
        "--max-queued", metavar="F=[WARN,]CRIT", help="Alert when function F (a pattern) has more jobs waiting.")
    ] = None,
    min_workers: Annotated[list[str] | None, typer.Option(
        "--min-workers", metavar="F=[WARN,]CRIT", help="Alert when function F (a pattern) has fewer workers.")
    ] = None,
    max_dead: Annotated[list[str] | None, typer.Option(
        "--max-dead", metavar="[F=][WARN,]CRIT",
        help="Alert when function F (a pattern; every function without F=) has more dead jobs.")] = None,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """A Nagios/Icinga plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line with perfdata."""
    out = Out()
    try:
        queued_limits = [monitor.Threshold.parse(t, "--max-queued") for t in max_queued or []]
        worker_limits = [monitor.Threshold.parse(t, "--min-workers") for t in min_workers or []]
        dead_limits = [monitor.Threshold.parse(t, "--max-dead", default_pattern="*") for t in max_dead or []]
        reports = _collect(server, workers=True)  # workers: connections, not registrations
    except GearctlError as e:  # the plugin could not check: UNKNOWN, whatever the cause
        out.line(f"GEARMAN UNKNOWN - {e}")
        return monitor.UNKNOWN
    state, line = monitor.check(reports, queued_limits, worker_limits, dead_limits)
    out.line(line)
    return state


@app.command(epilog=examples("gearctl exporter",
                             "gearctl exporter --port 9731 --address 0.0.0.0 -s gear1,gear2"))
@with_servers(timeout=False)  # it serves until stopped; each scrape is bounded by the two timeouts
def exporter(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve /metrics on.")] = 9731,
    address: Annotated[str, typer.Option("--address", help="Address to listen on (0.0.0.0 for every interface).")
                       ] = "127.0.0.1",
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Serve Prometheus metrics: queued, running, workers and dead jobs per server and function, and server up."""
    from prometheus_client.core import REGISTRY
    from prometheus_client.exposition import start_http_server

    REGISTRY.register(monitor.GearmanCollector(server.addresses(), **server.bounds()))
    try:
        start_http_server(port, addr=address)
    except OSError as e:
        raise UsageError(f"cannot listen on {address}:{port}: {e.strerror or e}") from e
    sys.stderr.write(f"gearctl: serving metrics on http://{address}:{port}/metrics\n")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return ExitCode.OK
