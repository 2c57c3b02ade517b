"""Retries and dead letters, the worker's side, against a real gearmand: the
next attempt goes out as a background SUBMIT_JOB_EPOCH under an attempt
unique key, a job out of attempts lands in FUNCTION.dead in an envelope, the
client sees why in a WORK_WARNING, and a job whose resubmits are refused is
handed back to gearmand, never lost."""

from __future__ import annotations

import calendar
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, clean_env, free_port, gearctl, wait_until

from gearctl import Client, Worker, job
from gearctl.deadletter import Envelope, parse_attempt
from gearctl.worker import JobEvent, JobEventKind

PLUGINS = Path(__file__).parent / "plugins_retries"


class RetryWorker:
    """`gearctl worker` on the retries plugins, JSON log lines in a file, each run recorded."""

    def __init__(self, procs: Procs, server: Gearmand, tmp: Path, *flags: str, function: str = "flaky") -> None:
        self.records = tmp / "records"
        self.records.mkdir(exist_ok=True)
        self.log = tmp / f"worker-{len(list(tmp.glob('worker-*.log')))}.log"
        argv = [sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", server.address,
                "--poll-interval", "0.2", "--log-format", "json", *flags]
        with self.log.open("wb") as log:  # the worker has its own copy of the file
            self.proc = procs.start(argv, stderr=log, env=clean_env(RETRY_RECORD=str(self.records)))
        wait_until(lambda: server.status().get(function, (0, 0, 0))[2] >= 1, 20, what="the worker")

    def runs(self, function: str) -> list[dict]:
        path = self.records / f"{function}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def events(self, kind: str, function: str) -> list[dict]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == kind and doc.get("function") == function:
                found.append(doc)
        return found


def grab_dead(server: Gearmand, function: str, count: int = 1) -> list[Envelope]:
    """Take `count` dead jobs off the queue with the C worker (it prints each
    workload) and decode their envelopes."""
    out = subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", function,
                          "-c", str(count)], capture_output=True, timeout=60).stdout.decode()
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(out):  # the workloads, one after the other
        doc, at = decoder.raw_decode(out, at)
        docs.append(Envelope.decode(json.dumps(doc).encode()))
        while at < len(out) and out[at].isspace():
            at += 1
    return docs


def epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def test_a_flaky_job_is_retried_with_growing_delays_and_completes(gearmand: Gearmand, procs: Procs,
                                                                   tmp_path: Path) -> None:
    worker = RetryWorker(procs, gearmand, tmp_path)
    first = gearctl("client", "flaky", "--wait", "-u", "f-1", "--data", "payload-1", "-s", gearmand.address)
    assert first.returncode == 5  # the first attempt ended in WORK_EXCEPTION, after its warning
    assert re.search(rb"gearctl: attempt 2 of 3 scheduled for (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ): "
                     rb"RuntimeError: flaky attempt 1", first.stderr), first.stderr
    wait_until(lambda: worker.events("complete", "flaky"), 30, what="the third attempt to complete")
    runs = worker.runs("flaky")
    assert [(r["attempt"], r["attempts"], r["workload"]) for r in runs] == [(1, 3, "payload-1"), (2, 3, "payload-1"),
                                                                            (3, 3, "payload-1")]
    first_failure = parse_attempt(runs[1]["unique"]).first_failure
    assert [r["unique"] for r in runs] == ["f-1", f"f-1~a2.{first_failure}", f"f-1~a3.{first_failure}"]
    assert runs[0]["time"] - 1 <= first_failure <= runs[1]["time"]
    retries = worker.events("retry", "flaky")
    assert [(e["attempt"], e["attempts"]) for e in retries] == [(1, 3), (2, 3)]
    # retry_backoff 1s: the second attempt after 1s, the third after 2s, each +-20% jitter
    assert 0.8 <= retries[0]["delay"] <= 1.2 and 1.6 <= retries[1]["delay"] <= 2.4
    due = [epoch(e["due"]) for e in retries]
    assert due[0] < due[1]
    assert runs[1]["time"] >= due[0] and runs[2]["time"] >= due[1]  # gearmand held each attempt until it was due
    assert f"scheduled for {retries[0]['due']}".encode() in first.stderr
    status = gearmand.status()
    assert status["flaky"][:2] == (0, 0) and "flaky.dead" not in status


def test_an_always_failing_job_lands_in_dead_letters_with_its_envelope(gearmand: Gearmand, procs: Procs,
                                                                        tmp_path: Path) -> None:
    worker = RetryWorker(procs, gearmand, tmp_path, function="always")
    assert gearctl("client", "always", "-u", "a-1", "--data", "x y", "-s", gearmand.address).returncode == 0
    wait_until(lambda: gearmand.status().get("always.dead", (0, 0, 0))[0] == 1, 30, what="the dead job")
    assert [r["attempt"] for r in worker.runs("always")] == [1, 2]
    (dead,) = wait_until(lambda: worker.events("dead", "always"), 10, what="the dead job's log line")
    assert (dead["attempt"], dead["attempts"], dead["dead_function"]) == (2, 2, "always.dead")
    assert dead["error"] == "ValueError: always broken: x y"
    (envelope,) = grab_dead(gearmand, "always.dead")
    assert (envelope.function, envelope.unique, envelope.workload, envelope.attempts) == ("always", "a-1", b"x y", 2)
    assert envelope.error == "ValueError: always broken: x y" and envelope.state == "exception"
    assert "raise ValueError" in envelope.traceback and envelope.host
    assert envelope.first_failure <= envelope.last_failure
    assert envelope.handle == worker.runs("always")[1]["handle"]
    # the last attempt's end is written right after the dead letter was created
    wait_until(lambda: gearmand.status()["always"][:2] == (0, 0), 10, what="the last attempt to end")


def test_the_client_is_told_where_a_job_out_of_attempts_went(gearmand: Gearmand, procs: Procs,
                                                             tmp_path: Path) -> None:
    RetryWorker(procs, gearmand, tmp_path, function="hooked")
    done = gearctl("client", "hooked", "--wait", "--data", "h", "-s", gearmand.address)
    assert done.returncode == 5
    # the hook entry's own suffix; no retries declared as 0
    assert b"gearctl: out of attempts (1 of 1), kept in hooked.failed: ValueError: hooked" in done.stderr
    wait_until(lambda: gearmand.status().get("hooked.failed", (0, 0, 0))[0] == 1, 10, what="the dead job")


def test_retry_on_exception_does_not_retry_a_work_fail(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    worker = RetryWorker(procs, gearmand, tmp_path, function="says_no")
    done = gearctl("client", "says_no", "--wait", "-u", "n-1", "-s", gearmand.address)
    assert done.returncode == 1  # WORK_FAIL
    assert b"gearctl: not retried (fail is not in retry_on), kept in says_no.dead: said no" in done.stderr
    wait_until(lambda: gearmand.status().get("says_no.dead", (0, 0, 0))[0] == 1, 10, what="the dead job")
    assert len(worker.runs("says_no")) == 1 and not worker.events("retry", "says_no")
    (envelope,) = grab_dead(gearmand, "says_no.dead")
    assert (envelope.state, envelope.error, envelope.attempts) == ("failed", "said no", 1)


def test_without_dead_letters_a_failed_job_ends_as_before(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    RetryWorker(procs, gearmand, tmp_path, function="forgotten")
    done = gearctl("client", "forgotten", "--wait", "--data", "z", "-s", gearmand.address)
    assert done.returncode == 5 and b"ValueError: forgotten" in done.stderr
    assert b"kept in" not in done.stderr and b"scheduled" not in done.stderr
    assert "forgotten.dead" not in gearmand.status()


def test_worker_flags_are_defaults_and_a_declaration_wins(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    worker = RetryWorker(procs, gearmand, tmp_path, "--retries", "1", "--retry-backoff", "0.2",
                         "--no-dead-letter", function="plain_fail")
    done = gearctl("client", "plain_fail", "--wait", "-u", "p-1", "-s", gearmand.address)
    assert done.returncode == 5 and b"gearctl: attempt 2 of 2 scheduled for " in done.stderr
    wait_until(lambda: len(worker.runs("plain_fail")) == 2, 20, what="the second attempt")
    wait_until(lambda: gearmand.status()["plain_fail"][:2] == (0, 0), 10, what="the second attempt to end")
    assert "plain_fail.dead" not in gearmand.status()  # --no-dead-letter
    # hooked declares retries=0: --retries does not change it (and --no-dead-letter, which it does not
    # declare, applies to it: no dead letter either)
    hooked = gearctl("client", "hooked", "--wait", "-s", gearmand.address)
    assert hooked.returncode == 5 and b"scheduled" not in hooked.stderr and b"kept in" not in hooked.stderr
    assert len(worker.runs("hooked")) == 1 and "hooked.failed" not in gearmand.status()


@pytest.mark.parametrize(("flags", "message"), [
    (["--retry-on", "exception,boom"], "gearctl: --retry-on: 'boom' is not one of exception, fail, timeout"),
    (["--retry-backoff", "soon"], "gearctl: --retry-backoff: cannot read duration 'soon'"),
    (["--dead-letter-suffix", ""], "gearctl: --dead-letter-suffix must be a non-empty string"),
])
def test_bad_retry_flags_are_one_line_and_exit_2(flags: list[str], message: str) -> None:
    done = gearctl("worker", "-p", str(PLUGINS), *flags)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr


def test_a_refused_retry_goes_to_dead_letters(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    worker = RetryWorker(procs, gearmand, tmp_path, function="refused")
    assert gearmand.admin("maxqueue refused 1") == ["OK"]  # the running job fills it: the retry is refused
    done = gearctl("client", "refused", "--wait", "-u", "r-1", "-s", gearmand.address)
    assert done.returncode == 5
    assert re.search(rb"gearctl: attempt 2 could not be scheduled \(.*QUEUE_ERROR.*\), kept in refused.dead: "
                     rb"ValueError: refused attempt", done.stderr), done.stderr
    wait_until(lambda: gearmand.status().get("refused.dead", (0, 0, 0))[0] == 1, 10, what="the dead job")
    assert len(worker.runs("refused")) == 1
    (envelope,) = grab_dead(gearmand, "refused.dead")
    assert (envelope.unique, envelope.attempts) == ("r-1", 1)


def test_a_job_whose_retry_and_dead_letter_are_refused_is_requeued_never_lost(gearmand: Gearmand, procs: Procs,
                                                                              tmp_path: Path) -> None:
    # stuck.dead already holds one job and may hold no more; stuck holds only the running job
    assert gearctl("client", "stuck.dead", "-u", "filler", "-s", gearmand.address).returncode == 0
    assert gearmand.admin("maxqueue stuck.dead 1") == ["OK"]
    worker = RetryWorker(procs, gearmand, tmp_path, function="stuck")
    assert gearmand.admin("maxqueue stuck 1") == ["OK"]  # (gearmand keeps it only for a function it knows)
    assert gearctl("client", "stuck", "-u", "s-1", "--data", "keep me", "-s", gearmand.address).returncode == 0

    def requeued() -> list[dict]:
        return [e for e in worker.events("requeue", "stuck") if e["level"] == "error"]

    wait_until(requeued, 30, what="the worker giving the job back")
    assert requeued()[0]["unique"] == "s-1" and requeued()[0]["handle"].startswith("H:")
    assert "neither a retry nor a dead letter could be submitted" in requeued()[0]["message"]
    assert gearmand.status()["stuck"][0] == 1  # still on the server, not completed and not dropped
    assert not worker.events("dead", "stuck") and not worker.events("retry", "stuck")
    # room again: the job, handed out anew, is retried once, then kept as dead
    assert gearmand.admin("maxqueue stuck 100") == ["OK"]
    assert gearmand.admin("maxqueue stuck.dead 100") == ["OK"]
    wait_until(lambda: gearmand.status().get("stuck.dead", (0, 0, 0))[0] == 2, 60, what="the job kept as dead")
    envelopes = grab_dead(gearmand, "stuck.dead", 2)
    mine = [e for e in envelopes if e.unique == "s-1"]
    assert len(mine) == 1 and mine[0].workload == b"keep me" and mine[0].attempts == 2
    assert all(r["workload"] == "keep me" for r in worker.runs("stuck"))


# -- the library: Worker(...) takes the same defaults ---------------------------------
@pytest.fixture
def in_process() -> Iterator[list[tuple[Worker, threading.Thread]]]:
    """Workers run in threads of this process; stopped and joined after the test."""
    started: list[tuple[Worker, threading.Thread]] = []
    yield started
    for worker, _ in started:
        worker.stop_threadsafe()
    for _, thread in started:
        thread.join(15)


def start(started: list[tuple[Worker, threading.Thread]], worker: Worker) -> None:
    thread = threading.Thread(target=lambda: worker.run(signals=()), daemon=True)
    started.append((worker, thread))
    thread.start()


def test_worker_keywords_retry_and_count(gearmand: Gearmand, in_process: list[tuple[Worker, threading.Thread]]) -> None:
    seen: list[tuple[int, int, str]] = []
    events: list[JobEvent] = []

    def lib_flaky(j):  # no options of its own: Worker's keywords apply
        seen.append((j.attempt, j.attempts, j.unique))
        if j.attempt == 1:
            raise RuntimeError("first time")
        return b"ok"

    @job(retries=0)
    def lib_dead(j):
        raise RuntimeError("never")

    worker = Worker([lib_flaky, lib_dead], servers=gearmand.address, poll_interval=0.2, retries=2,
                    retry_backoff=0.1, retry_on=["exception"], on_event=events.append)
    start(in_process, worker)
    with Client(gearmand.address) as client:
        client.submit("lib_flaky", b"w", unique="k")
        job_ = client.submit("lib_dead", b"w", background=False)
        with pytest.raises(Exception, match="never"):
            client.wait(job_, 30)
        assert any(w.startswith(b"gearctl: out of attempts (1 of 1), kept in lib_dead.dead") for w in job_.warnings)
    wait_until(lambda: any(e.kind is JobEventKind.COMPLETE for e in events), 30, what="the second attempt")
    assert seen[0] == (1, 3, "k") and seen[1][:2] == (2, 3) and seen[1][2].startswith("k~a2.")
    stats = worker.stats.functions
    assert (stats["lib_flaky"].retried, stats["lib_flaky"].dead, stats["lib_flaky"].done) == (1, 0, 1)
    assert (stats["lib_dead"].retried, stats["lib_dead"].dead) == (0, 1)
    (retry,) = [e for e in events if e.kind is JobEventKind.RETRY]
    assert (retry.attempt, retry.attempts, retry.function) == (1, 3, "lib_flaky") and retry.due


def test_a_php_worker_serving_an_attempt_sees_the_same_workload(
        gearmand: Gearmand, in_process: list[tuple[Worker, threading.Thread]], tmp_path: Path) -> None:
    events: list[JobEvent] = []

    @job("shared_fn", retries=1, retry_backoff=0.1)
    def shared(j):
        raise RuntimeError("gearctl's attempt fails")

    worker = Worker([shared], servers=gearmand.address, on_event=events.append)
    start(in_process, worker)
    payload = 'a:1:{s:3:"uid";i:7;}'
    with Client(gearmand.address) as client:
        client.submit("shared_fn", payload, unique="php-1")
    wait_until(lambda: any(e.kind is JobEventKind.RETRY for e in events), 30, what="the retry")
    worker.stop_threadsafe()
    wait_until(lambda: gearmand.status()["shared_fn"][2] == 0, 15, what="the gearctl worker to leave")
    (retry,) = [e for e in events if e.kind is JobEventKind.RETRY]
    assert retry.due is not None
    # gearmand does not wake a worker when a scheduled job comes due: start the PHP worker after it
    wait_until(lambda: time.time() >= retry.due + 0.2, 10, what="the attempt to be due")
    script = tmp_path / "one_job.php"
    script.write_text("<?php\n[$h, $p] = explode(':', $argv[1]);\n$w = new GearmanWorker();\n"
                      "$w->addServer($h, (int)$p);\n"
                      "$w->addFunction('shared_fn', function ($job) {\n"
                      "    echo $job->unique(), \"\\n\", $job->workload(), \"\\n\";\n"
                      "    return 'ok';\n});\n$w->work();\n")
    out = subprocess.run(["php", str(script), gearmand.address], capture_output=True, timeout=60)
    unique, workload = out.stdout.decode().splitlines()
    assert workload == payload
    assert parse_attempt(unique).original == "php-1" and parse_attempt(unique).number == 2


def test_the_supervisor_serves_job_counts_to_prometheus(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    worker = RetryWorker(procs, gearmand, tmp_path, "--metrics-port", str(port), function="always")
    assert gearctl("client", "always", "-u", "m-1", "-s", gearmand.address).returncode == 0
    wait_until(lambda: worker.events("dead", "always"), 30, what="the job kept as dead")

    def counts() -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        found = re.findall(r'^gearctl_worker_jobs_total\{function="always",outcome="(\w+)"\} (\S+)$', text, re.M)
        return {outcome: float(value) for outcome, value in found}

    # two attempts failed: one was retried, the other kept as dead (the report reaches the supervisor soon after)
    wait_until(lambda: counts().get("dead") == 1, 10, what="the dead count on /metrics")
    assert counts() == {"complete": 0, "failed": 2, "retried": 1, "dead": 1}


def test_metrics_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = gearctl("worker", "-p", str(PLUGINS), "-s", "127.0.0.1:1", "--metrics-port",
                       str(taken.getsockname()[1]))
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("gearctl: --metrics-port: cannot listen on 127.0.0.1:"), done.stderr
