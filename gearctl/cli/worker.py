"""`gearctl worker`: serve the plugin directories' functions from supervised
worker processes (supervisor.py runs them, child.py is each one's side)."""

from __future__ import annotations

import functools
import sys
from enum import Enum
from typing import Annotated

import typer

from .. import logs, render
from ..errors import UsageError
from ..timeparse import parse_duration
from .app import (
    NO_SERVER_OPTIONS,
    ServerOptions,
    app,
    with_servers,
)
from .completion import complete_function_list
from .helptext import examples
from .plugin_options import AllowInsecurePlugins, PluginDirs, load_registry


class LogFormat(str, Enum):
    text = "text"
    json = "json"


@app.command(epilog=examples("gearctl worker -p /srv/app/gearman",
                             "gearctl worker -p plugins --functions notifications_send_users -c 4",
                             "gearctl worker -p plugins --burst   # drain the queues, then exit"))
@with_servers(io_timeout=False, timeout=False)  # it serves until stopped
def worker(
    functions: Annotated[str | None, typer.Option(
        "--functions", "-f", metavar="NAME[:N],...",
        help="Functions to register (comma-separated). Default: all. NAME:N gives NAME N processes of its own "
             "(the -c pool then serves the others).",
        autocompletion=complete_function_list)] = None,
    plugin_dir: PluginDirs = None,
    client_id: Annotated[str | None, typer.Option(
        "--id", metavar="ID", help="Client id shown by gearadmin --workers. Default: HOST-PID of each process.")
    ] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", min=1, max=512, metavar="N",
        help="Worker processes of the shared pool (besides those of functions with their own).")] = 1,
    prefetch: Annotated[str, typer.Option(
        "--prefetch", metavar="auto|N",
        help="Jobs a process holds at once (the one running + those waiting). auto: as many as it can finish "
             "within --prefetch-budget, from measured run times (1 for slow jobs, up to 64 for quick ones). "
             "N: a fixed number per server.")] = "auto",
    prefetch_budget: Annotated[str, typer.Option(
        "--prefetch-budget", metavar="DURATION",
        help="With --prefetch auto: the longest a held job should wait behind the others.")] = "50ms",
    max_jobs: Annotated[int | None, typer.Option(
        "--max-jobs", min=1, metavar="N", help="Replace a process after N jobs (after the current job).")] = None,
    max_lifetime: Annotated[str | None, typer.Option(
        "--max-lifetime", metavar="DURATION", help="Replace a process after this long (plus up to 10% splay).")] = None,
    max_memory: Annotated[float | None, typer.Option(
        "--max-memory", min=1, metavar="MB", help="Replace a process whose resident memory passes MB.")] = None,
    burst: Annotated[bool, typer.Option(
        "--burst", help="Exit 0 once no function has a job left on any server (drain, then stop: for cron).")] = False,
    graceful_timeout: Annotated[str, typer.Option(
        "--graceful-timeout", metavar="DURATION",
        help="On SIGTERM/Ctrl-C, let running jobs finish for up to this long, then kill.")] = "30s",
    pidfile: Annotated[str | None, typer.Option("--pidfile", metavar="FILE", help="Write the supervisor's pid.")
    ] = None,
    start_timeout: Annotated[str, typer.Option(
        "--start-timeout", metavar="DURATION",
        help="On SIGHUP, how long a new process may take to be ready (import, connect) before the reload is "
             "abandoned.")] = "60s",
    poll_interval: Annotated[float, typer.Option(
        "--poll-interval", min=0.1, metavar="SECONDS",
        help="While idle, ask each server this often (gearmand does not wake workers for --at/--in jobs).")] = 5.0,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="Log lines as text or JSON.")] = LogFormat.text,
    log_level: Annotated[str, typer.Option(
        "--log-level", metavar="LEVEL", help="debug, info (one line per job), warning, error.")] = "info",
    retries: Annotated[int, typer.Option(
        "--retries", min=0, max=1000, metavar="N",
        help="Attempts after the first for a job that fails (functions may declare their own).")] = 0,
    retry_backoff: Annotated[str, typer.Option(
        "--retry-backoff", metavar="DURATION", help="Delay before the second attempt; doubled for each after.")
    ] = "10s",
    retry_backoff_max: Annotated[str, typer.Option(
        "--retry-backoff-max", metavar="DURATION", help="Longest delay between attempts.")] = "1h",
    retry_on: Annotated[str, typer.Option(
        "--retry-on", metavar="LIST", help="Which ends are retried: exception, fail, timeout (comma-separated).")
    ] = "exception,fail,timeout",
    no_dead_letter: Annotated[bool, typer.Option(
        "--no-dead-letter", help="A job out of attempts is not kept in FUNCTION.dead (dropped, as gearmand does).")
    ] = False,
    dead_letter_suffix: Annotated[str, typer.Option(
        "--dead-letter-suffix", metavar="TEXT", envvar="GEARCTL_DEAD_LETTER_SUFFIX",
        help="Dead-letter function name: FUNCTION + this (GEARCTL_DEAD_LETTER_SUFFIX sets it for "
             "`dead` and `status` too).")] = ".dead",
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=1, max=65535, metavar="PORT",
        help="Serve Prometheus /metrics (gearctl_worker_jobs_total{function,outcome}) on this port.")] = None,
    metrics_address: Annotated[str, typer.Option(
        "--metrics-address", metavar="ADDRESS", help="Address for --metrics-port (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    allow_insecure_plugins: AllowInsecurePlugins = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Serve job functions from the plugin directory until SIGTERM or Ctrl-C.

    SIGHUP reloads the plugins (the processes are replaced one at a time)."""
    from .. import sdnotify
    from ..child import WorkerSpec, run_child
    from ..prefetch import prefetch_setting
    from ..retry import check_flags
    from ..supervision import parse_function_counts, processes_line, slot_plan
    from ..supervisor import Supervisor, SupervisorOptions, serve_metrics

    retry_defaults = check_flags({"retries": retries, "retry_backoff": retry_backoff,
                                  "retry_backoff_max": retry_backoff_max, "retry_on": retry_on,
                                  "dead_letter": not no_dead_letter, "dead_letter_suffix": dead_letter_suffix})
    registry = load_registry(plugin_dir, allow_insecure=allow_insecure_plugins)
    names: list[str] | None = None
    counts: dict[str, int] = {}
    if functions is not None:
        if not functions.replace(",", "").strip():
            raise UsageError("--functions is empty; name at least one function, or leave it out to serve all")
        try:
            names, counts = parse_function_counts(functions)
        except ValueError as e:
            raise UsageError(f"--functions: {e}") from None
    chosen = registry.select(names)  # fail now (exit 2), not in every child
    dedicated = {fn.name: fn.processes for fn in chosen if fn.processes} | counts
    if sum(dedicated.values()) > 512:
        raise UsageError("--functions: at most 512 processes of their own in all")
    shared = concurrency if any(fn.name not in dedicated for fn in chosen) else 0  # the pool has work
    plan = slot_plan(shared, dedicated) if dedicated else ()
    prefetching = prefetch_setting(prefetch, prefetch_budget)
    tls_options = server.tls_options()
    tls_options.context()  # bad TLS files: exit 2 now
    live = render.is_tty(sys.stderr) and log_format is LogFormat.text
    spec = WorkerSpec(plugin_dirs=plugin_dir, functions=names, servers=server.addresses(),
                      client_id=client_id or "", prefetch=prefetching, connect_timeout=server.connect_timeout,
                      tls=tls_options,
                      poll_interval=poll_interval, max_jobs=max_jobs,
                      max_lifetime=parse_duration(max_lifetime, "--max-lifetime") if max_lifetime else None,
                      max_memory_mb=max_memory, burst=burst, log_format=log_format.value, log_level=log_level,
                      logs_to_pipe=live, retry=retry_defaults, allow_insecure_plugins=allow_insecure_plugins,
                      dedicated=frozenset(dedicated))

    notifier, watchdog = sdnotify.from_environment()  # systemd's, for the supervisor alone
    options = SupervisorOptions(concurrency=len(plan) if plan else concurrency,
                                graceful_timeout=parse_duration(graceful_timeout, "--graceful-timeout"), plan=plan,
                                pidfile=pidfile, burst=burst, functions=frozenset(f.name for f in chosen),
                                start_timeout=parse_duration(start_timeout, "--start-timeout"), watchdog=watchdog)
    view = render.SupervisorView(client_id or "", server.servers, live, [f.name for f in chosen])
    with view:
        logs.setup(log_format.value, log_level, console=view.console)
        logs.log.info("serving %s on %s with %s", ", ".join(f.name for f in chosen), server.servers,
                      processes_line(shared, dedicated))
        supervisor = Supervisor(functools.partial(run_child, spec), options, on_change=view.update,
                                on_log=view.print_line, notify=notifier.send if notifier.enabled else None)
        if metrics_port is not None:
            serve_metrics(supervisor, metrics_port, metrics_address)
        return supervisor.run()
