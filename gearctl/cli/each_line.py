"""`gearctl client --each-line`: one job per input line, pipelined.

An `EachLineRun` is one such run. AsyncClient.submit_many drives it through
three callbacks: `job_for` turns a line into a job (or reports the line invalid),
`created` counts a JOB_CREATED, `done` shows how a job ended (on stdout, or as one
stderr line per failure, where lines.LineReports counts repeated reasons instead
of printing them 20,000 times). Failures count towards --max-errors, which stops
the input. `finish` says why the input stopped, prints the summary and picks the
run's exit code, the worst of its jobs'.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .. import codecs, render
from ..client import AsyncClient, Job
from ..errors import ExitCode, GearctlError, PayloadError
from ..lines import LineReports, LineSource
from .streams import Out, one_line, write_decoded

# How a many-job run ends, worst first: the state, and its exit code unless the
# job's own error says more precisely (a refusal is 8, a protocol error 7).
_STATE_EXIT = [("error", ExitCode.NO_SERVER), ("invalid", ExitCode.USAGE), ("timeout", ExitCode.TIMEOUT),
               ("exception", ExitCode.JOB_EXCEPTION), ("failed", ExitCode.JOB_FAILED)]
_UNDECODABLE = "undecodable"  # a key of EachLineRun.errors beside the job states: --decode failed


@dataclass(frozen=True)
class EachLineOptions:
    """The `client` flags that shape an --each-line run."""

    encoding: str = "raw"
    inflight: int = 10_000
    timeout: float | None = None
    as_json: bool = False
    quiet: bool = False
    require_workers: bool = False
    summary: bool = False
    max_errors: int | None = None
    decoding: str | None = None

    @property
    def window(self) -> int:
        """Jobs in flight at once. --max-errors N caps them at N too: in an outage
        every one in flight fails, and 10,000 of them would blow far past N."""
        return min(self.inflight, self.max_errors) if self.max_errors is not None else self.inflight


def invalid_record(function: str, number: int | None, error: str) -> dict[str, object]:
    """--json's object for a payload or line that was not submitted (not valid for
    -e json/php): the fields of a job's record, with no job."""
    record: dict[str, object] = {"function": function, "handle": None, "unique": None, "server": None,
                                 "status": "invalid", "result": None, "error": error}
    if number is not None:
        record["line"] = number
    return record


class EachLineRun:
    """One --each-line run, from the first line read to its exit code."""

    def __init__(self, gear: AsyncClient, function: str, make_job: Callable[[bytes, int], Job],
                 stream: BinaryIO | None, text: bytes | None, options: EachLineOptions) -> None:
        self.gear = gear
        self.function = function
        self.make_job = make_job
        self.stream = stream
        self.options = options
        self.stats = render.SubmitStats(background=make_job(b"", 0).background)
        self.out = Out()
        self.errors: dict[str, GearctlError] = {}  # the first error of each state, which may set the exit code
        self.reports = LineReports()  # stderr, the live table's too
        self.stopped_at: int | None = None  # the first line not submitted, once --max-errors was reached
        self.source = LineSource(stream, self.job_for, text=text)

    async def run(self) -> int:
        view = render.SubmitView(self.stats, self.function, render.is_tty(sys.stderr))
        try:
            async with self.gear:
                if self.options.require_workers:
                    await self.gear.require_workers(self.function)
                with view, self._results_above(view):
                    await self.gear.submit_many(self.source, window=self.options.window, timeout=self.options.timeout,
                                                on_created=self.created, on_done=self.done)
        finally:
            if self.stream is not None and self.stream is not sys.stdin.buffer:
                self.stream.close()
        return self.finish(view.enabled)

    def _results_above(self, view: render.SubmitView) -> contextlib.AbstractContextManager[None]:
        """With the table drawn on the terminal that stdout is too, results go
        through rich's stdout proxy, above the table; else straight out, as bytes."""
        if view.enabled and render.is_tty(sys.stdout):
            return self.out.as_text_to(sys.stdout)  # rich's proxy, while the view is live
        return contextlib.nullcontext()

    # -- submit_many's callbacks ---------------------------------------------------
    def job_for(self, line: bytes, number: int) -> Job | None:
        """The job for input line `number`, or None when the line is not valid for
        -e json/php (then it is reported, and counts as a failed line)."""
        encoding = self.options.encoding
        try:
            body = line if encoding == "raw" else codecs.prepare_payload(line, encoding)
        except PayloadError as e:
            self._invalid_line(number, e)
            return None
        self.stats.submitted += 1
        return self.make_job(body, number)

    def created(self, job: Job) -> None:
        self.stats.created += 1

    def done(self, job: Job) -> None:
        self.stats.done(job.state)
        if job.error is not None:
            self.errors.setdefault(job.state, job.error)
        if not self.options.as_json:
            for warning in job.warnings:  # a gearctl worker's own (a retry's) start "gearctl: ": said once
                text = one_line(warning.decode("utf-8", "replace")).removeprefix("gearctl: ")
                self.reports.report(job.index, f"warning: {text}")
        self._show(job)
        if job.state not in ("queued", "complete"):
            self._count_failure()
        self.out.flush_soon()

    # -- what a line or a job's end shows --------------------------------------------
    def _invalid_line(self, number: int, error: PayloadError) -> None:
        self.stats.done("invalid")
        self.errors.setdefault("invalid", error)
        reason = one_line(str(error))
        self.reports.report(number, f"{reason}; not submitted")
        if self.options.as_json:
            self.out.write(render.json_line(invalid_record(self.function, number, reason)).encode() + b"\n",
                           flush=False)
            self.out.flush_soon()
        self._count_failure()

    def _show(self, job: Job) -> None:
        """A finished job on stdout (its record, handle or output), or its failure on stderr."""
        if self.options.decoding is not None and job.state == "complete":
            self._write_decoded(job, self.options.decoding)
        elif self.options.as_json:
            self.out.write(render.json_line(job.to_dict()).encode() + b"\n", flush=False)
        elif job.state == "queued":
            if not self.options.quiet:
                self.out.write(f"{job.handle}\n".encode(), flush=False)
        elif job.state == "complete":
            output = job.output
            self.out.write(output if output.endswith(b"\n") else output + b"\n", flush=False)
        else:
            reason = one_line(job.error_text() or job.state)
            self.reports.report(job.index, reason, reason.replace(job.handle, "<handle>") if job.handle else reason)

    def _write_decoded(self, job: Job, decoding: str) -> None:
        try:
            write_decoded(self.out, job.to_dict() if self.options.as_json else None, job.result, decoding,
                          flush=False)
        except PayloadError as e:  # the job ran: its record still went out; the run exits 2
            self.errors.setdefault(_UNDECODABLE, e)
            self.reports.report(job.index, one_line(str(e)))
            self._count_failure()

    def _count_failure(self) -> None:
        """--max-errors: stop taking input once that many lines have failed."""
        max_errors = self.options.max_errors
        if max_errors is not None and self.stopped_at is None and self.stats.failed >= max_errors:
            self.stopped_at = self.source.number + 1
            self.source.stop()

    # -- the end of the run --------------------------------------------------------
    def finish(self, view_shown: bool) -> int:
        """What stderr says at the end, and the run's exit code."""
        self.out.write(b"")
        self.reports.finish()
        if self.source.error is not None:
            sys.stderr.write(f"gearctl: reading the input failed after line {self.source.number}: "
                             f"{self.source.error}\n")
            return ExitCode.USAGE
        self._say_why_the_input_stopped()
        if view_shown or self.stats.failed or self.options.summary:
            sys.stderr.write(f"gearctl: {self.stats.summary()}\n")
        return self.exit_code()

    def _say_why_the_input_stopped(self) -> None:
        if self.stopped_at is not None:
            failed = self.stats.failed
            lines = "line" if failed == 1 else "lines"
            # Whether more input was coming may not be known yet (stdin still open).
            sys.stderr.write(f"gearctl: stopped after {failed:,} failed {lines} "
                             f"(--max-errors {self.options.max_errors}); "
                             f"no input after line {self.stopped_at - 1:,} was submitted\n")
        elif self.stats.by_state.get("timeout") and not self.source.exhausted:
            sys.stderr.write(f"gearctl: timed out; input from line {self.source.number + 1} on was not submitted\n")

    def exit_code(self) -> int:
        """The worst outcome of the run (README, Exit codes)."""
        by_state = self.stats.by_state
        if _UNDECODABLE in self.errors and not by_state.get("error"):
            return ExitCode.USAGE  # ranks with an invalid line: the run's input was fine, its answers were not
        for state, code in _STATE_EXIT:
            if by_state.get(state):
                error = self.errors.get(state)
                return error.exit_code if state == "error" and error is not None else code
        return ExitCode.OK
