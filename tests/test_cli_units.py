"""The CLI package's pure logic, without servers or subprocesses: an --each-line
run's bookkeeping (EachLineRun), `gearctl run`'s output (RunOutput), and what the
commands share (streams, the root flags)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from gearctl.cli.app import GLOBAL_FLAGS, app
from gearctl.cli.each_line import EachLineOptions, EachLineRun, invalid_record
from gearctl.cli.plugins import RunOutput
from gearctl.cli.streams import Out, line_input, one_line, read_payload
from gearctl.client import AsyncClient, Job
from gearctl.errors import ExitCode, NoServerAvailable, ServerError, UsageError


def _run(*, background: bool = True, text: bytes = b"", **options: object) -> EachLineRun:
    def make_job(body: bytes, index: int | None = None) -> Job:
        return Job("f", body, background=background, index=index)

    return EachLineRun(AsyncClient("127.0.0.1:1"), "f", make_job, None, text, EachLineOptions(**options))  # type: ignore[arg-type]


def _ended(state: str, index: int, *, handle: str = "H:x:1", result: bytes = b"", error: Exception | None = None,
           background: bool = False) -> Job:
    job = Job("f", b"", background=background, index=index)
    job.state, job.handle, job.result, job.error = state, handle, result, error
    return job


def _in_a_loop(fn: Callable[[], None]) -> None:
    """Out.flush_soon needs a running event loop, as in a real run."""

    async def call() -> None:
        fn()
        await asyncio.sleep(0)

    asyncio.run(call())


# -- EachLineOptions and the invalid record ---------------------------------------------
@pytest.mark.parametrize(("inflight", "max_errors", "window"), [(10_000, None, 10_000), (10_000, 3, 3), (2, 50, 2)])
def test_max_errors_caps_the_jobs_in_flight(inflight: int, max_errors: int | None, window: int) -> None:
    assert EachLineOptions(inflight=inflight, max_errors=max_errors).window == window


def test_the_invalid_record_has_a_jobs_fields_and_the_line_only_when_there_is_one() -> None:
    assert invalid_record("f", None, "bad") == {"function": "f", "handle": None, "unique": None, "server": None,
                                                "status": "invalid", "result": None, "error": "bad"}
    assert invalid_record("f", 7, "bad")["line"] == 7


# -- EachLineRun: lines to jobs --------------------------------------------------------------
def test_a_retry_warning_is_said_with_one_gearctl_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    job = _ended("exception", 1)
    job.warnings = [b"gearctl: attempt 2 of 3 scheduled for 2026-12-01T12:00:40Z: RuntimeError: busy",
                    b"careful now"]
    _in_a_loop(lambda: _run(background=False).done(job))
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "gearctl: line 1: warning: attempt 2 of 3 scheduled for 2026-12-01T12:00:40Z: RuntimeError: busy",
        "gearctl: line 1: warning: careful now"]


def test_a_valid_line_becomes_a_job_with_its_number() -> None:
    run = _run(encoding="json")
    job = run.job_for(b'{"a": 1}', 4)
    assert job is not None and job.data == b'{"a": 1}' and job.index == 4
    assert run.stats.submitted == 1


def test_php_lines_are_sent_serialized() -> None:
    job = _run(encoding="php").job_for(b'{"a": 1}', 1)
    assert job is not None and job.data == b'a:1:{s:1:"a";i:1;}'


def test_an_invalid_line_is_reported_counted_and_not_submitted(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(encoding="json", as_json=True)
    jobs: list[Job | None] = []
    _in_a_loop(lambda: jobs.append(run.job_for(b"{nope", 3)))
    assert jobs == [None]
    assert run.stats.submitted == 0 and run.stats.by_state == {"invalid": 1}
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["status"] == "invalid" and record["line"] == 3 and record["error"]
    assert err.startswith("gearctl: line 3: ") and err.rstrip().endswith("; not submitted")
    assert run.exit_code() == ExitCode.USAGE


def test_max_errors_stops_the_input_at_the_nth_failed_line() -> None:
    run = _run(encoding="json", max_errors=2)
    assert run.job_for(b"{bad", 1) is None
    assert run.stopped_at is None and not run.source.exhausted
    assert run.job_for(b"{bad", 2) is None
    assert run.stopped_at == 1 and run.source.exhausted  # no line was taken from the source: it stops after line 0


# -- EachLineRun: how jobs end ---------------------------------------------------------------
def test_queued_jobs_print_their_handles_unless_quiet(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run = _run()
    _in_a_loop(lambda: run.done(_ended("queued", 1, handle="H:x:9", background=True)))
    assert capsysbinary.readouterr().out == b"H:x:9\n"
    quiet = _run(quiet=True)
    _in_a_loop(lambda: quiet.done(_ended("queued", 1, background=True)))
    assert capsysbinary.readouterr().out == b""
    assert quiet.exit_code() == ExitCode.OK


def test_a_complete_jobs_output_ends_with_one_newline(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run = _run(background=False)
    _in_a_loop(lambda: (run.done(_ended("complete", 1, result=b"a")), run.done(_ended("complete", 2, result=b"b\n"))))
    assert capsysbinary.readouterr().out == b"a\nb\n"
    assert run.stats.by_state == {"complete": 2} and run.exit_code() == ExitCode.OK


def test_a_failure_is_one_stderr_line_and_repeats_are_counted_without_the_handle(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(background=False)
    error = ServerError("ERR", "H:x:1 is gone")

    def fail_seven() -> None:
        for n in range(1, 8):
            run.done(_ended("error", n, handle=f"H:x:{n}", error=ServerError("ERR", f"H:x:{n} is gone")))

    _in_a_loop(fail_seven)
    run.reports.finish()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"gearctl: line 1: {one_line(str(error))}"
    assert len(err) == 6 and err[-1] == "gearctl: ... and 2 more: " + one_line(str(error)).replace("H:x:1", "<handle>")
    assert run.exit_code() == ServerError.exit_code  # the error's own code, not the generic 3


def test_decode_failure_exits_2_after_the_record_went_out(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run = _run(background=False, decoding="json", as_json=True)
    _in_a_loop(lambda: run.done(_ended("complete", 1, result=b"not json")))
    record = json.loads(capsysbinary.readouterr().out)
    assert record["value"] is None and record["decode_error"]
    assert run.exit_code() == ExitCode.USAGE


@pytest.mark.parametrize(("states", "code"), [
    (["complete", "failed"], ExitCode.JOB_FAILED),
    (["failed", "exception"], ExitCode.JOB_EXCEPTION),
    (["exception", "timeout", "failed"], ExitCode.TIMEOUT),
    (["timeout", "invalid"], ExitCode.USAGE),
    (["invalid", "error", "failed"], ExitCode.NO_SERVER),
])
def test_the_exit_code_is_the_worst_state_of_the_run(states: list[str], code: int) -> None:
    run = _run()
    for state in states:
        run.stats.done(state)
    if "error" in states:
        run.errors["error"] = NoServerAvailable("none")
    assert run.exit_code() == code


def test_finish_says_why_the_input_stopped_and_sums_up(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(encoding="json", max_errors=1)
    _in_a_loop(lambda: run.job_for(b"{", 1))
    capsys.readouterr()
    assert run.finish(view_shown=False) == ExitCode.USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "gearctl: stopped after 1 failed line (--max-errors 1); no input after line 0 was submitted"
    assert err[1].startswith("gearctl: 0 submitted, 0 queued, 1 invalid in ")


def test_a_clean_run_prints_no_summary_off_a_terminal_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run().finish(view_shown=False) == ExitCode.OK
    assert capsys.readouterr().err == ""
    assert _run(summary=True).finish(view_shown=False) == ExitCode.OK
    assert capsys.readouterr().err.startswith("gearctl: 0 submitted, 0 queued in ")


# -- gearctl run's output ------------------------------------------------------------------
def test_run_output_shows_data_on_stdout_and_the_rest_on_stderr(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    output = RunOutput(Out(), live=True)
    output.data(b"chunk")
    output.warning(b"careful")
    output.status(1, 2)
    out, err = capsysbinary.readouterr()
    assert out == b"chunk" and err == b"warning: careful\nstatus: 1/2\n"
    assert output.chunks == [b"chunk"] and output.warnings == ["careful"] and output.progress == [[1, 2]]


def test_run_output_for_json_only_keeps_and_with_decode_sends_data_to_stderr(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    kept = RunOutput(Out(), live=False)
    kept.data(b"chunk")
    kept.warning(b"w")
    assert capsysbinary.readouterr() == (b"", b"")
    assert kept.chunks == [b"chunk"] and kept.warnings == ["w"]
    RunOutput(Out(), live=True, data_to_stderr=True).data(b"chunk")
    assert capsysbinary.readouterr() == (b"", b"chunk")


# -- streams and the root flags --------------------------------------------------------------
def test_one_line_joins_whitespace() -> None:
    assert one_line("a\n  b\tc ") == "a b c"


def test_payload_and_data_together_are_a_usage_error() -> None:
    with pytest.raises(UsageError):
        read_payload("file", "text")
    with pytest.raises(UsageError):
        line_input("file", "text")
    assert read_payload(None, "hé") == "hé".encode()
    assert line_input(None, "a\nb") == (None, b"a\nb")


def test_a_directory_is_not_a_line_input(tmp_path: object) -> None:
    with pytest.raises(UsageError, match="it is a directory"):
        line_input(str(tmp_path), None)


def test_the_debug_flag_is_kept_for_the_error_wrapper() -> None:
    from typer.testing import CliRunner

    before = GLOBAL_FLAGS.debug
    try:
        GLOBAL_FLAGS.debug = False
        CliRunner().invoke(app, ["--debug", "functions", "--help"])
        assert GLOBAL_FLAGS.debug is True
    finally:
        GLOBAL_FLAGS.debug = before


def test_a_down_server_row_names_its_address_once() -> None:
    from rich.console import Console

    from gearctl.monitor import ServerReport
    from gearctl.render import status_renderable

    report = ServerReport("127.0.0.1:1", up=False, error="127.0.0.1:1: connection refused")
    console = Console(record=True, width=100, color_system=None)
    console.print(status_renderable([report], []))
    text = console.export_text()
    assert "127.0.0.1:1: down (connection refused)" in text and text.count("127.0.0.1:1") == 1

