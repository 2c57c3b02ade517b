"""Server addresses (--servers, GEARCTL_SERVERS), TLS options and the wording for a
server that cannot be reached. No sockets (the CLI tests here stop at the address,
before connecting)."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from conftest import HERE, gearctl

from gearctl.addresses import (
    DEFAULT_PORT,
    ServerAddress,
    TLSOptions,
    connecting,
    describe_socket_error,
    parse_server,
    parse_servers,
)
from gearctl.errors import ConfigError, ConnectionFailed, ExitCode, UsageError

PLUGINS = HERE / "plugins"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("host", "host", 4730),
        ("host:1234", "host", 1234),
        ("10.0.0.5:4731", "10.0.0.5", 4731),
        ("gearman.example.com", "gearman.example.com", 4730),
        ("[::1]:4730", "::1", 4730),
        ("[::1]:14730", "::1", 14730),
        ("[::1]", "::1", 4730),
        ("::1", "::1", 4730),  # bare IPv6: more than one colon, so no port
        ("fe80::1:4730", "fe80::1:4730", 4730),  # ...even when it ends like one
        ("[fe80::1%eth0]:99", "fe80::1%eth0", 99),
        ("  host:1  ", "host", 1),
        ("host:65535", "host", 65535),
    ],
)
def test_parse_server(text: str, host: str, port: int) -> None:
    assert parse_server(text) == ServerAddress(host, port)


def test_default_port_is_iana_gearman() -> None:
    assert DEFAULT_PORT == 4730
    assert ServerAddress("h").port == 4730


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty server address"),
        ("   ", "empty server address"),
        ("host:abc", "port 'abc' is not a number"),
        ("host:", "port '' is not a number"),
        ("host:0", "port 0 is out of range"),
        ("host:70000", "port 70000 is out of range"),
        ("host:65536", "port 65536 is out of range"),
        ("host:-1", "is not a number"),
        ("host:+80", "is not a number"),
        (":4730", "no host"),
        ("[]:4730", "no host"),
        ("[::1", "missing ']'"),
        ("[::1]4730", "expected ':port' after ']'"),
        ("[::1]:", "is not a number"),
        ("[::1]:0", "out of range"),
        ("bad host:port:xx", "more than one ':' and not an IPv6 address"),
        ("http://gear1:4730", "more than one ':'"),
        ("a b", "'a b' is not a host name"),
        ("gear1/x", "is not a host name"),
        ("[gear1]:4730", "not an IPv6 address"),
        ("h:99999", "out of range"),
    ],
)
def test_parse_server_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_server(text)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == ExitCode.USAGE
    assert "expected HOST[:PORT] or [IPv6]:PORT" in str(info.value)  # every refusal shows the accepted form


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (ServerAddress("host", 4730), "host:4730"),
        (ServerAddress("10.0.0.5", 1), "10.0.0.5:1"),
        (ServerAddress("::1", 4730), "[::1]:4730"),
        (ServerAddress("fe80::1%eth0", 99), "[fe80::1%eth0]:99"),
    ],
)
def test_str_round_trip(address: ServerAddress, text: str) -> None:
    assert str(address) == text
    assert parse_server(str(address)) == address


@pytest.mark.parametrize("text", ["host", "::1", "[::1]", "h:1", "[::1]:2"])
def test_parse_then_str_is_stable(text: str) -> None:
    once = parse_server(text)
    assert parse_server(str(once)) == once


# -- lists -------------------------------------------------------------------------

def test_parse_servers_default() -> None:
    assert parse_servers(None) == [ServerAddress("127.0.0.1", 4730)]


def test_parse_servers_comma_list_keeps_order() -> None:
    assert parse_servers("b:1,a,[::1]:5") == [ServerAddress("b", 1), ServerAddress("a", 4730), ServerAddress("::1", 5)]


def test_parse_servers_skips_empty_items_and_spaces() -> None:
    assert parse_servers(" a , ,b:2,") == [ServerAddress("a", 4730), ServerAddress("b", 2)]


def test_parse_servers_removes_duplicates() -> None:
    # "a" and "a:4730" are the same server; the first mention sets the order.
    assert parse_servers("a,b,a:4730,b:4730,[::1],::1") == [
        ServerAddress("a", 4730), ServerAddress("b", 4730), ServerAddress("::1", 4730),
    ]


def test_parse_servers_several_lists() -> None:
    # A repeated --servers flag: each value may itself be a comma list.
    assert parse_servers(["a,b", "b:4730,c:1"]) == [
        ServerAddress("a", 4730), ServerAddress("b", 4730), ServerAddress("c", 1),
    ]


@pytest.mark.parametrize("specs", ["", " , ", [], ["", ","]])
def test_parse_servers_needs_one(specs: str | list[str]) -> None:
    with pytest.raises(ConfigError, match="no server given"):
        parse_servers(specs)


def test_parse_servers_reports_the_bad_item() -> None:
    with pytest.raises(ConfigError, match="'b:x'"):
        parse_servers("a,b:x,c")


# -- TLS options -------------------------------------------------------------------

def test_tls_off_by_default() -> None:
    options = TLSOptions()
    assert not options.active
    assert options.context() is None


def test_tls_enabled_verifies_by_default() -> None:
    ctx = TLSOptions(enabled=True).context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


def test_tls_without_verification() -> None:
    ctx = TLSOptions(enabled=True, verify=False).context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname


def test_tls_implied_by_ca_or_cert() -> None:
    assert TLSOptions(ca="/some/ca.pem").active
    assert TLSOptions(cert="/some/cert.pem").active
    assert not TLSOptions(key="/some/key.pem").active  # a key alone means nothing


def test_tls_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TLS setup failed"):
        TLSOptions(ca=str(tmp_path / "missing-ca.pem")).context()
    not_a_cert = tmp_path / "cert.pem"
    not_a_cert.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="TLS setup failed"):
        TLSOptions(cert=str(not_a_cert)).context()


# -- a server that cannot be reached: one wording for binary and admin connections --

@pytest.mark.parametrize(("error", "reason"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)"), "connection refused"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot resolve host: Name or service not known"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "TLS error: [SSL: WRONG_VERSION_NUMBER]"),
    (OSError("no errno here"), "no errno here"),
    (OSError(), "OSError"),
])
def test_socket_errors_are_described_for_people(error: OSError, reason: str) -> None:
    assert describe_socket_error(error).startswith(reason)


def test_a_tls_error_is_named_by_its_reason_when_it_has_one() -> None:
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    error.reason = "WRONG_VERSION_NUMBER"  # what the ssl module sets on the errors it raises
    assert describe_socket_error(error) == "TLS error: WRONG_VERSION_NUMBER"


def test_a_connect_that_fails_is_one_connection_failed() -> None:
    address = ServerAddress("gear1", 4730)
    with pytest.raises(ConnectionFailed, match=r"^gear1:4730: connection refused$"), connecting(address, 5.0):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    with pytest.raises(ConnectionFailed, match=r"^gear1:4730: no answer within 2.5s$"), connecting(address, 2.5):
        raise asyncio.TimeoutError
    with connecting(address, 1.0):  # nothing failed: nothing raised
        pass


# -- the command line: a spec that cannot parse is a usage error (exit 2), for every command

HINT = b"expected HOST[:PORT] or [IPv6]:PORT"
MALFORMED = ["bad host:port:xx", "h:99999", "", "h:abc", "http://gear1:4730", "[gear1]:4730", "a b"]


def _one_usage_line(result: subprocess.CompletedProcess) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(b"gearctl: ") and HINT in lines[0], result.stderr


@pytest.mark.parametrize("spec", MALFORMED)
def test_client_with_a_malformed_server_spec_exits_2_with_the_form(spec: str) -> None:
    _one_usage_line(gearctl("client", "f", "--data", "x", "-s", spec, "--connect-timeout", "1"))


@pytest.mark.parametrize("command", [
    ["client", "f", "--data", "x"], ["client", "f", "-n", "--data", "a"], ["client", "f", "--wait"],
    ["worker", "--plugin-dir", str(PLUGINS)], ["status"], ["workers"], ["jobs"], ["job", "H:x:1"],
    ["cancel", "H:x:1"], ["drop", "f"], ["version"], ["ping"], ["exporter", "--port", "1"],
], ids=lambda c: "-".join(c[:2]) if c[0] == "client" else c[0])
def test_every_command_refuses_a_malformed_spec_from_flag_and_env(command: list[str]) -> None:
    _one_usage_line(gearctl(*command, "-s", "bad host:port:xx", "--connect-timeout", "1", timeout=30))
    _one_usage_line(gearctl(*command, "--connect-timeout", "1", env={"GEARCTL_SERVERS": "gear1:4730,h:x:y z"},
                            timeout=30))


def test_check_calls_a_malformed_spec_unknown() -> None:
    # A Nagios plugin's 2 means CRITICAL: the check could not run, so UNKNOWN (3) with one status line.
    result = gearctl("check", "-s", "bad host:port:xx", timeout=30)
    assert result.returncode == 3
    assert result.stdout.startswith(b"GEARMAN UNKNOWN - ") and HINT in result.stdout


def test_an_unresolvable_well_formed_host_stays_exit_3() -> None:
    result = gearctl("client", "f", "--data", "x", "-s", "no-such-host.invalid:4730", "--connect-timeout", "5")
    assert result.returncode == 3 and b"cannot resolve host" in result.stderr
