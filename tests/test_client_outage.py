"""`gearctl client --each-line` when gearmand dies mid-run: what stderr and --json
say, and --max-errors. The server is really killed (kill -9, by pid) after the
client has printed the first jobs' answers, so the kill lands mid-run every time."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import Gearmand, Procs, clean_env, gearctl, php_worker, wait_until

GEARCTL = [sys.executable, "-m", "gearctl"]
BEFORE, AFTER = 100, 3000  # lines queued before the kill, lines sent after it


def _lines(first: int, count: int) -> bytes:
    return b"".join(b"%d\n" % i for i in range(first, first + count))


def _run_through_an_outage(gearmand: Gearmand, *flags: str) -> tuple[int, list[bytes], list[bytes]]:
    """Submit BEFORE lines, see their answers on stdout, kill gearmand, send AFTER
    more lines: the exit code, stdout lines and stderr lines."""
    proc = subprocess.Popen([*GEARCTL, "client", "outage", "-n", "-s", gearmand.address, *flags], env=clean_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_lines(1, BEFORE))
        proc.stdin.flush()
        head = [proc.stdout.readline() for _ in range(BEFORE)]  # pytest's timeout guards a hang here
        assert gearmand.queued("outage") == BEFORE
        gearmand.kill()
        out, err = proc.communicate(_lines(BEFORE + 1, AFTER), timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, head + out.splitlines(), err.splitlines()


def _told(err: list[bytes]) -> int:
    """Failures stderr accounts for: lines shown plus the '... and N more' counts (at most 5 shown each)."""
    shown = [line for line in err if re.match(rb"gearctl: line \d+: ", line)]
    counts = [int(m.group(1).replace(b",", b"")) for line in err
              if (m := re.fullmatch(rb"gearctl: \.\.\. and ([\d,]+) more: .*", line))]
    assert len(shown) <= 5 * max(len(counts), 1), err
    return len(shown) + sum(counts)


def test_an_outage_is_summarised_not_one_stderr_line_per_job(gearmand: Gearmand) -> None:
    code, out, err = _run_through_an_outage(gearmand)
    assert code == 3, err[-5:]
    assert len(out) == BEFORE and all(line.startswith(b"H:") for line in out)
    assert _told(err) == AFTER  # every failed job accounted for...
    assert len(err) <= 2 * 6 + 1, err  # ...in a few lines: at most two reasons (refused, lost), each 5 + a count
    assert any(b"more: no job server reachable" in line and b"connection refused" in line for line in err)
    assert err[-1].startswith(b"gearctl: %d submitted, %d queued, %d error" % (BEFORE + AFTER, BEFORE, AFTER))


def test_jobs_waited_on_when_the_server_dies_are_summarised(gearmand: Gearmand) -> None:
    proc = subprocess.Popen([*GEARCTL, "client", "outage", "-n", "--wait", "-s", gearmand.address], env=clean_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(_lines(1, 50))  # no worker: all 50 wait, created, on the server
        proc.stdin.flush()
        wait_until(lambda: gearmand.queued("outage") == 50, 20, what="50 jobs created")
        gearmand.kill()
        out, err = proc.communicate(b"", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 3 and out == b""
    lines = err.splitlines()
    assert _told(lines) == 50 and len(lines) <= 2 * 6 + 1, lines
    assert lines[-1].startswith(b"gearctl: 50 submitted, 0 complete, 50 error")


def test_json_gives_every_line_one_object_through_an_outage(gearmand: Gearmand) -> None:
    code, out, err = _run_through_an_outage(gearmand, "--json")
    assert code == 3
    records = [json.loads(line) for line in out]
    assert sorted(r["line"] for r in records) == list(range(1, BEFORE + AFTER + 1))
    assert [r["status"] for r in records[:BEFORE]] == ["queued"] * BEFORE
    assert {r["status"] for r in records[BEFORE:]} == {"error"}
    assert len(err) == 1 and b"3100 submitted, 100 queued, 3000 error" in err[0]


def test_max_errors_stops_submitting(gearmand: Gearmand) -> None:
    # One job at a time, so exactly the ten lines after the kill fail before it stops.
    code, out, err = _run_through_an_outage(gearmand, "--json", "--inflight", "1", "--max-errors", "10")
    assert code == 3  # the worst error of the run: no server
    records = [json.loads(line) for line in out]
    assert [r["line"] for r in records] == list(range(1, BEFORE + 11))  # each line taken has its object
    assert [r["status"] for r in records[BEFORE:]] == ["error"] * 10
    assert (b"gearctl: stopped after 10 failed lines (--max-errors 10); no input after line %d was submitted"
            % (BEFORE + 10)) in err


def test_invalid_lines_get_json_objects_and_are_summarised(gearmand: Gearmand) -> None:
    lines = b'{"a":1}\n' + b"not json\n" * 30 + b"[2]\n"
    result = gearctl("client", "checked", "-n", "--json", "-e", "json", "-s", gearmand.address, input=lines)
    assert result.returncode == 2
    records = {r["line"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(records) == list(range(1, 33))
    assert records[1]["status"] == records[32]["status"] == "queued"
    bad = [records[n] for n in range(2, 32)]
    assert all(r["status"] == "invalid" and "invalid JSON" in r["error"] and r["handle"] is None for r in bad)
    err = result.stderr.splitlines()
    assert [line.split(b":")[1] for line in err[:5]] == [b" line 2", b" line 3", b" line 4", b" line 5", b" line 6"]
    assert re.fullmatch(rb"gearctl: \.\.\. and 25 more: invalid JSON.*; not submitted", err[5]), err
    assert len(err) == 7 and b"30 invalid" in err[6]
    assert gearmand.queued("checked") == 2


def test_max_errors_counts_invalid_lines(gearmand: Gearmand) -> None:
    lines = b"not json\n" * 5 + b"[1]\n" * 5
    result = gearctl("client", "checked", "-n", "-q", "-e", "json", "--max-errors", "3", "-s", gearmand.address,
                     input=lines)
    assert result.returncode == 2
    assert b"no input after line 3 was submitted" in result.stderr
    assert "checked" not in gearmand.status()


def test_repeated_warnings_are_summarised(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_warning")
    result = gearctl("client", "php_warning", "-n", "--wait", "-s", gearmand.address, input=_lines(1, 12))
    assert result.returncode == 0
    assert result.stdout.split() == [b"ok"] * 12
    err = result.stderr.splitlines()
    assert sum(b"warning: careful now" in line for line in err) == 6  # five, then the count
    assert err[-1] == b"gearctl: ... and 7 more: warning: careful now"


def test_max_errors_needs_each_line(gearmand: Gearmand) -> None:
    result = gearctl("client", "f", "--max-errors", "1", "--data", "x", "-s", gearmand.address)
    assert result.returncode == 2 and result.stderr.startswith(b"gearctl: ") and b"--each-line" in result.stderr
    assert gearmand.queued("f") == 0


def test_max_errors_caps_what_is_in_flight_in_an_outage() -> None:
    from conftest import free_port

    # No server at all: every line fails. With the default --inflight of 10,000, ten
    # thousand were in flight before the first failure came back.
    result = gearctl("client", "f", "-n", "-q", "--max-errors", "5", "-s", f"127.0.0.1:{free_port()}",
                     input=b"".join(b"%d\n" % i for i in range(30_000)))
    assert result.returncode == 3
    stopped = re.search(rb"stopped after (\d+) failed lines \(--max-errors 5\)", result.stderr)
    assert stopped is not None and 5 <= int(stopped.group(1)) < 10, result.stderr
