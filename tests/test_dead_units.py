"""dead.py and the dead counts of monitor.py without a server: selecting jobs,
reading JOB_ASSIGN_UNIQ arguments, the JSON records, folding `.dead` status rows
into a `dead` count, check --max-dead."""

from __future__ import annotations

import pytest

from gearctl import dead, monitor
from gearctl.admin import FunctionStatus
from gearctl.deadletter import Envelope
from gearctl.errors import ServerError, UsageError
from gearctl.render import status_lines

ENV = Envelope("mail", "m-1", b"\xffbin", 3, "boom", "tb", "web1", 10.0, 20.0)


def job(id_: str, queue: str = "mail.dead", server: str = "a:4730", handle: str = "H:a:1",
        envelope: Envelope | None = ENV) -> dead.DeadJob:
    return dead.DeadJob(server, queue, handle, id_, b"raw", envelope, "" if envelope else "not an envelope")


def test_dead_job_from_assign_args() -> None:
    valid = dead.dead_job("a:4730", (b"H:a:1", b"mail.dead", b"m-1~dead.20000", ENV.encode()))
    assert (valid.handle, valid.queue, valid.id, valid.function, valid.valid) == (
        "H:a:1", "mail.dead", "m-1~dead.20000", "mail", True)
    assert valid.envelope == ENV
    broken = dead.dead_job("a:4730", (b"H:a:2", b"mail.dead", b"junk", b"\xff"))
    assert not broken.valid and broken.function == "mail" and broken.invalid.startswith("not a gearctl")


def test_json_records() -> None:
    doc = job("x").as_json()
    assert doc["envelope"]["workload_base64"] == "/2Jpbg==" and "invalid" not in doc and doc["valid"] is True
    bad = dead.DeadJob("a:4730", "mail.dead", "H:a:2", "junk", b"\xff\x00", None, "why").as_json()
    assert bad["envelope"] is None and bad["invalid"] == "why" and bad["workload_base64"] == "/wA="
    text = dead.DeadJob("a:4730", "mail.dead", "H:a:2", "junk", b"plain", None, "why").as_json()
    assert text["workload"] == "plain" and "workload_base64" not in text


def test_select_by_function_id_handle_and_all() -> None:
    jobs = [job("m-1~dead.1", handle="H:a:1"), job("o-1~dead.1", queue="other.dead", handle="H:a:2"),
            job("junk", handle="H:a:3", envelope=None)]
    assert dead.select(jobs, dead.Selection(function="mail")) == [jobs[0]]
    assert dead.select(jobs, dead.Selection(function="mail.dead")) == [jobs[0]]
    assert dead.select(jobs, dead.Selection(function="mail", include_invalid=True)) == [jobs[2], jobs[0]]
    assert dead.select(jobs, dead.Selection(every=True)) == [jobs[0], jobs[1]]
    assert dead.select(jobs, dead.Selection(job_id="junk")) == [jobs[2]]  # by ID, an invalid one too
    assert dead.select(jobs, dead.Selection(job_id="H:a:2")) == [jobs[1]]
    assert dead.select(jobs, dead.Selection(target="H:a:2")) == [jobs[1]]  # a target that is an ID
    assert dead.select(jobs, dead.Selection(target="other")) == [jobs[1]]  # ... or a function
    with pytest.raises(ServerError) as unknown:
        dead.select(jobs, dead.Selection(job_id="nope"))
    assert unknown.value.exit_code == 8
    with pytest.raises(ServerError):  # no such job, and the target has an ID's form
        dead.select(jobs, dead.Selection(target="gone~dead.1764590460000"))
    assert dead.select(jobs, dead.Selection(target="nothing")) == []  # a function without dead jobs
    assert [dead.looks_like_id(t) for t in ("a~dead.12", "h:ab~dead.3", "H:gear1:7", "mail", "mail.dead")] == [
        True, True, True, False, False]
    twice = [job("k", server="a:4730"), job("k", server="b:4730")]
    with pytest.raises(UsageError, match="names a dead job on each of a:4730, b:4730"):
        dead.select(twice, dead.Selection(job_id="k"))


def test_selection_names_exactly_one_thing() -> None:
    for bad in ({}, {"function": "a", "every": True}, {"job_id": "x", "target": "y"}):
        with pytest.raises(UsageError):
            dead.Selection(**bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--limit"):
        dead.DeadHold([], limit=0)


def test_listing_order_is_per_function_oldest_death_first() -> None:
    late = job("late", envelope=Envelope("mail", "u", b"", 1, "e", "", "h", 1.0, 50.0))
    early = job("early", envelope=Envelope("mail", "u", b"", 1, "e", "", "h", 1.0, 5.0))
    alpha = job("alpha", queue="a.dead", envelope=None)
    assert sorted([late, early, alpha], key=dead.listing_order) == [alpha, early, late]


def report(*rows: tuple[str, int, int, int]) -> monitor.ServerReport:
    return monitor.ServerReport("a:4730", True, status=tuple(FunctionStatus(*r) for r in rows))


def test_dead_queues_fold_into_their_function() -> None:
    r = report(("mail", 4, 1, 1), ("mail.dead", 3, 0, 0), ("orphan.dead", 2, 2, 0), (".dead", 1, 0, 0))
    assert [fs.function for fs in r.functions] == ["mail", ".dead", "orphan"]  # ".dead" names no function
    assert (r.dead("mail"), r.dead("orphan"), r.dead("other")) == (3, 2, 0)  # held ones (running) count too
    rows = {t.function: t for t in monitor.totals([r])}
    assert (rows["mail"].queued, rows["mail"].dead, rows["orphan"].dead) == (3, 3, 2)
    doc = monitor.status_document([r])
    assert {f["function"]: f["dead"] for f in doc["functions"]} == {"mail": 3, ".dead": 0, "orphan": 2}
    assert status_lines([r], monitor.totals([r], ["mail"])).decode().splitlines() == [
        "function\tserver\tqueued\trunning\tworkers\theld\tdead", "mail\ta:4730\t3\t1\t1\t0\t3"]
    assert [t.function for t in monitor.totals([r], sort="dead")][:2] == ["mail", "orphan"]


def test_check_max_dead() -> None:
    r = report(("mail", 0, 0, 1), ("mail.dead", 3, 0, 0))
    limit = monitor.Threshold.parse("2", "--max-dead", default_pattern="*")
    assert limit == monitor.Threshold("*", None, 2)
    state, line = monitor.check([r], [], [], [limit])
    assert state == monitor.CRITICAL and line.startswith("GEARMAN CRITICAL - mail has 3 dead (> 2) | ")
    assert "dead=3;;;0" in line.split() and "'mail_dead'=3;;2" in line.split()
    state, line = monitor.check([r], [], [])
    assert state == monitor.OK and "dead=3;;;0" in line.split() and "_dead'" not in line
    with pytest.raises(UsageError, match="--max-dead"):
        monitor.Threshold.parse("many", "--max-dead", default_pattern="*")
