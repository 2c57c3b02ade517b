"""`gearctl server`: the embedded Gearman server (server.py), in the foreground."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .. import logs
from ..timeparse import parse_duration
from .app import app
from .helptext import examples


@app.command("server", epilog=examples("gearctl server",
                                       "gearctl server --port 0 --store /var/lib/gearctl/jobs.db",
                                       "gearctl server --max-queue 10000 --pidfile /run/gearctl-server.pid"))
def server_command(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS",
                                      help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="PORT",
                                      help="Port to listen on; 0: a free one (the start line says which).")] = 4730,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", min=0, metavar="N",
        help="Jobs per function at most, queued and running; a submit past it gets ERROR QUEUE_ERROR. 0: no limit.")
    ] = 0,
    store: Annotated[str | None, typer.Option(
        "--store", metavar="FILE",
        help="Keep background jobs in this SQLite file across restarts (stored before JOB_CREATED is sent, "
             "deleted when they end). Default: in memory.")] = None,
    graceful_timeout: Annotated[str, typer.Option(
        "--graceful-timeout", metavar="DURATION",
        help="On SIGTERM or `shutdown graceful`: stop accepting, let running jobs end for up to this long.")
    ] = "30s",
    pidfile: Annotated[str | None, typer.Option("--pidfile", metavar="FILE", help="Write the server's pid.")] = None,
    log_format: Annotated[str, typer.Option("--log-format", metavar="text|json", help="Log lines as text or JSON.")
    ] = "text",
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning, error.")
    ] = "info",
) -> int:
    """Run a Gearman job server in this process: for development, tests and small setups.

    gearmand stays the production engine. The C tools, php-gearman and gearctl use
    this server unchanged.

    SIGTERM stops gracefully (stored jobs are kept); Ctrl-C stops at once.

    Examples:

      gearctl server                      # 127.0.0.1:4730, in memory

      gearctl server --port 4731 --store /var/lib/gearctl/jobs.db
    """
    from .. import pidfile as pidfiles
    from ..errors import UsageError
    from ..server import Server, run_server

    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format must be text or json, not {log_format!r}")
    logs.setup(log_format, log_level)
    server = Server(host, port, max_queue or None, parse_duration(graceful_timeout, "--graceful-timeout"), store=store)
    if pidfile:
        pidfiles.claim(pidfile)
    try:
        asyncio.run(run_server(server, logs.log.info))  # a ConfigError (exit 2) goes through invoke()
    finally:
        if pidfile:
            pidfiles.release(pidfile)
    return 0
