"""The gearctl command line: thin typer commands over the library.

Commands parse flags, call the library and print; `main()` is the one place
that turns errors into a one-line message on stderr and an exit code (see
errors.ExitCode, documented in README).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from enum import Enum
from typing import Annotated, BinaryIO

import typer

from .. import codecs, logs, plugins, render
from ..client import AsyncClient, Job
from ..errors import ExitCode, GearctlError, JobException, PayloadError, Timeout, UsageError
from ..lines import LineReports, LineSource
from ..pipeline import deadline_after, remaining
from ..timeparse import parse_duration, parse_when
from .app import (
    HELP_DECODE,
    NO_SERVER_OPTIONS,
    ClickException,
    DecodeChoice,
    EncodingChoice,
    Out,
    OutputClosed,
    PriorityChoice,
    ServerOptions,
    _state,
    app,
    complete_functions,
    one_line,
    read_payload,
    with_servers,
)


def _line_input(payload: str | None, data: str | None) -> tuple[BinaryIO | None, bytes | None]:
    """--each-line's input: a stream to read lines from, or inline text."""
    if data is not None:
        if payload is not None:
            raise UsageError("give the payload either as a file argument or with --data, not both")
        return None, data.encode("utf-8", "surrogateescape")
    if payload is None or payload == "-":
        return sys.stdin.buffer, None
    if os.path.isdir(payload):
        raise UsageError(f"cannot read payload file {payload}: it is a directory")
    try:
        return open(payload, "rb"), None
    except OSError as e:
        raise UsageError(f"cannot read payload file {payload}: {e.strerror or e}") from e


_HELP_TIMEOUT = "Give up after this long (30, 30s, 5m): on the result with --wait, else on JOB_CREATED. Exit 4."
_HELP_ENCODING = "raw: bytes as given. json: checked to be JSON. php: JSON in, PHP serialize() out."


@app.command(no_args_is_help=True)
@with_servers()
def client(
    function: Annotated[str, typer.Argument(help="Function to run.", show_default=False,
                                            autocompletion=complete_functions)],
    payload: Annotated[str | None, typer.Argument(
        metavar="[PAYLOAD]", help="File holding the workload, or - for stdin. None: an empty workload.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", metavar="TEXT", help="The workload, inline.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", "-w", help="Run in the foreground: wait for the result and print it.")] = False,
    timeout: Annotated[str | None, typer.Option("--timeout", "-t", metavar="DURATION", help=_HELP_TIMEOUT)] = None,
    priority: Annotated[PriorityChoice, typer.Option("--priority", help="Queue priority.")] = PriorityChoice.normal,
    unique: Annotated[str | None, typer.Option(
        "--unique", "-u", metavar="KEY", help="Unique key: jobs with the same key coalesce into one.")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="WHEN", help="Run the background job at WHEN: epoch seconds, ISO 8601, or HH:MM.")] = None,
    in_: Annotated[str | None, typer.Option(
        "--in", metavar="DURATION", help="Run the background job after DURATION (e.g. 90s, 5m, 1h).")] = None,
    encoding: Annotated[EncodingChoice, typer.Option("--encoding", "-e", help=_HELP_ENCODING)] = EncodingChoice.raw,
    each_line: Annotated[bool, typer.Option("--each-line", "-n", help="One job per input line, pipelined.")] = False,
    inflight: Annotated[int, typer.Option(
        "--inflight", min=1, metavar="N", help="With --each-line: jobs in flight at once (1 = one after another).")
    ] = 10_000,
    summary: Annotated[bool, typer.Option(
        "--summary", help="With --each-line: print the counts and rate on stderr even off a terminal.")] = False,
    max_errors: Annotated[int | None, typer.Option(
        "--max-errors", min=1, metavar="N",
        help="With --each-line: stop submitting once N lines have failed (exit code: the worst error).")] = None,
    decode: Annotated[DecodeChoice | None, typer.Option("--decode", help="With --wait: " + HELP_DECODE)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job on stdout.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print nothing on success (results still print with --wait).")] = False,
    require_workers: Annotated[bool, typer.Option(
        "--require-workers", help="Fail (exit 6) before submitting when no worker has registered FUNCTION.")] = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Submit a job to FUNCTION: in the background (prints the job handle), or with --wait in the foreground."""
    if at is not None and in_ is not None:
        raise UsageError("give either --at or --in, not both")
    when = parse_when(at) if at is not None else None
    if in_ is not None:
        when = int(time.time() + parse_duration(in_) + 0.5)
    if when is not None and wait:
        raise UsageError("--at/--in schedule a background job; it cannot be combined with --wait")
    if each_line and unique:
        raise UsageError("--unique gives every job the same key; it cannot be combined with --each-line")
    if max_errors is not None and not each_line:
        raise UsageError("--max-errors counts the failed lines of --each-line; add --each-line, or drop it")
    if decode is not None and not wait:
        raise UsageError("--decode reads a job's result; add --wait (a background job has none)")
    decoding = decode.value if decode is not None else None
    seconds = parse_duration(timeout) if timeout is not None else None
    gear = server.client()

    def make_job(body: bytes, index: int | None = None) -> Job:
        return Job(function, body, unique=unique or "", background=not wait, priority=priority.value,
                   when=when, index=index)

    if each_line:
        stream, text = _line_input(payload, data)
        return asyncio.run(_submit_lines(gear, function, stream, text, make_job, encoding.value, inflight, seconds,
                                         as_json, quiet, require_workers, summary, max_errors, decoding))
    body = read_payload(payload, data)
    try:
        body = codecs.prepare_payload(body, encoding.value)
    except PayloadError as e:
        if as_json:  # as for an invalid line of --each-line: the record, then the error
            Out().line(render.json_line(_invalid_record(function, None, one_line(str(e)))))
        raise
    return asyncio.run(_submit_one(gear, make_job(body), seconds, as_json, quiet, require_workers, decoding))


def _write_decoded(out: Out, record: dict[str, object] | None, result: bytes, decoding: str,
                   flush: bool = True) -> None:
    """--decode: the result as a line of JSON, or (with --json) the record with a
    "value" field. A result that does not decode raises PayloadError, after the
    record (its "value" null, "decode_error" the reason) went out with --json."""
    try:
        if record is None:
            out.write(codecs.as_json_text(result, decoding) + b"\n", flush=flush)
            return
        record["value"] = codecs.json_value(result, decoding)
    except PayloadError as e:
        if record is not None:
            record.update(value=None, decode_error=one_line(str(e)))
            out.write(render.json_line(record).encode() + b"\n", flush=flush)
        raise PayloadError(f"--decode {decoding}: {e}", e.data) from e
    out.write(render.json_line(record).encode() + b"\n", flush=flush)


async def _submit_one(gear: AsyncClient, job: Job, timeout: float | None, as_json: bool, quiet: bool,
                      require_workers: bool, decoding: str | None = None) -> int:
    out = Out()
    progress = render.JobProgress(job.function, render.is_tty(sys.stderr) and not as_json and not job.background)
    if not as_json:
        # Set before submitting: WORK_* packets can arrive right behind JOB_CREATED.
        # With --decode stdout is one JSON document, so WORK_DATA goes to stderr.
        job.on_data = (lambda _job, chunk: out.write(chunk)) if decoding is None else (
            lambda _job, chunk: _write_stderr(chunk))
        job.on_warning = lambda _job, text: progress.print_warning(text.decode("utf-8", "replace"))
        job.on_status = lambda _job, num, den: progress.update(num, den)
    async with gear:
        deadline = deadline_after(timeout)
        with progress:
            try:
                if require_workers:
                    await gear.require_workers(job.function)
                await gear.submit_job(job, timeout=timeout)
                if job.background:
                    if as_json:
                        out.line(render.json_line(job.to_dict()))
                    elif not quiet:
                        out.line(job.handle or "")
                    return ExitCode.OK
                await job.wait(remaining(deadline))
            except GearctlError as e:
                if as_json and not isinstance(e, OutputClosed):
                    if not job.done:
                        job._finish("error", e)
                    out.line(render.json_line(job.to_dict()))
                raise
        if decoding is not None:
            _write_decoded(out, job.to_dict() if as_json else None, job.result, decoding)
        elif as_json:
            out.line(render.json_line(job.to_dict()))
        else:
            out.write(job.result)
        return ExitCode.OK


def _write_stderr(chunk: bytes) -> None:
    sys.stderr.flush()
    sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.flush()


# How a many-job run ends, worst first: the state, and its exit code unless the
# job's own error says more precisely (a refusal is 8, a protocol error 7).
_STATE_EXIT = [("error", ExitCode.NO_SERVER), ("invalid", ExitCode.USAGE), ("timeout", ExitCode.TIMEOUT),
               ("exception", ExitCode.JOB_EXCEPTION), ("failed", ExitCode.JOB_FAILED)]


async def _submit_lines(gear: AsyncClient, function: str, stream: BinaryIO | None, text: bytes | None,
                        make_job: Callable[[bytes, int], Job], encoding: str, inflight: int, timeout: float | None,
                        as_json: bool, quiet: bool, require_workers: bool, summary: bool,
                        max_errors: int | None = None, decoding: str | None = None) -> int:
    stats = render.SubmitStats(background=make_job(b"", 0).background)
    out = Out()
    errors: dict[str, GearctlError] = {}
    reports = LineReports(sys.stderr)  # identical errors are counted, not repeated 20,000 times
    stopped_at: list[int] = []  # the first line not submitted, once --max-errors was reached

    def failed_one() -> None:
        if max_errors is not None and not stopped_at and stats.failed >= max_errors:
            stopped_at.append(source.number + 1)
            source.stop()

    def job_for(line: bytes, number: int) -> Job | None:
        try:
            body = line if encoding == "raw" else codecs.prepare_payload(line, encoding)
        except PayloadError as e:
            stats.done("invalid")
            errors.setdefault("invalid", e)
            reason = one_line(str(e))
            reports.report(number, f"{reason}; not submitted")
            if as_json:
                out.write(render.json_line(_invalid_record(function, number, reason)).encode() + b"\n", flush=False)
                out.flush_soon()
            failed_one()
            return None
        stats.submitted += 1
        return make_job(body, number)

    def created(job: Job) -> None:
        stats.created += 1

    def done(job: Job) -> None:
        stats.done(job.state)
        if job.error is not None:
            errors.setdefault(job.state, job.error)
        for warning in job.warnings if not as_json else ():
            reports.report(job.index, f"warning: {one_line(warning.decode('utf-8', 'replace'))}")
        if decoding is not None and job.state == "complete":
            try:
                _write_decoded(out, job.to_dict() if as_json else None, job.result, decoding, flush=False)
            except PayloadError as e:  # the job ran: its record still went out; the run exits 2
                errors.setdefault("undecodable", e)
                reports.report(job.index, one_line(str(e)))
                failed_one()
        elif as_json:
            out.write(render.json_line(job.to_dict()).encode() + b"\n", flush=False)
        elif job.state == "queued":
            if not quiet:
                out.write(f"{job.handle}\n".encode(), flush=False)
        elif job.state == "complete":
            output = job.output
            out.write(output if output.endswith(b"\n") else output + b"\n", flush=False)
        else:
            reason = one_line(job.error_text() or job.state)
            reports.report(job.index, reason, reason.replace(job.handle, "<handle>") if job.handle else reason)
        if job.state not in ("queued", "complete"):
            failed_one()
        out.flush_soon()

    source = LineSource(stream, job_for, text=text)
    view = render.SubmitView(stats, function, render.is_tty(sys.stderr))
    try:
        async with gear:
            if require_workers:
                await gear.require_workers(function)
            with view:
                # --max-errors N caps the jobs in flight at N too: in an outage every one
                # in flight fails, and 10,000 of them would blow far past N.
                window = min(inflight, max_errors) if max_errors is not None else inflight
                await gear.submit_many(source, window=window, timeout=timeout, on_created=created, on_done=done)
    finally:
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()
    out.write(b"")
    reports.finish()
    if source.error is not None:
        sys.stderr.write(f"gearctl: reading the input failed after line {source.number}: {source.error}\n")
        return ExitCode.USAGE
    if stopped_at:
        lines = "line" if stats.failed == 1 else "lines"
        # Whether more input was coming may not be known yet (stdin still open).
        sys.stderr.write(f"gearctl: stopped after {stats.failed:,} failed {lines} (--max-errors {max_errors}); "
                         f"no input after line {stopped_at[0] - 1:,} was submitted\n")
    elif stats.by_state.get("timeout") and not source.exhausted:
        sys.stderr.write(f"gearctl: timed out; input from line {source.number + 1} on was not submitted\n")
    if view.enabled or stats.failed or summary:
        sys.stderr.write(f"gearctl: {stats.summary()}\n")
    if "undecodable" in errors and not stats.by_state.get("error"):
        return ExitCode.USAGE  # ranks with an invalid line: the run's input was fine, its answers were not
    for state, code in _STATE_EXIT:
        if stats.by_state.get(state):
            error = errors.get(state)
            return error.exit_code if state == "error" and error is not None else code
    return ExitCode.OK


def _invalid_record(function: str, number: int | None, error: str) -> dict[str, object]:
    """--json's object for a payload or line that was not submitted (not valid for
    -e json/php): the fields of a job's record, with no job."""
    record: dict[str, object] = {"function": function, "handle": None, "unique": None, "server": None,
                                 "status": "invalid", "result": None, "error": error}
    if number is not None:
        record["line"] = number
    return record


# -- worker, functions, run ------------------------------------------------------------
PluginDirs = Annotated[list[str] | None, typer.Option(
    "--plugin-dir", "-p", metavar="DIR",
    help=f"Plugin directory (repeatable). Default: $GEARCTL_PLUGIN_PATH, else ./{plugins.DEFAULT_PLUGIN_DIR}.")]


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _load(plugin_dir: list[str] | None, *, quiet: bool = False) -> plugins.Registry:
    registry = plugins.load_plugins(plugins.plugin_dirs(plugin_dir))
    if not quiet:
        for error in registry.errors:
            sys.stderr.write(f"gearctl: plugin error: {one_line(error)}\n")
    return registry


@app.command()
@with_servers(io_timeout=False)
def worker(
    functions: Annotated[str | None, typer.Option(
        "--functions", "-f", metavar="NAME,...", help="Functions to register (comma-separated). Default: all.")] = None,
    plugin_dir: PluginDirs = None,
    client_id: Annotated[str | None, typer.Option(
        "--id", metavar="ID", help="Client id shown by gearadmin --workers. Default: HOST-PID of each process.")
    ] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", min=1, max=512, metavar="N", help="Worker processes.")] = 1,
    prefetch: Annotated[int, typer.Option(
        "--prefetch", min=1, max=1000, metavar="N",
        help="Jobs held per server at once (grabs outstanding + jobs waiting). 1 is fairest for slow jobs.")] = 1,
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
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Serve job functions from the plugin directory until SIGTERM or Ctrl-C.

    SIGHUP reloads the plugins (the processes are replaced one at a time)."""
    from ..child import WorkerSpec, run_child
    from ..supervisor import Supervisor, SupervisorOptions

    registry = _load(plugin_dir)
    names = None
    if functions is not None:
        names = [n.strip() for n in functions.split(",") if n.strip()]
        if not names:
            raise UsageError("--functions is empty; name at least one function, or leave it out to serve all")
    chosen = registry.select(names)  # fail now (exit 2), not in every child
    tls_options = server.tls_options()
    tls_options.context()  # bad TLS files: exit 2 now
    live = render.is_tty(sys.stderr) and log_format is LogFormat.text
    spec = WorkerSpec(plugin_dirs=plugin_dir, functions=names, servers=server.addresses(),
                      client_id=client_id or "", prefetch=prefetch, connect_timeout=server.connect_timeout,
                      tls=tls_options,
                      poll_interval=poll_interval, max_jobs=max_jobs,
                      max_lifetime=parse_duration(max_lifetime) if max_lifetime else None,
                      max_memory_mb=max_memory, burst=burst, log_format=log_format.value, log_level=log_level,
                      logs_to_pipe=live)

    options = SupervisorOptions(concurrency=concurrency, graceful_timeout=parse_duration(graceful_timeout),
                                pidfile=pidfile, burst=burst, functions=frozenset(f.name for f in chosen),
                                start_timeout=parse_duration(start_timeout))
    view = render.SupervisorView(client_id or "", server.servers, live, [f.name for f in chosen])
    with view:
        logs.setup(log_format.value, log_level, console=view.console)
        logs.log.info("serving %s on %s with %d process(es)", ", ".join(f.name for f in chosen), server.servers,
                      concurrency)
        supervisor = Supervisor(functools.partial(run_child, spec), options, on_change=view.update,
                                on_log=view.print_line)
        return supervisor.run()


@app.command("functions")
def functions_command(
    plugin_dir: PluginDirs = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON document instead of a table.")] = False,
) -> int:
    """List the job functions the plugin directories define. Exit 2 if a plugin has errors."""
    registry = _load(plugin_dir)
    rows = [{"name": f.name, "kind": f.kind, "where": f.where, "file": f.source, "line": f.line,
             "timeout": f.timeout, "encoding": f.encoding, "command": f.command}
            for f in sorted(registry.functions.values(), key=lambda f: f.name)]
    for name, places in sorted(registry.conflicts.items()):
        sys.stderr.write(f"gearctl: plugin error: {name!r} is defined more than once: {' and '.join(places)}\n")
    if as_json:
        print(json.dumps({"functions": rows, "errors": registry.errors,
                          "conflicts": registry.conflicts}, indent=2))
    elif rows:
        render.print_table("job functions", ["name", "kind", "where", "timeout", "encoding"],
                           [[f.name, f.kind, f.where, f"{f.timeout:g}s" if f.timeout else "-", f.encoding]
                            for f in sorted(registry.functions.values(), key=lambda f: f.name)])
    else:
        sys.stderr.write("gearctl: no job functions found\n")
    return ExitCode.USAGE if registry.errors or registry.conflicts else ExitCode.OK


@app.command("run", no_args_is_help=True)
def run_command(
    function: Annotated[str, typer.Argument(help="Function to run.", show_default=False,
                                            autocompletion=complete_functions)],
    payload: Annotated[str | None, typer.Argument(
        metavar="[PAYLOAD]", help="File holding the workload, or - for stdin. None: an empty workload.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", metavar="TEXT", help="The workload, inline.")] = None,
    encoding: Annotated[EncodingChoice, typer.Option("--encoding", "-e", help=_HELP_ENCODING)] = EncodingChoice.raw,
    plugin_dir: PluginDirs = None,
    decode: Annotated[DecodeChoice | None, typer.Option("--decode", help=HELP_DECODE)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object with result, data, warnings, status.")] = False,
) -> int:
    """Run one job function in-process, with no server: the way to debug a plugin."""
    from ..clientjob import result_fields
    from ..jobs import WorkerJob, execute

    registry = _load(plugin_dir)
    fn = registry.select([function])[0]
    body = codecs.prepare_payload(read_payload(payload, data), encoding.value)
    out = Out()  # the real stdout, taken before the job's print()s are sent to stderr
    sink = _LocalSink(out, stream=not as_json, data_to_stderr=decode is not None)
    job = WorkerJob(fn.name, "local:1", "", body, context=fn.context, encoding=fn.encoding, sink=sink)
    with contextlib.redirect_stdout(sys.stderr):  # the job's print()s are not its result
        outcome = asyncio.run(execute(fn, job))
    record: dict[str, object] | None = None
    if as_json:
        fields = result_fields(outcome.result, sink.chunks)
        record = {"function": fn.name, "status": outcome.state, "result": fields.pop("result"),
                  "error": outcome.message or None, **fields, "encoding": job.encoding, "warnings": sink.warnings,
                  "progress": sink.progress, "seconds": round(outcome.seconds, 6)}
    if decode is not None and outcome.state == "complete":
        _write_decoded(out, record, outcome.result, decode.value)
    elif record is not None:
        out.line(json.dumps(record))
    elif outcome.state == "complete":
        out.write(outcome.result)
    if outcome.traceback and not as_json:
        sys.stderr.write(outcome.traceback)
    if outcome.state == "exception":
        raise JobException(f"{fn.name} raised: {outcome.message}")
    if outcome.state == "timeout":
        raise Timeout(f"{fn.name} {outcome.message}")
    return ExitCode.OK


class _LocalSink:
    """`gearctl run`: data to stdout as it comes, warnings and status to stderr."""

    def __init__(self, out: Out, stream: bool, data_to_stderr: bool = False) -> None:
        self.out = out
        self.stream = stream
        self.data_to_stderr = data_to_stderr  # --decode: stdout is one JSON document
        self.chunks: list[bytes] = []
        self.warnings: list[str] = []
        self.progress: list[list[int]] = []

    def data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        if self.stream and self.data_to_stderr:
            _write_stderr(chunk)
        elif self.stream:
            self.out.write(chunk)

    def warning(self, text: bytes) -> None:
        self.warnings.append(text.decode("utf-8", "replace"))
        if self.stream:
            sys.stderr.write(f"warning: {self.warnings[-1]}\n")

    def status(self, numerator: int, denominator: int) -> None:
        self.progress.append([numerator, denominator])
        if self.stream:
            sys.stderr.write(f"status: {numerator}/{denominator}\n")


from . import status  # noqa: E402,F401  (registers status, workers, jobs, ... on the app)


def _silence_stdout() -> None:
    """The reader went away (| head). Point stdout at devnull so the
    interpreter's final flush does not fail again."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, map every error to one stderr line and an exit code."""
    command = typer.main.get_command(app)
    if any(key.startswith("_GEARCTL_COMPLETE") for key in os.environ):
        # Shell completion is asking (see completions/): typer's classes answer.
        with contextlib.suppress(ImportError):
            from typer._completion_classes import completion_init

            completion_init()
    try:
        code = command.main(args=argv, prog_name="gearctl", standalone_mode=False)
        if code == ExitCode.INTERRUPTED:  # typer turned Ctrl-C into exit 130, silently
            sys.stderr.write("gearctl: interrupted\n")
    except (OutputClosed, BrokenPipeError):
        _silence_stdout()
        code = ExitCode.OUTPUT_CLOSED
    except GearctlError as e:
        if _state["debug"]:
            traceback.print_exc()
        sys.stderr.write(f"gearctl: {one_line(str(e))}\n")
        code = e.exit_code
    except ClickException as e:
        ctx = getattr(e, "ctx", None)
        if ctx is not None and ctx.info_name == "check":
            # A monitoring plugin: a bad argument is UNKNOWN (3) with one status line.
            sys.stdout.write(f"GEARMAN UNKNOWN - {one_line(e.format_message())}\n")  # type: ignore[attr-defined]
            sys.exit(3)
        where = ctx.command_path if ctx is not None else "gearctl"
        message = e.format_message()  # type: ignore[attr-defined]
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stderr.write(ctx.get_help() + "\n")
        else:
            sys.stderr.write(f"{where}: {one_line(message)} (see {where} --help)\n")
        code = e.exit_code  # type: ignore[attr-defined]
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("gearctl: interrupted\n")
        code = ExitCode.INTERRUPTED
    sys.exit(int(code or 0))
