"""`gearctl client` when things go wrong: closed pipes, slow input, bad servers, odd input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, clean_env, free_port, gearctl, php_worker, wait_until
from fake_server import FakeServer, serving

GEARCTL = [sys.executable, "-m", "gearctl"]


def _garbage(conn: socket.socket, stop: threading.Event) -> None:
    """Answers the first read with bytes that are not Gearman, then closes."""
    if conn.recv(65536):
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    stop.wait(0.2)


def _web(conn: socket.socket, stop: threading.Event) -> None:
    """A web server on the wrong port: silent until a line ends, then "400 Bad
    Request", and the connection stays open (keep-alive)."""
    conn.settimeout(0.2)
    buf = b""
    while not stop.is_set():
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return
        buf += chunk
        if b"\n" in buf:
            buf = b""
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def _greeting(conn: socket.socket, stop: threading.Event) -> None:
    """Speaks first, in another protocol (as SSH or SMTP do), then waits."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    stop.wait(30)


@pytest.fixture
def garbage_server() -> Iterator[int]:
    yield from serving(_garbage)


@pytest.fixture
def http_server() -> Iterator[int]:
    yield from serving(_web)


@pytest.fixture
def greeting_server() -> Iterator[int]:
    yield from serving(_greeting)


@pytest.mark.parametrize("args", [
    ["client", "f", "--data", "x"],  # background: a SUBMIT_JOB_BG holds no line end
    ["client", "f", "--data", "x", "--wait"],
    ["client", "f", "-n", "--data", "a\nb"],
    ["client", "f", "-n", "--wait", "--data", "a"],
    ["client", "f", "--require-workers", "--data", "x"],  # asks the admin port first
    ["job", "H:host:1"],  # GET_STATUS
], ids=["background", "wait", "each-line", "each-line-wait", "require-workers", "job-status"])
def test_a_web_server_on_the_port_fails_at_once_with_exit_7(http_server: int, args: list[str]) -> None:
    # The default --io-timeout is 30 s: a client that waits for it exits 3, and late.
    result = gearctl(*args, "-s", f"127.0.0.1:{http_server}", timeout=60)
    assert result.returncode == 7, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(b"gearctl: ") and b"an HTTP server, not gearmand" in first, result.stderr


@pytest.fixture
def python_http_server() -> Iterator[int]:
    """Python's own http.server: it takes an admin line for an HTTP/0.9 request and
    answers with an error page alone, no status line (a new user's wrong port)."""
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("web", ["http_server", "python_http_server"])
@pytest.mark.parametrize("command", [["status"], ["workers"], ["jobs"], ["version"], ["cancel", "H:x:1"],
                                     ["drop", "f"], ["dead", "list"]], ids=lambda c: c[0])
def test_admin_commands_call_a_web_server_a_protocol_error(web: str, command: list[str],
                                                           request: pytest.FixtureRequest) -> None:
    # Exit 7 as the client's (a wrong port), where a server that is down is 3; they said 3.
    port = request.getfixturevalue(web)
    result = gearctl(*command, "-s", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 7, result
    assert b"an HTTP server, not gearmand" in result.stdout + result.stderr
    down = gearctl(*command, "-s", f"127.0.0.1:{free_port()}", timeout=60)
    assert down.returncode == 3, down


def test_ping_says_a_web_server_is_not_gearman(http_server: int) -> None:
    # Its echo holds a line end, so the web server answers at once: the reason is
    # the bad magic, not a --io-timeout (30 s by default) run out.
    result = gearctl("ping", "-s", f"127.0.0.1:{http_server}", timeout=60)
    assert result.returncode == 7  # a protocol error, as the client says (a server down is 3)
    assert b"\tdown\t" in result.stdout and b"an HTTP server, not gearmand" in result.stdout, result.stdout


def test_a_worker_pointed_at_a_web_server_says_so(http_server: int, procs: Procs, tmp_path) -> None:
    log = tmp_path / "worker.log"
    with open(log, "wb") as err:
        procs.start([*GEARCTL, "worker", "-p", str(Path(__file__).parent / "plugins"), "-s",
                     f"127.0.0.1:{http_server}", "--log-format", "json"], stderr=err)
    # Before the probe it sat "connected", registering nothing and saying nothing.
    wait_until(lambda: b"bad magic" in log.read_bytes(), 30, what="the worker reporting a non-Gearman server")
    assert b"connected again" not in log.read_bytes()  # it never was: it is not gearmand


def test_a_burst_worker_pointed_at_a_web_server_exits_3(http_server: int) -> None:
    # README: --burst exits 3 when no server is reachable; one that is not gearmand is none.
    done = gearctl("worker", "-p", str(Path(__file__).parent / "plugins"), "--burst", "-s",
                   f"127.0.0.1:{http_server}", timeout=60)
    assert done.returncode == 3, done.stderr
    assert b"bad magic" in done.stderr


def test_require_workers_is_bounded_by_the_io_timeout() -> None:
    from test_admin_timeouts import SilentServer

    silent = SilentServer()
    try:
        result = gearctl("client", "f", "--require-workers", "--data", "x", "-s", silent.address,
                         "--connect-timeout", "60", "--io-timeout", "0.3", timeout=60)
    finally:
        silent.close()
    assert result.returncode in (3, 4), result.stderr
    # A fixed 5 s wait said "no reply within 5s"; the documented one names itself.
    assert b"0.3s" in result.stderr and b"io-timeout" in result.stderr, result.stderr


def test_a_server_greeting_in_another_protocol_fails_over_or_exits_7(gearmand: Gearmand,
                                                                     greeting_server: int) -> None:
    other = f"127.0.0.1:{greeting_server}"
    for args in (["--data", "x"], ["--data", "x", "--wait", "--timeout", "30"], ["-n", "--data", "a\nb\nc"]):
        alone = gearctl("client", "greeted", *args, "-s", other)
        assert alone.returncode == 7, alone.stderr
        assert b"bad magic b'SSH-'" in alone.stderr.splitlines()[0]
    for _ in range(3):  # whichever server the rotation starts with, the job reaches gearmand
        both = gearctl("client", "greeted", "--data", "x", "-s", f"{other},{gearmand.address}")
        assert both.returncode == 0, both.stderr
    lines = gearctl("client", "greeted", "-n", "-q", "-s", f"{other},{gearmand.address}", input=b"1\n2\n3\n4\n")
    assert lines.returncode == 0, lines.stderr
    assert gearmand.queued("greeted") == 3 + 4


def test_closed_stdout_stops_quietly_without_duplicates(gearmand: Gearmand) -> None:
    lines = b"".join(b"%d\n" % i for i in range(20_000))
    proc = subprocess.run(f"{sys.executable} -m gearctl client hd -n -s {gearmand.address} | head -1",
                          shell=True, env=clean_env(), input=lines, capture_output=True, timeout=60,
                          executable="/bin/bash")
    assert proc.stdout.startswith(b"H:")
    assert proc.stderr == b""
    # What was queued before the pipe closed, each line once: the C worker prints
    # each workload it takes (no separator), so lines of distinct widths tell.
    queued = gearmand.queued("hd")
    assert queued >= 1
    drained = subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(gearmand.port), "-w", "-f", "hd", "-c",
                              str(queued)], capture_output=True, timeout=60).stdout
    expected = b"".join(b"%d" % i for i in range(queued))
    assert drained == expected  # in order, none twice, none skipped


@pytest.mark.parametrize("wait", [[], ["--wait"]], ids=["background", "wait"])
def test_closed_stdout_during_an_outage_exits_141(wait: list[str]) -> None:
    # Each job fails (no server), its --json record hits a closed pipe: that must end
    # the run with 141, not pass for the job's own failure and leave the run waiting.

    # 20,000 records are far more than a pipe holds, so the pipe closes mid-run.
    proc = subprocess.run(f"seq 1 20000 | {sys.executable} -m gearctl client f --each-line --json {' '.join(wait)} "
                          f"-s 127.0.0.1:{free_port()} | head -1; echo ${{PIPESTATUS[1]}} >&2", shell=True,
                          env=clean_env(), capture_output=True, timeout=60, executable="/bin/bash")
    assert proc.stdout.count(b"\n") == 1 and b'"status":"error"' in proc.stdout
    assert proc.stderr == b"141\n"


def test_exit_code_141_when_stdout_closes(gearmand: Gearmand) -> None:
    with subprocess.Popen([*GEARCTL, "client", "early", "-n", "-s", gearmand.address], env=clean_env(),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stdin.write(b"".join(b"%d\n" % i for i in range(5000)))
        proc.stdin.close()
        assert proc.wait(30) == 141
        assert proc.stderr.read() == b""


def test_no_stdout_at_all_is_not_a_crash(gearmand: Gearmand) -> None:
    result = subprocess.run(f"{sys.executable} -m gearctl client closed --data x -s {gearmand.address} >&-",
                            shell=True, env=clean_env(), capture_output=True, timeout=30, executable="/bin/bash")
    assert result.returncode == 0, result.stderr
    assert gearmand.queued("closed") == 1


def test_lines_are_submitted_as_they_arrive(gearmand: Gearmand) -> None:
    with subprocess.Popen([*GEARCTL, "client", "stream", "-n", "-s", gearmand.address], env=clean_env(),
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdin is not None
        try:
            proc.stdin.write(b"first\n")
            proc.stdin.flush()
            wait_until(lambda: gearmand.queued("stream") == 1, 10, what="the first line's job")
            proc.stdin.write(b"second\n")
            proc.stdin.close()
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert gearmand.queued("stream") == 2


def test_timeout_with_each_line_says_what_was_not_submitted(gearmand: Gearmand) -> None:
    proc = subprocess.Popen([*GEARCTL, "client", "nobody", "-n", "--wait", "--inflight", "2", "--timeout", "1",
                             "--json", "-s", gearmand.address], env=clean_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(b"".join(b"%d\n" % i for i in range(10)), timeout=30)
    assert proc.returncode == 4
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2 and all(r["status"] == "timeout" for r in records)
    assert b"input from line 3 on was not submitted" in err


@pytest.mark.parametrize(("flags", "code", "said"), [
    (["--wait", "--timeout", "1"], 4, b"input from line 2 on was not submitted"),  # no worker: it times out
    (["-e", "json", "--max-errors", "1"], 2, b"no input after line 1 was submitted"),  # line 1 is not JSON
])
def test_a_run_that_ends_before_its_input_exits_with_its_own_code(gearmand: Gearmand, flags: list[str],
                                                                  code: int, said: bytes) -> None:
    # The producer keeps stdin open, so the reader thread is still blocked reading
    # when the run ends: the exit must not abort on stdin's lock (it was 134).
    with subprocess.Popen([*GEARCTL, "client", "nobody", "-n", *flags, "-s", gearmand.address], env=clean_env(),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        try:
            proc.stdin.write(b"{\n")
            proc.stdin.flush()
            assert proc.wait(60) == code
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdin.close()
    assert b"Fatal Python error" not in err
    assert said in err


def test_protocol_error_exits_7(garbage_server: int) -> None:
    result = gearctl("client", "f", "--data", "x", "-s", f"127.0.0.1:{garbage_server}")
    assert result.returncode == 7
    assert b"bad magic" in result.stderr and len(result.stderr.splitlines()) == 1


def test_jobs_fail_over_from_a_server_speaking_nonsense(gearmand: Gearmand, garbage_server: int) -> None:
    lines = b"".join(b"%d\n" % i for i in range(2000))
    result = gearctl("client", "pg", "-n", "-q", "-s", f"127.0.0.1:{garbage_server},{gearmand.address}",
                     input=lines, timeout=60)
    assert result.returncode == 0, result.stderr
    assert gearmand.queued("pg") == 2000


def test_bad_tls_file_is_a_usage_error_in_each_line_mode(gearmand: Gearmand) -> None:
    result = gearctl("client", "f", "-n", "--tls-ca", "/nonexistent/ca.pem", "-s", gearmand.address,
                     input=b"a\n", timeout=30)
    assert result.returncode == 2
    assert b"TLS" in result.stderr and len(result.stderr.splitlines()) == 1


def test_each_line_keeps_the_refusal_exit_code(gearmand: Gearmand) -> None:
    assert gearctl("client", "capped", "--data", "0", "-s", gearmand.address).returncode == 0
    assert gearmand.admin("maxqueue capped 1") == ["OK"]
    result = gearctl("client", "capped", "-n", "-s", gearmand.address, input=b"a\nb\n")
    assert result.returncode == 8
    assert b"QUEUE_ERROR" in result.stderr


def test_each_line_wait_reports_warnings(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_warning")
    result = gearctl("client", "php_warning", "-n", "--wait", "-s", gearmand.address, input=b"1\n2\n")
    assert result.returncode == 0
    assert result.stdout.split() == [b"ok", b"ok"]
    assert result.stderr.count(b"warning: careful now") == 2


def test_json_says_timeout_for_a_job_never_created() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        result = gearctl("client", "f", "--json", "--timeout", "1", "-s", f"127.0.0.1:{silent.getsockname()[1]}")
        assert result.returncode == 4
        assert json.loads(result.stdout)["status"] == "timeout"
    finally:
        silent.close()


def test_json_record_when_no_worker_is_registered(gearmand: Gearmand) -> None:
    result = gearctl("client", "lonely", "--json", "--require-workers", "-s", gearmand.address)
    assert result.returncode == 6
    record = json.loads(result.stdout)
    assert record["status"] == "error" and "lonely" in record["error"]


def test_odd_input_gets_clear_answers(gearmand: Gearmand, tmp_path) -> None:
    bad_unique = gearctl("client", "uq", "--unique", "k\udcff", "--data", "x", "-s", gearmand.address,
                         env={"PYTHONUTF8": "1"})
    assert bad_unique.returncode == 0, bad_unique.stderr
    too_long = gearctl("client", "f" * 9000, "--data", "x", "-s", gearmand.address)
    assert too_long.returncode == 2 and b"8191" in too_long.stderr
    directory = gearctl("client", "f", "-n", str(tmp_path), "-s", gearmand.address)
    assert directory.returncode == 2 and b"directory" in directory.stderr
    nowhere = gearctl("client", "f", "--data", "x", "-s", "no-such-host.invalid", "--connect-timeout", "5")
    assert nowhere.returncode == 3 and b"cannot resolve host" in nowhere.stderr


def test_unique_keys_land_on_the_same_server_whatever_the_order(gearmand_factory) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    for order in (f"{one.address},{two.address}", f"{two.address},{one.address}"):
        for key in range(20):
            assert gearctl("client", "co", "--unique", f"key-{key}", "-s", order).returncode == 0
    assert one.queued("co") + two.queued("co") == 20


def test_interrupt_is_one_line_and_130(gearmand: Gearmand) -> None:
    proc = subprocess.Popen([*GEARCTL, "client", "forever", "--wait", "-s", gearmand.address], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: gearmand.queued("forever") == 1, 10, what="the job")
    proc.send_signal(2)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [b"gearctl: interrupted"]


def test_debug_env_is_parsed_as_a_flag() -> None:
    quiet = gearctl("client", "f", "--in", "bogus", env={"GEARCTL_DEBUG": "0"})
    assert quiet.returncode == 2 and b"Traceback" not in quiet.stderr
    loud = gearctl("client", "f", "--in", "bogus", env={"GEARCTL_DEBUG": "1"})
    assert loud.returncode == 2 and b"Traceback" in loud.stderr


def _redis(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"-ERR unknown command 'version'\r\n")
    stop.wait(30)


def _drip(conn: socket.socket, stop: threading.Event) -> None:
    # A status answer that never ends, one row every 0.2 s: never silent for --io-timeout.
    conn.recv(65536)
    n = 0
    while not stop.wait(0.2):
        conn.sendall(b"f%d\t0\t0\t0\n" % n)
        n += 1


def test_a_one_line_answer_that_is_no_version_is_not_gearmand() -> None:
    redis = FakeServer(_redis)
    try:
        result = gearctl("version", "-s", redis.address, timeout=60)
    finally:
        redis.close()
    assert result.returncode == 7, result.stdout  # it was 0, with the error text as the "version"
    assert b"not a gearmand admin port" in result.stdout


@pytest.mark.parametrize("command", [["status"], ["check"], ["workers"]])
def test_an_answer_that_never_ends_is_given_up_on(command: list[str]) -> None:
    drip = FakeServer(_drip)
    try:
        started = time.monotonic()
        result = gearctl(*command, "-s", drip.address, "--connect-timeout", "1", "--io-timeout", "1", timeout=60)
        took = time.monotonic() - started
    finally:
        drip.close()
    assert result.returncode in (2, 3), result  # check: CRITICAL (a server down)
    assert b"was not whole within 2s" in result.stdout + result.stderr
    assert took < 30  # it hung until killed before
