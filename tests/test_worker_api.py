"""The public worker API: README's Library examples run as written, and Worker
in this process (its own event loop, in a thread or in the test's main thread)
and in a short script under real signals, against a real gearmand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, c_worker, clean_env, wait_until

from gearctl import AsyncClient, Client, ExitReason, Job, JobException, ServerAddress, UsageError, Worker, job
from gearctl.addresses import resolve_servers
from gearctl.plugins import JobFunction, PluginError, as_job_function
from gearctl.worker import ServerState

pytestmark = pytest.mark.conformance  # each test against gearmand and gearctl server

README = Path(__file__).resolve().parent.parent / "README.md"


def library_blocks() -> list[str]:
    section = README.read_text().split("\n## Library\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.interop
def test_readme_library_examples_run(gearmand: Gearmand, procs: Procs, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = library_blocks()
    assert len(blocks) == 4 and "Worker(" in blocks[1]  # client, worker, monitor and ops, the config
    c_worker(procs, gearmand, "reverse", "rev")  # the client example's foreground job
    namespace: dict = {}
    for block in blocks[:3]:
        code = block.replace('"gear1:4730,gear2"', repr(gearmand.address))
        assert code != block
        exec(compile(code, "README.md", "exec"), namespace)
    config = tmp_path / "gearctl.toml"  # the config example's alias, naming this server
    config.write_text(f'[aliases.prod]\nservers = ["{gearmand.address}"]\n')
    monkeypatch.setenv("GEARCTL_CONFIG", str(config))
    exec(compile(blocks[3], "README.md", "exec"), {})
    assert gearmand.queued("reports_build") == 1
    assert namespace["reason"] is ExitReason.BURST_DONE
    # The worker drained what the client example queued: 1 + 10,000 resize jobs.
    assert gearmand.status()["resize"][:2] == (0, 0)
    out = capsys.readouterr().out
    assert "cba" in out and "ExitReason.BURST_DONE" in out


# -- what Worker accepts (no sockets) -------------------------------------------------
def test_worker_takes_decorated_plain_hook_and_jobfunction_entries() -> None:
    @job("renamed", timeout=5)
    def decorated(j: object) -> bytes:
        return b""

    def plain(j: object) -> bytes:
        return b""

    entry = {"function_name": "hooked", "function": plain, "context": {"n": 1}, "timeout": 0}
    made = JobFunction("made", command=["cat"])
    worker = Worker([decorated, plain, entry, made], servers="127.0.0.1:1")
    fns = worker.functions
    assert sorted(fns) == ["hooked", "made", "plain", "renamed"]
    assert fns["renamed"].timeout == 5 and fns["renamed"].function is decorated
    assert fns["plain"].function is plain and fns["plain"].timeout is None
    assert fns["hooked"].context == {"n": 1} and fns["hooked"].timeout is None
    assert fns["made"] is made
    assert worker.stats.servers == {"127.0.0.1:1": ServerState.CONNECTING} == {"127.0.0.1:1": "connecting"}


@pytest.mark.parametrize(("item", "message"), [
    (42, "job function 0: expected a function"),
    ({"function": print}, "job function 0: function_name is missing"),
    ({"function_name": "x"}, "job function 'x': give exactly one of 'function'"),
    ({"function_name": "x", "function": print, "bogus": 1}, "unknown key(s) bogus"),
    ({"function_name": "x", "function": print, "timeout": -1}, "timeout must be a number"),
])
def test_a_bad_job_function_is_refused_at_once(item: object, message: str) -> None:
    with pytest.raises(PluginError) as caught:
        as_job_function(item)
    assert message in str(caught.value)
    with pytest.raises(UsageError):
        Worker([item], servers="127.0.0.1:1")


def test_no_job_functions_or_two_of_one_name_are_refused() -> None:
    with pytest.raises(UsageError, match="no job functions"):
        Worker([], servers="127.0.0.1:1")

    def f(j: object) -> None:
        return None

    with pytest.raises(UsageError, match="two job functions are named 'f'"):
        Worker([f, {"function_name": "f", "function": print}], servers="127.0.0.1:1")
    assert list(Worker([f, f], servers="127.0.0.1:1").functions) == ["f"]  # the same one twice is one


def test_servers_as_a_string_a_list_or_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = ServerAddress("h1", 4730), ServerAddress("h2", 4731)
    assert resolve_servers("h1:4730,h2:4731") == [a, b]
    assert resolve_servers(["h1", b]) == [a, b]
    assert resolve_servers([a, "h2:4731,h1"]) == [a, b]
    monkeypatch.setenv("GEARCTL_SERVERS", "h2:4731")
    assert resolve_servers(None) == [b]
    assert AsyncClient().servers == [b]  # the client's default is the worker's
    monkeypatch.setenv("GEARCTL_SERVERS", "")
    assert resolve_servers(None) == [ServerAddress("127.0.0.1", 4730)]
    with pytest.raises(UsageError, match="bad server address"):
        resolve_servers("h1:notaport")


# -- Worker in this process, against gearmand --------------------------------------------
@contextlib.contextmanager
def serving(worker: Worker) -> Iterator[threading.Thread]:
    """`worker.serve()` on an event loop of its own, in a thread; stopped after."""
    failures: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(worker.serve())
        except BaseException as e:  # shown by the test, not lost in the thread
            failures.append(e)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop_threadsafe()
        thread.join(60)
    assert not thread.is_alive(), "the worker did not stop"
    assert not failures, failures


def test_a_worker_in_a_thread_serves_and_survives_a_bad_payload(gearmand: Gearmand) -> None:
    @job(encoding="json")
    def total(j: object) -> object:
        return sum(j.data)  # type: ignore[attr-defined]

    worker = Worker([total], servers=gearmand.address)
    with serving(worker), Client(gearmand.address) as client:
        assert client.run("total", b"[1, 2, 3]", timeout=30) == b"6"
        with pytest.raises(JobException, match="JSON"):
            client.run("total", b"{not json", timeout=30)
        assert client.run("total", b"[4, 5]", timeout=30) == b"9"  # still serving
    assert (worker.stats.done, worker.stats.failed) == (2, 1)
    assert worker.exit_reason is ExitReason.STOPPED


def test_stop_lets_the_running_job_finish_and_hands_prefetched_jobs_back(gearmand: Gearmand) -> None:
    release = threading.Event()
    started: list[bytes] = []

    async def hold(j: object) -> bytes:
        started.append(j.workload())  # type: ignore[attr-defined]
        await asyncio.to_thread(release.wait, 60)
        return b"done"

    with Client(gearmand.address) as client:
        for i in range(5):
            client.submit("hold", b"%d" % i)
    worker = Worker([hold], servers=gearmand.address, prefetch=4)
    with serving(worker):
        # gearmand counts a job as running once it is handed out: the first one
        # must also have started here, or the stop would hand all four back.
        wait_until(lambda: started and gearmand.status().get("hold", (0, 0, 0))[:2] == (5, 4), 30,
                   what="one job running and three held")
        worker.stop_threadsafe()
        wait_until(lambda: worker.stopping, 10, what="the worker to take the stop")
        release.set()
    assert len(started) == 1  # the held jobs were never started ...
    wait_until(lambda: gearmand.status()["hold"][:2] == (4, 0), 30, what="four jobs back in the queue")
    assert worker.stats.done == 1  # ... and the running one finished


def test_run_with_burst_drains_in_the_main_thread(gearmand: Gearmand) -> None:
    seen: list[bytes] = []

    def collect(j: object) -> None:
        seen.append(j.workload())  # type: ignore[attr-defined]

    with Client(gearmand.address) as client:
        client.submit_many(Job("collect", b"%d" % i) for i in range(50))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert Worker([collect], servers=[gearmand.address], prefetch=8).run(burst=True) is ExitReason.BURST_DONE
    assert sorted(seen, key=int) == [b"%d" % i for i in range(50)]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers put back


def test_run_with_burst_and_no_server_says_so() -> None:
    def f(j: object) -> None:
        return None

    from conftest import free_port

    assert Worker([f], servers=f"127.0.0.1:{free_port()}", connect_timeout=1).run(burst=True) is ExitReason.NO_SERVER


# -- run() under real signals, in a script ------------------------------------------------
SCRIPT = """\
import pathlib, sys, time
from gearctl import Worker
def hold(job):  # runs until its workload's file exists (at most 120 s)
    print("started", flush=True)
    path, end = pathlib.Path(job.workload().decode()), time.monotonic() + 120
    while not path.exists() and time.monotonic() < end: time.sleep(0.02)
def said(): worker.stopping and print("stopping", flush=True)  # on_change: the signal was taken
worker = Worker([hold], servers=sys.argv[1], prefetch=4, on_change=said)
print(worker.run().name, flush=True)
"""


class Script:
    """The script above as a process, its stdout lines collected by a thread."""

    def __init__(self, procs: Procs, tmp_path: Path, server: str) -> None:
        path = tmp_path / "worker_script.py"
        path.write_text(SCRIPT)
        self.proc = procs.start([sys.executable, str(path), server], stdout=subprocess.PIPE,
                                env=clean_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode().strip())

    def __enter__(self) -> Script:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # a failed test: the procs fixture would wait on it
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def queue_held(gearmand: Gearmand, release: Path, count: int) -> None:
    with Client(gearmand.address) as client:
        for _ in range(count):
            client.submit("hold", str(release).encode())


@pytest.mark.slow
def test_first_sigterm_finishes_the_running_job_and_hands_back_the_rest(gearmand: Gearmand, procs: Procs,
                                                                        tmp_path: Path) -> None:
    release = tmp_path / "release"
    queue_held(gearmand, release, 6)
    with Script(procs, tmp_path, gearmand.address) as script:
        wait_until(lambda: "started" in script.lines and gearmand.status().get("hold", (0, 0, 0))[:2] == (6, 4), 30,
                   what="one job running and three held by the script's worker")
        os.kill(script.proc.pid, signal.SIGTERM)
        wait_until(lambda: "stopping" in script.lines, 30, what="the worker to take the SIGTERM")
        release.touch()  # from now on a started job ends at once: any prefetched one run would leave the queue
        assert script.proc.wait(60) == 0
    assert script.lines[-1] == "STOPPED"
    wait_until(lambda: gearmand.status()["hold"][:2] == (5, 0), 30, what="five jobs back in the queue")


@pytest.mark.slow
def test_a_second_sigterm_exits_at_once_and_the_server_keeps_every_job(gearmand: Gearmand, procs: Procs,
                                                                       tmp_path: Path) -> None:
    release = tmp_path / "release"  # never created: the running job would run for 120 s
    queue_held(gearmand, release, 3)
    with Script(procs, tmp_path, gearmand.address) as script:
        wait_until(lambda: "started" in script.lines and gearmand.status().get("hold", (0, 0, 0))[:2] == (3, 3), 30,
                   what="one job running and two held")
        os.kill(script.proc.pid, signal.SIGTERM)
        wait_until(lambda: "stopping" in script.lines, 30, what="the worker to take the first SIGTERM")
        os.kill(script.proc.pid, signal.SIGTERM)
        assert script.proc.wait(60) == 128 + signal.SIGTERM
    assert "STOPPED" not in script.lines  # it never got to return
    wait_until(lambda: gearmand.status()["hold"][:2] == (3, 0), 30, what="all three jobs back in the queue")
