#!/usr/bin/env python3
"""The Python floor: the least any Python command line can do the benchmarks' work in.

    python3 benchmarks/floor.py drain  HOST:PORT FUNCTION JOBS [WINDOW]
    python3 benchmarks/floor.py submit HOST:PORT FUNCTION < lines     (background, pipelined)
    python3 benchmarks/floor.py fg     HOST:PORT FUNCTION < lines     (foreground, one by one)

It pays what every asyncio + typer command pays at start (it imports both, as the
import-floor row of bench_oneshot does) and then speaks the binary protocol over one
blocking socket with nothing else: no job object, no timeout, no retry, no log line,
no supervisor, no error handling beyond stopping. It is not a tool; it is the figure
that says how much of a target Python itself leaves room for. `drain` holds WINDOW
grabs (default 64), sleeps (PRE_SLEEP) when the server has none, and exits once JOBS
are completed (0: never) and the server has taken every WORK_COMPLETE (an ECHO_REQ's
answer comes after them); `submit` queues one
SUBMIT_JOB_BG a line, 256 in flight, and exits once each is created; `fg` submits a
line, waits for its WORK_COMPLETE, then the next.
"""

from __future__ import annotations

import asyncio  # noqa: F401  (the import floor: what every gearctl command pays)
import socket
import struct
import sys
import uuid
from collections.abc import Iterator

import typer  # noqa: F401

HEADER = struct.Struct(">4sII")
CAN_DO, PRE_SLEEP, NOOP, SUBMIT_JOB, JOB_CREATED, GRAB_JOB, NO_JOB, JOB_ASSIGN = 1, 4, 6, 7, 8, 9, 10, 11
WORK_COMPLETE, ECHO_REQ, ECHO_RES, SUBMIT_JOB_BG, ERROR = 13, 16, 17, 18, 19


def packet(kind: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return HEADER.pack(b"\0REQ", kind, len(body)) + body


class Wire:
    """One blocking connection: packets out, packets in (type, args)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def packets(self) -> Iterator[tuple[int, bytes]]:
        """Every packet the server sends, until it closes."""
        while True:
            chunk = self.sock.recv(262144)
            if not chunk:
                return
            data, at = self.buffer + chunk, 0
            while len(data) - at >= 12:
                _magic, kind, size = HEADER.unpack_from(data, at)
                if len(data) - at - 12 < size:
                    break
                body = data[at + 12:at + 12 + size]
                at += 12 + size
                if kind == ERROR:
                    raise SystemExit(f"floor: server error {body!r}")
                yield kind, body
            self.buffer = data[at:]


def drain(wire: Wire, function: bytes, jobs: int, window: int) -> None:
    """Serve `function` holding `window` grabs; stop after `jobs` (0: until killed)."""
    wire.send(packet(CAN_DO, function) + packet(GRAB_JOB) * window)
    done, asked = 0, window
    for kind, body in wire.packets():
        if kind == JOB_ASSIGN:
            handle = body.split(b"\0", 1)[0]
            done += 1
            reply = packet(WORK_COMPLETE, handle, b"")
            wire.send(reply + packet(ECHO_REQ, b"bye") if done == jobs else reply + packet(GRAB_JOB))
        elif kind == NO_JOB:
            asked -= 1
            if asked == 0:  # nothing left to grab: sleep until the server wakes us
                wire.send(packet(PRE_SLEEP))
        elif kind == NOOP:
            asked = window
            wire.send(packet(GRAB_JOB) * window)
        elif kind == ECHO_RES:
            return


def submit(wire: Wire, function: bytes, lines: list[bytes]) -> None:
    inflight, sent, created = 256, 0, 0
    first = min(inflight, len(lines))
    wire.send(b"".join(packet(SUBMIT_JOB_BG, function, uuid.uuid4().hex.encode(), line) for line in lines[:first]))
    sent = first
    if not lines:
        return
    for kind, _body in wire.packets():
        if kind == JOB_CREATED:
            created += 1
            if sent < len(lines):
                wire.send(packet(SUBMIT_JOB_BG, function, uuid.uuid4().hex.encode(), lines[sent]))
                sent += 1
            elif created == len(lines):
                return


def foreground(wire: Wire, function: bytes, lines: list[bytes]) -> None:
    out = sys.stdout.buffer
    packets = wire.packets()
    for line in lines:
        wire.send(packet(SUBMIT_JOB, function, uuid.uuid4().hex.encode(), line))
        for kind, body in packets:
            if kind == WORK_COMPLETE:
                out.write(body.split(b"\0", 1)[1])
                break
    out.flush()


def main(argv: list[str]) -> int:
    mode, address, function = argv[0], argv[1], argv[2].encode()
    wire = Wire(address)
    if mode == "drain":
        drain(wire, function, int(argv[3]), int(argv[4]) if len(argv) > 4 else 64)
    else:
        lines = sys.stdin.buffer.read().splitlines()
        (submit if mode == "submit" else foreground)(wire, function, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
