"""The gearctl command line: thin typer commands over the library.

Commands parse flags, call the library and print; `main()` is the one place
that turns errors into a one-line message on stderr and an exit code (see
errors.ExitCode, documented in README).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from enum import Enum
from typing import IO, Annotated

import typer

from . import __version__, codecs, render
from .client import AsyncClient, Job
from .connection import DEFAULT_SERVERS, TLSOptions, parse_servers
from .errors import ExitCode, GearctlError, PayloadError, UsageError
from .timeparse import parse_duration, parse_when

app = typer.Typer(
    name="gearctl",
    help="A command-line tool for the Gearman job server: submit jobs, run workers, watch queues.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# typer may vendor its own click: find its exception base through a public class.
ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

_state = {"debug": bool(os.environ.get("GEARCTL_DEBUG"))}

class PriorityChoice(str, Enum):
    high = "high"
    normal = "normal"
    low = "low"


class EncodingChoice(str, Enum):
    raw = "raw"
    json = "json"
    php = "php"


# -- options shared by every command that talks to a server ----------------------
Servers = Annotated[str, typer.Option(
    "--servers", "-s", envvar="GEARCTL_SERVERS", show_default=True, metavar="HOST[:PORT],...",
    help="Job servers, comma-separated; IPv6 as [::1]:4730. Default port 4730.")]
ConnectTimeout = Annotated[float, typer.Option(
    "--connect-timeout", envvar="GEARCTL_CONNECT_TIMEOUT", min=0.01, metavar="SECONDS",
    help="Give up on a server that does not accept the connection within this time.")]
IoTimeout = Annotated[float, typer.Option(
    "--io-timeout", envvar="GEARCTL_IO_TIMEOUT", min=0.01, metavar="SECONDS",
    help="Drop a server that owes replies and sends nothing for this long (its requests fail over).")]
Tls = Annotated[bool, typer.Option(
    "--tls", envvar="GEARCTL_TLS", help="Connect with TLS (gearmand behind a TLS terminator).")]
TlsCa = Annotated[str | None, typer.Option("--tls-ca", envvar="GEARCTL_TLS_CA", metavar="FILE",
                                              help="CA certificates to verify the server with (implies --tls).")]
TlsCert = Annotated[str | None, typer.Option("--tls-cert", envvar="GEARCTL_TLS_CERT", metavar="FILE",
                                                help="Client certificate (implies --tls).")]
TlsKey = Annotated[str | None, typer.Option("--tls-key", envvar="GEARCTL_TLS_KEY", metavar="FILE",
                                               help="Key of the client certificate.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gearctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar="GEARCTL_DEBUG",
                                        help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print gearctl's version and exit.")] = False,
) -> None:
    """gearctl: submit jobs, run workers and watch queues on Gearman job servers.

    Exit codes: 0 ok, 1 job failed, 2 usage or bad input, 3 no server reachable,
    4 timeout, 5 job raised an exception, 6 no worker for the function,
    7 protocol error, 8 server refused the request.
    """
    _state["debug"] = _state["debug"] or debug


def _client(servers: str, connect_timeout: float, io_timeout: float, tls: bool, tls_ca: str | None,
            tls_cert: str | None, tls_key: str | None) -> AsyncClient:
    return AsyncClient(parse_servers(servers), connect_timeout=connect_timeout, io_timeout=io_timeout,
                       tls=TLSOptions(enabled=tls, ca=tls_ca, cert=tls_cert, key=tls_key))


def _read_payload(payload: str | None, data: str | None) -> bytes:
    if data is not None and payload is not None:
        raise UsageError("give the payload either as a file argument or with --data, not both")
    if data is not None:
        return data.encode("utf-8", "surrogateescape")
    if payload is None:
        return b""
    if payload == "-":
        return sys.stdin.buffer.read()
    try:
        with open(payload, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read payload file {payload}: {e.strerror or e}") from e


def _open_lines(payload: str | None, data: str | None) -> Iterator[bytes]:
    """Lines of the input without their line ends; every line is a job."""
    if data is not None:
        if payload is not None:
            raise UsageError("give the payload either as a file argument or with --data, not both")
        yield from (line.encode("utf-8", "surrogateescape") for line in data.splitlines())
        return
    stream: IO[bytes]
    if payload is None or payload == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(payload, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise UsageError(f"cannot read payload file {payload}: {e.strerror or e}") from e
    with stream:
        for line in stream:
            if line.endswith(b"\n"):
                line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            yield line


def _write_out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


_HELP_TIMEOUT = "Give up after this long (30, 30s, 5m): on the result with --wait, else on JOB_CREATED. Exit 4."
_HELP_ENCODING = "raw: bytes as given. json: checked to be JSON. php: JSON in, PHP serialize() out."


@app.command(no_args_is_help=True)
def client(
    function: Annotated[str, typer.Argument(help="Function to run.", show_default=False)],
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
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job on stdout.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print nothing on success (results still print with --wait).")] = False,
    require_workers: Annotated[bool, typer.Option(
        "--require-workers", help="Fail (exit 6) before submitting when no worker has registered FUNCTION.")] = False,
    servers: Servers = DEFAULT_SERVERS,
    connect_timeout: ConnectTimeout = 5.0,
    io_timeout: IoTimeout = 30.0,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
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
    seconds = parse_duration(timeout) if timeout is not None else None
    gear = _client(servers, connect_timeout, io_timeout, tls, tls_ca, tls_cert, tls_key)

    def make_job(body: bytes, index: int | None = None) -> Job:
        return Job(function, body, unique=unique or "", background=not wait, priority=priority.value,
                   when=when, index=index)

    if each_line:
        lines = _open_lines(payload, data)
        return asyncio.run(_submit_lines(gear, function, lines, make_job, encoding.value, inflight, seconds,
                                         as_json, quiet, require_workers, summary))
    job = make_job(codecs.prepare_payload(_read_payload(payload, data), encoding.value))
    return asyncio.run(_submit_one(gear, job, seconds, as_json, quiet, require_workers))


async def _submit_one(gear: AsyncClient, job: Job, timeout: float | None, as_json: bool, quiet: bool,
                      require_workers: bool) -> int:
    progress = render.JobProgress(job.function, render.is_tty(sys.stderr) and not as_json and not job.background)
    if not as_json:
        # Set before submitting: WORK_* packets can arrive right behind JOB_CREATED.
        job.on_data = lambda _job, chunk: _write_out(chunk)
        job.on_warning = lambda _job, text: progress.print_warning(text.decode("utf-8", "replace"))
        job.on_status = lambda _job, num, den: progress.update(num, den)
    async with gear:
        if require_workers:
            await gear.require_workers(job.function)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        with progress:
            try:
                await gear.submit_job(job, timeout=timeout)
                if job.background:
                    if as_json:
                        print(render.json_line(job.to_dict()))
                    elif not quiet:
                        print(job.handle)
                    return ExitCode.OK
                await job.wait(None if deadline is None else max(deadline - loop.time(), 0))
            except GearctlError as e:
                if as_json:
                    if job.error is None:
                        job.error = e
                    print(render.json_line(job.to_dict()))
                raise
        if as_json:
            print(render.json_line(job.to_dict()))
        else:
            _write_out(job.result)
        return ExitCode.OK


# Which exit code a many-job run ends with, worst first.
_STATE_EXIT = [("error", ExitCode.NO_SERVER), ("invalid", ExitCode.USAGE), ("timeout", ExitCode.TIMEOUT),
               ("exception", ExitCode.JOB_EXCEPTION), ("failed", ExitCode.JOB_FAILED)]


async def _submit_lines(gear: AsyncClient, function: str, lines: Iterator[bytes],
                        make_job: Callable[[bytes, int], Job], encoding: str, inflight: int, timeout: float | None,
                        as_json: bool, quiet: bool, require_workers: bool, summary: bool) -> int:
    stats = render.SubmitStats(background=make_job(b"", 0).background)
    out = sys.stdout.buffer
    errors: dict[str, GearctlError] = {}

    def jobs() -> Iterator[Job]:
        for number, line in enumerate(lines, 1):
            try:
                body = line if encoding == "raw" else codecs.prepare_payload(line, encoding)
            except PayloadError as e:
                stats.done("invalid")
                errors.setdefault("invalid", e)
                sys.stderr.write(f"gearctl: line {number}: {e}; not submitted\n")
                continue
            stats.submitted += 1
            yield make_job(body, number)

    def created(job: Job) -> None:
        stats.created += 1

    def done(job: Job) -> None:
        stats.done(job.state)
        if job.error is not None:
            errors.setdefault(job.state, job.error)
        if as_json:
            out.write(render.json_line(job.to_dict()).encode() + b"\n")
        elif job.state == "queued":
            if not quiet:
                out.write(f"{job.handle}\n".encode())
        elif job.state == "complete":
            output = job.output
            out.write(output if output.endswith(b"\n") else output + b"\n")
        else:
            sys.stderr.write(f"gearctl: line {job.index}: {job.error_text()}\n")

    view = render.SubmitView(stats, function, render.is_tty(sys.stderr))
    async with gear:
        if require_workers:
            await gear.require_workers(function)
        with view:
            await gear.submit_many(jobs(), window=inflight, timeout=timeout, on_created=created, on_done=done)
    out.flush()
    if view.enabled or stats.failed or summary:
        sys.stderr.write(f"gearctl: {stats.summary()}\n")
    for state, code in _STATE_EXIT:
        if stats.by_state.get(state):
            return code
    return ExitCode.OK


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, map every error to one stderr line and an exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="gearctl", standalone_mode=False)
    except GearctlError as e:
        if _state["debug"]:
            traceback.print_exc()
        sys.stderr.write(f"gearctl: {_one_line(str(e))}\n")
        code = e.exit_code
    except ClickException as e:
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "gearctl"
        message = e.format_message()  # type: ignore[attr-defined]
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stderr.write(ctx.get_help() + "\n")
        else:
            sys.stderr.write(f"{where}: {_one_line(message)} (see {where} --help)\n")
        code = e.exit_code  # type: ignore[attr-defined]
    except typer.Abort:
        sys.stderr.write("gearctl: interrupted\n")
        code = 130
    except KeyboardInterrupt:
        sys.stderr.write("gearctl: interrupted\n")
        code = 130
    except BrokenPipeError:
        # The reader went away (| head): not our error. Point stdout at devnull
        # so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.OK
    sys.exit(int(code or 0))
