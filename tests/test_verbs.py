"""gearadmin's remaining verbs: getpid, maxqueue, shutdown, against gearmand and
the embedded server (`conformance`: the `gearmand` fixture is each in turn), and
their pure parts without a server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Embedded, Gearmand, Terminal, free_port, gearctl

from gearctl import ops
from gearctl.errors import ConnectionFailed, ExitCode, RemoteProtocolError, ServerError, UsageError

# -- pure parts ------------------------------------------------------------------------

@pytest.mark.parametrize(("limits", "args"), [
    ((), ["f"]),
    ((5,), ["f", "5"]),
    ((0,), ["f", "0"]),
    ((1, 2, 3), ["f", "1", "2", "3"]),
])
def test_maxqueue_takes_none_one_or_three_limits(limits: tuple[int, ...], args: list[str]) -> None:
    assert ops.maxqueue_args("f", limits) == args


@pytest.mark.parametrize("limits", [(1, 2), (1, 2, 3, 4), (-1,), (1, -2, 3)])
def test_maxqueue_refuses_what_gearmand_would_read_as_no_limit(limits: tuple[int, ...]) -> None:
    with pytest.raises(UsageError):
        ops.maxqueue_args("f", limits)


def test_the_exit_code_is_the_worst_servers() -> None:
    ok = ops.AdminOutcome("a")
    down = ops.AdminOutcome("b", ConnectionFailed("b: refused"))
    unknown = ops.AdminOutcome("c", ServerError("UNKNOWN_COMMAND", "Unknown server command"))
    assert ops.worst_exit([ok, ok]) == ExitCode.OK
    assert ops.worst_exit([ok, down]) == ExitCode.NO_SERVER
    assert ops.worst_exit([down, unknown, ops.AdminOutcome("d", RemoteProtocolError("x"))]) == ExitCode.SERVER_REFUSED
    assert unknown.unsupported and not down.unsupported and ok.ok and not down.ok


def test_shutdown_args() -> None:
    assert ops.shutdown_args(True) == ["graceful"]
    assert ops.shutdown_args(False) == []


# -- against the servers -----------------------------------------------------------------

@pytest.mark.conformance
def test_getpid_is_the_servers_real_pid(gearmand: Gearmand) -> None:
    result = gearctl("getpid", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{gearmand.address}\t{gearmand.pid}\n"


@pytest.mark.conformance
def test_getpid_json_names_a_server_that_is_down(gearmand: Gearmand) -> None:
    down = f"127.0.0.1:{free_port()}"
    result = gearctl("getpid", "--json", "-s", f"{gearmand.address},{down}")
    assert result.returncode == ExitCode.NO_SERVER
    assert json.loads(result.stdout) == {"servers": [
        {"address": gearmand.address, "up": True, "error": None, "pid": gearmand.pid},
        {"address": down, "up": False, "error": f"{down}: connection refused", "pid": None}]}
    assert result.stderr.decode() == f"gearctl: {down}: connection refused\n"


@pytest.mark.conformance
def test_maxqueue_caps_a_function_and_lifts_the_cap(gearmand: Gearmand) -> None:
    s = gearmand.address
    assert gearctl("client", "capped", "--data", "1", "-s", s).returncode == 0  # gearmand knows it now
    result = gearctl("maxqueue", "capped", "1", "-s", s)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"maxqueue capped 1 on {s}\n"
    refused = gearctl("client", "capped", "--data", "2", "-s", s)
    assert refused.returncode == ExitCode.SERVER_REFUSED
    assert b"QUEUE_ERROR" in refused.stderr
    lifted = gearctl("maxqueue", "capped", "-s", s)
    assert lifted.returncode == 0, lifted.stderr
    assert lifted.stdout.decode() == f"maxqueue capped no limit on {s}\n"
    assert gearctl("client", "capped", "--data", "3", "-s", s).returncode == 0
    assert gearmand.queued("capped") == 2


@pytest.mark.conformance
def test_maxqueue_says_a_cap_for_an_unknown_function_would_not_hold(gearmand: Gearmand) -> None:
    result = gearctl("maxqueue", "nobody_knows", "3", "-s", gearmand.address)
    assert result.returncode == ExitCode.SERVER_REFUSED
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gearctl: {gearmand.address}: server error UNKNOWN_FUNCTION")
    assert gearctl("client", "nobody_knows", "--data", "x", "-s", gearmand.address).returncode == 0


@pytest.mark.parametrize("limits", [["1", "2"], ["abc"]])
def test_maxqueue_bad_limits_are_usage_errors(limits: list[str]) -> None:
    result = gearctl("maxqueue", "f", *limits, "-s", f"127.0.0.1:{free_port()}")
    assert result.returncode == ExitCode.USAGE
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(b"gearctl")


def test_shutdown_off_a_terminal_needs_yes(tmp_path: Path) -> None:
    server = Embedded(tmp_path)
    try:
        result = gearctl("shutdown", "-s", server.address)
        assert result.returncode == ExitCode.USAGE
        assert result.stderr.decode() == ("gearctl: shutdown stops the servers: give --yes "
                                          "(stdin is not a terminal to ask on)\n")
        assert server.proc.poll() is None
    finally:
        server.stop()


@pytest.mark.parametrize("graceful", [False, True])
def test_shutdown_stops_the_embedded_server(tmp_path: Path, graceful: bool) -> None:
    server = Embedded(tmp_path)
    try:
        result = gearctl("shutdown", "--yes", *(["--graceful"] if graceful else []), "-s", server.address)
        assert result.returncode == 0, result.stderr
        said = "shutting down gracefully" if graceful else "shut down"
        assert result.stdout.decode() == f"{said} {server.address}\n"
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


def test_shutdown_asks_on_a_terminal(tmp_path: Path) -> None:
    server = Embedded(tmp_path)
    try:
        with Terminal(["shutdown", "-s", server.address], stdin_too=True) as term:
            term.wait_for(lambda t: "[y/N]" in t.text(), what="the question")
            os.write(term.master, b"n\n")
            assert term.proc.wait(30) == 0
            term.wait_for(lambda t: "nothing shut down" in t.text(), what="the answer")
        assert server.proc.poll() is None
        with Terminal(["shutdown", "-s", server.address], stdin_too=True) as term:
            term.wait_for(lambda t: f"shut down {server.address}?" in t.text(), what="the question")
            os.write(term.master, b"y\n")
            assert term.proc.wait(30) == 0
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


@pytest.mark.interop
def test_shutdown_says_gearmand_does_not_support_it(gearmand: Gearmand) -> None:
    result = gearctl("shutdown", "--yes", "-s", gearmand.address)
    assert result.returncode == ExitCode.SERVER_REFUSED
    lines = result.stderr.decode().splitlines()
    assert lines == [f"gearctl: {gearmand.address} does not support shutdown (gearmand 1.1.20 answers "
                     "ERR UNKNOWN_COMMAND; `gearctl server` supports it): stop it by its pid (gearctl getpid)"]
    assert result.stdout == b""
    assert gearmand.proc.poll() is None
