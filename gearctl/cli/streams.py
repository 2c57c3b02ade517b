"""The bytes of a command: the payload it reads (a file, stdin or --data), the
results it writes to stdout (exactly as given; a closed pipe stops it as SIGPIPE
would) and the one-line texts it writes to stderr."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import BinaryIO, TextIO

from ..errors import ExitCode, GearctlError, PayloadError, UsageError


def read_payload(payload: str | None, data: str | None) -> bytes:
    if data is not None and payload is not None:
        raise UsageError("give the payload either as a file argument or with --data, not both")
    if data is not None:
        return data.encode("utf-8", "surrogateescape")
    if payload is None:
        return b""
    if payload == "-":
        return sys.stdin.buffer.read()
    try:
        with open(payload, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read payload file {payload}: {e.strerror or e}") from e


class OutputClosed(GearctlError):
    """stdout went away (| head): stop like a process killed by SIGPIPE."""

    exit_code = ExitCode.OUTPUT_CLOSED


class Out:
    """stdout for results: bytes exactly as given; a closed pipe becomes
    OutputClosed; no stdout at all (>&-) writes nothing."""

    def __init__(self) -> None:
        self.stream = sys.stdout.buffer if sys.stdout is not None else None
        self._flush_pending = False

    def write(self, data: bytes, flush: bool = True) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(data)
            if flush:
                self.stream.flush()
        except BrokenPipeError:
            raise OutputClosed("stdout was closed") from None

    def line(self, text: str) -> None:
        self.write(text.encode("utf-8", "surrogateescape") + b"\n")

    def flush_soon(self) -> None:
        """Flush once per event-loop turn, not once per job."""
        if not self._flush_pending and self.stream is not None:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.write(b"", flush=True)

    @contextlib.contextmanager
    def as_text_to(self, stream: TextIO) -> Iterator[None]:
        """Results written as text to `stream` meanwhile: rich's proxy of a terminal's
        stdout while a live table is drawn there, which prints lines above the
        table (bytes written past it would be erased by the next redraw)."""
        saved, self.stream = self.stream, _TextWriter(stream)  # type: ignore[assignment]
        try:
            yield
        finally:
            self.write(b"", flush=True)
            self.stream = saved


class _TextWriter:
    """A binary stream's write and flush, as text on a text stream (for a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.text = stream

    def write(self, data: bytes) -> int:
        self.text.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self.text.flush()


def one_line(text: str) -> str:
    return " ".join(text.split())


def line_input(payload: str | None, data: str | None) -> tuple[BinaryIO | None, bytes | None]:
    """--each-line's input: a stream to read lines from, or inline text."""
    if data is not None:
        if payload is not None:
            raise UsageError("give the payload either as a file argument or with --data, not both")
        return None, data.encode("utf-8", "surrogateescape")
    if payload is None or payload == "-":
        return sys.stdin.buffer, None
    if os.path.isdir(payload):
        raise UsageError(f"cannot read payload file {payload}: it is a directory")
    try:
        return open(payload, "rb"), None
    except OSError as e:
        raise UsageError(f"cannot read payload file {payload}: {e.strerror or e}") from e



def write_stderr(chunk: bytes) -> None:
    sys.stderr.flush()
    sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.flush()



def write_decoded(out: Out, record: dict[str, object] | None, result: bytes, decoding: str,
                   flush: bool = True) -> None:
    """--decode: the result as a line of JSON, or (with --json) the record with a
    "value" field. A result that does not decode raises PayloadError, after the
    record (its "value" null, "decode_error" the reason) went out with --json."""
    from .. import codecs, render  # only the commands that decode pay for the codecs

    try:
        if record is None:
            out.write(codecs.as_json_text(result, decoding) + b"\n", flush=flush)
            return
        record["value"] = codecs.json_value(result, decoding)
    except PayloadError as e:
        if record is not None:
            record.update(value=None, decode_error=one_line(str(e)))
            out.write(render.json_line(record).encode() + b"\n", flush=flush)
        raise PayloadError(f"--decode {decoding}: {e}", e.data) from e
    out.write(render.json_line(record).encode() + b"\n", flush=flush)

