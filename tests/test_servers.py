"""Server addresses (--servers, GEARCTL_SERVERS) and TLS options. No sockets."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gearctl.connection import DEFAULT_PORT, ServerAddress, TLSOptions, parse_server, parse_servers
from gearctl.errors import ConfigError, ExitCode, UsageError


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
    ],
)
def test_parse_server_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_server(text)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == ExitCode.USAGE


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
