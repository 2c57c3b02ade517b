"""Per-function processes: `worker --functions NAME:N` (or `processes` in a hook
entry or @job) gives a function processes of its own, and the shared pool serves
the other functions, never it. Against the embedded server (no peer needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Embedded, Procs, Terminal, clean_env, gearctl, wait_until, worker_processes

from gearctl import job
from gearctl.child import WorkerSpec, choose
from gearctl.plugins import PluginError, load_plugins
from gearctl.supervision import Launch, parse_function_counts, processes_line, slot_plan
from gearctl.supervisor import SupervisorOptions

PLUGINS = Path(__file__).parent / "plugins_sup"  # nap (quick, records) and held (waits for a file)
GEARCTL = [sys.executable, "-m", "gearctl"]


# -- the pure parts ---------------------------------------------------------------
def test_function_counts_are_parsed_and_bad_ones_say_why() -> None:
    assert parse_function_counts("a:4, b ,c:1") == (["a", "b", "c"], {"a": 4, "c": 1})
    assert parse_function_counts("a") == (["a"], {})
    for bad, says in [("a:0", "at least 1"), ("a:x", "whole number"), ("a:-1", "whole number"), (":2", "no function"),
                      ("a,a:2", "listed twice"), (" , ", "empty")]:
        with pytest.raises(ValueError, match=says):
            parse_function_counts(bad)


def test_the_slot_plan_puts_the_pool_first_then_each_function_its_own() -> None:
    assert slot_plan(2, {"r": 1, "n": 2}) == (frozenset(), frozenset(), frozenset({"n"}), frozenset({"n"}),
                                               frozenset({"r"}))
    assert slot_plan(0, {"r": 1}) == (frozenset({"r"}),)
    assert processes_line(2, {}) == "2 process(es)"
    assert processes_line(1, {"r": 2}) == "1 shared process(es); r: 2 of its own"


def test_each_slot_serves_its_own_or_the_pools_functions() -> None:
    options = SupervisorOptions(concurrency=2, plan=slot_plan(1, {"r": 1}))
    first = Launch(frozenset({"a", "b", "r"}), first=True)
    assert options.slot_launch(0, first) == Launch(frozenset({"a", "b"}), first=True, only=frozenset())
    assert options.slot_launch(1, first) == Launch(frozenset({"r"}), first=True, only=frozenset({"r"}))
    assert SupervisorOptions().slot_launch(0, first) == first  # no plan: every slot the same


def test_a_child_chooses_its_slots_functions(tmp_path: Path) -> None:
    (tmp_path / "fns.py").write_text("from gearctl import job\n\n@job\ndef a(j): pass\n\n@job\ndef b(j): pass\n\n"
                                     "@job(processes=2)\ndef r(j): pass\n")
    tmp_path.chmod(0o755)
    spec = WorkerSpec(plugin_dirs=[str(tmp_path)], functions=None, servers=[], client_id="", dedicated=frozenset({"r"}))
    pool, _ = choose(spec, Launch(frozenset({"a", "b"})))
    own, _ = choose(spec, Launch(frozenset({"r"}), only=frozenset({"r"})))
    assert sorted(f.name for f in pool) == ["a", "b"] and [f.name for f in own] == ["r"]
    assert load_plugins([tmp_path]).functions["r"].processes == 2


def test_processes_is_checked_in_a_hook_entry_and_in_job(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="processes must be a whole number of at least 1"):
        job(processes=0)
    (tmp_path / "hooks.py").write_text("def gearman_functions():\n"
                                       "    return [{'function_name': 'x', 'function': print, 'processes': 'two'}]\n")
    tmp_path.chmod(0o755)
    registry = load_plugins([tmp_path])
    assert any("processes must be a whole number of at least 1, got 'two'" in e for e in registry.errors), \
        registry.errors


def test_a_bad_count_exits_2_with_one_line() -> None:
    bad = gearctl("worker", "-p", str(PLUGINS), "--functions", "nap:0", "-s", "127.0.0.1:1")
    assert bad.returncode == 2
    lines = bad.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gearctl: --functions: 'nap:0': processes must be"), lines


# -- a real worker ----------------------------------------------------------------------
def test_a_function_of_its_own_is_apart_from_the_busy_pool_and_the_pool_never_takes_it(
        embedded: Embedded, procs: Procs, tmp_path: Path) -> None:
    """`--functions nap:1,held -c 1`: nap has a process of its own, the pool of
    one serves held. Two held jobs (held open by the test): the pool runs one and
    the other waits, as the nap process never takes it; a nap job meanwhile runs
    at once. Without its own process, nap would wait behind the held jobs."""
    record, release = tmp_path / "record.txt", tmp_path / "release"
    record.touch()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        procs.start([*GEARCTL, "worker", "-p", str(PLUGINS), "--functions", "nap:1,held", "-c", "1",
                     "-s", embedded.address],
                    env=clean_env(GEARCTL_TEST_RECORD=str(record), GEARCTL_TEST_RELEASE=str(release)), stderr=out)
    wait_until(lambda: embedded.status().get("nap", (0, 0, 0))[2] == 1
               and embedded.status().get("held", (0, 0, 0))[2] == 1, 30, what="one worker for each function")
    assert gearctl("client", "held", "-n", "-q", "-s", embedded.address, input=b"h1\nh2\n").returncode == 0
    wait_until(lambda: embedded.status()["held"][1] == 1, 30, what="the pool to run a held job")
    quick = subprocess.run([*GEARCTL, "client", "nap", "--wait", "--data", "n1:0", "-s", embedded.address],
                           capture_output=True, env=clean_env(), timeout=60)
    assert quick.returncode == 0 and quick.stdout == b"rested n1:0", quick
    assert embedded.status()["held"][:2] == (2, 1)  # the second held job still waits: nap's process left it
    release.touch()
    wait_until(lambda: len(record.read_text().splitlines()) == 3, 60, what="every job")
    pids = {line.split()[0]: line.split()[1] for line in record.read_text().splitlines()}
    assert pids["h1"] == pids["h2"] != pids["n1:0"]  # held in the pool's one process, nap in its own
    assert "with 1 shared process(es); nap: 1 of its own" in log.read_text()


def test_the_live_table_groups_the_processes_by_what_they_serve(embedded: Embedded) -> None:
    live = Path(__file__).parent / "plugins_live"
    with Terminal(["worker", "-p", str(live), "--functions", "hold:1,chatter,fails", "-c", "2",
                   "-s", embedded.address]) as term:
        def grouped(t: Terminal) -> bool:
            frame = " ".join(t.frame("gearctl worker").split())
            return ("serving chatter, fails" in frame and "serving hold" in frame
                    and len(worker_processes(t.frame("gearctl worker"))) == 3)

        term.wait_for(grouped, what="a table for the pool of 2 and one for hold's own process")
        frame = term.frame("gearctl worker")
        pool_at, own_at = frame.index("serving chatter, fails"), frame.index("serving hold")
        rows_between = worker_processes(frame[pool_at:own_at])
        assert len(rows_between) == 2 and len(worker_processes(frame[own_at:])) == 1
        os.kill(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(20) == 0
