"""`gearctl worker` under supervision: processes, signals, recycling, reload, outages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, child_pids, clean_env, gearctl, wait_until

PLUGINS = Path(__file__).parent / "plugins_sup"
GEARCTL = [sys.executable, "-m", "gearctl"]


class Run:
    """A supervised worker with its record file and JSON log; `release` is the
    file whose creation lets its `held` jobs (plugins_sup/held.py) finish."""

    def __init__(self, procs: Procs, server: Gearmand, tmp: Path, *args: str, plugin_dir: Path = PLUGINS,
                 servers: str | None = None, wait: bool = True) -> None:
        self.record = tmp / "record.txt"
        self.record.touch()
        self.release = tmp / "release"
        self.log = tmp / f"worker-{time.monotonic_ns()}.log"
        env = clean_env(GEARCTL_TEST_RECORD=str(self.record), GEARCTL_TEST_RELEASE=str(self.release))
        argv = [*GEARCTL, "worker", "-p", str(plugin_dir), "-s", servers or server.address, "--log-format", "json",
                *args]
        with open(self.log, "wb") as out:
            self.proc = procs.start(argv, env=env, stderr=out)
        if wait:
            wait_until(lambda: server.status().get("nap", (0, 0, 0))[2] >= 1, 15, what="the worker")

    def runs(self) -> list[str]:
        return [line.split()[0] for line in self.record.read_text().splitlines()]

    def run_pids(self) -> list[int]:
        return [int(line.split()[1]) for line in self.record.read_text().splitlines()]

    def children(self) -> list[int]:
        return child_pids(self.proc.pid)

    def new_children(self, old: list[int]) -> list[int]:
        """The children, once they are not `old` (one look: a child may be reaped between two)."""
        kids = self.children()
        return kids if kids and kids != old else []

    def log_records(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out


def submit(server: Gearmand, *workloads: str, wait: bool = False, function: str = "nap") -> None:
    lines = "".join(f"{w}\n" for w in workloads).encode()
    args = ["client", function, "-n", "-q", "-s", server.address] + (["--wait"] if wait else [])
    assert gearctl(*args, input=lines).returncode == 0


def running(server: Gearmand, function: str = "held") -> int:
    return server.status().get(function, (0, 0, 0))[1]


def waiting_client(server: Gearmand, workload: str) -> subprocess.Popen:
    """`gearctl client held --wait` in the background: it prints the result once the job ends."""
    return subprocess.Popen([*GEARCTL, "client", "held", "--wait", "--data", workload, "-s", server.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())


def test_kill_9_of_a_child_mid_job_respawns_and_the_job_completes(gearmand: Gearmand, procs: Procs,
                                                                  tmp_path: Path) -> None:
    run = Run(procs, gearmand, tmp_path)
    client = waiting_client(gearmand, "victim")
    wait_until(lambda: running(gearmand) == 1, 30, what="the job to run")
    (first,) = run.children()
    os.kill(first, signal.SIGKILL)  # the job is held open by us: it is still running
    (second,) = wait_until(lambda: run.new_children([first]), 30, what="a new child")
    run.release.touch()  # whenever the new child gets the job back, it finishes it
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    assert out == b"rested victim"
    assert run.runs() == ["victim"] and run.run_pids() == [second]  # the killed run never recorded


def test_sigterm_lets_the_running_job_finish_and_exits_0(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    run = Run(procs, gearmand, tmp_path)
    client = waiting_client(gearmand, "last")
    wait_until(lambda: running(gearmand) == 1, 30, what="the job to run")
    os.kill(run.proc.pid, signal.SIGTERM)  # the job is held open by us: it is still running
    wait_until(lambda: _log_lines(run, "SIGTERM: stopping 1 worker"), 30, what="the supervisor to start stopping")
    run.release.touch()
    assert run.proc.wait(60) == 0
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0 and out == b"rested last"
    assert run.runs() == ["last"]
    assert gearmand.status()["held"][:2] == (0, 0)


def test_max_jobs_recycles_children_and_every_job_completes(gearmand: Gearmand, procs: Procs,
                                                            tmp_path: Path) -> None:
    run = Run(procs, gearmand, tmp_path, "--max-jobs", "10", "--concurrency", "2")
    submit(gearmand, *(f"j{i}:0" for i in range(50)))
    wait_until(lambda: len(run.runs()) == 50, 60, what="50 jobs")
    assert sorted(run.runs()) == sorted(f"j{i}:0" for i in range(50))
    pids = {line.split()[1] for line in run.record.read_text().splitlines()}
    assert len(pids) >= 5  # 50 jobs, at most 10 per process


def test_burst_exits_0_once_the_queue_is_empty(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    submit(gearmand, *(f"b{i}:0.01" for i in range(30)))
    run = Run(procs, gearmand, tmp_path, "--burst", "--concurrency", "2", wait=False)
    assert run.proc.wait(60) == 0
    assert sorted(run.runs()) == sorted(f"b{i}:0.01" for i in range(30))
    assert gearmand.status()["nap"][:2] == (0, 0)


def test_burst_with_no_server_exits_3(procs: Procs, tmp_path: Path, gearmand: Gearmand) -> None:
    run = Run(procs, gearmand, tmp_path, "--burst", "--connect-timeout", "1", servers="127.0.0.1:1", wait=False)
    assert run.proc.wait(60) == 3


def test_sighup_picks_up_a_new_plugin_file(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    shutil.copytree(PLUGINS, plugin_dir)
    run = Run(procs, gearmand, tmp_path, "--concurrency", "2", "--id", "reloading", plugin_dir=plugin_dir)
    (plugin_dir / "added.py").write_text("from gearctl import job\n\n@job\ndef added_later(j):\n    return b'new'\n")
    os.kill(run.proc.pid, signal.SIGHUP)

    def registered() -> bool:
        workers = subprocess.run(["gearadmin", "-h", "127.0.0.1", "-p", str(gearmand.port), "--workers"],
                                 capture_output=True, text=True, timeout=10).stdout
        lines = [line for line in workers.splitlines() if " reloading " in line]
        return len(lines) == 2 and all("added_later" in line for line in lines)

    wait_until(registered, 30, what="both processes to serve added_later")
    result = gearctl("client", "added_later", "--wait", "-s", gearmand.address)
    assert result.stdout == b"new"


def test_a_broken_reload_keeps_the_old_processes(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    shutil.copytree(PLUGINS, plugin_dir)
    run = Run(procs, gearmand, tmp_path, plugin_dir=plugin_dir)
    before = run.children()
    (plugin_dir / "record.py").write_text("raise RuntimeError('half-deployed')\n")
    os.kill(run.proc.pid, signal.SIGHUP)
    wait_until(lambda: any("reload failed" in r.get("message", "") for r in run.log_records()), 20,
               what="the reload to fail")
    assert run.children() == before
    submit(gearmand, "still:0", wait=True)
    assert run.runs() == ["still:0"]


def test_outage_logs_few_lines_and_no_job_is_lost(gearmand_factory, procs: Procs, tmp_path: Path) -> None:
    server = gearmand_factory("-q", "libsqlite3", "--libsqlite3-db", str(tmp_path / "queue.db"))
    # --log-level debug: every reconnect attempt leaves a debug line, so the test can
    # wait for attempts rather than for time; only the lines above debug are counted.
    run = Run(procs, server, tmp_path, "--concurrency", "2", "--log-level", "debug")
    submit(server, "held0", "held1", function="held")
    wait_until(lambda: running(server) == 2, 30, what="both processes running a held job")
    submit(server, *(f"before{i}:0" for i in range(18)))
    assert server.status()["nap"][:2] == (18, 0)  # both processes are busy: these wait in the queue
    lines_before = len(run.log_records())
    server.kill()  # two jobs running, eighteen queued
    run.release.touch()

    def attempts(n: int) -> list[dict]:
        return [r for r in run.log_records()[lines_before:] if f"(attempt {n})" in r.get("message", "")]

    wait_until(lambda: len(attempts(4)) >= 2, 60, what="both processes to try reconnecting 4 times")
    outage = [r for r in run.log_records()[lines_before:] if r.get("level") != "debug"]
    server.start()
    submit(server, *(f"after{i}:0" for i in range(20)))
    expected = {"held0", "held1"} | {f"before{i}:0" for i in range(18)} | {f"after{i}:0" for i in range(20)}
    wait_until(lambda: set(run.runs()) >= expected, 90, what="every job to run")
    assert len(outage) <= 10, outage  # 8 attempts or more in all, not a line each
    assert len([r for r in outage if "retrying with back-off" in r["message"]]) == 2, outage  # one per process
    runs = run.runs()
    twice = [w for w in set(runs) if runs.count(w) > 1]
    assert set(twice) <= {"held0", "held1"}  # only a job running at the kill may run again


@pytest.mark.parametrize("flag", ["--max-lifetime", "--max-memory"])
def test_other_recycling_limits(gearmand: Gearmand, procs: Procs, tmp_path: Path, flag: str) -> None:
    value = "1s" if flag == "--max-lifetime" else "1"  # 1 MB: every process is over it after one job
    run = Run(procs, gearmand, tmp_path, flag, value)
    first = run.children()
    if flag == "--max-lifetime":
        # The state needed is the processes' age (over 1 s, up to 1.1 s with splay):
        # a lower bound on time, which a slow machine only makes longer.
        time.sleep(1.2)
    submit(gearmand, "x:0", "y:0", wait=True)
    wait_until(lambda: run.new_children(first), 30, what="a recycled process")
    assert sorted(run.runs()) == ["x:0", "y:0"]


def test_pidfile(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    pidfile = tmp_path / "worker.pid"
    run = Run(procs, gearmand, tmp_path, "--pidfile", str(pidfile))
    assert int(pidfile.read_text()) == run.proc.pid
    second = gearctl("worker", "-p", str(PLUGINS), "--pidfile", str(pidfile), "-s", gearmand.address)
    assert second.returncode == 2 and b"running" in second.stderr
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.proc.wait(20) == 0
    assert not pidfile.exists()


def test_a_second_signal_stops_at_once_and_the_job_goes_back(gearmand: Gearmand, procs: Procs,
                                                             tmp_path: Path) -> None:
    # --graceful-timeout 10m and a job held open (never released): only the second
    # signal can end the worker within the wait below.
    run = Run(procs, gearmand, tmp_path, "--graceful-timeout", "10m")
    submit(gearmand, "long", function="held")
    wait_until(lambda: running(gearmand) == 1, 30, what="the job to run")
    os.kill(run.proc.pid, signal.SIGTERM)
    wait_until(lambda: _log_lines(run, "SIGTERM: stopping 1 worker"), 30, what="the first signal handled")
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.proc.wait(60) == 0
    assert _log_lines(run, "stopping now")
    wait_until(lambda: gearmand.status()["held"][:2] == (1, 0), 30, what="the job back in the queue")
    assert run.runs() == []


def _plugins_alpha_beta(tmp: Path) -> Path:
    plugin_dir = tmp / "plugins"
    shutil.copytree(PLUGINS, plugin_dir)
    for name, function in (("a.py", "alpha"), ("b.py", "beta")):
        source = f"from gearctl import job\n\n@job\ndef {function}(j):\n    return b'{function}'\n"
        (plugin_dir / name).write_text(source)
    return plugin_dir


def _workers(server: Gearmand, function: str) -> int:
    return server.status().get(function, (0, 0, 0))[2]


def _log_lines(run: Run, text: str) -> list[str]:
    return [r["message"] for r in run.log_records() if text in r.get("message", "")]


@pytest.mark.parametrize("functions", [None, "alpha,beta,nap"])
def test_sighup_with_a_half_deployed_file_keeps_every_function(gearmand: Gearmand, procs: Procs, tmp_path: Path,
                                                               functions: str | None) -> None:
    plugin_dir = _plugins_alpha_beta(tmp_path)
    args = ["--concurrency", "2"] + (["--functions", functions] if functions else [])
    run = Run(procs, gearmand, tmp_path, *args, plugin_dir=plugin_dir)
    wait_until(lambda: _workers(gearmand, "alpha") == 2 and _workers(gearmand, "beta") == 2, 15, what="2 workers each")
    before = sorted(run.children())
    with open(plugin_dir / "a.py", "a") as f:
        f.write("x(\n")
    os.kill(run.proc.pid, signal.SIGHUP)
    wait_until(lambda: _log_lines(run, "reload failed"), 30, what="the reload to be abandoned")
    (line,) = _log_lines(run, "a.py")  # one line, naming the file and the error
    assert "reload failed" in line and "SyntaxError" in line
    wait_until(lambda: sorted(run.children()) == before, 10, what="the old processes alone")
    assert _workers(gearmand, "alpha") == 2 and _workers(gearmand, "beta") == 2
    assert gearctl("client", "alpha", "--wait", "-s", gearmand.address, timeout=30).stdout == b"alpha"

    # A deliberate removal (the file deleted, no plugin error) goes away on the next reload;
    # with --functions naming it, that reload would lose a function and is abandoned too.
    (plugin_dir / "a.py").unlink()
    os.kill(run.proc.pid, signal.SIGHUP)
    if functions is None:
        wait_until(lambda: _workers(gearmand, "alpha") == 0 and _workers(gearmand, "beta") == 2
                   and not set(run.children()) & set(before), 30, what="alpha gone, beta served by new processes")
    else:
        wait_until(lambda: len(_log_lines(run, "reload failed")) == 2, 30, what="the second reload abandoned")
        assert "no plugin defines 'alpha'" in _log_lines(run, "reload failed")[-1]
        assert sorted(run.children()) == before and _workers(gearmand, "alpha") == 2


def test_a_recycled_process_does_not_start_serving_less(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    plugin_dir = _plugins_alpha_beta(tmp_path)
    run = Run(procs, gearmand, tmp_path, "--max-jobs", "1", plugin_dir=plugin_dir)
    wait_until(lambda: _workers(gearmand, "alpha") == 1, 15, what="alpha served")
    good = (plugin_dir / "a.py").read_text()
    (plugin_dir / "a.py").write_text(good + "x(\n")
    submit(gearmand, "recycle:0", wait=True)  # --max-jobs 1: the process makes way for a new one
    wait_until(lambda: _log_lines(run, "cannot start"), 30, what="the new process to refuse")
    assert "a.py" in _log_lines(run, "cannot start")[0] and "SyntaxError" in _log_lines(run, "cannot start")[0]
    wait_until(lambda: _workers(gearmand, "beta") == 0, 10, what="no process serving beta alone")
    (plugin_dir / "a.py").write_text(good)
    wait_until(lambda: _workers(gearmand, "alpha") == 1 and _workers(gearmand, "beta") == 1, 30,
               what="alpha and beta served again once the file is whole")


def _hanging_plugin(plugin_dir: Path, hold: Path) -> None:
    """A plugin file whose import hangs while `hold` exists (a slow mount, a plugin
    that connects to a database at import)."""
    (plugin_dir / "hang.py").write_text(
        f"import os, time\nwhile os.path.exists({str(hold)!r}):\n    time.sleep(0.05)\n")


def test_a_reload_whose_new_process_never_gets_ready_is_abandoned(gearmand: Gearmand, procs: Procs,
                                                                   tmp_path: Path) -> None:
    plugin_dir = _plugins_alpha_beta(tmp_path)
    run = Run(procs, gearmand, tmp_path, "--concurrency", "2", "--start-timeout", "2s", plugin_dir=plugin_dir)
    wait_until(lambda: _workers(gearmand, "alpha") == 2, 15, what="2 workers")
    before = sorted(run.children())
    hold = tmp_path / "hold"
    hold.touch()
    _hanging_plugin(plugin_dir, hold)
    os.kill(run.proc.pid, signal.SIGHUP)
    wait_until(lambda: _log_lines(run, "reload failed"), 60, what="the reload to be given up")
    assert "not ready within 2s" in _log_lines(run, "reload failed")[0]
    wait_until(lambda: sorted(run.children()) == before, 15, what="the old processes alone")
    assert _workers(gearmand, "alpha") == 2
    # A later reload is not refused as "already under way".
    hold.unlink()
    os.kill(run.proc.pid, signal.SIGHUP)
    wait_until(lambda: not set(run.children()) & set(before) and _workers(gearmand, "alpha") == 2, 60,
               what="the second reload to replace both processes")
    assert not _log_lines(run, "already under way")


def test_a_process_recycled_during_a_stalled_reload_is_replaced(gearmand: Gearmand, procs: Procs,
                                                                 tmp_path: Path) -> None:
    # --max-jobs 1: each job recycles its process while the reload waits on a new one
    # that hangs at import. The recycled slots must come back, not be lost to the reload.
    plugin_dir = _plugins_alpha_beta(tmp_path)
    run = Run(procs, gearmand, tmp_path, "--concurrency", "2", "--max-jobs", "1", "--start-timeout", "10m",
              plugin_dir=plugin_dir)
    wait_until(lambda: _workers(gearmand, "alpha") == 2, 15, what="2 workers")
    hold = tmp_path / "hold"
    hold.touch()
    _hanging_plugin(plugin_dir, hold)
    os.kill(run.proc.pid, signal.SIGHUP)
    wait_until(lambda: len(run.children()) == 3, 15, what="the reload's new process")
    submit(gearmand, "a:0", "b:0", wait=True)  # both old processes recycle
    hold.unlink()  # the imports finish: every slot is served again
    wait_until(lambda: _workers(gearmand, "alpha") == 2 and len(run.children()) == 2, 60,
               what="both slots served again")
    assert gearctl("client", "alpha", "--wait", "-s", gearmand.address, timeout=30).stdout == b"alpha"
