"""status, workers, jobs, job, cancel, drop, version, ping, check and exporter
against real gearmand servers, compared with the C gearadmin tool."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import (
    Gearmand,
    Procs,
    Terminal,
    c_worker,
    clean_env,
    free_port,
    gearctl,
    held_command,
    on_a_terminal,
    wait_until,
)

pytestmark = pytest.mark.conformance  # each test against gearmand and gearctl server

GEARCTL = [sys.executable, "-m", "gearctl"]
TAB = "fn\twith tab"

# Async job functions that wait for a file the test creates, so a job is
# still running (or still held) when a command looks at it. Async: they leave
# the worker's event loop free to send WORK_STATUS and to prefetch.
HELD_PLUGIN = """
import asyncio, os, time
from gearctl import job

RELEASE = {release!r}


async def released():
    deadline = time.monotonic() + 120
    while not os.path.exists(RELEASE):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the job")
        await asyncio.sleep(0.02)


@job
async def held(job):
    job.send_status(1, 4)
    await released()
    job.send_status(4, 4)
    return "done"
"""


def held_worker(procs: Procs, server: Gearmand, tmp_path: Path, *args: str, extra: str = "",
                expect: tuple[str, ...] = ("held",), workers: int = 1) -> Path:
    """A gearctl worker serving `held` (and `extra` plugin code); the file whose
    creation releases its jobs."""
    release = tmp_path / "release"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "held.py").write_text(HELD_PLUGIN.format(release=str(release)) + extra)
    procs.start([*GEARCTL, "worker", "-p", str(plugins), "-s", server.address, "--log-format", "json", *args],
                env=clean_env())
    wait_until(lambda: all(server.status().get(f, (0, 0, 0))[2] >= workers for f in expect), 30,
               what=f"gearctl worker registering {expect}")
    return release


def gearadmin(server: Gearmand, flag: str) -> list[str]:
    out = subprocess.run(["gearadmin", "-h", "127.0.0.1", "-p", str(server.port), flag],
                         capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if line and line != "."]


def fill(server: Gearmand, function: str, count: int) -> None:
    lines = b"".join(b"%d\n" % i for i in range(count))
    assert gearctl("client", function, "-n", "-q", "-s", server.address, input=lines).returncode == 0


def test_status_agrees_with_gearadmin_on_two_servers(gearmand_factory, procs: Procs) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    fill(one, TAB, 3)
    fill(one, "plain", 2)
    fill(two, "plain", 5)
    c_worker(procs, two, "served", "cat")
    doc = json.loads(gearctl("status", "--json", "-s", f"{one.address},{two.address}").stdout)
    for server, entry in zip((one, two), doc["servers"], strict=True):
        assert entry["address"] == server.address and entry["up"]
        theirs = {}
        for line in gearadmin(server, "--status"):
            name, total, running, workers = line.rsplit("\t", 3)
            theirs[name] = (int(total), int(running), int(workers))
        ours = {f["function"]: (f["total"], f["running"], f["workers"]) for f in entry["functions"]}
        assert ours == theirs
    totals = {f["function"]: f for f in doc["functions"]}
    assert totals[TAB]["queued"] == 3 and totals["plain"]["queued"] == 7 and totals["served"]["workers"] == 1
    plain = gearctl("status", "-s", f"{one.address},{two.address}").stdout.decode().splitlines()
    assert plain[0] == "function\tserver\tqueued\trunning\tworkers\theld\tdead" and "plain\tall\t7\t0\t0\t0\t0" in plain
    assert f"plain\t{two.address}\t5\t0\t0\t0\t0" in plain


@pytest.mark.interop
def test_workers_and_jobs_agree_with_gearadmin(gearmand: Gearmand, procs: Procs) -> None:
    c_worker(procs, gearmand, "served", "cat")
    fill(gearmand, "queued_up", 4)
    ours = json.loads(gearctl("workers", "--json", "-s", gearmand.address).stdout)["servers"][0]["workers"]
    theirs = [line for line in gearadmin(gearmand, "--workers") if not line.endswith(":")]
    assert sorted(f"{w['fd']} {w['address']} {w['client_id']} : {' '.join(w['functions'])}"
                  for w in ours if w["functions"]) == sorted(theirs)
    assert not any(w["client_id"].startswith("gearctl-admin") for w in ours)  # our own connection is left out
    jobs = json.loads(gearctl("jobs", "--json", "-s", gearmand.address).stdout)["servers"][0]["jobs"]
    assert sorted(j["handle"] for j in jobs) == sorted(line.split("\t")[0] for line in gearadmin(gearmand,
                                                                                                   "--show-jobs"))
    uniques = json.loads(gearctl("jobs", "--unique", "--json", "-s", gearmand.address).stdout)
    assert len(uniques["servers"][0]["uniques"]) == 4


def test_status_watch_follows_changes_and_exits_0_on_ctrl_c(gearmand_factory, procs: Procs) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    fill(one, "watched", 2)
    with Terminal(["status", "--watch", "--interval", "0.2", "-s", f"{one.address},{two.address}"],
                  stdout_too=True) as term:
        term.wait_for(lambda t: "watched" in t.text(), what="the watched function")
        fill(one, "watched", 5)
        total = re.compile(r"watched\s+│\s+all\s+│\s+7\s")  # the "all" row: 7 queued
        term.wait_for(lambda t: total.search(t.text()), what="the all row with 7 queued")
        shown = len(term.text())
        assert "down" not in term.text()
        two.stop()
        term.wait_for(lambda t: "down" in t.text()[shown:], what="the stopped server shown down")
        os.kill(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(30) == 0


def test_job_watch_follows_a_job_to_completion(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    release = held_worker(procs, gearmand, tmp_path)
    handle = gearctl("client", "held", "-s", gearmand.address).stdout.decode().strip()
    wait_until(lambda: json.loads(gearctl("job", handle, "--json", "-s", gearmand.address).stdout)[0]["denominator"]
               == 4, 30, interval=0.05, what="progress")
    with Terminal(["job", handle, "--watch", "--interval", "0.1", "-s", gearmand.address], stdout_too=True,
                  env={"COLUMNS": "150"}) as term:
        term.wait_for(lambda t: "running" in t.text(), what="the job running")  # still held open by us
        assert handle in term.text() and "done" not in term.text()
        release.touch()
        term.wait_for(lambda t: "done" in t.text(), what="the job done")
        assert term.proc.wait(30) == 0
    final = json.loads(gearctl("job", handle, "--json", "-s", gearmand.address).stdout)[0]
    assert final["known"] is False


def test_job_by_unique_key(gearmand: Gearmand) -> None:
    assert gearctl("client", "later", "--unique", "report-7", "-s", gearmand.address).returncode == 0
    (status,) = json.loads(gearctl("job", "--unique", "report-7", "--json", "-s", gearmand.address).stdout)
    assert status["known"] and not status["running"] and status["unique"] == "report-7"


@pytest.mark.interop
def test_cancel_and_drop(gearmand: Gearmand, procs: Procs) -> None:
    handle = gearctl("client", "doomed", "-s", gearmand.address).stdout.decode().strip()
    assert gearctl("cancel", handle, "-s", gearmand.address).returncode == 0
    missing = gearctl("cancel", "H:nowhere:1", "-s", gearmand.address)
    assert missing.returncode == 8 and b"no server has a job H:nowhere:1" in missing.stderr
    fill(gearmand, "busy", 2)
    refused = gearctl("drop", "busy", "-s", gearmand.address)
    assert refused.returncode == 2 and b"--force" in refused.stderr
    c_worker(procs, gearmand, "staffed", "cat")
    staffed = gearctl("drop", "staffed", "-s", gearmand.address)
    assert staffed.returncode == 8 and b"stop them first" in staffed.stderr
    fill(gearmand, "idle", 1)
    c_worker(procs, gearmand, "idle", "cat", count=1, registered=False).wait(10)
    wait_until(lambda: gearmand.status().get("idle", (1, 0, 1)) == (0, 0, 0), 10, what="idle to be idle")
    assert gearctl("drop", "idle", "-s", gearmand.address).returncode == 0
    assert "idle" not in gearmand.status()
    unknown = gearctl("drop", "nosuch", "-s", gearmand.address)
    assert (unknown.returncode, unknown.stderr) == (8, b"gearctl: no server knows the function nosuch\n")


def test_version_and_ping(gearmand: Gearmand, server_kind: str) -> None:
    version = gearctl("version", "-s", gearmand.address)
    # gearmand says 1.1.x; the embedded server its own version (README: differences from gearmand)
    assert version.returncode == 0 and (b"+gearctl" if server_kind == "embedded" else b"\t1.1.") in version.stdout
    assert gearctl("ping", "-s", gearmand.address).returncode == 0
    gone = f"127.0.0.1:{free_port()}"
    down = gearctl("ping", "-s", f"{gearmand.address},{gone}", "--connect-timeout", "2")
    assert down.returncode == 3 and b"\tok\t" in down.stdout
    assert f"{gone}\tdown\tconnection refused\n".encode() in down.stdout  # the address once
    status = gearctl("status", "-s", f"{gearmand.address},{gone}")
    assert status.returncode == 0 and status.stderr.decode() == f"gearctl: {gone} is down: connection refused\n"


@pytest.mark.interop
def test_check_exit_codes(gearmand: Gearmand, procs: Procs) -> None:
    fill(gearmand, "mail", 5)
    c_worker(procs, gearmand, "mail_slow", "cat")
    ok = gearctl("check", "--max-queued", "mail=10,20", "--min-workers", "mail_slow=1", "-s", gearmand.address)
    assert ok.returncode == 0 and ok.stdout.startswith(b"GEARMAN OK") and b"'mail_queued'=5;10;20" in ok.stdout
    warning = gearctl("check", "--max-queued", "mail=3,20", "-s", gearmand.address)
    assert warning.returncode == 1 and warning.stdout.startswith(b"GEARMAN WARNING")
    critical = gearctl("check", "--max-queued", "mail=1,2", "--min-workers", "mail_slow=2,1", "-s", gearmand.address)
    assert critical.returncode == 2 and critical.stdout.startswith(b"GEARMAN CRITICAL")
    no_workers = gearctl("check", "--min-workers", "mail=1", "-s", gearmand.address)
    assert no_workers.returncode == 2 and b"mail has 0 workers" in no_workers.stdout
    gone = f"127.0.0.1:{free_port()}"
    down = gearctl("check", "-s", gone, "--connect-timeout", "2")
    assert down.returncode == 2 and f"{gone} down (connection refused)".encode() in down.stdout
    unknown = gearctl("check", "--max-queued", "mail=lots", "-s", gearmand.address)
    assert unknown.returncode == 3 and unknown.stdout.startswith(b"GEARMAN UNKNOWN")
    assert len(ok.stdout.strip().splitlines()) == 1


def test_exporter_matches_status_json(gearmand_factory, procs: Procs, tmp_path: Path) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    fill(one, "exported", 3)
    fill(two, "exported", 4)
    fill(one, "exported.dead", 2)  # dead jobs (not envelopes: the counts do not look inside)
    c_worker(procs, two, "exported", *held_command(tmp_path / "release"))  # one job stays running until the end
    wait_until(lambda: two.status()["exported"][1] == 1, 15, what="the C worker to take a job")
    port = free_port()
    servers = f"{one.address},{two.address},127.0.0.1:{free_port()}"
    procs.start([*GEARCTL, "exporter", "--port", str(port), "--address", "127.0.0.1", "-s", servers,
                 "--connect-timeout", "2"], env=clean_env())

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return response.read().decode()
        except OSError:
            return None

    text = wait_until(scrape, 15, what="the exporter")
    doc = json.loads(gearctl("status", "--json", "-s", servers, "--connect-timeout", "2").stdout)
    samples = {}
    for line in text.splitlines():
        if match := re.fullmatch(r"(gearman_\w+)\{(.*)\} (\S+)", line):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            samples[(match.group(1), labels)] = float(match.group(3))
    assert samples
    for server in doc["servers"]:
        up = samples[("gearman_up", frozenset({("server", server["address"])}))]
        assert up == (1.0 if server["up"] else 0.0)
        if server["up"]:
            connections = samples[("gearman_worker_connections", frozenset({("server", server["address"])}))]
            assert connections == server["worker_connections"] == (1 if server["address"] == two.address else 0)
        for f in server["functions"]:
            labels = frozenset({("server", server["address"]), ("function", f["function"])})
            assert samples[("gearman_queued", labels)] == f["queued"]
            assert samples[("gearman_running", labels)] == f["running"]
            assert samples[("gearman_held", labels)] == f["held"]
            assert samples[("gearman_workers", labels)] == f["workers"]
            assert samples[("gearman_dead_jobs", labels)] == f["dead"] == (2 if server["address"] == one.address else 0)
            assert f["function"] == "exported"  # the .dead queue is a count, not a function
    (tmp_path / "release").touch()  # its command ends with the test, not 120 s later


WIDE = {"COLUMNS": "150", "LINES": "50"}


def _submit_raw(server: Gearmand, function: bytes) -> None:
    import socket

    from gearctl.protocol import Decoder, Magic, PacketType, encode

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(encode(PacketType.SUBMIT_JOB_BG, function, b"", b"x"))
        decoder = Decoder(expect=Magic.RES)
        while (packet := decoder.next()) is None:
            decoder.feed(sock.recv(4096))
        assert packet.type is PacketType.JOB_CREATED


def test_odd_function_names_do_not_break_the_views(gearmand: Gearmand, procs: Procs) -> None:
    for name in (b"bad\xff\xfe", b"a[/]b", b"[red]x", b"pipe|name"):
        _submit_raw(gearmand, name)
    plain = gearctl("status", "-s", gearmand.address)
    assert plain.returncode == 0 and b"bad\xff\xfe\t" in plain.stdout and b"a[/]b\t" in plain.stdout
    code, screen = on_a_terminal(["status", "-s", gearmand.address], env=WIDE)
    assert code == 0 and "a[/]b" in screen and "[red]x" in screen
    checked = gearctl("check", "--max-queued", "pipe*=0", "-s", gearmand.address)
    status_text, _, perfdata = checked.stdout.decode().partition(" | ")
    assert checked.returncode == 2 and "|" not in status_text and "pipe_name" in perfdata
    port = free_port()
    procs.start([*GEARCTL, "exporter", "--port", str(port), "-s", gearmand.address], env=clean_env())

    def scrape() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return response.read()
        except OSError:
            return None

    assert b'gearman_up{server="' in wait_until(scrape, 15, what="the exporter")


def test_jobs_stuck_on_one_server_are_flagged(gearmand_factory, procs: Procs) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    fill(one, "split", 4)
    c_worker(procs, two, "split", "cat")
    doc = json.loads(gearctl("status", "--json", "-s", f"{one.address},{two.address}").stdout)
    (row,) = [f for f in doc["functions"] if f["function"] == "split"]
    assert row["stuck"] and row["workers"] == 1


@pytest.mark.interop
def test_perfdata_uses_nagios_ranges(gearmand: Gearmand, procs: Procs) -> None:
    c_worker(procs, gearmand, "mail", "cat")
    result = gearctl("check", "--min-workers", "mail=3,1", "-s", gearmand.address)
    assert result.returncode == 1
    assert "'mail_workers'=1;3:;1:" in result.stdout.decode()


@pytest.mark.parametrize("args", [
    ["--no-such-flag"],
    ["--timeout", "soon"],  # a value an option's own parser refuses (it exited 2: CRITICAL to Nagios)
    ["--max-queued"],  # an option without its value (it exited 2 as well)
    ["--connect-timeout", "-1"],
], ids=["flag", "duration", "no-value", "range"])
def test_check_usage_errors_are_unknown(args: list[str]) -> None:
    # A Nagios plugin's 2 is CRITICAL: a check that cannot run is UNKNOWN (3), one status line on stdout.
    result = gearctl("check", *args)
    assert result.returncode == 3, result
    assert result.stdout.startswith(b"GEARMAN UNKNOWN - ") and result.stdout.count(b"\n") == 1, result.stdout
    assert result.stderr == b""


def test_a_usage_error_elsewhere_stays_exit_2() -> None:
    result = gearctl("status", "--timeout", "soon")
    assert result.returncode == 2 and result.stderr.startswith(b"gearctl: --timeout: cannot read duration 'soon'")


def test_job_asks_servers_at_once(gearmand: Gearmand) -> None:
    import socket

    handle = gearctl("client", "waiting", "-s", gearmand.address).stdout.decode().strip()
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        result = gearctl("job", handle, "--json", "--connect-timeout", "60", "--io-timeout", "1",
                         "-s", f"127.0.0.1:{silent.getsockname()[1]},{gearmand.address}")
        assert result.returncode == 0 and json.loads(result.stdout)[0]["known"]
        assert time.monotonic() - started < 30  # the silent server is given up on after --io-timeout
    finally:
        silent.close()


def test_job_watch_of_an_unknown_handle_is_an_error(gearmand: Gearmand) -> None:
    result = gearctl("job", "H:nowhere:1", "--watch", "-s", gearmand.address)
    assert result.returncode == 8 and b"no server knows H:nowhere:1" in result.stderr


def test_cancel_refuses_running_and_ambiguous_jobs(gearmand_factory, procs: Procs, tmp_path: Path) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    # gearmand names a job H:<host name>:<count>: two fresh servers on this host
    # both call their first job the same, so the ambiguity really arises.
    a = gearctl("client", "twin", "-s", one.address).stdout.decode().strip()
    b = gearctl("client", "twin", "-s", two.address).stdout.decode().strip()
    assert a == b and a.endswith(":1")
    ambiguous = gearctl("cancel", a, "-s", f"{one.address},{two.address}")
    assert ambiguous.returncode == 2 and b"pick one with -s" in ambiguous.stderr

    def cancelled(server: Gearmand) -> bool:  # gearmand keeps a cancelled job, marked ignored
        (job,) = json.loads(gearctl("jobs", "--json", "-s", server.address).stdout)["servers"][0]["jobs"]
        return bool(job["ignored"])

    assert (cancelled(one), cancelled(two)) == (False, False)  # refused: neither job was touched
    assert gearctl("cancel", b, "-s", two.address).returncode == 0
    assert (cancelled(one), cancelled(two)) == (False, True)
    release = tmp_path / "release"
    c_worker(procs, one, "long", *held_command(release))
    try:
        running = gearctl("client", "long", "-s", one.address).stdout.decode().strip()
        wait_until(lambda: one.status()["long"][1] == 1, 30, what="the job to run")  # held open until released
        refused = gearctl("cancel", running, "-s", one.address)
        assert refused.returncode == 8 and b"running" in refused.stderr
    finally:
        release.touch()


def test_watch_off_a_terminal_prints_snapshots(gearmand: Gearmand) -> None:
    fill(gearmand, "snap", 1)
    for flags, marker in ((["--json"], b'"functions"'), ([], b"# ")):
        proc = subprocess.Popen([*GEARCTL, "status", "--watch", "--interval", "0.2", *flags, "-s", gearmand.address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
        assert proc.stdout is not None
        seen = b""
        while seen.count(marker) < 2:  # two snapshots, however long the machine takes
            line = proc.stdout.readline()
            assert line, "status --watch ended early"
            seen += line
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        out = seen + out
        assert out.count(marker) >= 2 and b"snap" in out
        if flags:
            assert all(json.loads(line)["servers"] for line in out.splitlines())


def test_version_with_one_server_down_still_succeeds(gearmand: Gearmand) -> None:
    gone = f"127.0.0.1:{free_port()}"
    result = gearctl("version", "-s", f"{gearmand.address},{gone}", "--connect-timeout", "2")
    assert result.returncode == 0 and f"{gone}\tdown: connection refused\n".encode() in result.stdout


def test_status_shows_jobs_held_by_prefetching_workers(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    release = held_worker(procs, gearmand, tmp_path, "--prefetch", "16")
    try:
        fill(gearmand, "held", 15)
        # gearmand hands all 15 to the one worker: it runs one, holds 14.
        wait_until(lambda: gearmand.status()["held"][:2] == (15, 15), 30, what="the worker to take all 15 jobs")
        doc = json.loads(gearctl("status", "--json", "-s", gearmand.address).stdout)
        (total,) = [f for f in doc["functions"] if f["function"] == "held"]
        assert (total["queued"], total["running"], total["held"], total["prefetching"]) == (0, 15, 14, True)
        (row,) = [f for f in doc["servers"][0]["functions"] if f["function"] == "held"]
        assert (row["total"], row["running"], row["held"], row["prefetching"]) == (15, 15, 14, True)
        plain = gearctl("status", "-s", gearmand.address).stdout.decode().splitlines()
        assert f"held\t{gearmand.address}\t0\t15\t1\t14\t0" in plain
        code, screen = on_a_terminal(["status", "-s", gearmand.address], env=WIDE)
        assert code == 0 and "15 (14 held)" in screen and "--prefetch" in screen
        checked = gearctl("check", "-s", gearmand.address)
        assert checked.returncode == 0 and b"15 running (14 of them held by prefetching workers)" in checked.stdout
    finally:
        release.touch()
    wait_until(lambda: gearmand.queued("held") == 0, 60, what="the held jobs to finish")
    doc = json.loads(gearctl("status", "--json", "-s", gearmand.address).stdout)
    (total,) = [f for f in doc["functions"] if f["function"] == "held"]
    assert (total["running"], total["held"], total["prefetching"]) == (0, 0, True)


def test_check_counts_worker_connections_and_registrations(gearmand: Gearmand, procs: Procs,
                                                           tmp_path: Path) -> None:
    names = [f"f{i}" for i in range(1, 6)]
    five = "".join(f"\n\n@job\nasync def {name}(job):\n    return 'ok'\n" for name in names)
    held_worker(procs, gearmand, tmp_path, "--concurrency", "3", "--functions", ",".join(names), extra=five,
                expect=tuple(names), workers=3)
    checked = gearctl("check", "--min-workers", "f1=3", "-s", gearmand.address)
    assert checked.returncode == 0, checked.stdout
    status_text, _, perfdata = checked.stdout.decode().strip().partition(" | ")
    assert status_text == "GEARMAN OK - 5 functions, 0 queued, 0 running, 3 workers (15 function registrations) " \
                          "on 1/1 servers"
    assert "workers=3;;;0" in perfdata.split() and "registrations=15;;;0" in perfdata.split()
    assert "'f1_workers'=3;;3:" in perfdata.split()
    (entry,) = json.loads(gearctl("status", "--json", "-s", gearmand.address).stdout)["servers"]
    assert entry["worker_connections"] == 3 and sum(f["workers"] for f in entry["functions"]) == 15
