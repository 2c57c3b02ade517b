"""Sockets: server addresses, TLS, binary connections, a pool with failover, admin requests.

This is the only module that touches the network. A `Connection` is an
asyncio.Protocol around one socket: it encodes nothing itself, it writes bytes
it is given and feeds what it reads to a protocol.Decoder. Gearman servers
answer the requests of one connection in order, so every request sent with
request() (SUBMIT_JOB* -> JOB_CREATED, GET_STATUS -> STATUS_RES, OPTION_REQ,
ECHO_REQ, ...) queues a callback in a FIFO and each reply, or an ERROR in its
place, goes to the oldest one. Everything else goes to the connection's owner:
WORK_* for foreground jobs, NOOP, and the answers to requests sent with send()
(the worker counts its grabs instead of matching them). This is what makes pipelining
cheap: thousands of submits go out in one write and their JOB_CREATEDs are
matched in order with no per-job round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from . import admin
from .backoff import Backoff
from .errors import ConfigError, ConnectionFailed, GearctlError, RemoteProtocolError, ServerError, Timeout
from .protocol import RESPONSES, Decoder, Magic, Packet, PacketType, encode

if TYPE_CHECKING:  # ssl costs start-up time; it is imported when TLS is used
    import ssl

DEFAULT_PORT = 4730
DEFAULT_SERVERS = "127.0.0.1:4730"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_IO_TIMEOUT = 30.0  # a server owing replies that stays silent this long is dropped

P = PacketType
# Packets that answer a request (matched FIFO while requests wait); NOOP never does.
REPLIES = RESPONSES - {P.NOOP}

# A peer that is not gearmand must fail at once, not after --io-timeout. Line-based
# servers (HTTP, Redis, memcached...) say nothing until a line ends, and a
# SUBMIT_JOB_BG or GET_STATUS need not hold a single LF byte: so every pooled
# connection opens with an ECHO_REQ whose payload ends a line and an HTTP request
# head. gearmand echoes it (the answer is ignored); anything else answers the
# "line" with bytes the decoder refuses (bad magic), failing what waits on it.
PROBE_PAYLOAD = b"gearctl\r\n\r\n"
PROBE = encode(P.ECHO_REQ, PROBE_PAYLOAD)


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
    """'host', 'host:port', '[v6]', '[v6]:port' or a bare IPv6 address.

    Anything else is the caller's mistake (ConfigError, exit 2), caught here
    rather than sent to the resolver, which would call it an unknown host (exit 3)."""
    spec = text.strip()
    if not spec:
        raise ConfigError(f"empty server address ({SERVER_FORM})")
    host, port = spec, str(DEFAULT_PORT)
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise _bad(text, "missing ']'")
        host, rest = spec[1:close], spec[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _bad(text, "expected ':port' after ']'")
            port = rest[1:]
        if host and not _is_ipv6(host):
            raise _bad(text, f"{host!r} in brackets is not an IPv6 address")
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    elif ":" in spec and not _is_ipv6(spec):
        raise _bad(text, "more than one ':' and not an IPv6 address")
    if not host:
        raise _bad(text, "no host")
    if ":" not in host and not _HOSTNAME.fullmatch(host):
        raise _bad(text, f"{host!r} is not a host name or address")
    if not port.isdigit():
        raise _bad(text, f"port {port!r} is not a number")
    number = int(port)
    if not 0 < number < 65536:
        raise _bad(text, f"port {number} is out of range")
    return ServerAddress(host, number)


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


def _reason(error: OSError) -> str:
    """'connection refused', not asyncio's "Connect call failed ('127.0.0.1', 1)"."""
    import ssl

    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host: {error.strerror or error}"
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


def _tune(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


ReplyCallback = Callable[[Union[Packet, GearctlError]], None]


class Connection(asyncio.Protocol):
    """One binary-protocol connection to one server."""

    def __init__(self, address: ServerAddress, on_packet: Callable[[Connection, Packet], None] | None = None,
                 on_close: Callable[[Connection, GearctlError], None] | None = None,
                 io_timeout: float | None = None) -> None:
        self.address = address
        self.io_timeout = io_timeout
        self._last_read = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.on_packet = on_packet
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: GearctlError | None = None
        self.options: set[str] = set()  # OPTION_REQs sent on this connection
        # Called after each chunk read has been handled: the owner's moment to
        # write what the replies made it queue, in one write, with no extra loop turn.
        self.on_drained: Callable[[], None] | None = None
        self.on_callback_error: Callable[[Exception], None] | None = None
        self._decoder = Decoder(expect=Magic.RES)
        self._waiting: deque[ReplyCallback] = deque()
        self._closed_waiter: asyncio.Future[None] | None = None
        self._lost = False
        self._lost_waiter: asyncio.Future[None] | None = None

    # -- opening and closing -------------------------------------------------
    @classmethod
    async def open(cls, address: ServerAddress, *, timeout: float = DEFAULT_CONNECT_TIMEOUT,
                   tls: ssl.SSLContext | None = None,
                   on_packet: Callable[[Connection, Packet], None] | None = None,
                   on_close: Callable[[Connection, GearctlError], None] | None = None,
                   io_timeout: float | None = None) -> Connection:
        loop = asyncio.get_running_loop()
        conn = cls(address, on_packet, on_close, io_timeout)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, address.host, address.port, ssl=tls,
                                       server_hostname=address.host if tls else None),
                timeout,
            )
        except asyncio.TimeoutError:
            raise ConnectionFailed(f"{address}: no answer within {timeout:g}s") from None
        except OSError as e:  # ssl.SSLError is an OSError
            raise ConnectionFailed(f"{address}: {_reason(e)}") from e
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _tune(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        reason = f"{self.address}: connection lost" + (f" ({exc})" if exc else "")
        self._shut(self.error or ConnectionFailed(reason))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._shut(ConnectionFailed(f"{self.address}: connection closed"))

    def abort(self) -> None:
        """Close at once, dropping unsent data (a server then re-queues held jobs)."""
        if self.transport is not None:
            self.transport.abort()
        self._shut(ConnectionFailed(f"{self.address}: connection aborted"))

    async def wait_transport_closed(self) -> None:
        """Until connection_lost: the socket itself is closed."""
        if self.transport is None or self._lost:
            return
        if self._lost_waiter is None:
            self._lost_waiter = asyncio.get_running_loop().create_future()
        await self._lost_waiter

    async def wait_closed(self) -> None:
        if self.closed:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await self._closed_waiter

    def _shut(self, error: GearctlError) -> None:
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.error = error
        waiting, self._waiting = self._waiting, deque()
        for callback in waiting:
            callback(error)
        if self.on_close is not None:
            self.on_close(self, error)
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    # -- sending -------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write bytes that expect no reply. Raises ConnectionFailed when the
        connection is closed or closing, RemoteProtocolError when the peer's
        bytes closed it."""
        if self.closed or self.transport is None or self.transport.is_closing():
            if isinstance(self.error, RemoteProtocolError):  # it spoke nonsense: that, not "unreachable"
                raise RemoteProtocolError(str(self.error))
            reason = str(self.error) if self.error else f"{self.address}: not connected"
            raise ConnectionFailed(reason)
        self.transport.write(data)

    def request(self, data: bytes, callback: ReplyCallback) -> None:
        """Write one request; `callback` gets its reply packet (or ERROR), or the
        error that closed the connection first."""
        self.send(data)
        self._expect_reply()
        self._waiting.append(callback)

    def request_many(self, data: bytes, callbacks: Sequence[ReplyCallback]) -> None:
        """Write several requests at once (`data` is their concatenation)."""
        self.send(data)
        self._expect_reply()
        self._waiting.extend(callbacks)

    # A server that accepts requests and then says nothing must not hang us: when
    # replies are owed and nothing was read for io_timeout seconds, the connection
    # is dropped, and what waited on it fails over (or fails) like a lost server.
    def _expect_reply(self) -> None:
        if self.io_timeout is None:
            return
        if not self._waiting:
            self._last_read = time.monotonic()
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self.io_timeout, self._check_silence)

    def _check_silence(self) -> None:
        self._watchdog = None
        if self.closed or not self._waiting or self.io_timeout is None:
            return
        silent = time.monotonic() - self._last_read
        if silent >= self.io_timeout:
            self.fail(ConnectionFailed(
                f"{self.address}: no reply within {self.io_timeout:g}s (--io-timeout); connection dropped"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(self.io_timeout - silent, self._check_silence)

    async def call(self, data: bytes, timeout: float | None = None) -> Packet:
        """Write one request and wait for its reply."""
        future: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()

        def done(reply: Packet | GearctlError) -> None:
            if future.done():
                return
            if isinstance(reply, Packet):
                future.set_result(reply)
            else:
                future.set_exception(reply)

        self.request(data, done)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"{self.address}: no reply within {timeout:g}s") from None

    # -- receiving -----------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.io_timeout is not None:
            self._last_read = time.monotonic()
        decoder = self._decoder
        decoder.feed(data)
        try:
            while (packet := decoder.next()) is not None:
                if packet.type in REPLIES and self._waiting:
                    self._waiting.popleft()(packet)
                elif self.on_packet is not None:
                    self.on_packet(self, packet)
            if self.on_drained is not None:
                self.on_drained()
        except RemoteProtocolError as e:  # the peer's bytes, or a field that makes no sense
            self.fail(RemoteProtocolError(f"{self.address}: {e}"))
        except Exception as e:
            # The owner's callback failed (say, its stdout closed). That is not
            # the server's fault: the connection stays, the owner decides.
            if self.on_callback_error is None:
                raise
            self.on_callback_error(e)

    def fail(self, error: GearctlError) -> None:
        """Drop the connection because of `error` (a protocol error, a silent peer)."""
        self.error = error
        if self.transport is not None:
            self.transport.abort()
        self._shut(error)


class ServerPool:
    """Connections to several servers, opened lazily, with failover order.

    A server that fails to connect is skipped for a while (backoff doubling up
    to `max_backoff`), so a dead server costs one connect attempt, not one per job.
    """

    def __init__(self, servers: Sequence[ServerAddress], *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 tls: TLSOptions | None = None,
                 on_packet: Callable[[Connection, Packet], None] | None = None,
                 on_close: Callable[[Connection, GearctlError], None] | None = None,
                 on_drained: Callable[[], None] | None = None,
                 on_callback_error: Callable[[Exception], None] | None = None,
                 io_timeout: float | None = DEFAULT_IO_TIMEOUT,
                 max_backoff: float = 30.0) -> None:
        if not servers:
            raise ConfigError("no server given")
        self.servers = list(servers)
        self.connect_timeout = connect_timeout
        self.tls = tls or TLSOptions()
        self._ssl: ssl.SSLContext | None = self.tls.context()  # bad TLS files fail here, at once
        self.on_packet = on_packet
        self.on_close = on_close
        self.on_drained = on_drained
        self.on_callback_error = on_callback_error
        self.io_timeout = io_timeout
        self.max_backoff = max_backoff
        self._conns: dict[ServerAddress, Connection] = {}
        self._live: list[Connection] | None = None
        self._connecting: dict[ServerAddress, asyncio.Future[Connection]] = {}
        self._down_until: dict[ServerAddress, float] = {}
        self._backoff: dict[ServerAddress, Backoff] = {}
        self.errors: dict[ServerAddress, GearctlError] = {}
        self._next = random.randrange(len(self.servers))  # one-job cron runs spread over servers
        self._by_hash = sorted(self.servers, key=str)  # a key's server must not depend on the flag's order

    def order(self, key: bytes = b"") -> list[ServerAddress]:
        """Servers in the order to try: a unique key always starts at the same
        server (so gearmand can coalesce it); other jobs rotate. Servers marked
        down are left out, unless all are (then each gets another try)."""
        n = len(self.servers)
        if key:
            start = zlib.crc32(key) % n
            ordered = self._by_hash[start:] + self._by_hash[:start]
        else:
            start = self._next
            self._next = (self._next + 1) % n
            ordered = self.servers[start:] + self.servers[:start]
        now = time.monotonic()
        up = [s for s in ordered if self._down_until.get(s, 0.0) <= now]
        return up or ordered

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl

    def is_down(self, address: ServerAddress) -> bool:
        return self._down_until.get(address, 0.0) > time.monotonic()

    def connected(self, address: ServerAddress) -> Connection | None:
        conn = self._conns.get(address)
        return conn if conn is not None and not conn.closed else None

    async def connect(self, address: ServerAddress) -> Connection:
        conn = self.connected(address)
        if conn is not None:
            return conn
        pending = self._connecting.get(address)
        if pending is None:
            pending = asyncio.ensure_future(self._open(address))
            self._connecting[address] = pending
            pending.add_done_callback(lambda _f: self._connecting.pop(address, None))
        return await asyncio.shield(pending)

    async def _open(self, address: ServerAddress) -> Connection:
        try:
            conn = await Connection.open(address, timeout=self.connect_timeout, tls=self._ssl,
                                         on_packet=self.on_packet, on_close=self._closed,
                                         io_timeout=self.io_timeout)
        except ConnectionFailed as e:
            self.mark_down(address, e)
            raise
        conn.on_drained = self.on_drained
        conn.on_callback_error = self.on_callback_error
        try:
            conn.request(PROBE, ignore_reply)
        except GearctlError as e:  # closed already: it hung up, or greeted us in another protocol
            self.mark_down(address, e)
            raise
        self._conns[address] = conn
        self._live = None
        self._down_until.pop(address, None)
        self._backoff.pop(address, None)
        self.errors.pop(address, None)
        return conn

    def _closed(self, conn: Connection, error: GearctlError) -> None:
        self._live = None
        if self._conns.get(conn.address) is conn:
            del self._conns[conn.address]
        if isinstance(error, RemoteProtocolError):  # not gearmand: skipped like a server that is down
            self.mark_down(conn.address, error)
        if self.on_close is not None:
            self.on_close(conn, error)

    def mark_down(self, address: ServerAddress, error: GearctlError) -> None:
        backoff = self._backoff.setdefault(address, Backoff(1.0, self.max_backoff))  # 1 s, 2 s, 4 s, ...
        self._down_until[address] = time.monotonic() + backoff.next()
        self.errors[address] = error

    def live(self) -> list[Connection]:
        """Open connections, in server order (cached: this is on the submit hot path)."""
        if self._live is None:
            self._live = [c for s in self.servers if (c := self._conns.get(s)) is not None and not c.closed]
        return self._live

    async def connect_all(self, deadline: float | None = None) -> list[Connection]:
        """Connect to every server not known down, at once; failures are marked down."""
        wanted = [s for s in self.servers if not self.connected(s) and not self.is_down(s)]
        if wanted:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            tasks = [asyncio.ensure_future(self.connect(s)) for s in wanted]
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in done:
                task.exception()  # retrieved: a failure is already recorded by mark_down
        return self.live()

    async def close(self, timeout: float = 2.0) -> None:
        """Close every connection and wait (briefly) until their sockets are gone,
        so a TLS shutdown or a final write is not cut off by a closing loop."""
        conns = list(self._conns.values())
        self._conns.clear()
        self._live = None
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_transport_closed()) for c in conns], timeout=timeout)


def ignore_reply(_reply: Union[Packet, GearctlError]) -> None:
    """A reply callback for a request whose answer does not matter."""
    return None


ADMIN_CLIENT_ID = f"gearctl-admin-{os.getpid()}"  # so `workers` can leave our own connection out


async def admin_session(address: ServerAddress, commands: Sequence[Sequence[str]], *,
                        timeout: float = DEFAULT_CONNECT_TIMEOUT, tls: ssl.SSLContext | None = None,
                        client_id: str = ADMIN_CLIENT_ID,
                        io_timeout: float | None = None) -> list[list[str] | ServerError]:
    """Run text admin commands one after another on one fresh connection.

    gearmand tells text from binary by each request's first byte, so a binary
    SET_CLIENT_ID goes first: our connection then shows in `workers` under
    `client_id`. An ERR answer is returned in the command's place, not raised.
    Raises ConnectionFailed / Timeout for the connection itself.

    `timeout` bounds connecting (--connect-timeout). With `io_timeout`
    (--io-timeout) the server may then stay silent that long before each chunk
    of an answer it owes, and each answer must be whole within `timeout` plus
    `io_timeout` (gearmand writes an answer at once: one that trickles on and
    on is not gearmand); without it, `timeout` bounds the whole session."""
    deadline = time.monotonic() + timeout
    silence = f"{timeout:g}s" if io_timeout is None else f"{io_timeout:g}s (--io-timeout)"
    whole = None if io_timeout is None else timeout + io_timeout
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.host, address.port, ssl=tls,
                                    server_hostname=address.host if tls else None), timeout)
    except asyncio.TimeoutError:
        raise ConnectionFailed(f"{address}: no answer within {timeout:g}s") from None
    except OSError as e:  # ssl.SSLError is an OSError
        raise ConnectionFailed(f"{address}: {_reason(e)}") from e
    results: list[list[str] | ServerError] = []
    try:
        if client_id:
            writer.write(encode(PacketType.SET_CLIENT_ID, client_id))
        for command, *args in commands:
            framer = admin.ResponseReader(command)
            seen = b""
            writer.write(admin.command_line(command, *args))
            if whole is not None:
                deadline = time.monotonic() + whole
            while True:
                left = deadline - time.monotonic()
                if io_timeout is not None:
                    left = min(left, io_timeout)
                try:
                    if left <= 0:
                        raise asyncio.TimeoutError
                    chunk = await asyncio.wait_for(reader.read(65536), left)
                except asyncio.TimeoutError:
                    if whole is not None and time.monotonic() >= deadline:
                        raise Timeout(f"{address}: the answer to {command!r} was not whole within {whole:g}s "
                                      "(--connect-timeout plus --io-timeout)") from None
                    raise Timeout(f"{address}: no answer to {command!r} within {silence}") from None
                except OSError as e:
                    raise ConnectionFailed(f"{address}: {_reason(e)}") from e
                if not chunk:
                    if seen:  # half an answer, then gone: gearmand answers whole lines in one write
                        raise RemoteProtocolError(f"{address}: answered {command!r} with {_first_line(seen)!r} "
                                                  "and closed the connection: not a gearmand admin port")
                    raise ConnectionFailed(f"{address}: connection closed during {command!r}")
                if not seen:
                    seen = chunk
                    if chunk.startswith(b"HTTP/"):  # the commonest wrong port: a web server or proxy
                        raise RemoteProtocolError(f"{address}: answered {command!r} with "
                                                  f"{_first_line(chunk)!r}: an HTTP server, not gearmand")
                try:
                    lines = framer.feed(chunk)
                except ServerError as e:
                    results.append(ServerError(e.code, e.text, str(address)))
                    break
                if lines is not None:
                    results.append(lines)
                    break
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1)
    return results


def _first_line(data: bytes) -> str:
    return data.split(b"\n", 1)[0].rstrip(b"\r")[:80].decode("utf-8", "replace")


async def admin_request(address: ServerAddress, command: str, *args: str,
                        timeout: float = DEFAULT_CONNECT_TIMEOUT, tls: ssl.SSLContext | None = None,
                        io_timeout: float | None = None) -> list[str]:
    """Run one text admin command on a fresh connection; the response lines.
    Raises ServerError for an ERR answer. Timeouts as for admin_session."""
    (result,) = await admin_session(address, [(command, *args)], timeout=timeout, tls=tls, io_timeout=io_timeout)
    if isinstance(result, ServerError):
        raise result
    return result
