"""PHP and gearctl on the same queues, both ways, against gearmand: serialize()
payloads and answers, and every WORK_* packet a job can send."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHP_DIR, Gearmand, Procs, clean_env, gearctl, php_worker, wait_until

from gearctl.php import PhpObject, dumps

pytestmark = [pytest.mark.conformance, pytest.mark.interop]  # PHP, against gearmand and gearctl server

PLUGINS = Path(__file__).parent / "plugins_php"
FUNCTIONS = ("wk_status", "wk_data", "wk_warning", "wk_exception", "wk_timeout", "wk_return", "wk_decode")


@pytest.fixture
def worker(gearmand: Gearmand, procs: Procs) -> Gearmand:
    procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", gearmand.address,
                 "--log-format", "json"], env=clean_env())
    wait_until(lambda: all(gearmand.status().get(f, (0, 0, 0))[2] >= 1 for f in FUNCTIONS), 15,
               what="gearctl worker")
    return gearmand


def php_client(mode: str, server: Gearmand, function: str, workload: bytes | str) -> list[dict]:
    done = subprocess.run(["php", str(PHP_DIR / "callbacks.php"), mode, server.address, function, workload],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


# --- gearctl worker -> PHP client ---------------------------------------------------

def test_php_callbacks_see_status_data_warning_and_the_return(worker: Gearmand) -> None:
    assert php_client("tasks", worker, "wk_status", "x") == [
        {"cb": "status", "num": 1, "den": 2}, {"cb": "status", "num": 2, "den": 2},
        {"cb": "complete", "data": "done", "unserialized": None}, {"end": True, "code": "SUCCESS"}]
    assert php_client("tasks", worker, "wk_data", "x") == [
        {"cb": "data", "data": "part1;"}, {"cb": "data", "data": "part2;"},
        {"cb": "complete", "data": "end", "unserialized": None}, {"end": True, "code": "SUCCESS"}]
    assert php_client("tasks", worker, "wk_warning", "x") == [
        {"cb": "warning", "data": "careful now"}, {"cb": "complete", "data": "ok", "unserialized": None},
        {"end": True, "code": "SUCCESS"}]


def test_php_sees_an_exception_and_a_timeout(worker: Gearmand) -> None:
    # No retries declared: each failed job is kept in FUNCTION.dead (the default), and the
    # client is told so in a WORK_WARNING just before the end.
    events = php_client("tasks", worker, "wk_exception", 's:3:"bad";')
    assert events[0] == {"cb": "warning",
                         "data": "gearctl: out of attempts (1 of 1), kept in wk_exception.dead: ValueError: boom: bad"}
    assert events[1] == {"cb": "exception", "data": "ValueError: boom: bad"}
    assert "complete" not in {e.get("cb") for e in events}
    events = php_client("tasks", worker, "wk_timeout", "x")
    assert events[0] == {"cb": "warning", "data": "gearctl: job timed out after 0.5s"}
    assert events[1] == {"cb": "warning",
                         "data": "gearctl: out of attempts (1 of 1), kept in wk_timeout.dead: timed out after 0.5s"}
    assert events[2] == {"cb": "fail"}


def test_php_donormal_gets_each_return_code(worker: Gearmand) -> None:
    # libgearman 1.x's doNormal() gathers WORK_DATA into the result and returns once
    # (the doNormal() loop in PHP's old manual no longer sees each packet).
    assert php_client("normal", worker, "wk_data", "x") == [{"code": "SUCCESS", "result": "part1;part2;end"}]
    assert php_client("normal", worker, "wk_status", "x") == [{"code": "SUCCESS", "result": "done"}]
    assert php_client("normal", worker, "wk_warning", "x") == [{"code": "SUCCESS", "result": "ok"}]
    assert php_client("normal", worker, "wk_exception", "x") == [{"code": "WORK_EXCEPTION", "result": ""}]
    assert php_client("normal", worker, "wk_timeout", "x") == [{"code": "WORK_FAIL", "result": ""}]


def test_a_php_payload_is_answered_in_php(worker: Gearmand) -> None:
    payload = dumps({"uids": [1, 2], "account": PhpObject("stdClass", {"name": "ann"})})
    events = php_client("tasks", worker, "wk_return", payload)
    complete = next(e for e in events if e.get("cb") == "complete")
    assert complete["unserialized"] == {"got": {"uids": [1, 2], "account": {"name": "ann"}}, "encoding": "php"}


def test_a_workload_that_looks_php_but_is_broken_fails_that_job_only(worker: Gearmand) -> None:
    broken = gearctl("client", "wk_decode", "--wait", "--data", 'a:2:{i:0;i:1;', "-s", worker.address)
    assert broken.returncode == 5
    assert b"invalid PHP serialize() data: truncated" in broken.stderr and b"at offset 13" in broken.stderr
    fine = gearctl("client", "wk_decode", "--wait", "--data", 'a:1:{i:0;i:1;}', "-s", worker.address)
    assert fine.returncode == 0 and fine.stdout == b"a:1:{i:0;i:1;}"


# --- PHP worker -> gearctl client ---------------------------------------------------

@pytest.mark.parametrize(("function", "code", "stdout", "stderr"), [
    ("php_echo", 0, b"abc", b""),
    ("php_data", 0, b"part1;part2;end", b""),
    ("php_warning", 0, b"ok", b"careful now"),
    ("php_exception", 5, b"", b"boom: bad input abc"),
    ("php_fail", 1, b"", b"failed"),
])
def test_each_php_worker_packet_reaches_the_gearctl_client(gearmand: Gearmand, procs: Procs, function: str,
                                                           code: int, stdout: bytes, stderr: bytes) -> None:
    php_worker(procs, gearmand, function)
    done = gearctl("client", function, "--wait", "--data", "abc", "-s", gearmand.address)
    assert done.returncode == code, done.stderr
    assert done.stdout == stdout
    assert stderr in done.stderr


def test_php_status_reaches_the_gearctl_client_json(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_status")
    done = gearctl("client", "php_status", "--wait", "--json", "--data", "x", "-s", gearmand.address)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "complete" and doc["result"] == "done"


def test_gearctl_php_payload_reaches_php_unserialize(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_unserialize")
    data = {"uids": [1, 2], "big": 12345678901234567890,
            "account": {"__php_class__": "stdClass", "name": "ann"}}
    done = gearctl("client", "php_unserialize", "-e", "php", "--wait", "--data", json.dumps(data),
                   "-s", gearmand.address)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["uids"] == [1, 2] and got["account"] == {"name": "ann"}
    assert math.isclose(got["big"], 1.2345678901234567e19)  # a PHP float, not a clamped int


def test_php_serialize_round_trip_through_a_gearctl_worker_keeps_classes(worker: Gearmand) -> None:
    # PHP's serialize() of an object with protected and private properties goes to a
    # gearctl function that returns what it got; PHP gets the same object back.
    script = r"""
        class Account { public $name = 'ann'; protected $balance = 10; private $pin = '1234';
                        function pin() { return $this->pin; } function balance() { return $this->balance; } }
        $c = new GearmanClient(); $c->addServers($argv[1]);
        $back = unserialize($c->doNormal('wk_decode', serialize(new Account)));
        echo json_encode([get_class($back), $back->name, $back->balance(), $back->pin()]);
    """
    done = subprocess.run(["php", "-r", script, worker.address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["Account", "ann", 10, "1234"]


# --- the same queue semantics whoever submits ---------------------------------------

SUBMITTERS = ("php", "c", "gearctl")


def submit(who: str, server: Gearmand, workload: str, *, priority: str = "normal", unique: str | None = None) -> str:
    """A background job for `nap`; returns its handle."""
    if who == "php":
        method = {"high": "doHighBackground", "normal": "doBackground", "low": "doLowBackground"}[priority]
        script = f"$c = new GearmanClient(); $c->addServers($argv[1]); echo $c->{method}('nap', $argv[2], $argv[3]);"
        argv = ["php", "-r", script, server.address, workload, unique or ""]
    elif who == "c":
        argv = ["gearman", "-h", "127.0.0.1", "-p", str(server.port), "-b", "-f", "nap",
                *({"high": ["-I"], "low": ["-L"], "normal": []}[priority]), *(["-u", unique] if unique else []),
                workload]
    else:
        argv = [sys.executable, "-m", "gearctl", "client", "nap", "--data", workload, "--priority", priority,
                "-s", server.address, *(["--unique", unique] if unique else [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("who", SUBMITTERS)
def test_priorities_order_the_queue_whoever_submits(gearmand: Gearmand, tmp_path: Path, who: str) -> None:
    for priority in ("low", "normal", "high"):
        submit(who, gearmand, f"{priority}:0", priority=priority)
    wait_until(lambda: gearmand.queued("nap") == 3, 10, what="3 jobs queued")
    record = tmp_path / "record"
    env = clean_env(GEARCTL_TEST_RECORD=str(record))
    done = subprocess.run([sys.executable, "-m", "gearctl", "worker", "-p", str(Path(__file__).parent / "plugins_sup"),
                           "--functions", "nap", "--burst", "-s", gearmand.address], env=env, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in record.read_text().splitlines()] == ["high:0", "normal:0", "low:0"]


@pytest.mark.parametrize("who", SUBMITTERS)
def test_a_unique_key_coalesces_whoever_submits(gearmand: Gearmand, who: str) -> None:
    first = submit(who, gearmand, "a:0", unique="same-key")
    second = submit(who, gearmand, "b:0", unique="same-key")
    assert gearmand.queued("nap") == 1
    if who != "c":  # the C tool prints no handle for a background job
        assert first == second and first.startswith("H:")


# --- --decode: a PHP answer as JSON for shell scripts ------------------------------

def test_decode_prints_a_php_answer_as_json(worker: Gearmand) -> None:
    data = json.dumps({"uids": [1, 2], "account": {"__php_class__": "Account", "name": "ann"},
                       "suit": {"__php_enum__": "Suit:Hearts"}})
    done = gearctl("client", "wk_return", "-e", "php", "--wait", "--decode", "auto", "--data", data,
                   "-s", worker.address)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"got": {"uids": [1, 2], "account": {"__php_class__": "Account", "name": "ann"},
                                               "suit": {"__php_enum__": "Suit:Hearts"}}, "encoding": "php"}
    record = json.loads(gearctl("client", "wk_return", "-e", "php", "--wait", "--decode", "php", "--json",
                                "--data", "[7]", "-s", worker.address).stdout)
    assert record["status"] == "complete" and record["value"] == {"got": [7], "encoding": "php"}
    assert record["result"].startswith("a:2:{")


def test_decode_sends_work_data_to_stderr_and_keeps_stdout_one_document(worker: Gearmand) -> None:
    done = gearctl("client", "wk_data", "--wait", "--decode", "auto", "--data", "x", "-s", worker.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'"end"\n'
    assert b"part1;part2;" in done.stderr


def test_decode_each_line_prints_one_document_per_job(worker: Gearmand) -> None:
    done = gearctl("client", "wk_return", "-n", "--wait", "--decode", "json", "-e", "json", "--inflight", "1",
                   "-s", worker.address, input=b"[1]\n[2]\n")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"got": [1], "encoding": "json"}, {"got": [2], "encoding": "json"}]


def test_a_result_that_does_not_decode_exits_2_and_keeps_the_record(worker: Gearmand) -> None:
    done = gearctl("client", "wk_data", "--wait", "--decode", "php", "--json", "--data", "x", "-s", worker.address)
    assert done.returncode == 2
    record = json.loads(done.stdout)
    assert record["status"] == "complete" and record["result"] == "end" and record["value"] is None
    assert "offset 0" in record["decode_error"]
    assert done.stderr.startswith(b"gearctl: --decode php: invalid PHP serialize() data")
    lines = gearctl("client", "wk_data", "-n", "--wait", "--decode", "php", "-s", worker.address,
                    input=b"a\nb\n")
    assert lines.returncode == 2 and lines.stdout == b""
    assert lines.stderr.count(b"--decode php: invalid PHP serialize() data") == 2


def test_decode_needs_wait(gearmand: Gearmand) -> None:
    done = gearctl("client", "f", "--decode", "php", "--data", "x", "-s", gearmand.address)
    assert done.returncode == 2 and b"--decode reads a job's result; add --wait" in done.stderr
    assert gearmand.queued("f") == 0


def test_run_decodes_too() -> None:
    done = gearctl("run", "-p", str(PLUGINS), "wk_return", "-e", "php", "--decode", "php",
                   "--data", '{"o": {"__php_class__": "Account", "\\u0000*\\u0000pin": 1}}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"got": {"o": {"__php_class__": "Account", "pin": 1,
                                                      "__php_visibility__": {"pin": "protected"}}},
                                       "encoding": "php"}
    record = json.loads(gearctl("run", "-p", str(PLUGINS), "wk_data", "--json", "--data", "x").stdout)
    assert record["data"] == ["part1;", "part2;"] and record["result"] == "end" and record["encoding"] == "raw"


# --- every documented PHP value, through gearmand both ways --------------------------

def _as_php_json(value):
    """What json_encode() makes of a Python structure after serialize(): an empty
    dict is an empty PHP array, `[]`."""
    if isinstance(value, dict):
        return {k: _as_php_json(v) for k, v in value.items()} if value else []
    if isinstance(value, list):
        return [_as_php_json(v) for v in value]
    return value


def test_every_php_value_reaches_the_plugin_as_documented_and_goes_back(gearmand: Gearmand, procs: Procs,
                                                                        tmp_path: Path) -> None:
    sys.path.insert(0, str(PLUGINS))
    try:
        from packets import describe
    finally:
        sys.path.remove(str(PLUGINS))
    from test_php_codec import EXPECTED_FROM_PHP

    record = tmp_path / "record"
    env = clean_env(GEARCTL_TEST_RECORD=str(record))
    procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", gearmand.address,
                 "--functions", "wk_describe,wk_decode,wk_record"], env=env)
    wait_until(lambda: all(gearmand.status().get(f, (0, 0, 0))[2] >= 1 for f in
                           ("wk_describe", "wk_decode", "wk_record")), 15, what="gearctl worker")
    done = subprocess.run(["php", str(PHP_DIR / "serialize.php"), "submit", gearmand.address], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t", 2) for line in done.stdout.splitlines()]
    described = {name: json.loads(text) for kind, name, text in rows if kind == "describe"}
    echoed = {name: text for kind, name, text in rows if kind == "echo"}
    assert not [row for row in rows if row[0] == "background"], rows

    expected = {name: describe(value) for name, value in EXPECTED_FROM_PHP.items()}
    expected["nan"] = {"float": "nan"}
    expected["stdclass"] = {"object": "stdClass", "props": {"a": ["public", {"int": 1}],
                                                            "list": ["public", {"list": [{"int": 1}, {"int": 2}]}]},
                            "shadowed": []}
    expected["account"] = {"object": "Account", "props": {"name": ["public", {"str": "ann"}],
                                                          "balance": ["protected", {"int": 10}],
                                                          "pin": ["private", {"str": "1234"}]}, "shadowed": []}
    expected["child"] = {"object": "Child", "props": {"name": ["public", {"str": "ann"}],
                                                      "balance": ["protected", {"int": 10}],
                                                      "pin": ["private", {"str": "child"}]},
                         "shadowed": [["Account", "pin", {"str": "1234"}]]}
    empty = {"object": "stdClass", "props": {}, "shadowed": []}
    expected["sameobj"] = {"list": [empty, empty]}
    expected["self"] = {"object": "stdClass", "props": {"me": ["public", {"cycle": "stdClass"}]}, "shadowed": []}
    assert set(described) == set(expected)
    for name, want in expected.items():
        assert described[name] == _as_php_json(want), name

    # What the plugin returns is what PHP sent, as serialize() sees it (an object that
    # holds itself included), but for three documented rules: an array reference is
    # resolved into a copy (PHP gets the values without the reference), None is the
    # empty result (as a PHP worker's `return;`), and bytes (a string that is not
    # UTF-8) go out exactly as they are, not serialize()d.
    assert {name for name, text in echoed.items() if text != "same"} == {"refs", "null", "binary"}
    assert base64.b64decode(echoed["binary"]) == b"\xff\xfe\x00a" and echoed["null"] == ""

    wait_until(lambda: record.exists() and len(record.read_text().splitlines()) == len(described), 30,
               what="every background job recorded")
    backgrounded = {r["name"]: r["described"] for r in map(json.loads, record.read_text().splitlines())}
    for name, want in expected.items():
        assert backgrounded[name] == json.loads(json.dumps(want)), name
