"""Retries without a server: the options and their checks, what plan() decides,
the delays, the warning on the wire, and the counts in the child reports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gearctl import JobException, JobFailed, UsageError, Worker, job
from gearctl.deadletter import Envelope, attempt_unique, dead_unique, parse_attempt
from gearctl.execution import WorkerJob, execute
from gearctl.plugins import PluginError, as_job_function, load_plugins
from gearctl.protocol import Decoder, PacketType
from gearctl.retry import RETRY_ON, RetryPolicy, Step, check_flags, check_options, dead_plan, plan
from gearctl.sessions import Outcome, OutcomeState, reply_for
from gearctl.supervision import ChildReport, ChildState, FunctionReport, decode, encode

NOW = 1_764_590_400.0
FIXED = lambda low, high: 1.0  # noqa: E731 (no jitter: exact delays)


def boom(message: str = "ValueError: boom") -> Outcome:
    return Outcome(OutcomeState.EXCEPTION, message=message, traceback="Traceback...\nValueError: boom\n")


# -- the options ---------------------------------------------------------------------
def test_options_are_normalized() -> None:
    checked = check_options({"retries": 3, "retry_backoff": "1m30s", "retry_backoff_max": 600,
                             "retry_on": "exception, timeout", "dead_letter": False, "dead_letter_suffix": ".failed"})
    assert checked == {"retries": 3, "retry_backoff": 90.0, "retry_backoff_max": 600.0,
                       "retry_on": frozenset({"exception", "timeout"}), "dead_letter": False,
                       "dead_letter_suffix": ".failed"}
    assert check_options({"retry_on": ["fail"]}) == {"retry_on": frozenset({"fail"})}
    assert RetryPolicy().retry_on == frozenset(RETRY_ON) and RetryPolicy().attempts == 1


@pytest.mark.parametrize(("options", "message"), [
    ({"retries": -1}, "retries must be a whole number"),
    ({"retries": True}, "retries must be a whole number"),
    ({"retries": 1.5}, "retries must be a whole number"),
    ({"retry_backoff": "soon"}, "retry_backoff: cannot read duration 'soon'"),
    ({"retry_backoff_max": -3}, "retry_backoff_max must be a duration"),
    ({"retry_on": "exception,crash"}, "retry_on: 'crash' is not one of exception, fail, timeout"),
    ({"retry_on": 3}, "retry_on must be a list"),
    ({"dead_letter": "yes"}, "dead_letter must be True or False"),
    ({"dead_letter_suffix": ""}, "dead_letter_suffix must be a non-empty string"),
])
def test_bad_options_name_their_key(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        check_options(options)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(UsageError, match=r"^--retry-backoff-max must be a duration"):
        check_flags({"retry_backoff_max": -1})
    with pytest.raises(UsageError, match=r"^--retry-on: 'x' is not one of"):
        check_flags({"retry_on": "x"})


def test_job_decorator_takes_and_checks_retry_options() -> None:
    @job(retries=2, retry_backoff="2s", retry_on=["exception"])
    def declared(j: object) -> None:
        return None

    fn = as_job_function(declared)
    assert fn.retry == {"retries": 2, "retry_backoff": 2.0, "retry_on": frozenset({"exception"})}
    policy = fn.policy(RetryPolicy(retries=5, retry_backoff_max=60.0, dead_letter=False))
    assert (policy.retries, policy.retry_backoff, policy.retry_backoff_max, policy.dead_letter) == (2, 2.0, 60.0, False)
    with pytest.raises(PluginError, match=r"^@job: retries must be"):
        job(retries="3")


def test_a_hook_entry_with_a_bad_retry_option_names_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "def f(job):\n    return None\n\n"
        "def gearman_functions():\n    return [{'function_name': 'f', 'function': f, 'retry_on': ['never']}]\n")
    (tmp_path / "good.py").write_text(
        "def g(job):\n    return None\n\n"
        "def gearman_functions():\n    return [{'function_name': 'g', 'function': g, 'retries': 4}]\n")
    registry = load_plugins([tmp_path])
    (error,) = registry.errors
    assert error.startswith(f"{tmp_path / 'bad.py'}: gearman_functions() entry 'f': retry_on: 'never' is not one of")
    assert registry.functions["g"].retry == {"retries": 4}  # the other file still loads


def test_worker_keywords_are_the_defaults_and_checked() -> None:
    @job(retries=1)
    def own(j: object) -> None:
        return None

    def plain(j: object) -> None:
        return None

    worker = Worker([own, plain], servers="127.0.0.1:1", retries=3, retry_backoff="5s", dead_letter_suffix=".x")
    assert worker.policies["own"].retries == 1 and worker.policies["own"].dead_letter_suffix == ".x"
    assert worker.policies["plain"] == RetryPolicy(retries=3, retry_backoff=5.0, dead_letter_suffix=".x")
    with pytest.raises(UsageError, match=r"^retry_on: 'sometimes' is not one of"):
        Worker([plain], servers="127.0.0.1:1", retry_on="sometimes")


# -- the decision ----------------------------------------------------------------------
def test_delays_double_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=10, retry_backoff=10.0, retry_backoff_max=50.0)
    assert [policy.delay(n, FIXED) for n in range(2, 7)] == [10.0, 20.0, 40.0, 50.0, 50.0]
    jittered = [policy.delay(2) for _ in range(50)]
    assert all(8.0 <= d <= 12.0 for d in jittered) and len(set(jittered)) > 1


def test_a_failed_first_attempt_is_planned_as_the_second() -> None:
    policy = RetryPolicy(retries=3, retry_backoff=10.0)
    chosen = plan(policy, "send", "H:1", "job-7", b"payload", boom(), host="web1", now=NOW, uniform=FIXED)
    assert chosen is not None and chosen.step is Step.RETRY
    assert (chosen.function, chosen.workload, chosen.attempt, chosen.attempts) == ("send", b"payload", 1, 4)
    assert chosen.unique == attempt_unique("job-7", 2, int(NOW)) == "job-7~a2.1764590400"
    assert chosen.due == int(NOW) + 10 and chosen.delay == 10.0
    assert chosen.warning == "gearctl: attempt 2 of 4 scheduled for 2025-12-01T12:00:10Z: ValueError: boom"


def test_a_later_attempt_keeps_the_original_key_and_first_failure() -> None:
    policy = RetryPolicy(retries=3, retry_backoff=10.0)
    chosen = plan(policy, "send", "H:9", "job-7~a3.1764590000", b"p", boom(), host="web1", now=NOW, uniform=FIXED)
    assert chosen is not None and chosen.unique == "job-7~a4.1764590000" and chosen.due == int(NOW) + 40


def test_the_last_attempt_goes_to_dead_letters_in_an_envelope() -> None:
    policy = RetryPolicy(retries=3)
    chosen = plan(policy, "send", "H:9", "job-7~a4.1764590000", b"p", boom(), host="web1", now=NOW)
    assert chosen is not None and chosen.step is Step.DEAD
    assert chosen.function == "send.dead" and chosen.unique == dead_unique("job-7", NOW)
    assert chosen.warning == "gearctl: out of attempts (4 of 4), kept in send.dead: ValueError: boom"
    envelope = Envelope.decode(chosen.workload)
    assert envelope == Envelope(function="send", unique="job-7", workload=b"p", attempts=4, error="ValueError: boom",
                                traceback="Traceback...\nValueError: boom\n", host="web1", first_failure=1764590000.0,
                                last_failure=NOW, handle="H:9", state="exception")


def test_a_job_without_a_unique_key_uses_its_handle() -> None:
    chosen = plan(RetryPolicy(retries=1), "f", "H:host:42", "", b"", boom(), host="h", now=NOW, uniform=FIXED)
    assert chosen is not None and parse_attempt(chosen.unique).original == "H:host:42"


def test_what_is_not_retried_and_what_is_dropped() -> None:
    only_exceptions = RetryPolicy(retries=3, retry_on=frozenset({"exception"}))
    failed = Outcome(OutcomeState.FAILED, message="said no")
    chosen = plan(only_exceptions, "f", "H:1", "u", b"", failed, host="h", now=NOW)
    assert chosen is not None and chosen.step is Step.DEAD
    assert chosen.warning == "gearctl: not retried (fail is not in retry_on), kept in f.dead: said no"
    timeout = Outcome(OutcomeState.TIMEOUT, message="timed out after 5s")
    assert plan(RetryPolicy(retries=1), "f", "H:1", "u", b"", timeout, host="h", now=NOW).step is Step.RETRY
    off = RetryPolicy(dead_letter=False)
    assert plan(off, "f", "H:1", "u", b"", boom(), host="h", now=NOW) is None
    assert plan(RetryPolicy(retries=1), "f", "H:1", "u", b"", Outcome(OutcomeState.COMPLETE), host="h") is None
    assert plan(RetryPolicy(dead_letter_suffix="!x"), "f", "H:1", "u", b"", boom(), host="h").function == "f!x"


def test_a_retry_no_server_took_becomes_a_dead_letter() -> None:
    policy = RetryPolicy(retries=3, dead_letter=False)  # dead letters off: still kept, the job must not vanish
    retry = plan(policy, "f", "H:1", "u", b"w", boom(), host="h", now=NOW)
    assert retry is not None
    dead = dead_plan(retry, policy, "f", "H:1", "u", boom(), host="h", reason="QUEUE_ERROR", now=NOW)
    assert (dead.step, dead.function, dead.attempts) == (Step.DEAD, "f.dead", 4)
    assert dead.warning == "gearctl: attempt 2 could not be scheduled (QUEUE_ERROR), kept in f.dead: ValueError: boom"
    assert Envelope.decode(dead.workload).attempts == 1


# -- on the wire and in the reports ------------------------------------------------------
def packets(data: bytes) -> list[tuple[PacketType, tuple[bytes, ...]]]:
    decoder = Decoder()
    decoder.feed(data)
    found = []
    while (packet := decoder.next()) is not None:
        found.append((packet.type, tuple(packet.args)))
    return found


def test_the_warning_goes_just_before_the_end() -> None:
    exception = Outcome(OutcomeState.EXCEPTION, message="E", warning="gearctl: kept")
    assert packets(reply_for(b"H:1", exception)) == [(PacketType.WORK_WARNING, (b"H:1", b"gearctl: kept")),
                                                     (PacketType.WORK_EXCEPTION, (b"H:1", b"E"))]
    timeout = Outcome(OutcomeState.TIMEOUT, message="timed out after 1s", warning="gearctl: attempt 2")
    assert [t for t, _ in packets(reply_for(b"H:1", timeout))] == [
        PacketType.WORK_WARNING, PacketType.WORK_WARNING, PacketType.WORK_FAIL]
    assert packets(reply_for(b"H:1", Outcome(OutcomeState.FAILED))) == [(PacketType.WORK_FAIL, (b"H:1",))]


def test_job_failed_raised_by_a_function_is_a_work_fail() -> None:
    def says_no(j: WorkerJob) -> None:
        raise JobFailed("no thanks")

    def raises(j: WorkerJob) -> None:
        raise JobException("a real exception")

    job_ = WorkerJob("f", "H:1", "u~a2.5", b"", attempt=2, attempts=3)
    assert (job_.attempt, job_.attempts) == (2, 3)
    failed = asyncio.run(execute(as_job_function(says_no), job_))
    assert (failed.state, failed.message) == (OutcomeState.FAILED, "no thanks")
    assert asyncio.run(execute(as_job_function(raises), job_)).state is OutcomeState.EXCEPTION


def test_child_reports_carry_the_retry_and_dead_counts() -> None:
    report = ChildReport(ChildState.IDLE, functions={"f": FunctionReport(3, 2, 0, "E", 1.0, retried=5, dead=1)})
    assert decode(encode(report)) == report
    merged = FunctionReport(retried=1, dead=2).merged(FunctionReport(retried=3, dead=4))
    assert (merged.retried, merged.dead) == (4, 6)
    torn = encode(report).replace(b'"dead":1', b'"dead":-1')
    assert decode(torn) is None
