"""Text admin sessions over a socket: the I/O half of admin.py, as connection.py
is the I/O half of protocol.py. admin.py frames and parses the answers; this
module opens the connection, writes the command lines and decides how long to
wait for each answer.

How long: `timeout` (--connect-timeout) bounds connecting. With `io_timeout`
(--io-timeout) the server may then stay silent that long before each chunk of
an answer it owes, and each answer must be whole within `timeout` plus
`io_timeout` (gearmand writes an answer at once: one that trickles on and on is
not gearmand); without it, `timeout` bounds the whole session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import admin
from .addresses import DEFAULT_CONNECT_TIMEOUT, ServerAddress, connecting, describe_socket_error
from .deadlines import wait_at_most
from .errors import ConnectionFailed, RemoteProtocolError, ServerError, Timeout
from .protocol import PacketType, encode, looks_like_http

if TYPE_CHECKING:
    import ssl

ADMIN_CLIENT_ID = f"gearctl-admin-{os.getpid()}"  # so `workers` can leave our own connection out
READ_SIZE = 65536

AdminAnswer = list[str] | ServerError  # an answer's lines, or the ERR the server gave instead


class _AnswerClock:
    """How long to wait for the next chunk of an admin answer (see the module's docstring)."""

    def __init__(self, address: ServerAddress, timeout: float, io_timeout: float | None) -> None:
        self.address = address
        self.io_timeout = io_timeout
        self.whole = None if io_timeout is None else timeout + io_timeout
        self.silence = f"{timeout:g}s" if io_timeout is None else f"{io_timeout:g}s (--io-timeout)"
        self.deadline = time.monotonic() + timeout  # the whole session's, until an answer starts its own

    def start_answer(self) -> None:
        if self.whole is not None:
            self.deadline = time.monotonic() + self.whole

    def left(self) -> float:
        """Seconds to wait for the next chunk (<= 0: none)."""
        left = self.deadline - time.monotonic()
        return left if self.io_timeout is None else min(left, self.io_timeout)

    def expired(self, command: str) -> Timeout:
        """The error for a wait that ran out: the answer was too slow in all, or the server silent."""
        if self.whole is not None and time.monotonic() >= self.deadline:
            return Timeout(f"{self.address}: the answer to {command!r} was not whole within {self.whole:g}s "
                           "(--connect-timeout plus --io-timeout)")
        return Timeout(f"{self.address}: no answer to {command!r} within {self.silence}")


async def admin_session(address: ServerAddress, commands: Sequence[Sequence[str]], *,
                        timeout: float = DEFAULT_CONNECT_TIMEOUT, tls: ssl.SSLContext | None = None,
                        client_id: str = ADMIN_CLIENT_ID,
                        io_timeout: float | None = None) -> list[AdminAnswer]:
    """Run text admin commands one after another on one fresh connection.

    gearmand tells text from binary by each request's first byte, so a binary
    SET_CLIENT_ID goes first: our connection then shows in `workers` under
    `client_id`. An ERR answer is returned in the command's place, not raised.
    Raises ConnectionFailed / Timeout for the connection itself; the timeouts
    are those of the module's docstring."""
    clock = _AnswerClock(address, timeout, io_timeout)
    with connecting(address, timeout, tls=tls is not None):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.host, address.port, ssl=tls,
                                    server_hostname=address.host if tls else None), timeout)
    results: list[AdminAnswer] = []
    try:
        if client_id:
            writer.write(encode(PacketType.SET_CLIENT_ID, client_id))
        for command, *args in commands:
            writer.write(admin.command_line(command, *args))
            results.append(await _read_answer(reader, command, clock))
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1)
    return results


async def _read_answer(reader: asyncio.StreamReader, command: str, clock: _AnswerClock) -> AdminAnswer:
    """Read the answer to `command`, just written: its lines, or the ERR it got."""
    address = clock.address
    framer = admin.ResponseReader(command)
    clock.start_answer()
    seen = b""
    while True:
        chunk = await _read_chunk(reader, command, clock)
        if not chunk:
            if seen:  # half an answer, then gone: gearmand answers whole lines in one write. A lost
                # connection (exit 3), as the reset that can come first instead is, and as the client says.
                raise ConnectionFailed(f"{address}: answered {command!r} with {_first_line(seen)!r} "
                                       "and closed the connection: not a gearmand admin port")
            raise ConnectionFailed(f"{address}: connection closed during {command!r}")
        if not seen:
            seen = chunk
            if looks_like_http(chunk):
                raise RemoteProtocolError(f"{address}: answered {command!r} with "
                                          f"{_first_line(chunk)!r}: an HTTP server, not gearmand")
        try:
            lines = framer.feed(chunk)
        except ServerError as e:
            return ServerError(e.code, e.text, str(address))
        if lines is not None:
            return lines


async def _read_chunk(reader: asyncio.StreamReader, command: str, clock: _AnswerClock) -> bytes:
    """The next bytes of an answer (b"" when the server closed), within the clock's wait."""
    left = clock.left()
    try:
        if left <= 0:
            raise asyncio.TimeoutError
        return await wait_at_most(reader.read(READ_SIZE), left)  # never loses our caller's cancel
    except asyncio.TimeoutError:
        raise clock.expired(command) from None
    except OSError as e:
        raise ConnectionFailed(f"{clock.address}: {describe_socket_error(e)}") from e


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
