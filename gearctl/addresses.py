"""Where the job servers are and how to reach them: ServerAddress and the
--servers parser, the TLS options, the default timeouts, and the one wording
for a server that cannot be reached (shared by binary and admin connections).

The parser is strict on purpose: a spec that does not parse is the caller's
mistake (ConfigError, exit 2), caught here rather than sent to the resolver,
which would call it an unknown host (exit 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from .errors import ConfigError, ConnectionFailed

if TYPE_CHECKING:  # ssl costs start-up time; it is imported when TLS is used
    import ssl

DEFAULT_PORT = 4730
DEFAULT_SERVERS = "127.0.0.1:4730"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_IO_TIMEOUT = 30.0  # a server owing replies that stays silent this long is dropped


@dataclass(frozen=True, slots=True)
class ServerAddress:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


SERVER_FORM = "expected HOST[:PORT] or [IPv6]:PORT, e.g. gear1:4730 or [::1]:4730"
_HOSTNAME = re.compile(r"[\w.-]+")  # a name or IPv4 address: letters, digits, '.', '-', '_'


def _is_ipv6(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(host)  # a zone ("%eth0") is accepted from Python 3.9 on
    except ValueError:
        return False
    return True


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"bad server address {text!r}: {why} ({SERVER_FORM})")


def parse_server(text: str) -> ServerAddress:
    """'host', 'host:port', '[v6]', '[v6]:port' or a bare IPv6 address; anything else is a ConfigError."""
    spec = text.strip()
    if not spec:
        raise ConfigError(f"empty server address ({SERVER_FORM})")
    host, port = _split_host_port(text, spec)
    if not host:
        raise _bad(text, "no host")
    if ":" not in host and not _HOSTNAME.fullmatch(host):
        raise _bad(text, f"{host!r} is not a host name or address")
    return ServerAddress(host, _port_number(text, port))


def _split_host_port(text: str, spec: str) -> tuple[str, str]:
    """The host and port parts of a stripped, non-empty spec (the port as written)."""
    if spec.startswith("["):
        return _split_bracketed(text, spec)
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, port
    if ":" in spec and not _is_ipv6(spec):
        raise _bad(text, "more than one ':' and not an IPv6 address")
    return spec, str(DEFAULT_PORT)  # a name, or a bare IPv6 address: its colons are not a port


def _split_bracketed(text: str, spec: str) -> tuple[str, str]:
    """'[v6]' or '[v6]:port'."""
    close = spec.find("]")
    if close < 0:
        raise _bad(text, "missing ']'")
    host, rest = spec[1:close], spec[close + 1 :]
    port = str(DEFAULT_PORT)
    if rest:
        if not rest.startswith(":"):
            raise _bad(text, "expected ':port' after ']'")
        port = rest[1:]
    if host and not _is_ipv6(host):
        raise _bad(text, f"{host!r} in brackets is not an IPv6 address")
    return host, port


def _port_number(text: str, port: str) -> int:
    if not port.isdigit():
        raise _bad(text, f"port {port!r} is not a number")
    number = int(port)
    if not 0 < number < 65536:
        raise _bad(text, f"port {number} is out of range")
    return number


def parse_servers(specs: Union[str, Iterable[str], None]) -> list[ServerAddress]:
    """A comma-separated list (or several of them) -> addresses, duplicates removed."""
    if specs is None:
        specs = DEFAULT_SERVERS
    if isinstance(specs, str):
        specs = [specs]
    seen: dict[ServerAddress, None] = {}
    for spec in specs:
        for part in spec.split(","):
            if part.strip():
                seen.setdefault(parse_server(part), None)
    if not seen:
        raise ConfigError(f"no server given ({SERVER_FORM})")
    return list(seen)


SERVERS_ENV = "GEARCTL_SERVERS"
Servers = Union[str, Iterable[Union[str, ServerAddress]], None]


def resolve_servers(servers: Servers) -> list[ServerAddress]:
    """What the library's Client and Worker accept as `servers`: "h1:4730,h2",
    a list of such strings or ServerAddresses, or None for the GEARCTL_SERVERS
    setting, else 127.0.0.1:4730 (as the CLI's --servers)."""
    if servers is None:
        return parse_servers(os.environ.get(SERVERS_ENV) or None)
    if isinstance(servers, str):
        return parse_servers(servers)
    return parse_servers([str(s) for s in servers])


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """TLS to a gearmand behind a terminator (stunnel, haproxy) or built with --ssl."""

    enabled: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True

    @property
    def active(self) -> bool:
        return self.enabled or bool(self.ca or self.cert)

    def context(self) -> ssl.SSLContext | None:
        if not self.active:
            return None
        import ssl

        try:
            ctx = ssl.create_default_context(cafile=self.ca)
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"TLS setup failed: {e}") from e
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def describe_socket_error(error: OSError, tls: bool = False) -> str:
    """'connection refused', not asyncio's "Connect call failed ('127.0.0.1', 1)".
    With `tls`, a connection the server closed in the handshake, or answered
    with bytes that are no TLS record, is most likely a plaintext port (gearmand
    itself, not its TLS terminator), and is said so."""
    import ssl

    if isinstance(error, ssl.SSLCertVerificationError):  # its reason is only CERTIFICATE_VERIFY_FAILED
        return f"TLS: the server's certificate was not accepted: {error.verify_message or error.reason}"
    if tls and isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLEOFError)):
        return "TLS handshake failed: the server closed the connection (a plaintext port, not TLS?)"
    reason = getattr(error, "reason", None)  # one built by hand has none
    if tls and reason == "WRONG_VERSION_NUMBER":  # bytes that are no TLS record: an ERR line, an HTTP answer...
        return "TLS handshake failed: the server answered in plaintext (a plaintext port, not TLS?)"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {reason or error}"  # one built by hand has no .reason
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host: {error.strerror or error}"
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


@contextlib.contextmanager
def connecting(address: ServerAddress, timeout: float, tls: bool = False) -> Iterator[None]:
    """Around an asyncio connect bounded by `timeout`: its failure as one ConnectionFailed."""
    try:
        yield
    except asyncio.TimeoutError:
        raise ConnectionFailed(f"{address}: no answer within {timeout:g}s") from None
    except OSError as e:  # ssl.SSLError is an OSError
        raise ConnectionFailed(f"{address}: {describe_socket_error(e, tls)}") from e
