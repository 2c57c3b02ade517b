"""The library's operations on servers (gearctl.ops and gearctl.monitor): the
deciding steps as pure functions of admin reports, no sockets; then cancel,
drop, ping, the documents and the Prometheus collector in-process against a
real gearmand."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, c_worker, free_port, gearctl, wait_until

from gearctl import Client, monitor, ops
from gearctl.admin import FunctionStatus, JobInfo, WorkerInfo
from gearctl.clientjob import JobStatus
from gearctl.connection import ServerAddress, parse_servers
from gearctl.errors import ConnectionFailed, ExitCode, NoServerAvailable, ServerError, UsageError

A, B = "127.0.0.1:4730", "127.0.0.1:4731"


def report(address: str = A, *, up: bool = True, status: tuple[FunctionStatus, ...] = (),
           jobs: tuple[JobInfo, ...] = (), workers: tuple[WorkerInfo, ...] = (),
           error: str | None = None) -> monitor.ServerReport:
    return monitor.ServerReport(address, up, error, status=status, jobs=jobs, workers=workers)


def fs(function: str, total: int = 0, running: int = 0, workers: int = 0) -> FunctionStatus:
    return FunctionStatus(function, total, running, workers)


# -- cancel: which server holds the job ------------------------------------------------

def test_job_holder_is_the_one_server_listing_the_handle() -> None:
    mine = JobInfo("H:host:2", 0, False, True)
    reports = [report(A, jobs=(JobInfo("H:host:1", 0, False, True),)), report(B, jobs=(mine,))]
    assert ops.job_holder(reports, "H:host:2") == (reports[1], mine)


def test_job_holder_unknown_handle_is_exit_8() -> None:
    with pytest.raises(ServerError) as caught:
        ops.job_holder([report(A), report(B, up=False, error="refused")], "H:host:9")
    assert caught.value.exit_code == ExitCode.SERVER_REFUSED
    assert "no server has a job H:host:9" in str(caught.value)


def test_job_holder_handle_on_two_servers_is_ambiguous_exit_2() -> None:
    twin = JobInfo("H:host:1", 0, False, True)
    with pytest.raises(UsageError) as caught:
        ops.job_holder([report(A, jobs=(twin,)), report(B, jobs=(twin,))], "H:host:1")
    assert caught.value.exit_code == ExitCode.USAGE
    assert f"each of {A}, {B}" in str(caught.value) and "pick one with -s" in str(caught.value)


# -- drop: decided on parsed status ------------------------------------------------------

def test_drop_plan_refuses_while_jobs_are_held_unless_forced() -> None:
    reports = [report(A, status=(fs("resize", total=2),)), report(B, status=(fs("resize", total=1, running=1),))]
    with pytest.raises(UsageError, match=r"resize has 3 job\(s\) queued or running.*--force"):
        ops.drop_plan(reports, "resize")
    assert ops.drop_plan([reports[0]], "resize", force=True) == [None]


def test_drop_plan_matches_names_as_gearmand_does_ascii_case_blind() -> None:
    reports = [report(A, status=(fs("Resize", total=1),))]
    with pytest.raises(UsageError, match="1 job"):
        ops.drop_plan(reports, "resize")
    assert ops.same_function("Resize", "rESIZE")
    assert not ops.same_function("\u00c9t\u00e9", "\u00e9t\u00e9")  # strcasecmp folds ASCII only
    assert not ops.same_function("resize", "resize2")


def test_drop_plan_decides_each_server_from_its_status() -> None:
    reports = [report(A, status=(fs("f"),)),                       # idle: ask
               report(B, status=(fs("f", workers=1),)),            # a worker: gearmand refuses
               report("127.0.0.1:1", status=(fs("f", total=1, running=1),)),  # a job runs
               report("127.0.0.1:2", status=(fs("other"),)),       # not there
               report("127.0.0.1:3", up=False, error="refused")]
    plan = ops.drop_plan(reports, "f", force=True)
    assert plan[0] is None
    assert [p.outcome if p else None for p in plan[1:]] == [ops.DropOutcome.BUSY, ops.DropOutcome.BUSY,
                                                           ops.DropOutcome.UNKNOWN, ops.DropOutcome.DOWN]
    assert "stop them first" in plan[1].detail and plan[4].detail == "refused"  # type: ignore[union-attr]


def test_dropped_groups_outcomes_in_server_order() -> None:
    result = ops.Dropped("f", (ops.ServerDrop(A, ops.DropOutcome.REFUSED, "x"),
                               ops.ServerDrop(B, ops.DropOutcome.DROPPED),
                               ops.ServerDrop("c", ops.DropOutcome.BUSY, "y")))
    assert [s.address for s in result.refused] == [A, "c"]
    assert [s.address for s in result.where(ops.DropOutcome.DROPPED)] == [B]


# -- the one fan-out, the documents, the metrics --------------------------------------------

def test_each_server_keeps_order_and_turns_gearctl_errors_into_answers() -> None:
    servers = parse_servers("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3")

    async def ask(address: ServerAddress) -> int:
        if address.port == 2:
            raise ConnectionFailed("nope")
        await asyncio.sleep(0.01 * (4 - address.port))  # finish in reverse order
        return address.port

    answers = asyncio.run(monitor.each_server(servers, ask))
    assert [a for a, _ in answers] == servers
    assert answers[0][1] == 1 and answers[2][1] == 3 and isinstance(answers[1][1], ConnectionFailed)


def test_each_server_lets_a_bug_propagate() -> None:
    async def ask(address: ServerAddress) -> int:
        raise KeyError("a bug, not a server's answer")

    with pytest.raises(KeyError):
        asyncio.run(monitor.each_server(parse_servers(A), ask))


def test_answered_needs_one_server_up() -> None:
    with pytest.raises(NoServerAvailable, match="no job server answered: refused; silent"):
        monitor.answered([report(A, up=False, error="refused"), report(B, up=False, error="silent")])
    reports = [report(A, up=False, error="refused"), report(B)]
    assert monitor.answered(reports) is reports


def test_workers_and_jobs_documents() -> None:
    reports = [report(A, workers=(WorkerInfo(7, "127.0.0.1", "w1", ("f", "g")),),
                      jobs=(JobInfo("H:h:1", 2, True, False),)),
               monitor.ServerReport(B, True, uniques=("u1",)),
               report("127.0.0.1:1", up=False, error="refused")]
    assert monitor.workers_document(reports)["servers"][0] == {
        "address": A, "up": True, "error": None,
        "workers": [{"fd": 7, "address": "127.0.0.1", "client_id": "w1", "functions": ["f", "g"]}]}
    assert monitor.workers_document(reports)["servers"][2] == {
        "address": "127.0.0.1:1", "up": False, "error": "refused", "workers": []}
    jobs = monitor.jobs_document(reports)["servers"]
    assert jobs[0]["jobs"] == [{"handle": "H:h:1", "retries": 2, "ignored": True, "queued": False}]
    assert "uniques" not in jobs[0]
    uniques = monitor.jobs_document(reports, unique=True)["servers"]
    assert uniques[1] == {"address": B, "up": True, "error": None, "uniques": ["u1"]} and "jobs" not in uniques[1]


def test_job_status_document() -> None:
    (record,) = monitor.job_status_document([JobStatus("H:h:1", True, True, 1, 3, A)])
    assert record == {"handle": "H:h:1", "unique": None, "server": A, "known": True, "running": True,
                      "numerator": 1, "denominator": 3, "percent": 33.33, "waiting": None}


def test_metric_families_label_per_server_and_per_function() -> None:
    reports = [report(A, status=(fs("f", total=5, running=2, workers=1),),
                      workers=(WorkerInfo(1, "x", "w", ("f",)),)),
               report(B, up=False, error="refused")]
    families = {f.name: f for f in monitor.metric_families(reports)}
    assert set(families) == set(monitor.METRIC_HELP)
    up = {s.labels["server"]: s.value for s in families["gearman_up"].samples}
    assert up == {A: 1.0, B: 0.0}
    (queued,) = families["gearman_queued"].samples
    assert queued.labels == {"server": A, "function": "f"} and queued.value == 3.0
    (connections,) = families["gearman_worker_connections"].samples  # none for the server that is down
    assert connections.labels == {"server": A} and connections.value == 1.0


# -- against a real gearmand ---------------------------------------------------------------

def bounds() -> dict[str, float]:
    return {"connect_timeout": 5.0, "io_timeout": 10.0}


def submit(server: Gearmand, function: str) -> str:
    with Client(server.address) as client:
        handle = client.submit(function, b"x").handle
    assert handle
    return handle


def test_ping_one_up_one_down(gearmand: Gearmand) -> None:
    servers = parse_servers(f"{gearmand.address},127.0.0.1:{free_port()}")
    up, down = asyncio.run(ops.ping(servers, **bounds()))
    assert up.ok and up.address == servers[0] and up.seconds is not None and up.seconds >= 0
    assert not down.ok and down.seconds is None and isinstance(down.error, ConnectionFailed)


def test_cancel_a_queued_job_then_it_is_already_cancelled(gearmand: Gearmand) -> None:
    handle = submit(gearmand, "doomed")
    servers = parse_servers(gearmand.address)
    done = asyncio.run(ops.cancel(servers, handle, **bounds()))
    assert done == ops.Cancelled(handle, gearmand.address, already=False)
    assert gearmand.admin("show jobs") == [f"{handle}\t0\t1\t0"]  # gearmand keeps it, ignored
    again = asyncio.run(ops.cancel(servers, handle, **bounds()))
    assert again == ops.Cancelled(handle, gearmand.address, already=True)
    with pytest.raises(ServerError, match="no server has a job H:nowhere:1"):
        asyncio.run(ops.cancel(servers, "H:nowhere:1", **bounds()))


def test_cancel_refuses_a_running_job(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    release = tmp_path / "release"
    c_worker(procs, gearmand, "long", "sh", "-c", f"while [ ! -e {release} ]; do sleep 0.05; done")
    handle = submit(gearmand, "long")
    wait_until(lambda: gearmand.status()["long"][1] == 1, 30, what="the job to run")
    with pytest.raises(ServerError, match="is running on") as caught:
        asyncio.run(ops.cancel(parse_servers(gearmand.address), handle, **bounds()))
    assert caught.value.code == "RUNNING"
    release.touch()
    wait_until(lambda: gearmand.status()["long"][0] == 0, 30, what="the released job to finish")


def test_cancel_of_a_handle_on_two_servers_is_ambiguous(gearmand_factory) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    a, b = submit(one, "twin"), submit(two, "twin")
    assert a == b  # two fresh gearmands on one host number their first jobs alike
    servers = parse_servers(f"{one.address},{two.address}")
    with pytest.raises(UsageError, match="pick one with -s"):
        asyncio.run(ops.cancel(servers, a, **bounds()))
    assert len(one.admin("show jobs")) == len(two.admin("show jobs")) == 1  # neither was cancelled
    cli = gearctl("cancel", a, "-s", f"{one.address},{two.address}")
    assert cli.returncode == 2 and cli.stderr.startswith(b"gearctl: ") and b"pick one with -s" in cli.stderr


def test_drop_idle_busy_and_unknown(gearmand: Gearmand, procs: Procs) -> None:
    servers = parse_servers(gearmand.address)
    c_worker(procs, gearmand, "staffed", "cat")
    (busy,) = asyncio.run(ops.drop(servers, "staffed", **bounds())).servers
    assert busy.outcome is ops.DropOutcome.BUSY and "staffed" in gearmand.status()
    (unknown,) = asyncio.run(ops.drop(servers, "nothing", **bounds())).servers
    assert unknown.outcome is ops.DropOutcome.UNKNOWN
    idle = c_worker(procs, gearmand, "idle", "cat")
    os.kill(idle.pid, signal.SIGTERM)
    idle.wait(10)
    wait_until(lambda: gearmand.status().get("idle") == (0, 0, 0), 10, what="idle to have no worker")
    (dropped,) = asyncio.run(ops.drop(servers, "idle", **bounds())).servers
    assert dropped == ops.ServerDrop(gearmand.address, ops.DropOutcome.DROPPED)
    assert "idle" not in gearmand.status()


def test_drop_does_not_orphan_jobs_of_a_name_in_another_case(gearmand: Gearmand) -> None:
    """gearmand drops "Idle" for `drop function idle`, queued jobs and all; the
    --force guard must see them."""
    submit(gearmand, "Idle")
    result = gearctl("drop", "idle", "-s", gearmand.address)
    assert result.returncode == 2 and b"--force" in result.stderr, result.stderr
    assert gearmand.status()["Idle"][0] == 1


def test_collector_serves_what_status_says(gearmand: Gearmand) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    submit(gearmand, "exported")
    down = f"127.0.0.1:{free_port()}"
    registry = CollectorRegistry()
    registry.register(monitor.GearmanCollector(parse_servers(f"{gearmand.address},{down}"), **bounds()))
    text = generate_latest(registry).decode()
    assert f'gearman_up{{server="{gearmand.address}"}} 1.0' in text
    assert f'gearman_up{{server="{down}"}} 0.0' in text
    assert f'gearman_queued{{function="exported",server="{gearmand.address}"}} 1.0' in text


def test_collect_reports_a_down_server_with_its_reason(gearmand: Gearmand) -> None:
    down = f"127.0.0.1:{free_port()}"
    up, gone = asyncio.run(monitor.collect(parse_servers(f"{gearmand.address},{down}"), workers=True, **bounds()))
    assert up.up and up.error is None and gone.address == down and not gone.up and gone.error
    submit(gearmand, "seen")
    (again,) = asyncio.run(monitor.collect(parse_servers(gearmand.address), **bounds()))
    assert ("seen", 1) in [(f.function, f.total) for f in again.status]


def test_readme_operations_example_runs(gearmand: Gearmand, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (block,) = [b for b in readme.split("```python\n")[1:] if "from gearctl import monitor, ops" in b]
    code = block.split("```")[0].replace('"gear1:4730,gear2"', repr(gearmand.address))
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert capsys.readouterr().out == f"{gearmand.address} ok\n"
    assert [s["address"] for s in scope["doc"]["servers"]] == [gearmand.address]  # type: ignore[index]
    dropped = scope["dropped"]
    assert isinstance(dropped, ops.Dropped) and dropped.where(ops.DropOutcome.UNKNOWN)
