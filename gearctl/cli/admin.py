"""gearadmin's remaining verbs: getpid, maxqueue, shutdown. Thin: flags in, a call
into ops.py, one line per server out. Each asks every server at once and exits 0
only when every server did it (else the worst error's code: 3 down, 7 not
gearmand, 8 refused or not supported)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from .. import ops
from ..errors import ExitCode, UsageError
from .app import NO_SERVER_OPTIONS, ServerOptions, app, with_servers
from .completion import complete_functions
from .helptext import examples
from .streams import Out, one_line

AsJson = Annotated[bool, typer.Option("--json", help="A JSON document instead of lines.")]


def _report_failures(outcomes: Sequence[ops.AdminOutcome], verb: str) -> int:
    """One stderr line per server that did not do it; the exit code."""
    for o in outcomes:
        if o.unsupported:
            sys.stderr.write(f"gearctl: {o.address} does not support {verb} (gearmand 1.1.20 answers "
                             "ERR UNKNOWN_COMMAND; `gearctl server` supports it): stop it by its pid "
                             "(gearctl getpid)\n")
        elif o.error is not None:
            sys.stderr.write(f"gearctl: {one_line(str(o.error))}\n")
    return ops.worst_exit(outcomes)


@app.command(epilog=examples("gearctl getpid -s 127.0.0.1:4730 | cut -f2", "gearctl getpid --json"))
@with_servers()
def getpid(
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Each server's process id (admin `getpid`): ADDRESS<tab>PID per server.

    Exit 0 when every server answered; a server that did not is one stderr line (exit 3).

    """
    outcomes = server.run(ops.getpid(server.addresses(), **server.bounds()))
    if as_json:
        Out().line(json.dumps(ops.getpid_document(outcomes), indent=2))
    else:
        out = Out()
        for o in outcomes:
            if o.pid is not None:
                out.line(f"{o.address}\t{o.pid}")
    return _report_failures(outcomes, "getpid")


@app.command(epilog=examples("gearctl maxqueue resize 10000",
                             "gearctl maxqueue resize 100 1000 1000   # high, normal, low",
                             "gearctl maxqueue resize   # no limit again"))
@with_servers()
def maxqueue(
    function: Annotated[str, typer.Argument(metavar="FUNCTION", help="The function to cap.", show_default=False,
                                            autocompletion=complete_functions)],
    limits: Annotated[list[int] | None, typer.Argument(
        metavar="[N | HIGH NORMAL LOW]", show_default=False,
        help="Jobs the function may hold, queued and running (0 or none: no limit); three: per priority.")
    ] = None,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Cap the jobs a function may hold on every server (admin `maxqueue`).

    Past it a submit gets QUEUE_ERROR (exit 8; a client tries the next server)."""
    given = limits or []
    args = ops.maxqueue_args(function, given)  # bad limits: exit 2 before any server is asked
    outcomes = server.run(ops.maxqueue(server.addresses(), function, given, **server.bounds()))
    done = [o.address for o in outcomes if o.ok]
    if done:
        what = "no limit" if len(args) == 1 else " ".join(args[1:])
        Out().line(f"maxqueue {function} {what} on {', '.join(done)}")
    return _report_failures(outcomes, "maxqueue")


@app.command(epilog=examples("gearctl shutdown --graceful -s 127.0.0.1:4730",
                             "gearctl shutdown --yes -s 127.0.0.1:4731   # from a script: no question"))
@with_servers()
def shutdown(
    graceful: Annotated[bool, typer.Option(
        "--graceful", help="Stop accepting, let running jobs end, then exit (admin `shutdown graceful`).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Stop the servers (admin `shutdown`, or `shutdown graceful`). Asks first on a terminal unless --yes.

    gearmand 1.1.20 does not know the command (exit 8); `gearctl server` does."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("shutdown stops the servers: give --yes (stdin is not a terminal to ask on)")
        how = " gracefully" if graceful else ""
        if not typer.confirm(f"shut down {server.servers}{how}?", default=False, err=True):
            sys.stderr.write("gearctl: nothing shut down\n")
            return ExitCode.OK
    outcomes = server.run(ops.shutdown(server.addresses(), graceful, **server.bounds()))
    out = Out()
    for o in outcomes:
        if o.ok:
            out.line(f"{'shutting down gracefully' if graceful else 'shut down'} {o.address}")
    return _report_failures(outcomes, "shutdown")
