"""`gearctl worker`, `functions` and `run` with real plugins, gearmand, PHP and the C tools."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHP_DIR, Gearmand, Procs, Terminal, clean_env, gearctl, table_cells, wait_until

pytestmark = pytest.mark.conformance  # each test against gearmand and gearctl server

PLUGINS = Path(__file__).parent / "plugins"
GEARCTL = [sys.executable, "-m", "gearctl"]


def start_worker(procs: Procs, server: Gearmand, *args: str, plugin_dir: Path = PLUGINS,
                 expect: tuple[str, ...] = ("reverse",), log: Path | None = None) -> subprocess.Popen:
    argv = [*GEARCTL, "worker", "-p", str(plugin_dir), "-s", server.address, "--log-format", "json", *args]
    if log is None:
        proc = procs.start(argv, env=clean_env())
    else:
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            proc = procs.start(argv, env=clean_env(), stderr=out)
    wait_until(lambda: all(server.status().get(f, (0, 0, 0))[2] >= 1 for f in expect), 15,
               what=f"gearctl worker registering {expect}")
    return proc


def gearadmin_workers(server: Gearmand) -> str:
    return subprocess.run(["gearadmin", "-h", "127.0.0.1", "-p", str(server.port), "--workers"],
                          capture_output=True, text=True, timeout=10).stdout


@pytest.mark.interop
def test_php_serialize_reaches_the_plugin_as_the_same_structure(gearmand: Gearmand, procs: Procs) -> None:
    start_worker(procs, gearmand, expect=("notifications_send_users",))
    doc = {"uids": [1, 2, 3], "subject": "héllo", "options": {"urgent": True, "ratio": 0.25, "none": None}}
    result = subprocess.run(["php", str(PHP_DIR / "client.php"), gearmand.address, "notifications_send_users",
                             json.dumps(doc)], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"data": doc, "calls": 1}


def test_hook_and_decorator_plugins_both_serve(gearmand: Gearmand, procs: Procs) -> None:
    start_worker(procs, gearmand, expect=("reverse", "notifications_send_users"))
    assert gearctl("client", "reverse", "--wait", "--data", "abc", "-s", gearmand.address).stdout == b"cba"
    hooked = gearctl("client", "notifications_send_users", "--wait", "--data", '{"a": 1}', "-s", gearmand.address)
    assert json.loads(hooked.stdout) == {"data": {"a": 1}, "calls": 1}
    again = gearctl("client", "notifications_send_users", "--wait", "--data", "[]", "-s", gearmand.address)
    assert json.loads(again.stdout)["calls"] == 2  # the context is the plugin's, kept between jobs


@pytest.mark.interop
def test_functions_flag_limits_registration(gearmand: Gearmand, procs: Procs) -> None:
    start_worker(procs, gearmand, "--functions", "reverse,boom", "--id", "limited", expect=("reverse", "boom"))
    line = next(line for line in gearadmin_workers(gearmand).splitlines() if " limited " in line)
    assert sorted(line.split(" : ")[1].split()) == ["boom", "reverse"]


def test_exception_exits_5_and_the_worker_goes_on(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    start_worker(procs, gearmand, expect=("boom", "reverse"), log=log)
    failed = gearctl("client", "boom", "--wait", "--data", "bad-input", "-s", gearmand.address)
    assert failed.returncode == 5
    assert b"ValueError: cannot handle bad-input" in failed.stderr
    assert gearctl("client", "reverse", "--wait", "--data", "next", "-s", gearmand.address).stdout == b"txen"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    boom = next(r for r in records if r.get("function") == "boom")
    assert boom["event"] == "exception" and "Traceback" in boom["traceback"]


def test_timeout_fails_the_job_and_the_worker_goes_on(gearmand: Gearmand, procs: Procs) -> None:
    start_worker(procs, gearmand, expect=("sleepy", "reverse"))
    slow = gearctl("client", "sleepy", "--wait", "-s", gearmand.address, timeout=20)
    assert slow.returncode == 1
    assert b"timed out after 1s" in slow.stderr
    assert gearctl("client", "reverse", "--wait", "--data", "ok", "-s", gearmand.address).stdout == b"ko"
    assert gearmand.status()["sleepy"][:2] == (0, 0)  # not re-queued, not running


def test_command_function_round_trips_bytes(gearmand: Gearmand, procs: Procs) -> None:
    start_worker(procs, gearmand, expect=("bytes_cat", "failing_cmd"))
    payload = bytes(range(256)) * 40 + b"\0\0end"
    result = gearctl("client", "bytes_cat", "-", "--wait", "-s", gearmand.address, input=payload)
    assert result.returncode == 0 and result.stdout == payload
    failing = gearctl("client", "failing_cmd", "--wait", "-s", gearmand.address)
    assert failing.returncode == 5 and b"disk full" in failing.stderr


def test_async_function_streams_data_status_and_warnings(gearmand: Gearmand, procs: Procs) -> None:
    start_worker(procs, gearmand, expect=("progress",))
    result = gearctl("client", "progress", "--wait", "--data", "[1, 2, 3]", "-s", gearmand.address)
    assert result.returncode == 0
    assert result.stdout == b'part1;part2;part3;{"total":6}'
    assert b"almost done" in result.stderr


def test_a_broken_plugin_is_reported_and_the_others_work(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    shutil.copytree(PLUGINS, plugin_dir)
    (plugin_dir / "broken.py").write_text("import gearctl_no_such_module\n")
    log = tmp_path / "worker.log"
    start_worker(procs, gearmand, plugin_dir=plugin_dir, log=log)
    assert gearctl("client", "reverse", "--wait", "--data", "yes", "-s", gearmand.address).stdout == b"sey"
    text = log.read_text()
    assert "broken.py" in text and "gearctl_no_such_module" in text


def test_missing_function_exits_2(gearmand: Gearmand) -> None:
    result = gearctl("worker", "-p", str(PLUGINS), "--functions", "reverse,nope", "-s", gearmand.address)
    assert result.returncode == 2
    assert b"no plugin defines 'nope'" in result.stderr


def test_same_name_in_two_files_names_both(tmp_path: Path) -> None:
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("from gearctl import job\n\n@job('dup')\ndef f(j):\n    return b''\n")
    result = gearctl("worker", "-p", str(tmp_path), "--functions", "dup")
    assert result.returncode == 2
    assert b"a.py" in result.stderr and b"b.py" in result.stderr


def test_sigterm_stops_the_worker_cleanly(gearmand: Gearmand, procs: Procs) -> None:
    proc = start_worker(procs, gearmand)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(15) == 0
    wait_until(lambda: gearmand.status().get("reverse", (0, 0, 1))[2] == 0, 10, what="the worker to leave")


def test_functions_lists_both_forms(tmp_path: Path) -> None:
    result = gearctl("functions", "-p", str(PLUGINS), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)["functions"]}
    assert rows["sleepy"]["timeout"] == 1 and rows["sleepy"]["file"].endswith("decorated.py")
    assert rows["progress"]["kind"] == "async" and rows["progress"]["encoding"] == "json"
    assert rows["bytes_cat"]["kind"] == "command" and rows["bytes_cat"]["command"] == ["cat"]
    assert rows["notifications_send_users"]["timeout"] == 30
    table = gearctl("functions", "-p", str(PLUGINS))
    assert b"reverse" in table.stdout and b"decorated.py" in table.stdout
    (tmp_path / "broken.py").write_text("raise RuntimeError('nope')\n")
    broken = gearctl("functions", "-p", str(tmp_path))
    assert broken.returncode == 2 and b"RuntimeError: nope" in broken.stderr


def test_run_exits_1_when_the_function_fails_the_job(tmp_path: Path) -> None:
    # JobFailed is WORK_FAIL: `client --wait` exits 1 for it; `run` exited 0, silently.
    (tmp_path / "failing.py").write_text("from gearctl import JobFailed, job\n\n@job\n"
                                         "def nope(job):\n    raise JobFailed('not today')\n")
    failed = gearctl("run", "nope", "-p", str(tmp_path))
    assert failed.returncode == 1 and failed.stderr == b"gearctl: nope failed: not today\n"
    as_json = gearctl("run", "nope", "-p", str(tmp_path), "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["status"] == "failed"


def test_a_missing_plugin_directory_is_called_missing(tmp_path: Path) -> None:
    missing = gearctl("run", "reverse", "-p", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert f"{tmp_path / 'nowhere'}: no such plugin directory".encode() in missing.stderr  # was "not a directory"
    (tmp_path / "a-file").write_text("")
    assert b"a-file: not a directory" in gearctl("run", "reverse", "-p", str(tmp_path / "a-file")).stderr


def test_run_debugs_a_function_without_a_server() -> None:
    ok = gearctl("run", "reverse", "-p", str(PLUGINS), "--data", "abc")
    assert ok.returncode == 0 and ok.stdout == b"cba"
    streamed = gearctl("run", "progress", "-p", str(PLUGINS), "--data", "[5]")
    assert streamed.stdout == b'part1;part2;part3;{"total":5}'
    assert b"status: 3/3" in streamed.stderr and b"warning: almost done" in streamed.stderr
    boom = gearctl("run", "boom", "-p", str(PLUGINS), "--data", "x")
    assert boom.returncode == 5 and b"ValueError: cannot handle x" in boom.stderr
    slow = gearctl("run", "sleepy", "-p", str(PLUGINS), timeout=30)
    assert slow.returncode == 4
    as_json = json.loads(gearctl("run", "progress", "-p", str(PLUGINS), "--data", "[1]", "--json").stdout)
    assert as_json["status"] == "complete" and as_json["progress"][-1] == [3, 3]


def test_plugin_path_from_environment() -> None:
    result = gearctl("run", "reverse", "--data", "env", env={"GEARCTL_PLUGIN_PATH": str(PLUGINS)})
    assert result.stdout == b"vne"


@pytest.mark.parametrize("prefetch", ["1", "8"])
def test_worker_drains_a_queue(gearmand: Gearmand, procs: Procs, prefetch: str) -> None:
    lines = b"".join(b"%d\n" % i for i in range(500))
    assert gearctl("client", "reverse", "-n", "-q", "-s", gearmand.address, input=lines).returncode == 0
    start_worker(procs, gearmand, "--prefetch", prefetch, "--log-level", "warning")
    wait_until(lambda: gearmand.queued("reverse") == 0, 30, what="the queue to drain")


def test_live_table_on_a_terminal(gearmand: Gearmand) -> None:
    with Terminal(["worker", "-p", str(PLUGINS), "-s", gearmand.address, "--id", "tty-worker"],
                  stdout_too=True) as term:
        wait_until(lambda: gearmand.status().get("reverse", (0, 0, 0))[2] >= 1, 15, what="the worker")
        assert gearctl("client", "reverse", "--wait", "--data", "tty", "-s", gearmand.address).returncode == 0
        assert gearctl("client", "boom", "--wait", "--data", "x", "-s", gearmand.address).returncode == 5

        def counted(t: Terminal) -> bool:  # function, done, failed, retried, dead, running, last error
            rows = {row[0]: row for row in table_cells(t.frame("gearctl worker")) if len(row) == 7}
            return (rows.get("reverse", [])[1:5] == ["1", "0", "0", "0"]
                    and rows.get("boom", [])[1:5] == ["0", "1", "0", "1"] and "cannot handle x" in rows["boom"][6])

        # boom has no retries: the job failed for good and went to boom.dead (dead letters are on by default)
        term.wait_for(counted, what="one reverse done, one boom failed with its error and kept as dead")
        frame = term.frame("gearctl worker")
        assert "gearctl worker tty-worker serving" in frame
        assert all(column in frame for column in ("pid", "state", "memory", "uptime", " MB"))
        os.kill(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(15) == 0


CHATTY = '''
print("chatty: imported")
from gearctl import job


@job
def chatty(j):
    print("chatty: in the job")
    return b"the result"


def gearman_functions():
    print("chatty: in the hook")
    return []
'''


def test_a_plugins_print_goes_to_stderr_everywhere(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "chatty"
    plugin_dir.mkdir()
    (plugin_dir / "chatty.py").write_text(CHATTY)
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = procs.start([*GEARCTL, "worker", "-p", str(plugin_dir), "-s", gearmand.address], env=clean_env(),
                           stdout=o, stderr=e)
    wait_until(lambda: gearmand.status().get("chatty", (0, 0, 0))[2] >= 1, 15, what="the worker")
    assert gearctl("client", "chatty", "--wait", "-s", gearmand.address).stdout == b"the result"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(15) == 0
    assert out.read_bytes() == b""
    assert all(f"chatty: {where}".encode() in err.read_bytes() for where in ("imported", "in the hook", "in the job"))

    ran = gearctl("run", "chatty", "-p", str(plugin_dir))
    assert ran.returncode == 0 and ran.stdout == b"the result"
    assert b"chatty: in the job" in ran.stderr and b"chatty: in the hook" in ran.stderr
    listed = gearctl("functions", "-p", str(plugin_dir), "--json")
    assert listed.returncode == 0
    assert [f["name"] for f in json.loads(listed.stdout)["functions"]] == ["chatty"]
    assert b"chatty: imported" in listed.stderr and b"chatty: in the hook" in listed.stderr
