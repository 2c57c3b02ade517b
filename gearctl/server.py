"""The embedded Gearman server: asyncio moving bytes to and from ServerState.

    server = Server("127.0.0.1", 0)          # port 0: a free port
    await server.start()                     # listening; server.address says where
    await server.serve_forever()             # until close() or an admin `shutdown`

One asyncio protocol per connection. As in gearmand, binary packets and text
admin lines share the port and may even alternate on one connection: a message
starting with a NUL byte is a binary packet (its header says how long it is),
anything else an admin line ended by LF. Everything a batch of input causes is
written with one write per connection. One timer covers the state's next
wake-up (a SUBMIT_JOB_EPOCH job coming due, a CAN_DO_TIMEOUT passing).

Backpressure: while a connection's unsent replies are over asyncio's high-water
mark, its requests are not read (it cannot make the server buffer more answers
than it takes). What others cause for it (WORK_DATA of a job it waits for) is
still written, up to `max_buffered` bytes; past that the peer is dropped, as a
disconnect (a worker's jobs go back to the queue, a client's jobs run on).

The queue lives in memory (what is queued when the server stops is lost, and
`main()` says so when it starts), unless `store` names a SQLite file
(serverstore.py): background jobs are then kept across restarts. Run it with
`python -m gearctl.server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import NoReturn

from .deadlines import wait_at_most
from .errors import ConfigError, ExitCode, GearctlError, RemoteProtocolError
from .protocol import DEFAULT_MAX_PACKET, HEADER, HEADER_SIZE, Decoder, Magic, PacketType, encode
from .serveradmin import Shutdown, answer
from .serverstate import Sends, ServerState
from .serverstore import SqliteStore

DEFAULT_PORT = 4730
DEFAULT_GRACEFUL_TIMEOUT = 30.0
MAX_LINE = 1 << 16  # an admin line longer than this is not one
MAX_BUFFERED = 64 << 20  # bytes waiting for a peer that does not read; past it, that peer is dropped


def server_version() -> str:
    """What admin `version` answers: gearctl's version, marked as this server
    (still a version admin.parse_version accepts)."""
    from . import __version__

    return f"{__version__}+gearctl"


class Link(asyncio.Protocol):
    """One connection: frames its bytes into packets and admin lines for the server."""

    def __init__(self, server: Server, conn_id: int) -> None:
        self.server = server
        self.id = conn_id
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.decoder = Decoder()  # fed one whole packet at a time (framed here, see frame())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        fd = -1
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = sock.fileno()
        peer = transport.get_extra_info("peername") or ("-",)
        self.server.opened(self, str(peer[0]), fd)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        sends: Sends = []
        try:
            pos = self.frame(sends)
        except RemoteProtocolError as e:
            sends.append((self.id, encode(PacketType.ERROR, "INVALID_PACKET", str(e), magic=Magic.RES)))
            self.server.dispatch(sends)
            self.close()
            return
        del self.buf[:pos]
        self.server.dispatch(sends)

    def frame(self, sends: Sends) -> int:
        """Handle every whole message in the buffer; returns how many bytes they took."""
        buf, pos, state, now = self.buf, 0, self.server.state, time.time()
        while pos < len(buf) and not self.server.closing_now:
            if buf[pos] == 0:
                if len(buf) - pos < HEADER_SIZE:
                    break
                size = HEADER.unpack_from(buf, pos)[2]
                if size > DEFAULT_MAX_PACKET:
                    raise RemoteProtocolError(f"a packet of {size} bytes is over the limit")
                end = pos + HEADER_SIZE + size
                if len(buf) < end:
                    break
                sends += self.packet(bytes(buf[pos:end]), now)
                pos = end
            else:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if len(buf) - pos > MAX_LINE:
                        raise RemoteProtocolError(f"an admin line longer than {MAX_LINE} bytes")
                    break
                line = bytes(buf[pos:nl]).rstrip(b"\r")
                pos = nl + 1
                reply = answer(state, line, os.getpid(), self.server.version)
                sends.append((self.id, reply.text))
                if reply.shutdown is not None:
                    self.server.shutdown(reply.shutdown)
        return pos

    def packet(self, data: bytes, now: float) -> Sends:
        """One whole binary packet. One the codec refuses (an unknown type, too
        few arguments) is answered with ERROR and the connection goes on, as
        with gearmand: the header said where the next one starts."""
        self.decoder.feed(data)
        try:
            packet = self.decoder.next()
        except RemoteProtocolError as e:
            self.decoder = Decoder()  # it stays failed after an error; the framing here is still sound
            return [(self.id, encode(PacketType.ERROR, "INVALID_COMMAND", str(e), magic=Magic.RES))]
        assert packet is not None
        return self.server.state.receive(self.id, packet, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.closed(self)

    def pause_writing(self) -> None:
        if self.transport is not None:  # it is not reading our answers: stop reading its requests
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Server:
    """A Gearman job server in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, max_queue: int | None = None,
                 graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT, hostname: str | None = None,
                 store: str | None = None, max_buffered: int = MAX_BUFFERED) -> None:
        self.host, self.port = host, port
        self.max_buffered = max_buffered
        self.store_path = store
        self.store: SqliteStore | None = None
        self.graceful_timeout = graceful_timeout
        self.state = ServerState(hostname or socket.gethostname(), max_queue)
        self.version = server_version()
        self.links: dict[int, Link] = {}
        self.next_id = 0
        self.listener: asyncio.base_events.Server | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.done: asyncio.Event | None = None
        self.stopping: asyncio.Task[None] | None = None
        self.closing_now = False
        self.drained: asyncio.Event | None = None  # set once draining has no job running

    @property
    def address(self) -> str:
        """host:port as bound (the free port chosen for port 0)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Load the store (with `store`), then listen. ConfigError (exit 2): the
        address cannot be bound, or the store opened (StoreFailed)."""
        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        if self.store_path is not None:
            self.store = SqliteStore(self.store_path)
            self.state.store = self.store
            now = time.time()
            for row in self.store.load():
                self.state.restore(row.function, row.unique, row.data, row.priority, row.when, row.id, now)
        try:
            self.listener = await loop.create_server(self.link, self.host, self.port, reuse_address=True)
        except OSError as e:
            self.close_store()
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {reason}") from e
        self.port = int(self.listener.sockets[0].getsockname()[1])

    @property
    def stored(self) -> int:
        """Jobs in the store now (0 without one)."""
        return sum(1 for job in self.state.jobs.values() if job.stored)

    def close_store(self) -> None:
        if self.store is not None:
            self.state.store = None
            self.store.close()
            self.store = None

    async def serve_forever(self) -> None:
        """Until close() (or an admin `shutdown`) has finished."""
        assert self.done is not None, "start() first"
        await self.done.wait()
        if self.stopping is not None:
            await self.stopping

    async def close(self, graceful: bool = False) -> None:
        """Stop accepting; with `graceful`, hand out no more jobs and let the
        running ones end (within graceful_timeout); then close every connection."""
        if self.listener is not None:
            self.listener.close()
        if graceful:
            self.state.draining = True
            self.drained = asyncio.Event()
            if self.state.running:
                with contextlib.suppress(asyncio.TimeoutError):
                    await wait_at_most(self.drained.wait(), self.graceful_timeout)
        self.closing_now = True
        for link in list(self.links.values()):
            link.close()
        if self.timer is not None:
            self.timer.cancel()
        if self.listener is not None:
            await self.listener.wait_closed()
        self.close_store()
        if self.done is not None:
            self.done.set()

    def shutdown(self, how: Shutdown) -> None:
        """An admin `shutdown [graceful]`, or a signal: close() in the background, once."""
        if self.stopping is None:
            self.stopping = asyncio.get_running_loop().create_task(self.close(how is Shutdown.GRACEFUL))

    # -- connections (called by Link) --------------------------------------------
    def link(self) -> Link:
        self.next_id += 1
        return Link(self, self.next_id)

    def opened(self, link: Link, host: str, fd: int) -> None:
        self.links[link.id] = link
        self.state.connect(link.id, host, fd)

    def closed(self, link: Link) -> None:
        self.links.pop(link.id, None)
        self.dispatch(self.state.disconnect(link.id, time.time()))

    def dispatch(self, sends: Sends) -> None:
        """Write what the state decided, one write per connection, and set the timer."""
        if self.drained is not None and not self.state.running:
            self.drained.set()
        if sends:
            out: defaultdict[int, list[bytes]] = defaultdict(list)
            for conn_id, data in sends:
                out[conn_id].append(data)
            for conn_id, parts in out.items():
                link = self.links.get(conn_id)
                transport = link.transport if link is not None else None
                if transport is not None and not transport.is_closing():
                    transport.write(b"".join(parts))
                    if transport.get_write_buffer_size() > self.max_buffered:
                        self.state.warnings.append(f"connection {conn_id} does not read what it is sent: over "
                                                   f"{self.max_buffered} bytes waiting, dropped")
                        transport.abort()
        for warning in self.state.warnings:
            print(f"gearctl server: warning: {warning}", file=sys.stderr, flush=True)
        self.state.warnings.clear()
        self.arm()

    def arm(self) -> None:
        """One timer, at the state's next wake-up."""
        when = self.state.next_wakeup()
        if when == self.timer_at:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = None, when
        if when is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_at(loop.time() + max(when - time.time(), 0.0), self.fire)

    def fire(self) -> None:
        self.timer = self.timer_at = None
        self.dispatch(self.state.tick(time.time()))


# -- python -m gearctl.server ---------------------------------------------------

class Parser(argparse.ArgumentParser):
    """Bad flags are one `gearctl:` line and exit 2, as with every command."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"gearctl: {message}\n")


def non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="python -m gearctl.server", description="The embedded Gearman server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: a free port")
    parser.add_argument("--max-queue", type=non_negative(int), default=None,
                        help="jobs per function at most (queued + running); 0: no limit")
    parser.add_argument("--store", metavar="PATH", default=None,
                        help="keep background jobs in this SQLite file across restarts")
    parser.add_argument("--graceful-timeout", type=non_negative(float), default=DEFAULT_GRACEFUL_TIMEOUT,
                        help="seconds running jobs get to end on SIGTERM or `shutdown graceful`")
    return parser.parse_args(argv)


def start_line(server: Server) -> str:
    """What a started server says first: where it listens, and where its jobs live."""
    if server.store_path is None:
        durability = "the queue is in memory (queued jobs are lost when the server stops)"
    else:
        durability = (f"background jobs are stored in {server.store_path} ({server.stored} loaded); "
                      "foreground jobs are in memory")
    return f"gearctl server: listening on {server.address}; {durability}"


async def run_server(server: Server, announce: Callable[[str], None]) -> None:
    """Start `server`, pass its start line to `announce`, serve until stopped:
    SIGTERM stops gracefully, SIGINT at once. Raises ConfigError (see start())."""
    await server.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, server.shutdown, Shutdown.GRACEFUL)
    loop.add_signal_handler(signal.SIGINT, server.shutdown, Shutdown.NOW)
    announce(start_line(server))
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = Server(args.host, args.port, int(args.max_queue or 0), args.graceful_timeout, store=args.store)
    try:
        asyncio.run(run_server(server, lambda line: print(line, flush=True)))
    except GearctlError as e:
        print(f"gearctl: {e}", file=sys.stderr)
        return e.exit_code
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
