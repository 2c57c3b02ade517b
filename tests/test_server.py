"""The embedded server (python -m gearctl.server) with real peers: the C
`gearman` and `gearadmin` tools, PHP's GearmanClient/GearmanWorker and gearctl's
own client, worker and status. Where gearmand's behaviour is the contract, the
same scenario runs against a real gearmand too (marked `conformance`: the `gearmand`
fixture is each server in turn)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    PHP_DIR,
    Embedded,
    Gearmand,
    Procs,
    c_worker,
    clean_env,
    free_port,
    gearctl,
    php_worker,
    wait_until,
)

from gearctl import AsyncClient, parse_servers
from gearctl.protocol import Decoder, Magic, Packet, PacketType, decode_all, encode
from gearctl.server import Server

P = PacketType
PLUGINS = Path(__file__).parent / "plugins"


class Peer:
    """A raw protocol connection, for what no tool lets a test time exactly."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.decoder = Decoder(expect=Magic.RES)

    def send(self, *packets: bytes) -> None:
        self.sock.sendall(b"".join(packets))

    def next(self) -> Packet:
        while True:
            packet = self.decoder.next()
            if packet is not None:
                return packet
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.decoder.feed(chunk)

    def ask(self, *packets: bytes) -> Packet:
        self.send(*packets)
        return self.next()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, bytes]:
    """Wait for a started command; its exit code and stdout (pipes closed)."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out or b""


def holding(started: Path, release: Path, then: str = "") -> list[str]:
    """A C worker's command: it marks its job started, runs until the test
    creates `release` (at most 120 s), then runs `then`."""
    script = (f"cat > /dev/null; touch {started}; i=0; while [ ! -e {release} ] && [ $i -lt 2400 ]; "
              f"do sleep 0.05; i=$((i+1)); done; {then}")
    return ["sh", "-c", script]


# -- the C tools ------------------------------------------------------------------

def test_the_start_line_says_the_queue_is_in_memory_and_port_0_picks_one() -> None:
    with subprocess.Popen([sys.executable, "-m", "gearctl.server", "--port", "0"], stdout=subprocess.PIPE,
                          env=clean_env()) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert "in memory" in line, line
            port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
            with Peer(port) as peer:
                assert peer.ask(encode(P.ECHO_REQ, b"ping")).args == (b"ping",)
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_a_busy_port_is_one_clear_line_and_exit_2(embedded: Embedded) -> None:
    done = subprocess.run([sys.executable, "-m", "gearctl.server", "--port", str(embedded.port)],
                          capture_output=True, timeout=30, env=clean_env())
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"gearctl: cannot listen on 127.0.0.1:{embedded.port}: Address already in use"]


@pytest.mark.parametrize("flags", [["--max-queue", "-1"], ["--graceful-timeout", "soon"], ["--bogus"]])
def test_a_bad_flag_is_one_clear_line_and_exit_2(flags: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "gearctl.server", *flags], capture_output=True, timeout=30,
                          env=clean_env())
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gearctl: ") and flags[0] in lines[0]


@pytest.mark.interop
def test_c_client_foreground_and_background_with_a_c_worker(embedded: Embedded, procs: Procs) -> None:
    c_worker(procs, embedded, "rev", "rev")
    done = subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(embedded.port), "-f", "rev", "hello"],
                          capture_output=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, b"olleh")
    queued = subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(embedded.port), "-b", "-f", "later", "x"],
                            capture_output=True, timeout=30)
    assert queued.returncode == 0
    assert embedded.status()["later"] == (1, 0, 0)


def normalized(lines: list[str]) -> list[str]:
    """gearadmin output with what differs by nature (fds, handle numbers, host
    names, pids) replaced."""
    out = [re.sub(r"^\d+ ", "FD ", re.sub(r"H:[^:\s]+:\d+", "HANDLE", line)) for line in lines]
    return sorted(out)


def gearadmin(server: Gearmand, *flags: str) -> list[str]:
    """What gearadmin printed, stdout then stderr (where it reports an ERR answer)."""
    done = subprocess.run(["gearadmin", "-h", "127.0.0.1", "-p", str(server.port), *flags], capture_output=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return (done.stdout + done.stderr).decode().splitlines()


def settled_workers(server: Gearmand) -> list[str]:
    """`gearadmin --workers` once it lists only the worker and gearadmin itself. A
    server reads a closed peer's end (a gearctl submitter, an earlier gearadmin) in
    its own time, so a listing just after one closed may still show it."""
    got: list[list[str]] = []
    wait_until(lambda: len(got.append(gearadmin(server, "--workers")) or got[-1]) == 3, 30,
               what="--workers listing only the worker and gearadmin")
    return got[-1]


@pytest.mark.interop
def test_gearadmin_reads_both_servers_alike(tmp_path: Path, procs: Procs) -> None:
    seen = {}
    for server in (Gearmand(tmp_path), Embedded(tmp_path)):
        try:
            c_worker(procs, server, "served", "rev")
            for data in ("a", "b"):
                assert gearctl("client", "queued", "--data", data, "-s", server.address).returncode == 0
            asked = [("--status",), ("--workers",), ("--show-jobs",), ("--priority-status",),
                     ("--create-function", "made"), ("--drop-function", "served"), ("--drop-function", "nosuch"),
                     ("--cancel-job", "H:nosuch:1"), ("--drop-function", "made")]
            seen[type(server).__name__] = {
                " ".join(flags): normalized(settled_workers(server) if flags == ("--workers",)
                                            else gearadmin(server, *flags)) for flags in asked}
            assert gearadmin(server, "--getpid") == [str(server.pid)]
        finally:
            server.stop()
    assert seen["Embedded"] == seen["Gearmand"]
    assert seen["Embedded"]["--status"] == [".", "queued\t2\t0\t0", "served\t0\t0\t1"]


@pytest.mark.conformance
@pytest.mark.interop
def test_a_c_worker_killed_mid_job_its_job_runs_on_another_and_goes_to_the_tail(
        gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    started, release, order = tmp_path / "started", tmp_path / "release", tmp_path / "order"
    doomed = c_worker(procs, gearmand, "job", *holding(started, release))
    first = procs.start([sys.executable, "-m", "gearctl", "client", "job", "--wait", "--data", "first",
                         "-s", gearmand.address], stdout=subprocess.PIPE, env=clean_env())
    wait_until(started.exists, 30, what="the first job running")
    assert gearctl("client", "job", "--data", "second", "-s", gearmand.address).returncode == 0
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(5)
    wait_until(lambda: gearmand.status()["job"] == (2, 0, 0), 15, what="the job handed back")
    retries = sorted(line.split("\t")[1] for line in gearmand.admin("show jobs"))
    assert retries == ["0", "1"]
    c_worker(procs, gearmand, "job", "sh", "-c", f"cat >> {order}; echo >> {order}; echo ran", count=2,
             registered=False)
    code, out = finish(first)
    assert code == 0 and out.strip() == b"ran"
    wait_until(lambda: len(order.read_text().split()) == 2 if order.exists() else False, 30, what="both jobs")
    assert order.read_text().split() == ["second", "first"]  # gearmand 1.1.20 requeues at the tail
    release.touch()


@pytest.mark.conformance
@pytest.mark.interop
def test_priorities_run_high_then_normal_then_low(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    order = tmp_path / "order.txt"
    for priority in ("low", "normal", "high", "low", "normal", "high"):
        assert gearctl("client", "prio", "--data", priority, "--priority", priority,
                       "-s", gearmand.address).returncode == 0
    c_worker(procs, gearmand, "prio", "sh", "-c", f"cat >> {order}; echo >> {order}", count=6,
             registered=False).wait(30)
    assert order.read_text().split() == ["high", "high", "normal", "normal", "low", "low"]


# -- unique keys, attached clients ---------------------------------------------------

@pytest.mark.interop
def test_a_unique_key_coalesces_and_both_clients_get_every_work_packet(
        embedded: Embedded, procs: Procs, tmp_path: Path) -> None:
    php_worker(procs, embedded, "php_status_held")
    release = tmp_path / "release"
    gearctl_client = procs.start([sys.executable, "-m", "gearctl", "client", "php_status_held", "--wait", "--json",
                                  "--unique", "same", "--data", str(release), "-s", embedded.address],
                                 stdout=subprocess.PIPE, env=clean_env())
    with Peer(embedded.port) as raw:
        # running at 2/4: from here until the release the worker sends nothing, so the
        # next packets raw reads once attached are the answers to what it asks
        wait_until(lambda: raw.ask(encode(P.GET_STATUS_UNIQUE, b"same")).args[1:5] == (b"1", b"1", b"2", b"4"),
                   30, what="the job running at 2/4")
        created = raw.ask(encode(P.SUBMIT_JOB, b"php_status_held", b"same", b"ignored: the job exists"))
        assert created.type is P.JOB_CREATED
        assert raw.ask(encode(P.GET_STATUS_UNIQUE, b"same")).args[1:] == (b"1", b"1", b"2", b"4", b"2")
        assert len(embedded.admin("show jobs")) == 1
        release.touch()
        got = [raw.next() for _ in range(2)]
        handle = created.args[0]
        assert got == [Packet(P.WORK_STATUS, (handle, b"4", b"4"), Magic.RES),
                       Packet(P.WORK_COMPLETE, (handle, b"done"), Magic.RES)]
    code, out = finish(gearctl_client)
    assert code == 0 and json.loads(out)["result"] == "done"


@pytest.mark.interop
def test_php_client_and_php_worker_see_data_exceptions_and_fail(embedded: Embedded, procs: Procs) -> None:
    php_worker(procs, embedded, "php_data", "php_exception", "php_fail", "php_echo")

    def php_client(mode: str, function: str, workload: str) -> list[dict]:
        done = subprocess.run(["php", str(PHP_DIR / "callbacks.php"), mode, embedded.address, function, workload],
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.decode().splitlines()]

    assert php_client("tasks", "php_data", "x") == [
        {"cb": "data", "data": "part1;"}, {"cb": "data", "data": "part2;"},
        {"cb": "complete", "data": "end", "unserialized": None}, {"end": True, "code": "SUCCESS"}]
    events = php_client("tasks", "php_exception", "q")
    assert {"cb": "exception", "data": "boom: bad input q"} in events  # libgearman asks for exceptions
    assert php_client("normal", "php_fail", "x") == [{"code": "WORK_FAIL", "result": ""}]
    assert php_client("normal", "php_echo", "héllo") == [{"code": "SUCCESS", "result": "héllo"}]


@pytest.mark.interop
def test_gearctl_client_without_the_exceptions_option_gets_work_fail(embedded: Embedded, procs: Procs) -> None:
    php_worker(procs, embedded, "php_exception")
    peer = Peer(embedded.port)  # no OPTION_REQ: WORK_EXCEPTION arrives as WORK_FAIL, as from gearmand
    created = peer.ask(encode(P.SUBMIT_JOB, b"php_exception", b"", b"q"))
    assert created.type is P.JOB_CREATED
    assert peer.next() == Packet(P.WORK_FAIL, (created.args[0],), Magic.RES)
    peer.close()


# -- gearctl's own client, worker and status ----------------------------------------

def test_gearctl_worker_client_and_status(embedded: Embedded, procs: Procs) -> None:
    procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", embedded.address,
                 "--log-format", "json"], env=clean_env())
    wait_until(lambda: embedded.status().get("bytes_cat", (0, 0, 0))[2] >= 1, 30, what="gearctl worker")
    done = gearctl("client", "bytes_cat", "--wait", "-", "-s", embedded.address, input=b"a\0b")
    assert (done.returncode, done.stdout) == (0, b"a\0b")
    done = gearctl("client", "notifications_send_users", "--wait", "--json", "-e", "json", "--data", '{"u": [1]}',
                   "-s", embedded.address)
    assert done.returncode == 0, done.stderr
    assert json.loads(json.loads(done.stdout)["result"])["data"] == {"u": [1]}
    status = gearctl("status", "--json", "-s", embedded.address)
    assert status.returncode == 0, status.stderr
    assert '"bytes_cat"' in status.stdout.decode()
    failed = gearctl("client", "failing_cmd", "--wait", "--data", "x", "-s", embedded.address)
    assert failed.returncode in (1, 5) and failed.stderr.decode().startswith("gearctl:")


# -- semantics ----------------------------------------------------------------------

@pytest.mark.conformance
@pytest.mark.interop
def test_a_foreground_client_that_disconnects_leaves_its_queued_job_to_run(
        gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with Peer(gearmand.port) as client:  # named, so that `workers` shows when it is gone
        client.send(encode(P.SET_CLIENT_ID, b"orphaning-client"))
        assert client.ask(encode(P.SUBMIT_JOB, b"orphan", b"", b"payload")).type is P.JOB_CREATED
        assert any("orphaning-client" in line for line in gearmand.admin("workers"))
    wait_until(lambda: not any("orphaning-client" in line for line in gearmand.admin("workers")), 15,
               what="the client's connection gone")
    if isinstance(gearmand, Embedded):
        c_worker(procs, gearmand, "orphan", "sh", "-c", f"cat > {marker}", count=1, registered=False)
        wait_until(lambda: marker.exists() and marker.read_text() == "payload", 30, what="the orphan job run")
    else:  # gearmand 1.1.20 marks it ignored and drops it at the next grab: a documented difference
        (job,) = gearmand.admin("show jobs")
        assert job.split("\t")[2] == "1"


@pytest.mark.interop
def test_a_running_job_whose_client_disconnects_still_ends(embedded: Embedded, procs: Procs,
                                                           tmp_path: Path) -> None:
    started, release, marker = tmp_path / "started", tmp_path / "release", tmp_path / "done"
    c_worker(procs, embedded, "held", *holding(started, release, f"touch {marker}"))
    client = procs.start([sys.executable, "-m", "gearctl", "client", "held", "--wait", "--data", "x",
                          "-s", embedded.address], env=clean_env())
    wait_until(started.exists, 30, what="the job running")
    os.kill(client.pid, signal.SIGKILL)
    client.wait(5)
    release.touch()
    wait_until(marker.exists, 30, what="the job's end")
    wait_until(lambda: embedded.status()["held"] == (0, 0, 1), 15, what="the job gone from status")


def test_submit_job_epoch_wakes_a_sleeping_worker(embedded: Embedded) -> None:
    worker = Peer(embedded.port)
    assert worker.ask(encode(P.CAN_DO, b"later"), encode(P.GRAB_JOB_UNIQ)).type is P.NO_JOB
    assert worker.ask(encode(P.PRE_SLEEP), encode(P.ECHO_REQ, b"asleep")).type is P.ECHO_RES  # in order: asleep
    submitted = time.time()
    assert gearctl("client", "later", "--in", "2s", "--data", "x", "-s", embedded.address).returncode == 0
    assert worker.next().type is P.NOOP  # gearmand 1.1.20 never sends this one
    woken = time.time()
    job = worker.ask(encode(P.GRAB_JOB_UNIQ))
    assert job.type is P.JOB_ASSIGN_UNIQ and job.args[-1] == b"x"
    assert woken - submitted >= 1.0  # whole epoch seconds: not at once
    worker.close()


@pytest.mark.conformance
def test_a_job_due_later_blocks_no_lower_priority_job(gearmand: Gearmand) -> None:
    with Peer(gearmand.port) as client, Peer(gearmand.port) as worker:
        later = str(int(time.time()) + 100).encode()
        assert client.ask(encode(P.SUBMIT_JOB_EPOCH, b"ep", b"", later, b"later")).type is P.JOB_CREATED
        assert client.ask(encode(P.SUBMIT_JOB_LOW_BG, b"ep", b"", b"now")).type is P.JOB_CREATED
        grabbed = worker.ask(encode(P.CAN_DO, b"ep"), encode(P.GRAB_JOB_UNIQ))
    if isinstance(gearmand, Embedded):
        assert grabbed.type is P.JOB_ASSIGN_UNIQ and grabbed.args[-1] == b"now"
    else:  # gearmand 1.1.20 looks no further than the NORMAL list, where nothing is due: documented
        assert grabbed.type is P.NO_JOB


def test_can_do_timeout_fails_the_job_when_its_seconds_pass(embedded: Embedded, procs: Procs) -> None:
    client = procs.start([sys.executable, "-m", "gearctl", "client", "slow", "--wait", "--data", "x",
                          "-s", embedded.address], env=clean_env())
    wait_until(lambda: embedded.queued("slow") == 1, 30, what="the job queued")
    worker = Peer(embedded.port)
    job = worker.ask(encode(P.CAN_DO_TIMEOUT, b"slow", b"1"), encode(P.GRAB_JOB_UNIQ))
    assert job.type is P.JOB_ASSIGN_UNIQ
    assert client.wait(30) == 1  # WORK_FAIL: exit 1, after 1 s (gearmand would re-queue it, silently)
    late = worker.ask(encode(P.WORK_COMPLETE, job.args[0], b"late"))
    assert (late.type, late.args[0]) == (P.ERROR, b"JOB_NOT_FOUND")
    worker.close()


@pytest.mark.conformance
def test_can_do_timeout_beside_gearmand_which_requeues_silently(gearmand: Gearmand) -> None:
    with Peer(gearmand.port) as client, Peer(gearmand.port) as worker:
        handle = client.ask(encode(P.SUBMIT_JOB, b"slow", b"", b"x")).args[0]
        assert worker.ask(encode(P.CAN_DO_TIMEOUT, b"slow", b"1"), encode(P.GRAB_JOB_UNIQ)).args[0] == handle
        if isinstance(gearmand, Embedded):
            assert client.next() == Packet(P.WORK_FAIL, (handle,), Magic.RES)
            assert gearmand.status()["slow"] == (0, 0, 1)
        else:  # after 1 s (its minimum) gearmand puts the job back and tells the client nothing: documented
            wait_until(lambda: gearmand.admin("show jobs") == [f"{handle.decode()}\t1\t0\t0"], 15,
                       what="gearmand re-queueing the job")
            assert gearmand.status()["slow"] == (1, 0, 1)


def test_past_max_queue_a_submit_is_refused(tmp_path: Path) -> None:
    server = Embedded(tmp_path, "--max-queue", "2")
    try:
        for data in ("a", "b"):
            assert gearctl("client", "capped", "--data", data, "-s", server.address).returncode == 0
        refused = gearctl("client", "capped", "--data", "c", "-s", server.address)
        assert refused.returncode == 8
        lines = refused.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gearctl:") and "Job queue is full" in lines[0]
        assert gearctl("client", "other", "--data", "c", "-s", server.address).returncode == 0  # per function
        assert server.status()["capped"] == (2, 0, 0)
    finally:
        server.stop()


# -- the port: text and binary, shutdown ----------------------------------------------

def test_admin_lines_and_packets_share_one_connection(embedded: Embedded) -> None:
    peer = Peer(embedded.port)
    peer.send(encode(P.SUBMIT_JOB_BG, b"mixed", b"", b"x") + b"status\n" + encode(P.ECHO_REQ, b"after"))
    echo = encode(P.ECHO_RES, b"after", magic=Magic.RES)
    got = b""
    while not got.endswith(echo):
        chunk = peer.sock.recv(65536)
        assert chunk
        got += chunk
    size = int.from_bytes(got[8:12], "big")
    (created,) = decode_all(got[:12 + size], Magic.RES)
    assert created.type is P.JOB_CREATED
    assert got[12 + size:-len(echo)] == b"mixed\t1\t0\t0\n.\n"
    unknown = peer.ask(b"\0REQ" + (99).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    assert unknown.type is P.ERROR and unknown.args[0] == b"INVALID_COMMAND"
    assert peer.ask(encode(P.ECHO_REQ, b"still here")).args == (b"still here",)
    peer.close()


@pytest.mark.interop
def test_shutdown_graceful_stops_accepting_and_lets_the_running_job_end(
        embedded: Embedded, procs: Procs, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    c_worker(procs, embedded, "held", *holding(started, release, "echo finished"))
    client = procs.start([sys.executable, "-m", "gearctl", "client", "held", "--wait", "--data", "x",
                          "-s", embedded.address], stdout=subprocess.PIPE, env=clean_env())
    wait_until(started.exists, 30, what="the job running")
    assert embedded.admin("shutdown graceful") == ["OK"]

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", embedded.port), timeout=1).close()
        except OSError:
            return True
        return False

    wait_until(refused, 15, what="the listener closed")
    assert embedded.proc.poll() is None  # still there for the running job
    release.touch()
    code, out = finish(client)
    assert code == 0 and out.strip() == b"finished"
    assert embedded.proc.wait(30) == 0


@pytest.mark.interop
def test_sigterm_with_a_job_running_past_the_graceful_timeout_exits(tmp_path: Path, procs: Procs) -> None:
    server = Embedded(tmp_path, "--graceful-timeout", "1")
    started, release = tmp_path / "started", tmp_path / "release"
    try:
        c_worker(procs, server, "stuck", *holding(started, release))
        peer = Peer(server.port)
        assert peer.ask(encode(P.SUBMIT_JOB_BG, b"stuck", b"", b"x")).type is P.JOB_CREATED
        wait_until(started.exists, 30, what="the job running")
        os.kill(server.pid, signal.SIGTERM)
        assert server.proc.wait(30) == 0
        peer.close()
    finally:
        release.touch()
        server.stop()


def test_many_pipelined_submits_in_one_write_are_all_created(embedded: Embedded) -> None:
    peer = Peer(embedded.port)
    count = 5000
    peer.send(*(encode(P.SUBMIT_JOB_BG, b"bulk", b"", str(i).encode()) for i in range(count)))
    handles = {peer.next().args[0] for _ in range(count)}
    assert len(handles) == count
    assert embedded.status()["bulk"] == (count, 0, 0)
    peer.close()


def test_a_raw_worker_and_client_round_trip(embedded: Embedded) -> None:
    """GRAB_JOB (no unique), then WORK_STATUS, WORK_DATA and WORK_COMPLETE forwarded in order."""
    worker = Peer(embedded.port)
    worker.send(encode(P.CAN_DO, b"echo"))
    client = Peer(embedded.port)
    handle = client.ask(encode(P.SUBMIT_JOB, b"echo", b"", b"payload")).args[0]
    job = worker.ask(encode(P.GRAB_JOB))
    assert job == Packet(P.JOB_ASSIGN, (handle, b"echo", b"payload"), Magic.RES)
    worker.send(encode(P.WORK_STATUS, handle, b"1", b"2"), encode(P.WORK_DATA, handle, b"part"),
                encode(P.WORK_COMPLETE, handle, b"whole"))
    got = [client.next() for _ in range(3)]
    assert [(p.type, p.args) for p in got] == [(P.WORK_STATUS, (handle, b"1", b"2")), (P.WORK_DATA, (handle, b"part")),
                                               (P.WORK_COMPLETE, (handle, b"whole"))]
    worker.close()
    client.close()


# -- --store ---------------------------------------------------------------------------

@pytest.mark.interop
def test_a_stored_job_survives_kill_9_and_a_restart_and_runs(tmp_path: Path, procs: Procs) -> None:
    store, marker = tmp_path / "jobs.db", tmp_path / "ran"
    server = Embedded(tmp_path, "--store", str(store))
    try:
        for data in ("first", "second"):
            assert gearctl("client", "durable", "--data", data, "-s", server.address).returncode == 0
        c_worker(procs, server, "durable", "sh", "-c", f"cat >> {marker}; echo >> {marker}", count=1,
                 registered=False).wait(30)
        assert marker.read_text().split() == ["first"]
        wait_until(lambda: server.status()["durable"] == (1, 0, 0), 15, what="the first job's end")
        server.kill()
        server.start()  # the same port and store
        assert server.status()["durable"] == (1, 0, 0)  # the finished one was deleted
        c_worker(procs, server, "durable", "sh", "-c", f"cat >> {marker}; echo >> {marker}", count=1,
                 registered=False).wait(30)
        assert marker.read_text().split() == ["first", "second"]
    finally:
        server.stop()


def test_the_start_line_says_where_jobs_are_stored(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    port = free_port()
    with subprocess.Popen([sys.executable, "-m", "gearctl.server", "--port", str(port), "--store", str(store)],
                          stdout=subprocess.PIPE, env=clean_env()) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert f"background jobs are stored in {store} (0 loaded)" in line, line
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
    bad = subprocess.run([sys.executable, "-m", "gearctl.server", "--port", str(port), "--store",
                          str(tmp_path / "no" / "such" / "dir.db")], capture_output=True, timeout=30, env=clean_env())
    assert bad.returncode == 2
    lines = bad.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gearctl: cannot open the job store")


# -- the library, in-process -----------------------------------------------------------

def test_server_in_process_port_0_and_close() -> None:
    async def scenario() -> tuple[int, str | None, str]:
        server = Server("127.0.0.1", 0, hostname="inproc")
        await server.start()
        serving = asyncio.ensure_future(server.serve_forever())
        async with AsyncClient(parse_servers(server.address)) as client:
            job = await client.submit("nobody_serves_this", b"x", background=True)
        queued = server.state.functions[b"nobody_serves_this"].queued
        await server.close()
        await asyncio.wait_for(serving, 10)
        return queued, job.handle, server.address

    queued, handle, address = asyncio.run(scenario())
    assert queued == 1 and handle == "H:inproc:1"
    assert not address.endswith(":0")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), timeout=2).close()


def test_in_process_links_have_tcp_nodelay_and_one_timer_at_the_next_due_job() -> None:
    async def scenario() -> tuple[list[int], float | None, int]:
        server = Server("127.0.0.1", 0)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        due = int(time.time()) + 100
        writer.write(encode(P.SUBMIT_JOB_EPOCH, b"f", b"", str(due + 50).encode(), b"later")
                     + encode(P.SUBMIT_JOB_EPOCH, b"f", b"", str(due).encode(), b"sooner"))
        decoder = Decoder(expect=Magic.RES)
        created = 0
        while created < 2:
            decoder.feed(await reader.read(65536))
            created += len(list(decoder))
        nodelay = [link.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                   for link in server.links.values() if link.transport is not None]
        timer_at = server.timer_at
        writer.close()
        await server.close()
        return nodelay, timer_at, due

    nodelay, timer_at, due = asyncio.run(scenario())
    assert nodelay and all(nodelay)
    assert timer_at == due


async def _until(predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Within an in-process scenario: wait (yielding to the server) for a state."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_client_that_does_not_read_its_answers_is_not_read_from_until_it_does() -> None:
    """Backpressure: 100,000 background submits written without reading a
    JOB_CREATED. The server stops reading that connection once its answers back
    up, so it never takes all of them while they go unread; once the client reads,
    every one is created (none is lost)."""
    count = 100_000

    async def scenario() -> tuple[int, int]:
        server = Server("127.0.0.1", 0)
        await server.start()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small kernel buffers on both sides,
        sock.connect(("127.0.0.1", server.port))                    # so the answers back up in the server
        reader, writer = await asyncio.open_connection(sock=sock)
        await _until(lambda: server.links, "the server to take the connection")
        (link,) = server.links.values()
        assert link.transport is not None
        link.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer.write(b"".join(encode(P.SUBMIT_JOB_BG, b"f", b"", b"%d" % i) for i in range(count)))
        await _until(lambda: not link.transport.is_reading(), "the server to stop reading the client")
        paused_with = len(server.state.jobs)
        decoder, created = Decoder(expect=Magic.RES), 0
        while created < count:
            decoder.feed(await reader.read(1 << 20))
            created += sum(1 for packet in decoder if packet.type is P.JOB_CREATED)
        total = len(server.state.jobs)
        writer.close()
        await server.close()
        return paused_with, total

    paused_with, total = asyncio.run(scenario())
    assert paused_with < count  # paused before it had taken them all
    assert total == count


def test_a_client_that_never_reads_is_dropped_past_max_buffered_and_the_worker_goes_on() -> None:
    """A foreground client that never reads while its job streams 32 MB of
    WORK_DATA: past max_buffered (1 MB here) the server drops it, as a
    disconnect; the worker is not held up and its WORK_COMPLETE is taken."""
    chunk = b"d" * 65536

    async def scenario() -> tuple[int, list[PacketType]]:
        server = Server("127.0.0.1", 0, max_buffered=1 << 20)
        await server.start()
        _, client = await asyncio.open_connection("127.0.0.1", server.port)
        client.write(encode(P.SUBMIT_JOB, b"flood", b"", b"go"))
        worker_r, worker = await asyncio.open_connection("127.0.0.1", server.port)
        worker.write(encode(P.CAN_DO, b"flood") + encode(P.GRAB_JOB))
        decoder = Decoder(expect=Magic.RES)
        assigned = None
        while assigned is None:
            decoder.feed(await worker_r.read(65536))
            assigned = next((p for p in decoder if p.type is P.JOB_ASSIGN), None)
        handle = assigned.args[0]
        for _ in range(512):
            worker.write(encode(P.WORK_DATA, handle, chunk))
            await worker.drain()  # the worker is never held up by the client
        worker.write(encode(P.WORK_COMPLETE, handle, b"done") + encode(P.ECHO_REQ, b"after"))
        answers: list[PacketType] = []
        while P.ECHO_RES not in answers:
            decoder.feed(await worker_r.read(65536))
            answers += [p.type for p in decoder]
        links = len(server.links)
        worker.close()
        client.close()
        await server.close()
        return links, answers

    links, answers = asyncio.run(scenario())
    assert links == 1  # the worker's; the client was dropped
    assert answers == [P.ECHO_RES]  # no ERROR for the WORK_COMPLETE: the job was still known
