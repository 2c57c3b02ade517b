"""Loopback servers that are not gearmand, for the tests of what gearctl does
when a peer misbehaves.

`FakeServer(talk)` listens on a free 127.0.0.1 port and hands each connection
to `talk(conn, stop)` in a thread of its own; close() stops them all. The
`MISBEHAVIOURS` below are the talks of issue 11's misbehaving-server cases: each
answers whatever arrives first (a binary SUBMIT, a worker's CAN_DO, an admin
`status` line) the same wrong way, so every command meets the same fault.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

Talk = Callable[[socket.socket, threading.Event], None]

RES = b"\0RES"
JOB_CREATED = 8
NOOP = 6
FOUR_GB = 0xFFFF_FFFF  # the largest size a header can declare


def header(ptype: int, size: int) -> bytes:
    return RES + struct.pack(">II", ptype, size)


class FakeServer:
    """A loopback port that is not gearmand: each connection is handed to
    `talk(conn, stop)` in a thread of its own; close() stops them all."""

    def __init__(self, talk: Talk) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.talk = talk
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.talk(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serving(talk: Talk) -> Iterator[int]:
    """A fixture body: the port of a FakeServer running `talk`, closed after."""
    server = FakeServer(talk)
    yield server.port
    server.close()


# -- the misbehaviours -------------------------------------------------------------
def garbage(conn: socket.socket, stop: threading.Event) -> None:
    """Answers the first bytes with bytes that are no protocol at all, then holds on."""
    if conn.recv(65536):
        conn.sendall(b"\xde\xad\xbe\xef\x00\xff garbage \x01\x02\x03\n" * 8)
    stop.wait(30)


def truncated(conn: socket.socket, stop: threading.Event) -> None:
    """A JOB_CREATED header that promises 20 bytes, and the connection closed."""
    if conn.recv(65536):
        conn.sendall(header(JOB_CREATED, 20))


def four_gb(conn: socket.socket, stop: threading.Event) -> None:
    """A header declaring a 4 GB body, then a trickle of it: a decoder that
    believed the size would allocate it or wait for it."""
    if conn.recv(65536):
        conn.sendall(header(JOB_CREATED, FOUR_GB) + b"H:fake:1\0" + b"x" * 65536)
    while not stop.wait(0.1):
        conn.sendall(b"x" * 65536)


def one_byte_a_second(conn: socket.socket, stop: threading.Event) -> None:
    """NOOP packets (and, for the admin port, a status line that never ends),
    one byte a second: never silent long enough for --io-timeout."""
    if not conn.recv(65536):
        return
    stream = header(NOOP, 0) * 1000
    for i in range(len(stream)):
        conn.sendall(stream[i:i + 1])
        if stop.wait(1):
            return


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accepts, reads, never answers."""
    conn.settimeout(0.5)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


def unknown_type(conn: socket.socket, stop: threading.Event) -> None:
    """A well-framed packet of a type Gearman does not have (999)."""
    if conn.recv(65536):
        conn.sendall(header(999, 4) + b"abcd")
    stop.wait(30)


def closes_mid_reply(conn: socket.socket, stop: threading.Event) -> None:
    """Half of a JOB_CREATED (its header and part of the handle), then closed."""
    if conn.recv(65536):
        conn.sendall(header(JOB_CREATED, 16) + b"H:fake:")


MISBEHAVIOURS: dict[str, Talk] = {
    "garbage": garbage,
    "truncated": truncated,
    "four-gb-header": four_gb,
    "one-byte-a-second": one_byte_a_second,
    "silent": silent,
    "unknown-packet-type": unknown_type,
    "closes-mid-reply": closes_mid_reply,
}
