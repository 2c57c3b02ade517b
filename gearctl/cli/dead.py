"""`gearctl dead list|show|retry|purge`: the dead-letter queue. Thin: flags in, a
call into dead.py, the answer drawn here (a table via render.print_table, or
JSON). Warnings about what a server's part came to go to stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Annotated

import typer

from .. import dead, render
from ..errors import ExitCode, GearctlError, UsageError, reason_at
from .app import NO_SERVER_OPTIONS, ServerOptions, app, with_servers
from .completion import complete_dead_ids, complete_dead_targets, complete_functions
from .helptext import examples
from .streams import Out, one_line

dead_app = typer.Typer(name="dead", no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                       help="The dead-letter queue: jobs out of attempts, kept in gearmand as <function>.dead.",
                       epilog=examples("gearctl dead list",
                                       "gearctl dead retry notifications_send_users",
                                       "gearctl dead purge --all --yes"))
app.add_typer(dead_app, name="dead")

AsJson = Annotated[bool, typer.Option("--json", help="A JSON document instead of a table.")]
Limit = Annotated[int, typer.Option("--limit", min=1, metavar="N",
                                    help="Hold at most N dead jobs per server (the rest are not seen).")]
Target = Annotated[str | None, typer.Argument(metavar="[FUNCTION|ID]", show_default=False,
                                              autocompletion=complete_dead_targets,
                                              help="A function (its .dead jobs), or one dead job's ID or handle.")]
Every = Annotated[bool, typer.Option("--all", help="Every dead job of every function.")]


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)) if seconds else "-"


def _warn(listing: dead.DeadListing) -> None:
    """One stderr line per server that was down, cut short, or lost jobs on the hand-back."""
    for s in listing.servers:
        if s.error is not None:
            sys.stderr.write(f"gearctl: {s.address}: {one_line(reason_at(s.address, s.error))}\n")
        if s.truncated:
            sys.stderr.write(f"gearctl: {s.address}: only the first {s.held} dead jobs were looked at (--limit)\n")
        if s.dropped:
            sys.stderr.write(f"gearctl: warning: {s.address}: {len(s.dropped)} dead job(s) were gone once handed "
                             "back: gearmand drops a job whose requeues reach its --job-retries (every `gearctl "
                             "dead` command is one), or another command took them. Run the gearmand that keeps "
                             "dead letters without --job-retries\n")
        if s.unconfirmed:
            sys.stderr.write(f"gearctl: {s.address}: the connection failed before gearmand confirmed "
                             f"{len(s.unconfirmed)} completion(s): those dead jobs may still be there "
                             "(`gearctl dead list`); a retried one may then run twice\n")
        if s.unsettled:
            sys.stderr.write(f"gearctl: {s.address}: {s.unsettled} dead job(s) not seen back in the queue yet "
                             "(another `gearctl dead` command may hold them)\n")


def _rows(jobs: Sequence[dead.DeadJob], several: bool) -> tuple[list[str], list[list[str]]]:
    columns = ["id", "function", "attempts", "last error", "first failure", "last failure", "host"]
    rows = []
    for j in jobs:
        env = j.envelope
        row = ([j.id, j.function, str(env.attempts), env.error, _when(env.first_failure), _when(env.last_failure),
                env.host] if env is not None else
               [j.id, j.function, "-", f"invalid: {j.invalid}", "-", "-", "-"])
        rows.append([one_line(c) for c in row] + ([j.server] if several else []))
    return columns + (["server"] if several else []), rows


@dead_app.command("list", epilog=examples("gearctl dead list",
                                          "gearctl dead list notifications_send_users --json"))
@with_servers()
def list_(
    function: Annotated[str | None, typer.Argument(metavar="[FUNCTION]", show_default=False,
                                                   help="Only this function's dead jobs.",
                                                   autocompletion=complete_functions)] = None,
    limit: Limit = dead.DEFAULT_LIMIT,
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """List dead jobs, leaving them where they are (they are grabbed, then handed back)."""
    try:
        listing = server.run(dead.list_dead(server.addresses(), function, limit=limit, **server.bounds()))
    except GearctlError as e:  # no server answered: with --json the document still goes out, every server down
        if as_json and e.down:
            down = dead.DeadListing((), tuple(dead.ServerDead(address, error=error) for address, error in e.down))
            Out().line(json.dumps(down.as_json(), indent=2, ensure_ascii=False))
        raise
    _warn(listing)
    if as_json:
        Out().line(json.dumps(listing.as_json(), indent=2, ensure_ascii=False))
        return ExitCode.OK
    columns, rows = _rows(listing.jobs, len(listing.servers) > 1)
    render.print_table("gearctl dead", columns, rows)
    return ExitCode.OK


@dead_app.command(epilog=examples("gearctl dead show signup-17~dead.1764590460000",
                                  "gearctl dead show H:gear1:9 --json"))
@with_servers()
def show(
    job_id: Annotated[str, typer.Argument(metavar="ID", show_default=False, autocompletion=complete_dead_ids,
                                          help="The dead job's ID (as `dead list` shows it) or its handle.")],
    limit: Limit = dead.DEFAULT_LIMIT,
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Everything about one dead job: the envelope, its traceback and its workload. Exit 8 when no server has it."""
    job, listing = server.run(dead.show_dead(server.addresses(), job_id, limit=limit, **server.bounds()))
    _warn(listing)
    if as_json:
        Out().line(json.dumps(job.as_json(), indent=2, ensure_ascii=False))
        return ExitCode.OK
    out = Out()
    for key, value in _details(job):
        out.line(f"{key}: {value}")
    env = job.envelope
    if env is not None and env.traceback:
        out.line("traceback:")
        out.line(env.traceback.rstrip("\n"))
    out.line("workload:")
    out.write((env.workload if env is not None else job.raw) + b"\n")
    return ExitCode.OK


def _details(job: dead.DeadJob) -> list[tuple[str, str]]:
    shown = [("id", job.id), ("handle", job.handle), ("server", job.server), ("queue", job.queue),
             ("function", job.function), ("requeues", "-" if job.requeues is None else str(job.requeues))]
    env = job.envelope
    if env is None:
        return [*shown, ("invalid", job.invalid)]
    return [*shown, ("unique", env.unique), ("attempts", str(env.attempts)), ("state", env.state),
            ("error", one_line(env.error)), ("host", env.host), ("first failure", _when(env.first_failure)),
            ("last failure", _when(env.last_failure)), ("last handle", env.handle or "-")]


def _selection(target: str | None, every: bool, include_invalid: bool = False) -> dead.Selection:
    """FUNCTION or ID (an ID when some dead job has it, decided once they are held), or --all."""
    if (target is None) == (not every):
        raise UsageError("name one FUNCTION or ID, or give --all (not both)")
    return dead.Selection(target=target, every=every, include_invalid=include_invalid)


def _report(result: dead.DeadResult, verb: str) -> int:
    """One stdout line per job acted on, one stderr line per job left; the exit code (README)."""
    _warn(result.listing)
    out, code = Out(), ExitCode.OK
    for a in result.acted:
        if a.action in (dead.Action.RETRIED, dead.Action.PURGED):
            out.line(f"{a.action} {a.job.id} ({a.job.function})" + (f" as {a.detail}" if a.detail else ""))
            continue
        sys.stderr.write(f"gearctl: {a.job.id}: {one_line(a.detail)}\n")
        if a.action is dead.Action.FAILED:
            code = max(code, a.error.exit_code if a.error is not None else ExitCode.NO_SERVER)
        elif a.action is dead.Action.KEY_TAKEN:
            code = max(code, ExitCode.SERVER_REFUSED)
    if not result.acted:
        sys.stderr.write(f"gearctl: no dead jobs to {verb}\n")
    if result.listing.unconfirmed:
        code = max(code, ExitCode.NO_SERVER)
    return code


@dead_app.command(epilog=examples("gearctl dead retry notifications_send_users",
                                  "gearctl dead retry --all"))
@with_servers()
def retry(
    target: Target = None,
    every: Every = False,
    limit: Limit = dead.DEFAULT_LIMIT,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Resubmit dead jobs to their original function (background, original unique key), then complete them."""
    result = server.run(dead.retry_dead(server.addresses(), _selection(target, every), limit=limit,
                                         **server.bounds()))
    code = _report(result, "retry")
    by_id = result.selection is not None and result.selection.job_id is not None
    if by_id and result.where(dead.Action.INVALID):
        code = max(code, ExitCode.USAGE)
    return code


@dead_app.command(epilog=examples("gearctl dead purge signup-17~dead.1764590460000",
                                  "gearctl dead purge --all --yes   # from a script"))
@with_servers()
def purge(
    target: Target = None,
    every: Every = False,
    include_invalid: Annotated[bool, typer.Option(
        "--include-invalid", help="With FUNCTION or --all: also jobs that are not dead-letter envelopes.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    limit: Limit = dead.DEFAULT_LIMIT,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Delete dead jobs for good (WORK_COMPLETE). Asks first on a terminal unless --yes."""
    selection = _selection(target, every, include_invalid)
    if not yes and not sys.stdin.isatty():
        raise UsageError("purge deletes dead jobs for good: give --yes (stdin is not a terminal to ask on)")

    def confirm(jobs: Sequence[dead.DeadJob]) -> bool:
        functions = ", ".join(sorted({j.function for j in jobs}))
        return typer.confirm(f"purge {len(jobs)} dead job(s) of {functions} for good?", default=False,
                             err=True)

    result = server.run(dead.purge_dead(server.addresses(), selection, limit=limit,
                                         confirm=None if yes else confirm, **server.bounds()))
    if result.declined:
        sys.stderr.write("gearctl: nothing purged\n")
        return ExitCode.OK
    return _report(result, "purge")
