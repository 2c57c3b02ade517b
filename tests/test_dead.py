"""`gearctl dead` against real gearmand: list is non-destructive, show, retry
(back to the original function byte for byte, and only after JOB_CREATED), purge
and its confirmation, invalid envelopes, two servers, gearmand's --job-retries,
and the dead counts of status, check and the exporter.

The dead jobs are made here as the retries helper's worker makes them: a
background job to `<function>.dead`, unique key deadletter.dead_unique(...), the
workload an Envelope."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from conftest import Gearmand, Procs, c_worker, gearctl, on_a_terminal, table_cells, wait_until

from gearctl import Client, dead, monitor, parse_servers
from gearctl.deadletter import Envelope, dead_unique

FIRST = 1764590400.0  # 2025-12-01T12:00:00Z
BINARY = b"\x00line one\nline two\r\n\xff\xfe{\"uids\": [1, 2]}\x00"


def bury(server: Gearmand, function: str, originals: list[str], workload: bytes = b"payload",
         error: str = "ValueError: boom") -> list[str]:
    """Dead jobs of `function`, as a worker out of attempts submits them; their IDs."""
    ids = []
    with Client(server.address) as client:
        for i, unique in enumerate(originals):
            last = FIRST + 60 + i
            env = Envelope(function, unique, workload, 3, error, f"Traceback (most recent call last):\n{error}\n",
                           "web1", FIRST + i, last, handle=f"H:web1:{i}")
            ids.append(dead_unique(unique, last))
            client.submit(function + ".dead", env.encode(), unique=ids[-1])
    return ids


def garbage(server: Gearmand, function: str, data: bytes = b"not an envelope", unique: str = "junk-1") -> None:
    with Client(server.address) as client:
        client.submit(function + ".dead", data, unique=unique)


def total(server: Gearmand, function: str) -> tuple[int, int]:
    """(total, running) of a function in gearmand's own status."""
    t, running, _ = server.status().get(function, (0, 0, 0))
    return t, running


def listed(server: str, *args: str) -> dict:
    result = gearctl("dead", "list", "--json", *args, "-s", server)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_leaves_the_jobs_where_they_were(gearmand: Gearmand) -> None:
    ids = bury(gearmand, "mail", ["m-1", "m-2", "m-3"])
    bury(gearmand, "other", ["o-1"])
    assert total(gearmand, "mail.dead") == (3, 0)
    result = gearctl("dead", "list", "mail", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "id\tfunction\tattempts\tlast error\tfirst failure\tlast failure\thost"
    assert lines[1:] == [f"{ids[i]}\tmail\t3\tValueError: boom\t2025-12-01T12:00:0{i}Z\t2025-12-01T12:01:0{i}Z\tweb1"
                         for i in range(3)]
    # Nothing was taken: the same jobs, queued, and listed again (the JSON this time), every function's.
    assert total(gearmand, "mail.dead") == (3, 0) and total(gearmand, "other.dead") == (1, 0)
    doc = listed(gearmand.address)
    other = dead_unique("o-1", FIRST + 60)
    assert [(j["function"], j["id"], j["valid"]) for j in doc["jobs"]] == [
        ("mail", ids[0], True), ("mail", ids[1], True), ("mail", ids[2], True), ("other", other, True)]
    first = doc["jobs"][0]
    assert first["queue"] == "mail.dead" and first["server"] == gearmand.address and first["requeues"] == 2
    assert first["envelope"] == {"function": "mail", "unique": "m-1", "workload": "payload", "attempts": 3,
                                 "error": "ValueError: boom",
                                 "traceback": "Traceback (most recent call last):\nValueError: boom\n",
                                 "host": "web1", "first_failure": FIRST, "last_failure": FIRST + 60,
                                 "handle": "H:web1:0", "state": "exception"}
    assert doc["servers"] == [{"address": gearmand.address, "up": True, "error": None, "held": 4,
                               "truncated": False, "dropped": [], "unconfirmed": []}]
    assert total(gearmand, "mail.dead") == (3, 0) and total(gearmand, "other.dead") == (1, 0)


def test_list_is_bounded_by_limit(gearmand: Gearmand) -> None:
    bury(gearmand, "mail", ["m-1", "m-2", "m-3"])
    result = gearctl("dead", "list", "--limit", "2", "--json", "-s", gearmand.address)
    assert result.returncode == 0
    assert len(json.loads(result.stdout)["jobs"]) == 2
    assert "only the first 2 dead jobs were looked at (--limit)" in result.stderr.decode()
    assert total(gearmand, "mail.dead") == (3, 0)


def test_show_prints_everything_and_unknown_ids_exit_8(gearmand: Gearmand) -> None:
    (job_id,) = bury(gearmand, "resize", ["img-7"], workload=BINARY)
    shown = gearctl("dead", "show", job_id, "-s", gearmand.address)
    assert shown.returncode == 0, shown.stderr
    text, _, workload = shown.stdout.partition(b"workload:\n")
    assert workload == BINARY + b"\n"  # the bytes as they are, NULs and all
    fields = dict(line.split(": ", 1) for line in text.decode().splitlines() if ": " in line)
    assert fields["id"] == job_id and fields["function"] == "resize" and fields["unique"] == "img-7"
    assert fields["attempts"] == "3" and fields["error"] == "ValueError: boom" and fields["host"] == "web1"
    assert fields["first failure"] == "2025-12-01T12:00:00Z" and fields["last handle"] == "H:web1:0"
    assert "traceback:\nTraceback (most recent call last):\nValueError: boom\n" in text.decode()
    doc = json.loads(gearctl("dead", "show", job_id, "--json", "-s", gearmand.address).stdout)
    assert "workload" not in doc["envelope"]
    import base64

    assert base64.b64decode(doc["envelope"]["workload_base64"]) == BINARY
    by_handle = json.loads(gearctl("dead", "show", doc["handle"], "--json", "-s", gearmand.address).stdout)
    assert by_handle["id"] == job_id
    missing = gearctl("dead", "show", "no-such-id", "-s", gearmand.address)
    assert missing.returncode == 8 and missing.stdout == b""
    assert missing.stderr.decode().splitlines() == [  # gearctl looked: no "server error", and what an ID is
        "gearctl: no dead job no-such-id on any server (an ID is a dead job's key or handle, as `gearctl dead list` "
        "shows them)"]
    by_id_form = gearctl("dead", "show", "gone~dead.1764590460000", "-s", gearmand.address)
    assert (by_id_form.returncode, by_id_form.stderr.decode()) == (
        8, "gearctl: no dead job gone~dead.1764590460000 on any server\n")
    for command in (["retry", "gone~dead.1764590460000"], ["purge", "H:nowhere:99", "--yes"]):
        unknown = gearctl("dead", *command, "-s", gearmand.address)  # an ID by its form, not a function
        assert unknown.returncode == 8 and "no dead job" in unknown.stderr.decode(), unknown.stderr
    assert total(gearmand, "resize.dead") == (1, 0)


def test_retry_brings_the_workload_back_to_the_original_function(gearmand: Gearmand, procs: Procs,
                                                                   tmp_path: Path) -> None:
    (job_id,) = bury(gearmand, "resize", ["img-7"], workload=BINARY)
    result = gearctl("dead", "retry", "resize", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"retried {re.escape(job_id)} \(resize\) as H:\S+\n", result.stdout.decode())
    # Back on the original function, with its original unique key; the dead job is gone.
    assert total(gearmand, "resize") == (1, 0) and total(gearmand, "resize.dead") == (0, 0)
    assert "img-7" in gearmand.admin("show unique jobs")
    assert listed(gearmand.address)["jobs"] == []
    # A C worker receives the original workload byte for byte.
    received = tmp_path / "received"
    c_worker(procs, gearmand, "resize", "sh", "-c", 'cat > "$0.part" && mv "$0.part" "$0"', str(received),
             count=1, registered=False)
    wait_until(received.exists, 30, what="the C worker to run the retried job")
    assert received.read_bytes() == BINARY


def test_retry_by_id_takes_that_job_only(gearmand: Gearmand) -> None:
    ids = bury(gearmand, "mail", ["m-1", "m-2"])
    result = gearctl("dead", "retry", ids[1], "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith(f"retried {ids[1]} (mail) as H:")
    assert [j["id"] for j in listed(gearmand.address)["jobs"]] == [ids[0]]
    assert "m-2" in gearmand.admin("show unique jobs") and "m-1" not in gearmand.admin("show unique jobs")


def test_two_dead_jobs_of_one_key_are_not_coalesced_by_retry(gearmand: Gearmand) -> None:
    first = bury(gearmand, "mail", ["same"], workload=b"first")[0]
    with Client(gearmand.address) as client:  # the same key died again later, with another workload
        env = Envelope("mail", "same", b"second", 1, "boom", "", "web1", FIRST + 100, FIRST + 200)
        client.submit("mail.dead", env.encode(), unique=dead_unique("same", FIRST + 200))
    result = gearctl("dead", "retry", "mail", "-s", gearmand.address)
    assert result.returncode == 8 and result.stdout.decode().startswith(f"retried {first} (mail) as ")
    assert "a job with its unique key same is queued or running again" in result.stderr.decode()
    assert total(gearmand, "mail") == (1, 0) and total(gearmand, "mail.dead") == (1, 0)


def test_a_failed_resubmit_leaves_the_dead_job(gearmand: Gearmand) -> None:
    (job_id,) = bury(gearmand, "mail", ["m-1"])
    assert gearctl("client", "mail", "--data", "other job", "-s", gearmand.address).returncode == 0
    assert gearmand.admin("maxqueue mail 1") == ["OK"]  # mail's queue is full: the resubmit is refused
    result = gearctl("dead", "retry", "--all", "-s", gearmand.address)
    assert result.returncode == 8 and result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        f"gearctl: {job_id}: {gearmand.address}: server error QUEUE_ERROR: Job queue is full"]
    assert total(gearmand, "mail.dead") == (1, 0) and total(gearmand, "mail") == (1, 0)
    assert [j["id"] for j in listed(gearmand.address)["jobs"]] == [job_id]


def test_retry_will_not_coalesce_into_a_job_with_the_original_key(gearmand: Gearmand) -> None:
    (job_id,) = bury(gearmand, "mail", ["m-1"])
    assert gearctl("client", "mail", "--data", "newer", "-u", "m-1", "-s", gearmand.address).returncode == 0
    result = gearctl("dead", "retry", job_id, "-s", gearmand.address)
    assert result.returncode == 8
    assert "a job with its unique key m-1 is queued or running again" in result.stderr.decode()
    assert total(gearmand, "mail.dead") == (1, 0) and total(gearmand, "mail") == (1, 0)


def test_purge_needs_yes_off_a_terminal(gearmand: Gearmand) -> None:
    ids = bury(gearmand, "mail", ["m-1", "m-2"])
    refused = gearctl("dead", "purge", "mail", "-s", gearmand.address)
    assert refused.returncode == 2 and refused.stdout == b""
    assert refused.stderr.decode().splitlines() == [
        "gearctl: purge deletes dead jobs for good: give --yes (stdin is not a terminal to ask on)"]
    assert total(gearmand, "mail.dead") == (2, 0)
    one = gearctl("dead", "purge", ids[0], "--yes", "-s", gearmand.address)
    assert one.returncode == 0 and one.stdout.decode() == f"purged {ids[0]} (mail)\n"
    assert [j["id"] for j in listed(gearmand.address)["jobs"]] == [ids[1]]
    rest = gearctl("dead", "purge", "mail", "--yes", "-s", gearmand.address)
    assert rest.returncode == 0 and rest.stdout.decode() == f"purged {ids[1]} (mail)\n"
    assert total(gearmand, "mail.dead") == (0, 0) and total(gearmand, "mail") == (0, 0)


def test_purge_asks_the_confirm_callback_while_holding_the_jobs(gearmand: Gearmand) -> None:
    bury(gearmand, "mail", ["m-1", "m-2"])
    servers = parse_servers(gearmand.address)
    asked: list[list[str]] = []

    def no(jobs) -> bool:
        asked.append([j.function for j in jobs])
        return False

    result = asyncio.run(dead.purge_dead(servers, dead.Selection(every=True), confirm=no))
    assert result.declined and result.acted == () and asked == [["mail", "mail"]]
    assert total(gearmand, "mail.dead") == (2, 0)
    result = asyncio.run(dead.purge_dead(servers, dead.Selection(function="mail"), confirm=lambda jobs: True))
    assert [a.action for a in result.acted] == [dead.Action.PURGED, dead.Action.PURGED]
    assert total(gearmand, "mail.dead") == (0, 0)


def test_invalid_envelopes_are_listed_never_retried_and_purged_only_when_asked(gearmand: Gearmand) -> None:
    (job_id,) = bury(gearmand, "mail", ["m-1"])
    garbage(gearmand, "mail", b"\xff\x00garbage", unique="junk-1")
    garbage(gearmand, "mail", b'{"gearctl_dead_letter": 1, "function": "mail"}', unique="junk-2")
    doc = listed(gearmand.address)
    invalid = {j["id"]: j for j in doc["jobs"] if not j["valid"]}
    assert set(invalid) == {"junk-1", "junk-2"}
    assert invalid["junk-1"]["envelope"] is None and invalid["junk-1"]["workload_base64"] == "/wBnYXJiYWdl"
    assert invalid["junk-1"]["invalid"].startswith("not a gearctl dead-letter envelope")
    assert invalid["junk-2"]["invalid"].startswith("a dead-letter envelope with a bad or missing field")
    table = gearctl("dead", "list", "-s", gearmand.address).stdout.decode()
    assert re.search(r"^junk-1\tmail\t-\tinvalid: not a gearctl dead-letter envelope", table, re.M)
    # retry --all retries the envelope and leaves the rest, saying so; by ID it is a usage error.
    retried = gearctl("dead", "retry", "--all", "-s", gearmand.address)
    assert retried.returncode == 0 and retried.stdout.decode().startswith(f"retried {job_id} (mail) as ")
    assert len(retried.stderr.decode().splitlines()) == 2 and "cannot be retried" in retried.stderr.decode()
    by_id = gearctl("dead", "retry", "junk-1", "-s", gearmand.address)
    assert by_id.returncode == 2 and "cannot be retried, purge it by its ID" in by_id.stderr.decode()
    assert total(gearmand, "mail.dead") == (2, 0)
    # purge --all leaves them too; --include-invalid (or the ID) takes them.
    kept = gearctl("dead", "purge", "--all", "--yes", "-s", gearmand.address)
    assert kept.returncode == 0 and kept.stdout == b"" and "--include-invalid" in kept.stderr.decode()
    assert total(gearmand, "mail.dead") == (2, 0)
    assert gearctl("dead", "purge", "junk-2", "--yes", "-s", gearmand.address).returncode == 0
    assert gearctl("dead", "purge", "--all", "--yes", "--include-invalid", "-s", gearmand.address).returncode == 0
    assert total(gearmand, "mail.dead") == (0, 0)


def test_two_servers(gearmand_factory) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    a = bury(one, "mail", ["on-one"])[0]
    b = bury(two, "mail", ["on-two"])[0]
    servers = f"{one.address},{two.address}"
    doc = listed(servers)
    assert {(j["id"], j["server"]) for j in doc["jobs"]} == {(a, one.address), (b, two.address)}
    table = gearctl("dead", "list", "-s", servers).stdout.decode().splitlines()
    assert table[0].endswith("\thost\tserver") and len(table) == 3
    code, screen = on_a_terminal(["dead", "list", "-s", servers], env={"COLUMNS": "250"})
    rows = table_cells(screen)
    assert code == 0 and sorted((r[0], r[-1]) for r in rows) == sorted([(a, one.address), (b, two.address)]), screen
    result = gearctl("dead", "retry", "mail", "-s", servers)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2, result.stderr
    assert total(one, "mail.dead") == total(two, "mail.dead") == (0, 0)
    assert total(one, "mail")[0] + total(two, "mail")[0] == 2


def test_a_down_server_is_said_and_the_other_is_read(gearmand: Gearmand) -> None:
    from conftest import free_port

    (job_id,) = bury(gearmand, "mail", ["m-1"])
    down = f"127.0.0.1:{free_port()}"
    result = gearctl("dead", "list", "--json", "-s", f"{gearmand.address},{down}", "--connect-timeout", "2")
    assert result.returncode == 0 and [j["id"] for j in json.loads(result.stdout)["jobs"]] == [job_id]
    assert result.stderr.decode() == f"gearctl: {down}: connection refused\n"  # the address once
    nobody = gearctl("dead", "list", "-s", down, "--connect-timeout", "2")
    assert nobody.returncode == 3 and nobody.stderr.decode().startswith("gearctl: no job server answered")


def test_job_retries_drops_are_reported_not_silent(gearmand_factory) -> None:
    server = gearmand_factory("--job-retries", "2")
    bury(server, "mail", ["m-1", "m-2"])
    first = gearctl("dead", "list", "-s", server.address)
    assert first.returncode == 0 and first.stderr == b"" and len(first.stdout.splitlines()) == 3
    # gearmand counts the second hand-back as its second retry and drops the jobs: gearctl says so.
    second = gearctl("dead", "list", "-s", server.address)
    assert second.returncode == 0
    assert "2 dead job(s) were gone once handed back" in second.stderr.decode()
    assert "--job-retries" in second.stderr.decode()
    assert total(server, "mail.dead") == (0, 0)


def test_status_check_and_exporter_count_dead_jobs(gearmand: Gearmand) -> None:
    bury(gearmand, "mail", ["m-1", "m-2", "m-3"])
    bury(gearmand, "orphan", ["x-1"])  # a function known only by its dead jobs
    assert gearctl("client", "mail", "--data", "live", "-s", gearmand.address).returncode == 0
    doc = json.loads(gearctl("status", "--json", "-s", gearmand.address).stdout)
    rows = {f["function"]: f for f in doc["functions"]}
    assert set(rows) == {"mail", "orphan"}  # no .dead rows among the functions
    assert (rows["mail"]["queued"], rows["mail"]["dead"], rows["orphan"]["queued"], rows["orphan"]["dead"]) == (
        1, 3, 0, 1)
    assert {f["function"]: f["dead"] for f in doc["servers"][0]["functions"]} == {"mail": 3, "orphan": 1}
    plain = gearctl("status", "-s", gearmand.address).stdout.decode().splitlines()
    assert f"mail\t{gearmand.address}\t1\t0\t0\t0\t3" in plain and len(plain) == 3
    by_dead = gearctl("status", "--sort", "dead", "-s", gearmand.address).stdout.decode().splitlines()
    assert [line.split("\t")[0] for line in by_dead[1:]] == ["mail", "orphan"]
    code, screen = on_a_terminal(["status", "-s", gearmand.address])
    cells = table_cells(screen)
    header = next(line for line in screen.splitlines() if "function" in line)
    assert code == 0 and header.split()[-2:] == ["dead", "┃"], screen
    assert cells == [["mail", "1", "0", "0", "3"], ["orphan", "0", "0", "0", "1"]], screen

    ok = gearctl("check", "--max-dead", "mail=5", "-s", gearmand.address)
    assert ok.returncode == 0 and "dead=4;;;0" in ok.stdout.decode() and "'mail_dead'=3;;5" in ok.stdout.decode()
    warn = gearctl("check", "--max-dead", "mail=2,5", "-s", gearmand.address)
    assert warn.returncode == 1 and "mail has 3 dead (> 2)" in warn.stdout.decode()
    crit = gearctl("check", "--max-dead", "0", "-s", gearmand.address)
    line = crit.stdout.decode()
    assert crit.returncode == 2 and line.startswith("GEARMAN CRITICAL - mail has 3 dead (> 0); orphan has 1 dead")
    assert "dead=4;;;0" in line and "'orphan_dead'=1;;0" in line
    bad = gearctl("check", "--max-dead", "lots", "-s", gearmand.address)
    assert bad.returncode == 3 and bad.stdout.decode().startswith("GEARMAN UNKNOWN - --max-dead takes")

    reports = asyncio.run(monitor.collect(parse_servers(gearmand.address), workers=True))
    samples = monitor.prometheus_samples(reports)
    dead_jobs = {labels["function"]: value for labels, value in samples["gearman_dead_jobs"]}
    assert dead_jobs == {"mail": 3.0, "orphan": 1.0}
    assert "mail.dead" not in {labels["function"] for labels, _ in samples["gearman_queued"]}


def test_held_dead_jobs_still_count_as_dead(gearmand: Gearmand) -> None:
    bury(gearmand, "mail", ["m-1", "m-2"])
    servers = parse_servers(gearmand.address)

    async def look_while_held() -> list[monitor.Totals]:
        async with dead.DeadHold(servers, "mail") as hold:
            assert len(hold.jobs) == 2
            assert total(gearmand, "mail.dead") == (2, 2)  # gearmand counts held jobs as running
            return monitor.totals(await monitor.collect(servers))

    (row,) = asyncio.run(look_while_held())
    assert row.function == "mail" and row.dead == 2
    assert total(gearmand, "mail.dead") == (2, 0)


def test_purge_asks_on_a_terminal(gearmand: Gearmand) -> None:
    import shlex
    import subprocess
    import sys

    from conftest import clean_env

    bury(gearmand, "mail", ["m-1", "m-2"])
    command = shlex.join([sys.executable, "-m", "gearctl", "dead", "purge", "mail", "-s", gearmand.address])

    def answer(text: bytes) -> str:
        # util-linux script(1) gives the command a terminal for stdin, stdout and stderr.
        run = subprocess.run(["script", "-qec", command, "/dev/null"], input=text, capture_output=True,
                             env=clean_env(), timeout=60)
        assert run.returncode == 0, run.stdout
        return run.stdout.decode("utf-8", "replace")

    declined = answer(b"n\n")
    assert "purge 2 dead job(s) of mail for good? [y/N]" in declined and "gearctl: nothing purged" in declined
    assert total(gearmand, "mail.dead") == (2, 0)
    accepted = answer(b"y\n")
    assert accepted.count("purged m-") == 2
    assert total(gearmand, "mail.dead") == (0, 0)
