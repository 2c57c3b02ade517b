"""`gearctl client`: submit one job, in the background or with --wait, or with
--each-line a job per input line (each_line.py).

A one-shot submit from cron pays for every module it imports, so the payload
codecs and the --each-line run are imported only by the command lines that use
them (tests/test_startup.py keeps an eye on what `client` imports)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated

import typer

from .. import render
from ..client import AsyncClient, Job
from ..deadlines import deadline_after, remaining
from ..errors import ExitCode, GearctlError, PayloadError, UsageError
from ..timeparse import parse_duration, parse_limit, parse_when
from .app import (
    HELP_DECODE,
    HELP_ENCODING,
    NO_SERVER_OPTIONS,
    DecodeChoice,
    EncodingChoice,
    PriorityChoice,
    ServerOptions,
    app,
    with_servers,
)
from .completion import complete_functions
from .helptext import examples
from .streams import Out, OutputClosed, line_input, one_line, read_payload, write_decoded, write_stderr

_HELP_TIMEOUT = "Give up after this long (30, 30s, 5m): on the result with --wait, else on JOB_CREATED. Exit 4."


@app.command(no_args_is_help=True, epilog=examples(
    "gearctl client reports_build --data '{\"day\": \"2026-12-01\"}' -e json",
    "gearctl client reverse --wait --data hello",
    "seq 1 1000 | gearctl client resize --each-line --quiet"))
@with_servers(timeout=False)  # its own --timeout bounds the job
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
    encoding: Annotated[EncodingChoice, typer.Option("--encoding", "-e", help=HELP_ENCODING)] = EncodingChoice.raw,
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
        when = int(time.time() + parse_duration(in_, "--in") + 0.5)
    if when is not None and wait:
        raise UsageError("--at/--in schedule a background job; it cannot be combined with --wait")
    if each_line and unique:
        raise UsageError("--unique gives every job the same key; it cannot be combined with --each-line")
    if max_errors is not None and not each_line:
        raise UsageError("--max-errors counts the failed lines of --each-line; add --each-line, or drop it")
    if decode is not None and not wait:
        raise UsageError("--decode reads a job's result; add --wait (a background job has none)")
    decoding = decode.value if decode is not None else None
    seconds = parse_limit(timeout, "--timeout") if timeout is not None else None
    gear = server.client()

    def make_job(body: bytes, index: int | None = None) -> Job:
        return Job(function, body, unique=unique or "", background=not wait, priority=priority.value,
                   when=when, index=index)

    if each_line:
        from .each_line import EachLineOptions, EachLineRun

        stream, text = line_input(payload, data)
        options = EachLineOptions(encoding=encoding.value, inflight=inflight, timeout=seconds, as_json=as_json,
                                  quiet=quiet, require_workers=require_workers, summary=summary,
                                  max_errors=max_errors, decoding=decoding)
        template = make_job(b"")  # the function and options are checked once; each line's job is like it
        return asyncio.run(EachLineRun(gear, function, template.like, stream, text, options).run())
    body = read_payload(payload, data)
    if encoding is not EncodingChoice.raw:
        body = _encoded(body, encoding.value, function, as_json)
    return asyncio.run(_submit_one(gear, make_job(body), seconds, as_json, quiet, require_workers, decoding))


def _encoded(body: bytes, encoding: str, function: str, as_json: bool) -> bytes:
    """The payload checked (json) or converted (php) for -e; an invalid one fails (exit 2)."""
    from .. import codecs
    from .each_line import invalid_record

    try:
        return codecs.prepare_payload(body, encoding)
    except PayloadError as e:
        if as_json:  # as for an invalid line of --each-line: the record, then the error
            Out().line(render.json_line(invalid_record(function, None, one_line(str(e)))))
        raise


async def _submit_one(gear: AsyncClient, job: Job, timeout: float | None, as_json: bool, quiet: bool,
                      require_workers: bool, decoding: str | None = None) -> int:
    out, end = Out(), render.LineEnd()
    progress = render.JobProgress(job.function, render.is_tty(sys.stderr) and not as_json and not job.background)
    if not as_json:
        # Set before submitting: WORK_* packets can arrive right behind JOB_CREATED.
        # With --decode stdout is one JSON document, so WORK_DATA goes to stderr.
        job.on_data = (lambda _job, chunk: out.write(end.seen(chunk))) if decoding is None else (
            lambda _job, chunk: write_stderr(chunk))
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
                        job.finish("error", e)
                    out.line(render.json_line(job.to_dict()))
                raise
        if decoding is not None:
            write_decoded(out, job.to_dict() if as_json else None, job.result, decoding)
        elif as_json:
            out.line(render.json_line(job.to_dict()))
        else:
            out.write(end.seen(job.result) + end.missing())
        return ExitCode.OK
