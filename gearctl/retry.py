"""Retries and dead letters on the worker's side: the policy, the decision, the resubmit.

gearmand never retries a job that ended in WORK_FAIL or WORK_EXCEPTION; the
worker must resubmit it. When an attempt ends badly, `plan()` decides, with
no I/O, what becomes of the job:

- attempts remain and the way it ended is in `retry_on`: a RETRY, the next
  attempt as a background SUBMIT_JOB_EPOCH to the same function, the same
  workload, due after exponential back-off with jitter (backoff.Backoff), under
  `deadletter.attempt_unique(original, n, first_failure)`;
- otherwise, with `dead_letter` on (the default): DEAD, a background job to
  `deadletter.dead_letter_function(fn, suffix)` carrying a `deadletter.Envelope`;
- otherwise nothing: the attempt ends as it always did.

`Resubmitter` sends a plan on a client connection of its own (never on the
worker's connection, whose replies are counted grabs, not matched requests),
to the server the job came from first, then the others. The worker writes the
attempt's end (WORK_WARNING, then WORK_FAIL or WORK_EXCEPTION) only after the
plan's JOB_CREATED; a plan that no server takes falls back from RETRY to
DEAD, and when that fails too the worker closes the connection without ending
the job, so gearmand hands it out again. A job is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from . import deadletter
from .addresses import DEFAULT_IO_TIMEOUT, ServerAddress, TLSOptions
from .backoff import Backoff
from .deadlines import deadline_after
from .errors import GearctlError, UsageError
from .logs import iso_time
from .sessions import Outcome, OutcomeState
from .timeparse import parse_duration

if TYPE_CHECKING:  # the client side is imported when a worker first resubmits (plugins.py imports this module)
    from .clientjob import Job

log = logging.getLogger("gearctl.worker")
RETRY_ON = ("exception", "fail", "timeout")  # what retry_on may name
MAX_RETRIES = 1000
_STATE_NAMES = {OutcomeState.EXCEPTION: "exception", OutcomeState.FAILED: "fail", OutcomeState.TIMEOUT: "timeout"}
# The hook keys and @job options this module owns, and what each takes.
OPTION_KEYS = ("retries", "retry_backoff", "retry_backoff_max", "retry_on", "dead_letter", "dead_letter_suffix")


@dataclass(frozen=True)
class RetryPolicy:
    """How a function's failed attempts are handled. Field names are the hook keys."""

    retries: int = 0  # attempts after the first
    retry_backoff: float = 10.0  # seconds before the second attempt; doubled for each after it
    retry_backoff_max: float = 3600.0  # no delay longer than this
    retry_on: frozenset[str] = field(default_factory=lambda: frozenset(RETRY_ON))
    dead_letter: bool = True  # a job out of attempts goes to FUNCTION + dead_letter_suffix
    dead_letter_suffix: str = deadletter.DEAD_SUFFIX

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def merged(self, declared: Mapping[str, Any]) -> RetryPolicy:
        """This policy (the worker's defaults) with a function's own declarations on top."""
        return replace(self, **dict(declared)) if declared else self

    def delay(self, attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        """Seconds before attempt `attempt` (2 or more): min(backoff * 2**(attempt-2), max), jittered."""
        backoff = Backoff(self.retry_backoff, self.retry_backoff_max, uniform=uniform)
        for _ in range(attempt - 2):
            backoff.next()
        return backoff.next()

    def retries_on(self, state: OutcomeState) -> bool:
        return _STATE_NAMES.get(state, "") in self.retry_on


def _duration(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except UsageError as e:
            raise ValueError(f"{key}: {e}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a duration (10, '10s', '5m') >= 0, got {value!r}")
    return float(value)


def parse_retry_on(value: Any, key: str = "retry_on") -> frozenset[str]:
    """'exception,timeout' or a list of those names -> the set; ValueError otherwise."""
    names: Iterable[Any]
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",") if n.strip()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        names = value
    else:
        raise ValueError(f"{key} must be a list of {', '.join(RETRY_ON)}, got {value!r}")
    chosen = set()
    for name in names:
        if name not in RETRY_ON:
            raise ValueError(f"{key}: {name!r} is not one of {', '.join(RETRY_ON)}")
        chosen.add(name)
    return frozenset(chosen)


def check_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The retry options a function declares (only those given), checked and
    normalized; ValueError naming the key for a bad one."""
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "retries":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
                raise ValueError(f"retries must be a whole number from 0 to {MAX_RETRIES}, got {value!r}")
            checked[key] = value
        elif key in ("retry_backoff", "retry_backoff_max"):
            checked[key] = _duration(key, value)
        elif key == "retry_on":
            checked[key] = parse_retry_on(value)
        elif key == "dead_letter":
            if not isinstance(value, bool):
                raise ValueError(f"dead_letter must be True or False, got {value!r}")
            checked[key] = value
        elif key == "dead_letter_suffix":
            if not isinstance(value, str) or not value or "\0" in value:
                raise ValueError(f"dead_letter_suffix must be a non-empty string without NUL bytes, got {value!r}")
            checked[key] = value
        else:
            raise ValueError(f"unknown retry option {key!r}")
    return checked


def check_flags(options: Mapping[str, Any]) -> dict[str, Any]:
    """check_options() for `gearctl worker`'s flags: UsageError naming the flag."""
    try:
        return check_options(options)
    except ValueError as e:
        text = str(e)
        key = max((k for k in OPTION_KEYS if text.startswith(k)), key=len, default="")
        raise UsageError(f"--{key.replace('_', '-')}{text[len(key):]}" if key else text) from None


class Step(str, Enum):
    """What becomes of a job whose attempt ended badly."""

    RETRY = "retry"  # the next attempt is submitted
    DEAD = "dead"  # it goes to the dead-letter function

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Plan:
    """A job to submit for an attempt that ended badly, and what to tell its client."""

    step: Step
    function: str  # where the new job goes: the function again, or its dead-letter function
    unique: str
    workload: bytes  # the workload again, or the envelope
    attempt: int  # the attempt that just ended
    attempts: int  # attempts the policy allows
    warning: str  # the WORK_WARNING sent once the new job is created
    due: int | None = None  # RETRY: epoch seconds (SUBMIT_JOB_EPOCH), the delay rounded up to a whole second
    delay: float = 0.0  # RETRY: the back-off drawn for it, in seconds


def where_stands(unique: str, handle: str) -> deadletter.Attempt:
    """The attempt a job is, from its unique key (its handle when the key is empty)."""
    return deadletter.parse_attempt(unique) if unique else deadletter.Attempt(handle)


def plan(policy: RetryPolicy, function: str, handle: str, unique: str, workload: bytes, outcome: Outcome, *,
         host: str, now: float | None = None,
         uniform: Callable[[float, float], float] = random.uniform) -> Plan | None:
    """What to submit after an attempt that ended in `outcome`; None: nothing (it
    completed, or it failed for good with dead letters off)."""
    if outcome.state is OutcomeState.COMPLETE:
        return None
    now = time.time() if now is None else now
    attempt = where_stands(unique, handle)
    first_failure = attempt.first_failure or int(now)
    error = outcome.message or str(outcome.state)
    if attempt.number < policy.attempts and policy.retries_on(outcome.state):
        number = attempt.number + 1
        delay = policy.delay(number, uniform)
        due = math.ceil(now + delay)
        return Plan(Step.RETRY, function, deadletter.attempt_unique(attempt.original, number, first_failure),
                    workload, attempt.number, policy.attempts,
                    f"gearctl: attempt {number} of {policy.attempts} scheduled for {iso_time(due)}: {error}", due,
                    delay)
    if not policy.dead_letter:
        return None
    dead_function = deadletter.dead_letter_function(function, policy.dead_letter_suffix)
    envelope = deadletter.Envelope(
        function=function, unique=attempt.original, workload=workload, attempts=attempt.number, error=error,
        traceback=outcome.traceback, host=host, first_failure=float(attempt.first_failure or now),
        last_failure=now, handle=handle, state=str(outcome.state))
    if attempt.number >= policy.attempts:
        why = f"out of attempts ({attempt.number} of {policy.attempts})"
    else:
        why = f"not retried ({_STATE_NAMES[outcome.state]} is not in retry_on)"
    return Plan(Step.DEAD, dead_function, deadletter.dead_unique(attempt.original, now), envelope.encode(),
                attempt.number, policy.attempts, f"gearctl: {why}, kept in {dead_function}: {error}")


def dead_plan(retry: Plan, policy: RetryPolicy, function: str, handle: str, unique: str, outcome: Outcome, *,
              host: str, reason: str, now: float | None = None) -> Plan:
    """The DEAD plan for a RETRY that no server took: the job goes to dead letters now."""
    as_last = replace(policy, retries=retry.attempt - 1, dead_letter=True)
    dead = plan(as_last, function, handle, unique, retry.workload, outcome, host=host, now=now)
    assert dead is not None and dead.step is Step.DEAD
    error = outcome.message or str(outcome.state)
    return replace(dead, attempts=retry.attempts,
                   warning=f"gearctl: attempt {retry.attempt + 1} could not be scheduled ({reason}), "
                           f"kept in {dead.function}: {error}")


class Resubmitter:
    """A worker's client side: submits plans on connections of its own."""

    def __init__(self, servers: Sequence[ServerAddress], *, connect_timeout: float, tls: TLSOptions | None,
                 io_timeout: float = DEFAULT_IO_TIMEOUT, timeout: float = 60.0) -> None:
        from .submitter import Submitter

        self.submitter = Submitter(servers, connect_timeout=connect_timeout, io_timeout=io_timeout, tls=tls)
        self.timeout = timeout  # a whole submit, failover included

    async def send(self, plan: Plan, first: ServerAddress | None = None) -> Job:
        """Create the plan's job, trying `first` first; raises the GearctlError
        of a submit no server took."""
        from .clientjob import Job

        job = Job(plan.function, plan.workload, unique=plan.unique, background=True, when=plan.due)
        return await self.submitter.submit(job, deadline_after(self.timeout), first=first)

    async def close(self) -> None:
        await self.submitter.close()


@dataclass(frozen=True)
class Failed:
    """An attempt that ended badly, as the worker hands it over."""

    function: str
    handle: str
    unique: str
    workload: bytes
    outcome: Outcome
    origin: ServerAddress  # the server it came from: the new job is submitted there first


class Retrier:
    """A worker's resubmits in flight. `take()` decides; when it takes a job,
    the job's end is the retrier's: `end(outcome)` once the new job is
    created (the outcome carries the WORK_WARNING to send), or `abandon()`
    when neither the retry nor the dead letter could be submitted (the worker
    then closes the connection so that gearmand hands the job out again).
    `created(plan, failed)` is told of every job it creates, for the counts."""

    def __init__(self, servers: Sequence[ServerAddress], *, connect_timeout: float, tls: TLSOptions | None,
                 host: str, created: Callable[[Plan, Failed], None]) -> None:
        self.servers = list(servers)
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.host = host
        self.created = created
        self.resubmitter: Resubmitter | None = None  # opened at the first resubmit
        self.pending: set[asyncio.Task[None]] = set()

    def take(self, policy: RetryPolicy, failed: Failed, end: Callable[[Outcome], None],
             abandon: Callable[[], None]) -> bool:
        """Start resubmitting `failed` when its policy asks for it; False: nothing
        to do, the caller ends the job as it ended."""
        chosen = plan(policy, failed.function, failed.handle, failed.unique, failed.workload, failed.outcome,
                      host=self.host)
        if chosen is None:
            return False
        if self.resubmitter is None:
            self.resubmitter = Resubmitter(self.servers, connect_timeout=self.connect_timeout, tls=self.tls)
        task = asyncio.ensure_future(self._settle(self.resubmitter, policy, chosen, failed, end, abandon))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return True

    async def _settle(self, resubmitter: Resubmitter, policy: RetryPolicy, chosen: Plan, failed: Failed,
                      end: Callable[[Outcome], None], abandon: Callable[[], None]) -> None:
        try:
            await resubmitter.send(chosen, failed.origin)
        except GearctlError as e:
            if chosen.step is not Step.RETRY:
                return self._give_up(chosen, failed, e, abandon)
            log.warning("job %s %s: attempt %d could not be scheduled (%s); sending it to dead letters",
                        failed.handle, failed.function, chosen.attempt + 1, e)
            chosen = dead_plan(chosen, policy, failed.function, failed.handle, failed.unique, failed.outcome,
                               host=self.host, reason=str(e))
            try:
                await resubmitter.send(chosen, failed.origin)
            except GearctlError as again:
                return self._give_up(chosen, failed, again, abandon)
        self.created(chosen, failed)
        end(replace(failed.outcome, warning=chosen.warning))

    def _give_up(self, chosen: Plan, failed: Failed, error: GearctlError, abandon: Callable[[], None]) -> None:
        log.error("job %s %s (unique %r): neither a retry nor a dead letter could be submitted (%s: %s); "
                  "closing the connection without ending it, so that %s hands it out again",
                  failed.handle, failed.function, failed.unique, chosen.function, error, failed.origin,
                  extra={"fields": {"event": "requeue", "function": failed.function, "handle": failed.handle,
                                    "unique": failed.unique, "error": str(error)}})
        abandon()

    async def close(self) -> None:
        """Let the resubmits in flight end (each is bounded by its timeout), then close."""
        if self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
        if self.resubmitter is not None:
            await self.resubmitter.close()
            self.resubmitter = None
