"""A submitted job and a job's status: what was sent, and what the servers said.

`Job` holds one job's request (function, workload, unique key, priority) and
its state as the replies come in; the submitter drives it through its public
transitions (`created`, `apply_work`, `finish`, `abort_wait`) and callers read
it or wait on it. `JobStatus` is a GET_STATUS answer. No sockets.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from .connection import ServerAddress
from .deadlines import wait_at_most
from .errors import GearctlError, JobException, JobFailed, Timeout, UsageError
from .protocol import SUBMIT_TYPES, Packet, PacketType, encode, encode_submit, parse_int

P = PacketType
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
MAX_FUNCTION = 8191  # bytes; gearmand 1.1.20 drops the connection for a longer name

# Job states. A background job ends at "queued"; a foreground one at
# "complete", "failed" or "exception". "error" and "timeout" are gearctl's own.
DONE_STATES = frozenset({"queued", "complete", "failed", "exception", "error", "timeout"})


_UNIQUE_PREFIX = uuid.uuid4().hex.encode()
_unique_counter = itertools.count(1)


def _fresh_unique() -> bytes:
    """A unique key no other job has: this process's random prefix and a counter
    (a uuid4 per job would cost more than the rest of a pipelined submit)."""
    return b"%s-%d" % (_UNIQUE_PREFIX, next(_unique_counter))


def decode_text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _text_or_base64(value: bytes) -> tuple[str | None, str | None]:
    """For JSON: (the UTF-8 text, None), or (None, the base64) for other bytes."""
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(value).decode()


def result_fields(result: bytes, chunks: list[bytes] | None) -> dict[str, Any]:
    """A --json record's "result" and "data" (None: no data field): UTF-8 text, or
    null with the base64 in "result_base64" / "data_base64" (every chunk)."""
    fields: dict[str, Any] = {}
    fields["result"], result_base64 = _text_or_base64(result)
    if result_base64 is not None:
        fields["result_base64"] = result_base64
    if chunks is not None:
        texts = [_text_or_base64(chunk) for chunk in chunks]
        if all(encoded is None for _, encoded in texts):
            fields["data"] = [text for text, _ in texts]
        else:
            fields["data"], fields["data_base64"] = None, [base64.b64encode(c).decode() for c in chunks]
    return fields


def _bytes(value: Union[bytes, str]) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """GET_STATUS / GET_STATUS_UNIQUE answer. gearmand's answer to the unique
    form names the unique key, not the handle."""

    handle: str | None
    known: bool
    running: bool
    numerator: int
    denominator: int
    server: str
    waiting: int | None = None  # clients waiting on the job (GET_STATUS_UNIQUE only)
    unique: str | None = None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.numerator / self.denominator if self.denominator else None


class Job:
    """One job: what was submitted and everything the server said about it.

    For a foreground job, set on_data/on_warning/on_status before submitting to
    see WORK_* packets as they come (they are kept in chunks/warnings anyway).
    """

    __slots__ = (
        "_future",
        "_wire_function",
        "_wire_unique",
        "background",
        "chunks",
        "data",
        "denominator",
        "error",
        "exception",
        "function",
        "handle",
        "index",
        "numerator",
        "on_data",
        "on_finished",
        "on_status",
        "on_warning",
        "priority",
        "result",
        "server",
        "state",
        "unique",
        "warnings",
        "when",
    )

    def __init__(self, function: str, data: Union[bytes, str] = b"", *, unique: str = "",
                 background: bool = True, priority: str = "normal", when: int | None = None,
                 index: int | None = None) -> None:
        if priority not in PRIORITIES:
            raise UsageError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        if when is not None and not background:
            raise UsageError("a scheduled job (--at/--in) runs in the background; it cannot be waited for")
        if when is not None and priority != "normal":
            raise UsageError("gearmand has no priority for scheduled jobs; drop --priority or --at/--in")
        if not function:
            raise UsageError("the function name is empty")
        self._wire_function = function.encode("utf-8", "surrogateescape")
        # No key given: a fresh one, as libgearman does. gearmand's persistent
        # queues (sqlite, mysql, ...) store jobs under (function, unique): with an
        # empty unique, a restart would bring back one job of many.
        self._wire_unique = unique.encode("utf-8", "surrogateescape") if unique else _fresh_unique()
        if b"\0" in self._wire_function or b"\0" in self._wire_unique:
            raise UsageError("function names and unique keys cannot contain NUL bytes")
        if len(self._wire_function) > MAX_FUNCTION:
            raise UsageError(f"the function name is {len(self._wire_function)} bytes; gearmand takes {MAX_FUNCTION}")
        self.function = function
        self.unique = unique
        self.background = background
        self.priority = priority
        self.when = when
        self._begin(_bytes(data), index)

    def like(self, data: bytes, index: int | None = None) -> Job:
        """A new job with this one's function and options (not its state) and
        `data`, and a fresh unique key unless this one has a key of its own:
        what --each-line makes per line, without checking the function and the
        options and encoding the name again (0.7 us a job instead of 1.9-2.6 us)."""
        job = Job.__new__(Job)
        job.function, job._wire_function = self.function, self._wire_function
        job.unique, job._wire_unique = self.unique, self._wire_unique if self.unique else _fresh_unique()
        job.background, job.priority, job.when = self.background, self.priority, self.when
        job._begin(data, index)
        return job

    def _begin(self, data: bytes, index: int | None) -> None:
        """The payload, and the state of a job not yet submitted."""
        self.data = data
        self.index = index  # the caller's number for it (input line)
        self.handle: str | None = None
        self.server: ServerAddress | None = None
        self.state = "new"
        self.result = b""  # WORK_COMPLETE payload
        self.chunks: list[bytes] = []  # WORK_DATA payloads, in order
        self.warnings: list[bytes] = []
        self.exception: bytes | None = None
        self.error: GearctlError | None = None
        self.numerator = 0
        self.denominator = 0
        self.on_data: Callable[[Job, bytes], None] | None = None
        self.on_warning: Callable[[Job, bytes], None] | None = None
        self.on_status: Callable[[Job, int, int], None] | None = None
        # Called once, when the job reaches a done state (submit_many's run sets it).
        self.on_finished: Callable[[Job], None] | None = None
        self._future: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Job {self.function} {self.handle or '-'} {self.state}>"

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    @property
    def output(self) -> bytes:
        """What `gearctl client --wait` prints: the WORK_DATA chunks, then the
        result. To parse the result, use `result` (what wait() returns)."""
        return b"".join(self.chunks) + self.result if self.chunks else self.result

    @property
    def server_key(self) -> bytes:
        """What picks the job's first server: its unique key, or b"" for a
        generated one (such jobs rotate over the servers)."""
        return self._wire_unique if self.unique else b""

    def packet(self) -> bytes:
        """The SUBMIT packet for this job."""
        if self.when is not None:
            return encode(P.SUBMIT_JOB_EPOCH, self._wire_function, self._wire_unique, str(self.when).encode(),
                          self.data)
        return encode_submit(SUBMIT_TYPES[(self.background, self.priority)], self._wire_function,
                             self._wire_unique, self.data)

    def raise_for_state(self) -> None:
        """Raise the error that matches how the job ended (nothing for success)."""
        if self.state == "failed":
            raise JobFailed(f"job {self.handle} ({self.function}) failed")
        if self.state == "exception":
            text = decode_text(self.exception or b"").strip() or "no message"
            raise JobException(f"job {self.handle} ({self.function}) raised: {text}")
        if self.state in ("error", "timeout") and self.error is not None:
            raise self.error

    async def wait(self, timeout: float | None = None) -> bytes:
        """Wait for the job to end; its result (WORK_COMPLETE's payload, without
        the WORK_DATA chunks, which are in `chunks`), or the matching error."""
        if not self.done:
            if self._future is None:
                self._future = asyncio.get_running_loop().create_future()
            try:
                await wait_at_most(asyncio.shield(self._future), timeout)
            except asyncio.TimeoutError:
                self.finish("timeout", Timeout(
                    f"job {self.handle} ({self.function}) did not finish in time; it may still run on the server"))
        self.raise_for_state()
        return self.result

    def to_dict(self) -> dict[str, Any]:
        """The --json record. A foreground job's WORK_DATA chunks are a list of
        their own under "data", never glued onto "result"; bytes that are not
        UTF-8 are null, with the base64 in "result_base64" / "data_base64"."""
        record: dict[str, Any] = {
            "function": self.function,
            "handle": self.handle,
            "unique": decode_text(self._wire_unique),
            "server": str(self.server) if self.server else None,
            "status": self.state,
        }
        fields = result_fields(self.result, None if self.background else list(self.chunks))
        record["result"] = fields.pop("result")
        record["error"] = self.error_text()
        record.update(fields)
        if self.warnings:
            record["warnings"] = [decode_text(w) for w in self.warnings]
        if self.index is not None:
            record["line"] = self.index
        return record

    def error_text(self) -> str | None:
        if self.state == "exception":
            return decode_text(self.exception or b"")
        if self.state == "failed":
            return "job failed"
        if self.error is not None:
            return str(self.error)
        return None

    # -- state transitions, driven by the submitter (and the CLI on an error) -------
    def created(self, handle: bytes, server: ServerAddress) -> None:
        """A server answered JOB_CREATED. A foreground job is now "created" and
        waits for WORK_*; a background one stays as it is until the submitter
        finishes it as "queued", once the caller has heard it was created."""
        self.handle = decode_text(handle)
        self.server = server
        if not self.background:
            self.state = "created"

    def finish(self, state: str, error: GearctlError | None = None) -> None:
        """End the job in done state `state` (with `error` for "error" and
        "timeout"): wake its waiter, call `on_finished`. A job that is done
        already stays as it ended."""
        if self.done:
            return
        self.state = state
        if error is not None:
            self.error = error
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        if self.on_finished is not None:
            self.on_finished(self)


    def abort_wait(self, error: BaseException) -> None:
        """Wake a waiter with an error that is not the job's (the caller's own
        output failed): the job's state stays as it is."""
        if self._future is not None and not self._future.done():
            self._future.set_exception(error)

    def apply_work(self, packet: Packet) -> bool:
        """Apply a WORK_* packet; True when it ends the job."""
        kind, args = packet.type, packet.args
        if kind is P.WORK_DATA:
            self.chunks.append(args[1])
            if self.on_data:
                self.on_data(self, args[1])
        elif kind is P.WORK_WARNING:
            self.warnings.append(args[1])
            if self.on_warning:
                self.on_warning(self, args[1])
        elif kind is P.WORK_STATUS:
            self.numerator = parse_int(args[1], "WORK_STATUS numerator")
            self.denominator = parse_int(args[2], "WORK_STATUS denominator")
            if self.on_status:
                self.on_status(self, self.numerator, self.denominator)
        elif kind is P.WORK_COMPLETE:
            self.result = args[1]
            self.finish("complete")
            return True
        elif kind is P.WORK_FAIL:
            self.finish("failed")
            return True
        elif kind is P.WORK_EXCEPTION:
            # gearmand ends the job on WORK_EXCEPTION and forwards it only to
            # clients that set the "exceptions" option (we always do).
            self.exception = args[1]
            self.finish("exception")
            return True
        return False


def status_from(packet: Packet, server: str) -> JobStatus:
    """A STATUS_RES or STATUS_RES_UNIQUE packet as a JobStatus."""
    args = packet.args
    by_unique = packet.type is P.STATUS_RES_UNIQUE
    waiting = parse_int(args[5], "waiting clients") if by_unique else None
    return JobStatus(None if by_unique else decode_text(args[0]), args[1] == b"1", args[2] == b"1",
                     parse_int(args[3], "status numerator"), parse_int(args[4], "status denominator"),
                     server, waiting, decode_text(args[0]) if by_unique else None)
