"""Sockets: binary connections to job servers and a pool of them with failover.

A `Connection` is an asyncio protocol around one socket: it encodes nothing
itself, it writes bytes it is given and feeds what it reads to a
protocol.Decoder. Which reply belongs to which request, and when a peer that
owes replies has gone silent, is decided by a replies.ReplyQueue; the
Connection only moves bytes, runs the silence timer and passes the time in.
Packets the queue does not take go to the connection's owner: WORK_* for
foreground jobs, NOOP, and the answers to requests sent with send() (the worker
counts its grabs instead of matching them).

It reads into a 64 KiB buffer of its own, reused (asyncio.BufferedProtocol): a
plain Protocol gets a fresh bytes object per read, which asyncio allocates at
256 KiB and then shrinks. On the development machine that allocation cost ~17 us
a read, and a one-by-one foreground job has two reads: with the buffer its
client side took ~111 us of CPU instead of ~138 us.

Addresses, TLS options and the default timeouts live in addresses.py (their
names are re-exported here), text admin sessions in adminio.py.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Union

from .addresses import DEFAULT_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT
from .addresses import DEFAULT_IO_TIMEOUT as DEFAULT_IO_TIMEOUT
from .addresses import DEFAULT_PORT as DEFAULT_PORT
from .addresses import DEFAULT_SERVERS as DEFAULT_SERVERS
from .addresses import SERVER_FORM as SERVER_FORM
from .addresses import ServerAddress as ServerAddress
from .addresses import TLSOptions as TLSOptions
from .addresses import connecting
from .addresses import parse_server as parse_server
from .addresses import parse_servers as parse_servers
from .backoff import Backoff
from .deadlines import wait_at_most
from .errors import ConfigError, ConnectionFailed, GearctlError, RemoteProtocolError, Timeout
from .protocol import Decoder, Magic, Packet, PacketType, encode
from .replies import REPLIES as REPLIES
from .replies import ReplyCallback as ReplyCallback
from .replies import ReplyQueue

if TYPE_CHECKING:  # ssl costs start-up time; it is imported when TLS is used
    import ssl

P = PacketType

# A peer that is not gearmand must fail at once, not after --io-timeout. Line-based
# servers (HTTP, Redis, memcached...) say nothing until a line ends, and a
# SUBMIT_JOB_BG or GET_STATUS need not hold a single LF byte: so every pooled
# connection opens with an ECHO_REQ whose payload ends a line and an HTTP request
# head. gearmand echoes it (the answer is ignored); anything else answers the
# "line" with bytes the decoder refuses (bad magic), failing what waits on it.
PROBE_PAYLOAD = b"gearctl\r\n\r\n"
PROBE = encode(P.ECHO_REQ, PROBE_PAYLOAD)


def _tune(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


READ_SIZE = 1 << 16  # bytes read at once into a connection's buffer


class Connection(asyncio.BufferedProtocol):
    """One binary-protocol connection to one server."""

    def __init__(self, address: ServerAddress, on_packet: Callable[[Connection, Packet], None] | None = None,
                 on_close: Callable[[Connection, GearctlError], None] | None = None,
                 io_timeout: float | None = None) -> None:
        self.address = address
        self.io_timeout = io_timeout
        self.replies = ReplyQueue()
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
        self._read_view = memoryview(bytearray(READ_SIZE))
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
        with connecting(address, timeout, tls=tls is not None):
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, address.host, address.port, ssl=tls,
                                       server_hostname=address.host if tls else None),
                timeout,
            )
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
        self.replies.fail(error)
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
            if self.error:
                reason = str(self.error)
            elif self.transport is not None:  # the peer closed it; connection_lost is on its way
                reason = f"{self.address}: connection lost"
            else:
                reason = f"{self.address}: not connected"
            raise ConnectionFailed(reason)
        self.transport.write(data)

    def request(self, data: bytes, callback: ReplyCallback) -> None:
        """Write one request; `callback` gets its reply packet (or ERROR), or the
        error that closed the connection first."""
        self.send(data)
        self.replies.expect(callback, time.monotonic())
        self._watch()

    def request_many(self, data: bytes, callbacks: Sequence[ReplyCallback]) -> None:
        """Write several requests at once (`data` is their concatenation)."""
        self.send(data)
        self.replies.expect_many(callbacks, time.monotonic())
        self._watch()

    # The silence rule is the queue's (replies.py); the timer is ours. It is
    # armed when replies become owed, and re-armed for when the peer would turn
    # silent, so a busy connection costs one timer, not one per request.
    def _watch(self) -> None:
        if self.io_timeout is not None and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self.io_timeout, self._check_silence)

    def _check_silence(self) -> None:
        self._watchdog = None
        if self.closed or self.io_timeout is None:
            return
        now = time.monotonic()
        if self.replies.silent(now, self.io_timeout):
            self.fail(ConnectionFailed(
                f"{self.address}: no reply within {self.io_timeout:g}s (--io-timeout); connection dropped"))
            return
        delay = self.replies.next_check(now, self.io_timeout)
        if delay is not None:
            self._watchdog = asyncio.get_running_loop().call_later(delay, self._check_silence)

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
            return await wait_at_most(future, timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"{self.address}: no reply within {timeout:g}s") from None

    # -- receiving -----------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_view[:nbytes])  # the decoder copies what it keeps

    def data_received(self, data: bytes | memoryview) -> None:
        if self.io_timeout is not None:
            self.replies.received(time.monotonic())
        decoder = self._decoder
        decoder.feed(data)
        deliver = self.replies.deliver
        try:
            while (packet := decoder.next()) is not None:
                if not deliver(packet) and self.on_packet is not None:
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
