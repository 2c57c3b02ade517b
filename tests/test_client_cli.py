"""`gearctl client` against a real gearmand, the C gearman tools and PHP workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    Gearmand,
    Procs,
    Terminal,
    c_worker,
    free_port,
    gearctl,
    php_worker,
    stderr_on_a_terminal,
    wait_until,
)

from gearctl.protocol import Decoder, Magic, PacketType, encode

pytestmark = pytest.mark.conformance  # each test against gearmand and gearctl server

P = PacketType


@pytest.mark.interop
def test_background_submit_prints_handle_and_shows_in_gearadmin(gearmand: Gearmand) -> None:
    result = gearctl("client", "resize", "--data", "img-1", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    handle = result.stdout.decode().strip()
    assert handle.startswith("H:") and "\n" not in handle
    out = subprocess.run(["gearadmin", "-h", "127.0.0.1", "-p", str(gearmand.port), "--status"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "resize\t1\t0\t0" in out.splitlines()


@pytest.mark.parametrize("payload", [
    b"a\0b\0\0c",  # NUL bytes
    bytes(range(256)) * 3,  # every byte value, not UTF-8
    os.urandom(8 * 1024 * 1024),  # 8 MB
], ids=["nul", "binary", "8mb"])
@pytest.mark.interop
def test_c_worker_receives_exact_bytes(gearmand: Gearmand, procs: Procs, tmp_path: Path, payload: bytes) -> None:
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(payload)
    worker = c_worker(procs, gearmand, "store", "sh", "-c", f"cat > {dst}", count=1)
    result = gearctl("client", "store", str(src), "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    worker.wait(30)
    assert dst.read_bytes() == payload


@pytest.mark.interop
def test_payload_from_stdin(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    dst = tmp_path / "out.bin"
    c_worker(procs, gearmand, "store", "sh", "-c", f"cat > {dst}", count=1)
    result = gearctl("client", "store", "-", "--wait", "-s", gearmand.address, input=b"from stdin\0!")
    assert result.returncode == 0, result.stderr
    assert dst.read_bytes() == b"from stdin\0!"


@pytest.mark.interop
def test_wait_prints_the_c_workers_result(gearmand: Gearmand, procs: Procs) -> None:
    c_worker(procs, gearmand, "upper", "tr", "a-z", "A-Z")
    result = gearctl("client", "upper", "--wait", "--data", "hello gearman", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HELLO GEARMAN"


@pytest.mark.interop
def test_work_data_is_streamed_then_the_result(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_data")
    result = gearctl("client", "php_data", "--wait", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"part1;part2;end"


@pytest.mark.interop
def test_work_warning_goes_to_stderr(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_warning")
    result = gearctl("client", "php_warning", "--wait", "-s", gearmand.address)
    assert result.returncode == 0
    assert result.stdout == b"ok"
    assert b"careful now" in result.stderr


@pytest.mark.interop
def test_work_exception_exits_5_with_its_text(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_exception")
    result = gearctl("client", "php_exception", "--wait", "--data", "x1", "-s", gearmand.address)
    assert result.returncode == 5
    assert result.stdout == b""
    err = result.stderr.decode()
    assert "boom: bad input x1" in err and len(err.strip().splitlines()) == 1


@pytest.mark.interop
def test_work_fail_exits_1(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_fail")
    result = gearctl("client", "php_fail", "--wait", "-s", gearmand.address)
    assert result.returncode == 1
    assert b"failed" in result.stderr


@pytest.mark.interop
def test_work_status_progress_only_on_a_tty(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    php_worker(procs, gearmand, "php_status")
    plain = gearctl("client", "php_status", "--wait", "-s", gearmand.address)
    assert plain.returncode == 0 and plain.stdout == b"done"
    assert plain.stderr == b""  # no progress bar when stderr is not a terminal

    # The job sends 2/4 and waits for the test, which releases it once the bar shows.
    release = tmp_path / "release"
    php_worker(procs, gearmand, "php_status_held")
    with Terminal(["client", "php_status_held", "--wait", "--data", str(release), "-s", gearmand.address]) as term:
        term.wait_for(lambda t: "2/4" in t.text() and "php_status_held" in t.text(), what="the progress bar")
        release.touch()
        assert term.proc.wait(60) == 0
        assert term.proc.stdout is not None and term.proc.stdout.read() == b"done"


@pytest.mark.interop
def test_json_output_for_a_foreground_job(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_warning", "php_exception")
    ok = gearctl("client", "php_warning", "--wait", "--json", "-s", gearmand.address)
    record = json.loads(ok.stdout)
    assert ok.returncode == 0
    assert record["status"] == "complete" and record["result"] == "ok" and record["warnings"] == ["careful now"]
    assert record["handle"].startswith("H:") and record["function"] == "php_warning"
    bad = gearctl("client", "php_exception", "--wait", "--json", "--data", "q", "-s", gearmand.address)
    record = json.loads(bad.stdout)
    assert bad.returncode == 5
    assert record["status"] == "exception" and record["error"] == "boom: bad input q"


@pytest.mark.interop
def test_priorities_high_then_normal_then_low(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    order = tmp_path / "order.txt"
    for priority in ("low", "normal", "high"):
        assert gearctl("client", "prio", "--data", priority, "--priority", priority,
                       "-s", gearmand.address).returncode == 0
    c_worker(procs, gearmand, "prio", "sh", "-c", f"cat >> {order}; echo >> {order}", count=3,
             registered=False).wait(20)
    assert order.read_text().split() == ["high", "normal", "low"]


def test_same_unique_gives_one_handle(gearmand: Gearmand) -> None:
    first = gearctl("client", "dedupe", "--unique", "user-42", "--data", "a", "-s", gearmand.address)
    second = gearctl("client", "dedupe", "--unique", "user-42", "--data", "b", "-s", gearmand.address)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert gearmand.queued("dedupe") == 1


def _polling_worker(port: int, function: str, seen: list[float], stop: threading.Event) -> None:
    """A worker that asks for a job every 50 ms: gearmand does not wake sleeping
    workers when a scheduled (epoch) job comes due, so polling shows the real time."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        decoder = Decoder(expect=Magic.RES)
        sock.sendall(encode(P.CAN_DO, function))
        while not stop.is_set():
            sock.sendall(encode(P.GRAB_JOB_UNIQ))
            packet = None
            while packet is None:
                decoder.feed(sock.recv(65536))
                packet = decoder.next()
            if packet.type is P.JOB_ASSIGN_UNIQ:
                seen.append(time.time())
                sock.sendall(encode(P.WORK_COMPLETE, packet.args[0], b""))
                return
            time.sleep(0.05)


def test_in_delays_the_run(gearmand: Gearmand) -> None:
    seen: list[float] = []
    stop = threading.Event()
    worker = threading.Thread(target=_polling_worker, args=(gearmand.port, "later", seen, stop), daemon=True)
    worker.start()
    submitted = time.time()
    result = gearctl("client", "later", "--in", "3s", "--data", "x", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: seen, 15, what="the scheduled job")
    stop.set()
    assert seen[0] - submitted >= 2.0  # the epoch is whole seconds, so at least 2 s after submit
    assert seen[0] - submitted < 30.0  # and not dropped or run at once: well under the 60 s a hang would take


def test_at_in_the_past_and_wait_are_usage_errors(gearmand: Gearmand) -> None:
    past = gearctl("client", "f", "--at", "2001-01-01T00:00:00", "-s", gearmand.address)
    assert past.returncode == 2 and b"in the past" in past.stderr
    both = gearctl("client", "f", "--in", "5s", "--wait", "-s", gearmand.address)
    assert both.returncode == 2
    for bad in ("nan", "inf", "5 fortnights"):
        result = gearctl("client", "f", "--in", bad, "-s", gearmand.address)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert gearmand.queued("f") == 0


def test_no_server_exits_3_with_one_clear_line() -> None:
    port = free_port()
    result = gearctl("client", "f", "--data", "x", "-s", f"127.0.0.1:{port}", "--connect-timeout", "2")
    assert result.returncode == 3
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "refused" in lines[0].lower()
    assert result.stdout == b""


def test_two_servers_one_down_every_job_submitted(gearmand: Gearmand) -> None:
    dead = free_port()
    servers = f"127.0.0.1:{dead},{gearmand.address}"
    lines = b"".join(b"job-%d\n" % i for i in range(500))
    result = gearctl("client", "spread", "-n", "-s", servers, input=lines)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 500
    assert gearmand.queued("spread") == 500
    for i in range(5):  # single submits too, whichever server the rotation starts at
        assert gearctl("client", "spread", "--data", str(i), "-s", servers).returncode == 0
    assert gearmand.queued("spread") == 505


def test_two_live_servers_share_the_jobs(gearmand_factory) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    lines = b"".join(b"%d\n" % i for i in range(1000))
    result = gearctl("client", "split", "-n", "-s", f"{one.address},{two.address}", input=lines)
    assert result.returncode == 0, result.stderr
    assert one.queued("split") + two.queued("split") == 1000
    assert one.queued("split") > 0 and two.queued("split") > 0


def test_invalid_json_exits_2_and_queues_nothing(gearmand: Gearmand) -> None:
    for encoding in ("json", "php"):
        result = gearctl("client", "strict", "--encoding", encoding, "--data", '{"a": 1,', "-s", gearmand.address)
        assert result.returncode == 2
        assert b"invalid JSON" in result.stderr and len(result.stderr.splitlines()) == 1
        as_json = gearctl("client", "strict", "--json", "-e", encoding, "--data", "{", "-s", gearmand.address)
        assert as_json.returncode == 2 and len(as_json.stderr.splitlines()) == 1
        record = json.loads(as_json.stdout)  # one object, as an invalid line of --each-line gets
        assert record["status"] == "invalid" and "invalid JSON" in record["error"] and record["handle"] is None
    assert "strict" not in gearmand.status()


@pytest.mark.interop
def test_php_encoding_reaches_a_php_worker_as_an_array(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_unserialize")
    doc = {"users": [1, 2, 3], "subject": "héllo", "nested": {"ok": True, "none": None, "ratio": 0.5}}
    result = gearctl("client", "php_unserialize", "--wait", "-e", "php", "--data", json.dumps(doc),
                     "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == doc


def test_each_line_queues_exactly_20000(gearmand: Gearmand) -> None:
    lines = b"".join(b"%d\n" % i for i in range(20_000))
    result = gearctl("client", "bulk", "--each-line", "--quiet", "-s", gearmand.address, input=lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert gearmand.queued("bulk") == 20_000


@pytest.mark.interop
def test_each_line_foreground_results_and_failures(gearmand: Gearmand, procs: Procs) -> None:
    c_worker(procs, gearmand, "upper", "tr", "a-z", "A-Z")
    result = gearctl("client", "upper", "-n", "--wait", "--inflight", "1", "-s", gearmand.address,
                     input=b"one\ntwo\nthree\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"ONE", b"TWO", b"THREE"]  # one at a time: input order


def test_each_line_json_records_and_invalid_lines(gearmand: Gearmand) -> None:
    result = gearctl("client", "lines", "-n", "--json", "-e", "json", "-s", gearmand.address,
                     input=b'{"a":1}\nnot json\n[2]\n')
    assert result.returncode == 2  # a line was not valid JSON
    records = {r["line"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(records) == [1, 2, 3]  # every line has its object, the invalid one too
    assert records[1]["status"] == records[3]["status"] == "queued"
    assert records[2]["status"] == "invalid" and "invalid JSON" in records[2]["error"]
    assert b"line 2" in result.stderr
    assert gearmand.queued("lines") == 2


@pytest.mark.interop
def test_require_workers(gearmand: Gearmand, procs: Procs) -> None:
    none = gearctl("client", "needs", "--require-workers", "--data", "x", "-s", gearmand.address)
    assert none.returncode == 6 and b"needs" in none.stderr
    assert gearmand.queued("needs") == 0
    c_worker(procs, gearmand, "needs", "cat")
    ok = gearctl("client", "needs", "--require-workers", "--wait", "--data", "x", "-s", gearmand.address)
    assert ok.returncode == 0 and ok.stdout == b"x"


def test_wait_timeout_exits_4(gearmand: Gearmand) -> None:
    result = gearctl("client", "nobody", "--wait", "--timeout", "0.5", "-s", gearmand.address)
    assert result.returncode == 4
    assert b"did not finish" in result.stderr


def test_a_timeout_of_0_is_no_limit(gearmand: Gearmand) -> None:
    queued = gearctl("client", "later", "--data", "x", "--timeout", "0", "-s", gearmand.address)
    assert queued.returncode == 0 and queued.stdout.startswith(b"H:"), queued  # it timed out at once
    assert gearmand.queued("later") == 1
    status = gearctl("status", "--timeout", "0", "-s", gearmand.address)
    assert status.returncode == 0 and b"later\t" in status.stdout, status


def test_queue_full_is_refused_exit_8(gearmand: Gearmand) -> None:
    assert gearctl("client", "capped", "--data", "1", "-s", gearmand.address).returncode == 0
    assert gearmand.admin("maxqueue capped 1") == ["OK"]
    result = gearctl("client", "capped", "--data", "2", "-s", gearmand.address)
    assert result.returncode == 8
    assert b"QUEUE_ERROR" in result.stderr
    assert gearmand.queued("capped") == 1


def test_unreadable_payload_file_exits_2(gearmand: Gearmand, tmp_path: Path) -> None:
    result = gearctl("client", "f", str(tmp_path / "missing.json"), "-s", gearmand.address)
    assert result.returncode == 2
    assert b"missing.json" in result.stderr and len(result.stderr.splitlines()) == 1


def test_bad_flag_is_one_line_exit_2() -> None:
    result = gearctl("client", "f", "--no-such-flag")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and b"--no-such-flag" in result.stderr


def test_servers_from_environment(gearmand: Gearmand) -> None:
    result = gearctl("client", "envjob", "--data", "x", env={"GEARCTL_SERVERS": gearmand.address})
    assert result.returncode == 0
    assert gearmand.queued("envjob") == 1


def test_console_script_is_installed() -> None:
    import shutil
    import sys

    exe = shutil.which("gearctl") or str(Path(sys.executable).parent / "gearctl")
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("gearctl ")


def test_a_silent_server_is_dropped_and_the_job_fails_over(gearmand: Gearmand) -> None:
    # A server that accepts connections and never answers (hung, or not gearmand).
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        servers = f"127.0.0.1:{port},{gearmand.address}"
        for _ in range(3):  # whichever server the rotation starts with
            result = gearctl("client", "rescued", "--data", "x", "--io-timeout", "1", "-s", servers)
            assert result.returncode == 0, result.stderr
        assert gearmand.queued("rescued") == 3
        alone = gearctl("client", "rescued", "--data", "x", "--io-timeout", "1", "-s", f"127.0.0.1:{port}")
        assert alone.returncode == 3
        assert b"no reply within 1s" in alone.stderr and len(alone.stderr.splitlines()) == 1
    finally:
        silent.close()


def test_jobs_without_a_unique_key_survive_a_persistent_queue_restart(gearmand_factory, tmp_path: Path) -> None:
    server = gearmand_factory("-q", "libsqlite3", "--libsqlite3-db", str(tmp_path / "queue.db"))
    lines = b"".join(b"%d\n" % i for i in range(300))
    assert gearctl("client", "kept", "-n", "-q", "-s", server.address, input=lines).returncode == 0
    assert gearctl("client", "kept", "--data", "one more", "-s", server.address).returncode == 0
    server.kill()
    server.start()
    assert server.queued("kept") == 301  # each job had its own unique key, so none overwrote another


def test_each_line_shows_a_live_table_on_a_terminal(gearmand: Gearmand) -> None:
    code, _, seen = stderr_on_a_terminal(["client", "tabled", "-n", "-q", "-s", gearmand.address],
                                         input=b"".join(b"%d\n" % i for i in range(3000)))
    assert code == 0
    for column in (b"submitted", b"queued", b"failed"):  # background: a job is done once queued
        assert column in seen
    assert b"completed" not in seen and b"created" not in seen
    assert b"3000 submitted, 3000 queued" in seen  # the summary line after the table


def _scripted_worker(port: int, function: str, chunks: list[bytes], result: bytes, stop: threading.Event) -> None:
    """A raw-protocol worker: every job gets WORK_DATA `chunks`, then WORK_COMPLETE `result`."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        decoder = Decoder(expect=Magic.RES)
        sock.sendall(encode(P.CAN_DO, function) + encode(P.GRAB_JOB_UNIQ))
        while not stop.is_set():
            packet = decoder.next()
            if packet is None:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                decoder.feed(data)
                continue
            if packet.type is P.JOB_ASSIGN_UNIQ:
                handle = packet.args[0]
                sock.sendall(b"".join(encode(P.WORK_DATA, handle, c) for c in chunks)
                             + encode(P.WORK_COMPLETE, handle, result) + encode(P.GRAB_JOB_UNIQ))
            elif packet.type is P.NO_JOB:
                sock.sendall(encode(P.PRE_SLEEP))
            elif packet.type is P.NOOP:
                sock.sendall(encode(P.GRAB_JOB_UNIQ))


@pytest.fixture
def scripted(gearmand: Gearmand):
    """Start _scripted_worker threads; they stop with the test."""
    stop = threading.Event()

    def start(function: str, chunks: list[bytes], result: bytes) -> None:
        threading.Thread(target=_scripted_worker, args=(gearmand.port, function, chunks, result, stop),
                         daemon=True).start()
        wait_until(lambda: gearmand.status().get(function, (0, 0, 0))[2] >= 1, 10, what=f"worker for {function}")

    yield start
    stop.set()


PHP_ARRAY = b"a:3:{i:0;i:1;i:1;i:2;i:2;i:3;}"


def test_json_wait_keeps_work_data_out_of_the_result(gearmand: Gearmand, scripted) -> None:
    scripted("partly", [b"partial"], PHP_ARRAY)
    result = gearctl("client", "partly", "--wait", "--json", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["result"] == PHP_ARRAY.decode() and record["data"] == ["partial"]
    assert "result_base64" not in record and "data_base64" not in record
    # --each-line --wait: the same fields, per line.
    lines = gearctl("client", "partly", "-n", "--wait", "--json", "-s", gearmand.address, input=b"1\n2\n")
    assert lines.returncode == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [(r["result"], r["data"]) for r in records] == [(PHP_ARRAY.decode(), ["partial"])] * 2
    # Without --json, WORK_DATA streams ahead of the result, as documented.
    plain = gearctl("client", "partly", "--wait", "-s", gearmand.address)
    assert plain.returncode == 0 and plain.stdout == b"partial" + PHP_ARRAY


def test_json_wait_gives_non_utf8_work_data_as_base64(gearmand: Gearmand, scripted) -> None:
    scripted("binary_data", [b"\xff\x00", b"ok"], b"\xfe")
    result = gearctl("client", "binary_data", "--wait", "--json", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["data"] is None and record["data_base64"] == ["/wA=", "b2s="]
    assert record["result"] is None and record["result_base64"] == "/g=="


@pytest.mark.interop
def test_json_wait_from_a_php_worker_has_data_and_result_apart(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_data")
    record = json.loads(gearctl("client", "php_data", "--wait", "--json", "-s", gearmand.address).stdout)
    assert record["result"] == "end" and record["data"] == ["part1;", "part2;"]
    background = json.loads(gearctl("client", "php_data", "--json", "-s", gearmand.address).stdout)
    assert background["status"] == "queued" and "data" not in background
