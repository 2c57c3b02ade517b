"""The text admin protocol: response framing and parsers, fed the exact bytes
gearmand 1.1.20 sends (captured from a real server), whole and byte by byte, with
LF or CRLF line ends and NUL padding. No sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gearctl import admin
from gearctl.admin import FunctionStatus, JobInfo, PriorityStatus, ResponseReader, WorkerInfo
from gearctl.errors import ExitCode, LocalProtocolError, RemoteProtocolError, ServerError
from gearctl.prefetch import AUTO_MAX

# (command, bytes gearmand 1.1.20 sent, parser, parsed result)
CAPTURED: list[tuple[str, bytes, Callable[[list[str]], Any], Any]] = [
    (
        "status",
        b"b c\t0\t0\t1\ntab\tname\t0\t0\t1\na\t0\t0\t1\n.\n",
        admin.parse_status,
        [FunctionStatus("b c", 0, 0, 1), FunctionStatus("tab\tname", 0, 0, 1), FunctionStatus("a", 0, 0, 1)],
    ),
    (
        "workers",
        b"37 127.0.0.1 - :\n38 127.0.0.1 w1 : tab\tname b c a\n.\n",
        admin.parse_workers,
        # The worker registered "tab\tname", "b c" and "a"; gearmand separates names
        # with spaces, so "b c" cannot be told from "b" and "c" in this listing.
        [WorkerInfo(37, "127.0.0.1", "-", ()), WorkerInfo(38, "127.0.0.1", "w1", ("tab\tname", "b", "c", "a"))],
    ),
    (
        "show jobs",
        b"H:vm:1\t0\t0\t1\nH:vm:2\t0\t0\t1\nH:vm:3\t0\t0\t0\n.\n",
        admin.parse_jobs,
        [JobInfo("H:vm:1", 0, False, True), JobInfo("H:vm:2", 0, False, True), JobInfo("H:vm:3", 0, False, False)],
    ),
    ("show unique jobs", b"ua1\nua2\nfgu\n.\n", admin.parse_unique_jobs, ["ua1", "ua2", "fgu"]),
    (
        "prioritystatus",
        b"fn\ttab\t0\t1\t0\t0\nrev\t0\t1\t0\t0\n.\n",
        admin.parse_prioritystatus,
        [PriorityStatus("fn\ttab", 0, 1, 0, 0), PriorityStatus("rev", 0, 1, 0, 0)],
    ),
    ("version", b"OK 1.1.20+ds\n", admin.parse_version, "1.1.20+ds"),
    ("getpid", b"OK 6482\n", admin.parse_getpid, 6482),
    ("maxqueue", b"OK\r\n", admin.parse_ok, ""),
    ("cancel job", b"OK\r\n", admin.parse_ok, ""),
    ("drop function", b"OK\r\n", admin.parse_ok, ""),
]

# The same response as another server (or another code path in gearmand) may frame it.
VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "as-captured": lambda raw: raw,
    "lf": lambda raw: raw.replace(b"\r\n", b"\n"),
    "crlf": lambda raw: raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
    "trailing-nul": lambda raw: raw + b"\0\0",
    "nul-before-eol": lambda raw: raw.replace(b"\n", b"\0\n"),
    "crlf-nul-after-eol": lambda raw: raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n\0"),
}


def read_whole(command: str, data: bytes) -> list[str] | None:
    return ResponseReader(command).feed(data)


def read_byte_by_byte(command: str, data: bytes) -> list[str]:
    """Feed one byte at a time; the answer must come exactly at the end of the
    response, with nothing but NUL padding after it."""
    reader = ResponseReader(command)
    for i in range(len(data)):
        lines = reader.feed(data[i : i + 1])
        if lines is not None:
            assert data[i + 1 :].strip(b"\0") == b"", f"answered early, before {data[i + 1:]!r}"
            return lines
    raise AssertionError(f"no answer after all {len(data)} bytes")


READERS = {"whole": read_whole, "byte-by-byte": read_byte_by_byte}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
@pytest.mark.parametrize(("command", "raw", "parse", "expected"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_captured_responses(
    command: str, raw: bytes, parse: Callable[[list[str]], Any], expected: Any,
    variant: Callable[[bytes], bytes], reader: Callable[[str, bytes], list[str] | None],
) -> None:
    lines = reader(command, variant(raw))
    assert lines is not None
    assert parse(lines) == expected


def test_list_lines_exclude_the_end_marker() -> None:
    assert read_whole("show unique jobs", b"ua1\nua2\nfgu\n.\n") == ["ua1", "ua2", "fgu"]
    assert read_whole("status", b".\n") == []


def test_list_incomplete_until_the_dot_line() -> None:
    reader = ResponseReader("status")
    assert reader.feed(b"a\t0\t0\t1\n") is None
    assert reader.feed(b"b\t1\t0\t1\n.") is None
    assert reader.feed(b"\n") == ["a\t0\t0\t1", "b\t1\t0\t1"]


def test_one_line_answer_incomplete_until_newline() -> None:
    reader = ResponseReader("version")
    assert reader.feed(b"OK 1.1.20") is None
    assert reader.feed(b"+ds\n") == ["OK 1.1.20+ds"]


def test_leading_nul_padding_is_dropped() -> None:
    assert read_whole("getpid", b"\0\0OK 6482\n") == ["OK 6482"]


def test_function_status_queued_is_total_minus_running() -> None:
    [row] = admin.parse_status(["reverse\t7\t2\t3"])
    assert row == FunctionStatus("reverse", total=7, running=2, workers=3)
    assert row.queued == 5
    assert FunctionStatus("f", 2, 2, 1).queued == 0
    assert FunctionStatus("f", 0, 0, 0).queued == 0


def test_function_status_queued_never_negative() -> None:
    # A status line read between gearmand's counter updates may show running > total.
    assert FunctionStatus("f", 1, 3, 1).queued == 0


def test_show_jobs_columns() -> None:
    [job] = admin.parse_jobs(["H:vm:9\t2\t1\t0"])
    assert job == JobInfo(handle="H:vm:9", retries=2, ignore=True, queued=False)


# -- ERR answers -----------------------------------------------------------------

@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize(
    ("command", "raw", "code", "text"),
    [
        ("cancel job", b"ERR UNKNOWN_JOB\r\n", "UNKNOWN_JOB", ""),
        ("bogus", b"ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n", "UNKNOWN_COMMAND",
         "Unknown server commandbogus"),
        # A list command answered with an error (an old server without prioritystatus).
        ("prioritystatus", b"ERR UNKNOWN_COMMAND Unknown+server+commandprioritystatus\r\n", "UNKNOWN_COMMAND",
         "Unknown server commandprioritystatus"),
        ("status", b"ERR UNKNOWN_COMMAND Unknown+server+commandstatus\n", "UNKNOWN_COMMAND",
         "Unknown server commandstatus"),
    ],
    ids=["unknown-job", "unknown-command", "list-command-refused", "lf-only"],
)
def test_err_lines_raise_server_error(
    command: str, raw: bytes, code: str, text: str, reader: Callable[[str, bytes], list[str] | None]
) -> None:
    with pytest.raises(ServerError) as info:
        reader(command, raw)
    assert info.value.code == code
    assert info.value.text == text
    assert info.value.exit_code == ExitCode.SERVER_REFUSED
    assert code in str(info.value)


def test_err_raised_byte_by_byte_only_at_end_of_line() -> None:
    reader = ResponseReader("cancel job")
    for byte in b"ERR UNKNOWN_JOB\r":
        assert reader.feed(bytes([byte])) is None
    with pytest.raises(ServerError, match="UNKNOWN_JOB"):
        reader.feed(b"\n")


def test_parse_err_bare() -> None:
    error = admin.parse_err("ERR")
    assert (error.code, error.text) == ("ERR", "")


@pytest.mark.parametrize(
    "raw",
    [
        b"ERR there are still connected workers or executing clients\r\n",  # drop function, 1.1.20
        b"ERR function not found\r\n",  # drop function of an unknown name
    ],
    ids=["still-connected", "function-not-found"],
)
def test_err_free_text_keeps_the_whole_message(raw: bytes) -> None:
    # gearmand sends these without a CODE token: the code is "ERR", the words stay whole.
    message = raw[4:].decode().rstrip("\r\n")
    with pytest.raises(ServerError) as info:
        read_whole("drop function", raw)
    assert message in str(info.value)
    assert info.value.code != message.split(" ")[0]


def test_err_free_text_is_still_a_server_error() -> None:
    # Whatever parse_err makes of it, the line must not pass for a success.
    with pytest.raises(ServerError) as info:
        read_whole("drop function", b"ERR there are still connected workers or executing clients\r\n")
    assert "connected workers or executing clients" in str(info.value)


@pytest.mark.parametrize(
    ("command", "raw", "parse", "expected"),
    [
        ("status", b"ERRORLOG\t1\t0\t1\n.\n", admin.parse_status, [FunctionStatus("ERRORLOG", 1, 0, 1)]),
        ("show unique jobs", b"ERR-42\n.\n", admin.parse_unique_jobs, ["ERR-42"]),
    ],
    ids=["status-function-named-ERRORLOG", "unique-id-ERR-42"],
)
def test_listing_starting_with_err_is_data(
    command: str, raw: bytes, parse: Callable[[list[str]], Any], expected: Any
) -> None:
    assert parse(read_whole(command, raw) or []) == expected


# -- malformed rows ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("parse", "line"),
    [
        (admin.parse_status, "reverse\t0\t1"),
        (admin.parse_status, "reverse\t0\tx\t1"),
        (admin.parse_prioritystatus, "reverse\t0\t1\t0"),
        (admin.parse_prioritystatus, "reverse\t0\t1\t0\t-x"),
        (admin.parse_workers, "37 127.0.0.1 - no colon"),
        (admin.parse_workers, "x 127.0.0.1 - :"),
        (admin.parse_jobs, "H:vm:1\t0\t0"),
        (admin.parse_jobs, "H:vm:1\t0\tyes\t1"),
    ],
)
def test_malformed_rows_raise_remote_protocol_error(parse: Callable[[list[str]], Any], line: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse([line])


def test_blank_rows_are_skipped() -> None:
    assert admin.parse_status(["", "a\t1\t0\t1", ""]) == [FunctionStatus("a", 1, 0, 1)]
    assert admin.parse_unique_jobs(["", "u"]) == ["u"]


def test_workers_without_client_id_field() -> None:
    assert admin.parse_workers(["5 10.0.0.1 : f"]) == [WorkerInfo(5, "10.0.0.1", "-", ("f",))]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("38 ::1 w1 : f g", WorkerInfo(38, "::1", "w1", ("f", "g"))),
        ("39 ::1 - :", WorkerInfo(39, "::1", "-", ())),
    ],
    ids=["with-functions", "no-functions"],
)
def test_workers_on_ipv6(line: str, expected: WorkerInfo) -> None:
    # gearmand prints the peer with getnameinfo(NI_NUMERICHOST): "::1" for IPv6 loopback.
    assert admin.parse_workers([line]) == [expected]


@pytest.mark.parametrize(("client_id", "prefetch"), [
    ("web1-42/prefetch=16", 16), ("web1-42", 1), ("-", 1), ("odd/prefetch=", 1), ("odd/prefetch=x", 1),
    ("odd/prefetch=0", 1), ("a/prefetch=2/prefetch=8", 8), ("web1-42/prefetch=auto", AUTO_MAX),
    ("web1-42/prefetch=Auto", 1),
])
def test_worker_prefetch_from_its_client_id(client_id: str, prefetch: int) -> None:
    assert WorkerInfo(1, "127.0.0.1", client_id, ("f",)).prefetch == prefetch


def test_worker_client_id_advertises_prefetch_and_keeps_it_when_cut() -> None:
    assert admin.worker_client_id("web 1", 1) == b"web_1"
    assert admin.worker_client_id("web1", 16) == b"web1/prefetch=16"
    assert admin.worker_client_id("web1", "auto") == b"web1/prefetch=auto"
    long = admin.worker_client_id("x" * 300, 16)
    assert len(long) == admin.CLIENT_ID_BYTES and long.endswith(b"/prefetch=16")
    assert WorkerInfo(1, "127.0.0.1", long.decode(), ("f",)).prefetch == 16
    assert len(admin.worker_client_id("x" * 300, 1)) == admin.CLIENT_ID_BYTES


def test_parse_ok() -> None:
    assert admin.parse_ok(["OK"]) == ""
    assert admin.parse_ok(["OK 12"]) == "12"
    with pytest.raises(RemoteProtocolError, match="expected OK"):
        admin.parse_ok(["NOPE"])
    with pytest.raises(RemoteProtocolError):
        admin.parse_ok([])


def test_parse_version_of_old_servers_without_ok() -> None:
    assert admin.parse_version(["0.34"]) == "0.34"


def test_parse_getpid_not_a_number() -> None:
    with pytest.raises(RemoteProtocolError, match="getpid"):
        admin.parse_getpid(["OK abc"])


# -- commands ----------------------------------------------------------------------

def test_command_line() -> None:
    assert admin.command_line("status") == b"status\n"
    assert admin.command_line("maxqueue", "reverse", "10") == b"maxqueue reverse 10\n"
    assert admin.command_line("cancel job", "H:vm:1") == b"cancel job H:vm:1\n"


@pytest.mark.parametrize("bad", ["a\nshutdown", "a\rb", "a\0b"])
def test_command_line_refuses_line_breaks_and_nul(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        admin.command_line("maxqueue", bad)
    with pytest.raises(LocalProtocolError):
        admin.command_line(bad)


def test_list_commands() -> None:
    for command in ("status", "workers", "show jobs", "show unique jobs", "prioritystatus"):
        assert admin.is_list_command(command)
    for command in ("version", "getpid", "maxqueue", "cancel job", "drop function", "shutdown"):
        assert not admin.is_list_command(command)
