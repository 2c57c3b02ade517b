"""submit_many's machinery: where jobs come from, and one run's window.

The window is refilled from reply callbacks (`pump`), so no task wakes up per
job; SUBMITs queue per connection and are written once per read or loop turn.
A job whose submit fails is handed to Submitter.submit for failover in a
task of its own, and whatever that task raises ends the job, never the run.
The run only uses the Submitter's public surface (submitter.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import GearctlError, Timeout

if TYPE_CHECKING:
    from .clientjob import Job
    from .connection import Connection
    from .submitter import Submitter

__all__ = ["BATCH", "IterSource", "JobSource", "ManyRun"]

BATCH = 256  # submits written per write() at most


class JobSource:
    """Where submit_many takes jobs from. take() gives the next job, or None
    when none is ready yet (more may come) or the source is exhausted."""

    exhausted = False

    def start(self, wake: Callable[[], None]) -> None:
        """Begin; call `wake` whenever new jobs become ready."""

    def take(self) -> Job | None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop producing (the run ended)."""

    def stop(self) -> None:
        """Give no more jobs (say, from an on_done callback once too many failed):
        the run ends when the jobs in flight have."""
        self.exhausted = True


class IterSource(JobSource):
    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs: Iterator[Job] = iter(jobs)

    def take(self) -> Job | None:
        try:
            return next(self._jobs)
        except StopIteration:
            self.exhausted = True
            return None


class ManyRun:
    """The state of one submit_many() call. The window is refilled from reply
    callbacks (pump), so no task wakes up per job."""

    def __init__(self, submitter: Submitter, source: JobSource, window: int, deadline: float | None,
                 on_created: Callable[[Job], None] | None, on_done: Callable[[Job], None] | None) -> None:
        self.submitter = submitter
        self.source = source
        self.window = window
        self.deadline = deadline
        self.on_created = on_created
        self.on_done = on_done
        self.counts: dict[str, int] = {}
        self.inflight: set[Job] = set()
        self.all_done = asyncio.Event()
        self.stopped = False  # no more jobs are taken (timeout, or a failed callback)
        self.failure: BaseException | None = None
        self.pumping = False
        self.flush_scheduled = False
        self.rotation = 0
        self.batches: dict[Connection, list[Job]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()

    def pump(self) -> None:
        """Take jobs from the source until the window is full or none is ready."""
        if self.pumping:
            return
        self.pumping = True
        try:
            while not self.stopped and not self.source.exhausted and len(self.inflight) < self.window:
                job = self.source.take()
                if job is None:
                    break
                self.place(job)
        finally:
            self.pumping = False
        self.schedule_flush()
        if (self.source.exhausted or self.stopped) and not self.inflight:
            self.all_done.set()

    def place(self, job: Job) -> None:
        job.on_finished = self.finished
        self.inflight.add(job)
        conn = self.submitter.ready_connection(job, self.rotation)
        if conn is None:
            self.spawn(job, self.place_slowly(job))
            return
        if not job.unique:
            self.rotation += 1  # jobs without a key take the open connections in turn
        batch = self.batches.get(conn)
        if batch is None:
            batch = self.batches[conn] = []
        batch.append(job)
        if len(batch) >= BATCH:
            self.flush()

    async def place_slowly(self, job: Job) -> None:
        """No open connection fits the job: connect (with failover) first."""
        conn = await self.submitter.connection_for(job)
        if conn is None:
            job.finish("error", self.submitter.no_server_error())
            return
        self.submitter.send(conn, [job], self.answered)

    def schedule_flush(self) -> None:
        if not self.flush_scheduled and self.batches:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the queued SUBMITs: at the end of a read (the submitter's
        on_drained) or on the next loop turn, whichever comes first."""
        self.flush_scheduled = False
        if not self.batches:
            return
        batches, self.batches = self.batches, {}
        for conn, batch in batches.items():
            self.submitter.send(conn, batch, self.answered)

    def answered(self, job: Job, error: GearctlError | None) -> None:
        """A SUBMIT's answer: created (tell the caller), or fail over."""
        if error is not None:
            self.spawn(job, self.resubmit(job))
        else:
            self.report(self.on_created, job)

    async def resubmit(self, job: Job) -> None:
        """A pipelined submit was refused or its connection broke: fail over."""
        job.state, job.handle, job.server = "new", None, None
        await self.submitter.submit(job, self.deadline)
        self.report(self.on_created, job)

    def finished(self, job: Job) -> None:
        """A job reached a done state (its on_finished): count it, refill."""
        self.inflight.discard(job)
        self.counts[job.state] = self.counts.get(job.state, 0) + 1
        if self.report(self.on_done, job):
            self.pump()

    def report(self, callback: Callable[[Job], None] | None, job: Job) -> bool:
        """Call the caller's callback. One that raises (its stdout closed, say) ends
        the run with its error: it must not pass for the job's own failure, which
        would leave the run waiting for a pump that never comes."""
        if callback is None:
            return True
        try:
            callback(job)
        except Exception as e:
            self.fail(e)
            return False
        return True

    def spawn(self, job: Job, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` for `job`; whatever it raises ends the job, never the run."""
        async def guarded() -> None:
            try:
                await coro
            except Timeout as e:
                job.finish("timeout", e)
            except GearctlError as e:
                job.finish("error", e)
            except Exception as e:
                job.finish("error", GearctlError(f"{type(e).__name__}: {e}"))

        task = asyncio.ensure_future(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def expire(self, error: Timeout) -> None:
        self.stopped = True  # what was not taken from the source is not submitted
        for job in list(self.inflight):
            what = f"job {job.handle} ({job.function})" if job.handle else f"{job.function}: no JOB_CREATED yet"
            job.finish("timeout", Timeout(f"{what}: {error}"))

    def fail(self, error: BaseException) -> None:
        """A caller's callback failed: take no more jobs, stop waiting, re-raise it."""
        if self.failure is None:
            self.failure = error
        self.stopped = True
        self.on_done = self.on_created = None
        self.all_done.set()

    def close(self) -> None:
        self.on_done = self.on_created = None  # nothing is reported once the run returned
        for task in list(self.tasks):
            task.cancel()


