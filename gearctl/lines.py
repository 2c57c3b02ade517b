"""Jobs from lines of input, read off the event loop.

`LineSource` feeds AsyncClient.submit_many from a byte stream (stdin, a file)
one job per line. A daemon thread does the blocking reads, in chunks, and
hands whole lines to the loop, so a slow producer (`tail -f | gearctl client -n`)
never stalls replies, timeouts or Ctrl-C, and lines are submitted as they come.
The buffer between the two is bounded: a fast file does not fill memory.

`LineReports` writes what went wrong with the lines to stderr without flooding
it: an outage fails every job the same way, and cron mails every line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import BinaryIO, TextIO

from .clientjob import Job
from .pipeline import JobSource

CHUNK = 1 << 16
MAX_BUFFERED = 8192  # lines read ahead of the submits


def split_lines(data: bytes) -> list[bytes]:
    """Lines without their LF or CRLF; a last line without an end still counts."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


class LineSource(JobSource):
    def __init__(self, stream: BinaryIO | None, make_job: Callable[[bytes, int], Job | None], *,
                 text: bytes | None = None) -> None:
        self._stream = stream
        self._make_job = make_job
        self._text = text
        self._lines: deque[bytes] = deque()
        self._eof = False
        self.number = 0  # lines taken so far
        self._room = threading.Event()
        self._room.set()
        self._closed = False
        self.error: OSError | None = None

    def start(self, wake: Callable[[], None]) -> None:
        if self._text is not None or self._stream is None:
            self._lines.extend(split_lines(self._text or b""))
            self._eof = True
            return
        loop = asyncio.get_running_loop()
        stream = self._stream
        # os.read on the descriptor, not the buffered stream: a run can end with
        # this thread still blocked reading (--timeout, --max-errors, a producer
        # that never closes), and a thread holding stdin's buffer lock makes the
        # interpreter's exit abort ("could not acquire lock ... at interpreter
        # shutdown", exit 134) instead of exiting with the run's code.
        # Nothing has read from the stream yet, so its buffer holds nothing to lose.
        try:
            fd: int | None = stream.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory stream
            fd = None

        def read_chunk() -> bytes:
            if fd is not None:
                return os.read(fd, CHUNK)
            return stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK)

        def arrived(lines: list[bytes], eof: bool) -> None:
            self._lines.extend(lines)
            self._eof = eof
            if len(self._lines) >= MAX_BUFFERED:
                self._room.clear()
            wake()

        def read() -> None:
            rest = b""
            while not self._closed:
                self._room.wait()
                try:
                    chunk = read_chunk()
                except OSError as e:
                    self.error = e
                    chunk = b""
                if not chunk:
                    tail = [rest[:-1] if rest.endswith(b"\r") else rest] if rest else []
                    loop.call_soon_threadsafe(arrived, tail, True)
                    return
                data = rest + chunk
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                rest = data[cut + 1 :]
                loop.call_soon_threadsafe(arrived, split_lines(data[: cut + 1]), False)

        threading.Thread(target=read, name="gearctl-lines", daemon=True).start()

    def take(self) -> Job | None:
        while self._lines and not self.exhausted:  # make_job may stop() the source
            line = self._lines.popleft()
            self.number += 1
            if len(self._lines) < MAX_BUFFERED // 2 and not self._room.is_set():
                self._room.set()  # set() takes a lock and notifies: not once per line
            job = self._make_job(line, self.number)
            if job is not None:
                return job
        if self._eof and not self._lines:
            self.exhausted = True
        return None

    def close(self) -> None:
        self._closed = True
        self._room.set()


class LineReports:
    """One stderr line per problem (`gearctl: line N: reason`), but a reason
    seen SHOWN times is only counted after that, and said once at the end:
    `gearctl: ... and 23,990 more: reason`. Past MAX_REASONS distinct reasons
    (exception texts that differ per job), further ones are only counted."""

    SHOWN = 5
    MAX_REASONS = 20
    OTHER = "other errors"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: sys.stderr as it is at each write (see stream)
        self.counts: dict[str, int] = {}

    @property
    def stream(self) -> TextIO:
        """Where the lines go. sys.stderr is looked up at each write: while a live
        table is drawn on the terminal, rich has put a proxy there that prints lines
        above the table; the stderr of before would write through it, and its next
        redraw would erase them."""
        return self._stream if self._stream is not None else sys.stderr

    def report(self, number: int | None, text: str, reason: str | None = None) -> None:
        """`text` for line `number`; `reason` (default: the text) is what makes
        two reports the same, without the job's own details such as its handle."""
        key = text if reason is None else reason
        if key not in self.counts and len(self.counts) >= self.MAX_REASONS:
            key = self.OTHER
        seen = self.counts[key] = self.counts.get(key, 0) + 1
        if seen <= self.SHOWN and key != self.OTHER:
            self.stream.write(f"gearctl: line {number}: {text}\n")

    def finish(self) -> None:
        """The counts of what was not shown, one line per reason."""
        for key, seen in self.counts.items():
            hidden = seen if key == self.OTHER else seen - self.SHOWN
            if hidden > 0:
                self.stream.write(f"gearctl: ... and {hidden:,} more: {key}\n")
