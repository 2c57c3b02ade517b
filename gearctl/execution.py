"""Running one job function: the job object it receives, and how it ends.

`execute()` is shared by the worker loop and `gearctl run`: it calls a plugin's
function (plain, async, or a command), enforces the function's timeout, turns
the return value into result bytes, and reports the end as an `Outcome`. It
never raises for what the job function did: a worker must not die on a job.

Timeouts: async functions are cancelled; commands are killed with their whole
process group; plain functions run on the worker's main thread and are
interrupted by SIGALRM (JobTimeout, a BaseException, so `except Exception` in
a plugin cannot swallow it), the way rq's death penalty works. A function that
blocks where neither reaches (an async function calling time.sleep, C code
ignoring signals) cannot be interrupted; it is still failed as timed out when
it returns late. Whatever a function raises, SystemExit and KeyboardInterrupt
included, ends its job, never the worker: errors.JobFailed with WORK_FAIL,
anything else with WORK_EXCEPTION.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from . import codecs
from .errors import JobException, JobFailed
from .plugins import JobFunction
from .sessions import Outcome, OutcomeState


class Updates(Protocol):
    """Where a running job's WORK_DATA / WORK_WARNING / WORK_STATUS go."""

    def data(self, chunk: bytes) -> None: ...

    def warning(self, text: bytes) -> None: ...

    def status(self, numerator: int, denominator: int) -> None: ...


class WorkerJob:
    """The job a job function receives (PHP's GearmanJob, in Python)."""

    __slots__ = (
        "_data",
        "_decoded",
        "_encoding",
        "_updates",
        "_workload",
        "attempt",
        "attempts",
        "context",
        "function_name",
        "handle",
        "unique",
    )

    def __init__(self, function_name: str, handle: str, unique: str, workload: bytes, *, context: Any = None,
                 encoding: str = "auto", updates: Updates | None = None, attempt: int = 1,
                 attempts: int = 1) -> None:
        self.function_name = function_name
        self.attempt = attempt  # 1 for the first run; read from the unique key (deadletter.parse_attempt)
        self.attempts = attempts  # attempts the function's retry policy allows (retries + 1)
        self.handle = handle
        self.unique = unique
        self.context = context  # the plugin's context; the function may change it
        self._workload = workload
        self._encoding = encoding
        self._data: Any = None
        self._decoded = False
        self._updates = updates

    def workload(self) -> bytes:
        """The raw workload bytes, as PHP's $job->workload()."""
        return self._workload

    def workload_size(self) -> int:
        return len(self._workload)

    @property
    def encoding(self) -> str:
        """What the workload is: the function's encoding, or for `auto` what the
        workload turned out to be ("php", "json" or "raw"). The answer is encoded
        the same way, so a PHP client gets serialize() back."""
        if self._encoding == "auto":
            self._encoding = codecs.sniff(self._workload)
        return self._encoding

    @property
    def data(self) -> Any:
        """The workload decoded by its encoding (see `encoding`). Raises PayloadError,
        which fails the job, for a workload that does not decode as what it is."""
        if not self._decoded:
            self._data = codecs.resolve(self.encoding).decode(self._workload)
            self._decoded = True
        return self._data

    def send_status(self, numerator: int, denominator: int) -> None:
        if self._updates is not None:
            self._updates.status(int(numerator), int(denominator))

    def send_data(self, chunk: bytes | str) -> None:
        if self._updates is not None:
            self._updates.data(chunk.encode() if isinstance(chunk, str) else bytes(chunk))

    def send_warning(self, text: bytes | str) -> None:
        if self._updates is not None:
            self._updates.warning(text.encode() if isinstance(text, str) else bytes(text))

    def __repr__(self) -> str:
        return f"<WorkerJob {self.function_name} {self.handle} {len(self._workload)} bytes>"


class JobTimeout(BaseException):
    """Raised inside a plain job function when its timeout passes. A
    BaseException, so a plugin's `except Exception` does not swallow it."""


async def execute(fn: JobFunction, job: WorkerJob) -> Outcome:
    """Run `fn` on `job`; never raises for what the function does."""
    started = time.monotonic()

    def took() -> float:
        return time.monotonic() - started

    def timed_out() -> Outcome:
        return Outcome(OutcomeState.TIMEOUT, message=f"timed out after {fn.timeout or 0:g}s", seconds=took())

    try:
        result = await _call(fn, job)
        if fn.timeout and took() > fn.timeout:
            return timed_out()  # it blocked where it could not be interrupted
        # None and bytes go out as they are: only other answers need the workload
        # sniffed for its encoding (a JSON parse attempt), so the hot path skips it.
        plain = result is None or isinstance(result, (bytes, bytearray, memoryview))
        body = codecs.encode_answer(result, "raw" if plain else job.encoding)
    except (JobTimeout, _OurTimeout):
        return timed_out()
    except CommandFailed as e:
        return Outcome(OutcomeState.EXCEPTION, message=str(e), seconds=took())
    except asyncio.CancelledError:
        if _cancelling():
            raise  # the worker itself is being cancelled
        return Outcome(OutcomeState.EXCEPTION, message="CancelledError: the job's task was cancelled",
                       traceback=traceback.format_exc(), seconds=took())
    except BaseException as e:  # a job must never take the worker down
        return _raised(e, took())
    return Outcome(OutcomeState.COMPLETE, result=body, seconds=took())


def _raised(error: BaseException, seconds: float) -> Outcome:
    """What a function that raised ends with (called while handling `error`):
    errors.JobFailed means WORK_FAIL, anything else WORK_EXCEPTION."""
    if isinstance(error, JobFailed) and not isinstance(error, JobException):
        return Outcome(OutcomeState.FAILED, message=str(error) or "failed", seconds=seconds)
    return Outcome(OutcomeState.EXCEPTION, message=f"{type(error).__name__}: {error}".rstrip(": "),
                   traceback=traceback.format_exc(), seconds=seconds)


async def _call(fn: JobFunction, job: WorkerJob) -> Any:
    """The function's return value, under its timeout; raises what it raises."""
    if fn.command is not None:
        return await _run_command(fn, job)
    assert fn.function is not None
    if fn.is_async:
        return await _run_async(fn.function(job), fn.timeout)
    if fn.timeout:
        with _alarm(fn.timeout):
            result = fn.function(job)
    else:
        result = fn.function(job)
    if result is not None and not isinstance(result, (bytes, str)) and inspect.isawaitable(result):
        # a plain function that returned a coroutine (None, bytes, str: never; the common answers skip the check)
        result = await _run_async(result, fn.timeout)
    return result


class _OurTimeout(Exception):
    """gearctl's own timeout fired (as opposed to a TimeoutError the job raised)."""


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and getattr(task, "cancelling", lambda: 1)() > 0


async def _run_async(awaitable: Any, timeout: float | None) -> Any:
    """Await the job's coroutine in a task of its own, so that its TimeoutError
    or CancelledError is the job's, and only ours means a timeout."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise _OurTimeout()
    return task.result()


STDERR_KEPT = 4096  # bytes of a failed command's stderr sent as its exception text


class CommandFailed(Exception):
    """A command function exited non-zero; the message is its stderr."""


async def _run_command(fn: JobFunction, job: WorkerJob) -> bytes:
    assert fn.command is not None
    try:
        # A session of its own: on a timeout the whole group goes, grandchildren
        # included (they would otherwise hold the pipes open). SIGINT back to default.
        proc = await asyncio.create_subprocess_exec(
            *fn.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    except OSError as e:
        raise CommandFailed(f"cannot run {fn.command[0]}: {e.strerror or e}") from e
    talk = asyncio.ensure_future(proc.communicate(job.workload()))
    done, _ = await asyncio.wait({talk}, timeout=fn.timeout)
    if not done:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(BaseException):
            await talk
        raise _OurTimeout()
    out, err = talk.result()
    if proc.returncode != 0:
        text = err[-STDERR_KEPT:].decode("utf-8", "replace").strip() or f"exited with status {proc.returncode}"
        raise CommandFailed(f"{fn.command[0]}: {text}")
    return out


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise JobTimeout in this (main) thread after `seconds` (elsewhere: no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = True

    def ring(_signum: int, _frame: Any) -> None:
        if armed:
            raise JobTimeout()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


