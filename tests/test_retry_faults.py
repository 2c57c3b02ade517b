"""Retries under faults (issue 11): a scheduled attempt survives a gearmand kill -9
with a persistent queue and the job ends complete; a job that always fails ends in
the dead-letter queue with its error, survives a restart there, and `gearctl dead
retry` brings it back to run once the outage is over. Real gearmand, real workers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import Procs, gearctl, wait_until
from test_retries import RetryWorker

from gearctl.deadletter import parse_attempt


def stop(worker: RetryWorker) -> None:
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0


def test_a_scheduled_attempt_survives_a_gearmand_kill_and_the_job_completes(
        persistent_gearmand_factory, procs: Procs, tmp_path: Path) -> None:
    server = persistent_gearmand_factory()
    worker = RetryWorker(procs, server, tmp_path)
    assert gearctl("client", "flaky", "--unique", "restart-1", "--data", "w", "-s", server.address).returncode == 0
    # Attempt 1 failed and attempt 2 is queued (its SUBMIT_JOB_EPOCH answered) and
    # attempt 1's end reached gearmand: one job left, none running.
    wait_until(lambda: len(worker.runs("flaky")) == 1 and server.status().get("flaky", (0, 0, 0))[:2] == (1, 0), 30,
               what="attempt 2 scheduled")
    stop(worker)  # no worker while gearmand dies: attempt 2 cannot run before the kill
    server.kill()
    server.start()
    assert server.status()["flaky"][0] == 1  # attempt 2 came back from the queue's database
    worker = RetryWorker(procs, server, tmp_path)
    wait_until(lambda: len(worker.runs("flaky")) == 3 and server.status().get("flaky", (1, 0, 0))[0] == 0, 60,
               what="attempts 2 and 3 after the restart")
    runs = worker.runs("flaky")
    assert [r["attempt"] for r in runs] == [1, 2, 3] and {r["attempts"] for r in runs} == {3}
    assert [parse_attempt(r["unique"]).original for r in runs] == ["restart-1"] * 3
    assert {r["workload"] for r in runs} == {"w"}
    assert "flaky.dead" not in server.status() or server.status()["flaky.dead"][0] == 0


def test_a_job_out_of_attempts_waits_in_dead_letters_across_a_restart_and_dead_retry_runs_it(
        persistent_gearmand_factory, procs: Procs, tmp_path: Path) -> None:
    server = persistent_gearmand_factory()
    worker = RetryWorker(procs, server, tmp_path, function="until_fixed")
    payload = '{"uids": [17]}'
    assert gearctl("client", "until_fixed", "--unique", "signup-17", "--data", payload,
                   "-s", server.address).returncode == 0
    # The dead letter is queued before the last attempt's end is written: wait for both, or
    # the kill would leave attempt 3 in gearmand's database, to run (and die) once more.
    wait_until(lambda: server.status().get("until_fixed.dead", (0, 0, 0))[0] == 1
               and server.status().get("until_fixed", (1, 0, 0))[0] == 0, 60, what="the dead letter, attempt 3 ended")
    assert [r["attempt"] for r in worker.runs("until_fixed")] == [1, 2, 3]
    server.kill()  # the dead letter is a job in gearmand's persistent queue: it survives
    server.start()
    listed = gearctl("dead", "list", "until_fixed", "--json", "-s", server.address)
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)["jobs"]
    assert len(jobs) == 1
    dead = jobs[0]["envelope"]
    assert dead["function"] == "until_fixed" and dead["unique"] == "signup-17" and dead["attempts"] == 3
    assert "SMTP server refused the connection" in dead["error"] and dead["workload"] == payload
    wait_until(lambda: server.status().get("until_fixed", (0, 0, 0))[2] >= 1, 30, what="the worker back")
    (worker.records / "fixed").touch()  # the outage is over
    retried = gearctl("dead", "retry", "until_fixed", "-s", server.address)
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: server.status().get("until_fixed", (1, 0, 0))[0] == 0 and len(worker.runs("until_fixed")) == 4,
               30, what="the retried job to run")
    last = worker.runs("until_fixed")[-1]
    assert (last["unique"], last["workload"], last["attempt"]) == ("signup-17", payload, 1)
    assert server.status().get("until_fixed.dead", (0, 0, 0))[0] == 0


def test_another_dead_letter_suffix_is_read_by_dead_and_status(gearmand, procs: Procs, tmp_path: Path) -> None:
    worker = RetryWorker(procs, gearmand, tmp_path, function="hooked")  # its hook entry says ".failed"
    assert gearctl("client", "hooked", "--data", "x", "-s", gearmand.address).returncode == 0
    wait_until(lambda: gearmand.queued("hooked.failed") == 1, 30, what="the dead letter in hooked.failed")
    assert worker.runs("hooked")
    env = {"GEARCTL_DEAD_LETTER_SUFFIX": ".failed"}
    listed = gearctl("dead", "list", "hooked", "--json", "-s", gearmand.address, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [j["envelope"]["function"] for j in json.loads(listed.stdout)["jobs"]] == ["hooked"]
    status = json.loads(gearctl("status", "--json", "-s", gearmand.address, env=env).stdout)
    assert '"dead": 1' in json.dumps(status) and "hooked.failed" not in json.dumps(status)
    default = json.loads(gearctl("dead", "list", "--json", "-s", gearmand.address).stdout)
    assert default["jobs"] == []  # without the setting, .failed is nobody's dead-letter queue
