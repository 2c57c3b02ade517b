"""The embedded server's answers to the text admin protocol, no I/O.

Byte for byte as gearmand 1.1.20 prints them (libgearman-server/text.cc), so
`gearadmin`, `gearctl status` and admin.py's parsers read either server: list
answers end with a "." line and LF, one-line answers from text.cc's TEXT_*
strings end with CRLF, `version`/`getpid` with LF. Commands are matched
case-insensitively and split on spaces, as gearmand does. One addition:
`shutdown [graceful]` (gearmand 1.1.20 answers it with UNKNOWN_COMMAND; older
gearmands answered OK, as this one does, and then stopped).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .serverjobs import Priority
from .serverstate import ServerState

OK = b"OK\r\n"
UNKNOWN_JOB = b"ERR UNKNOWN_JOB\r\n"
UNKNOWN_ERROR = b"ERR UNKNOWN_ERROR\r\n"
UNKNOWN_SHOW = b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
BUSY = b"ERR there are still connected workers or executing clients\r\n"
NO_FUNCTION = b"ERR function not found\r\n"


def unknown_command(word: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + word + b"\r\n"


def bad_arguments(word: bytes) -> bytes:
    return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+" + word + b"\r\n"


class Shutdown(str, Enum):
    NOW = "now"  # close every connection at once
    GRACEFUL = "graceful"  # stop accepting, let running jobs end first


@dataclass(frozen=True, slots=True)
class AdminAnswer:
    text: bytes
    shutdown: Shutdown | None = None


def answer(state: ServerState, line: bytes, pid: int, version: str) -> AdminAnswer:
    """The reply to one admin line (without its line end)."""
    words = line.split()
    if not words:
        return AdminAnswer(unknown_command(b""))
    command, args = words[0].lower(), words[1:]
    simple = SIMPLE.get(command)
    if simple is not None:
        return AdminAnswer(simple(state))
    if command == b"getpid":
        return AdminAnswer(f"OK {pid}\n".encode())
    if command == b"version":
        return AdminAnswer(f"OK {version}\n".encode())
    if command == b"verbose":
        return AdminAnswer(b"OK WARNING\n")  # what it logs: warnings only (gearmand: its --verbose level)
    if command == b"shutdown":
        graceful = bool(args) and args[0].lower() == b"graceful"
        return AdminAnswer(OK, Shutdown.GRACEFUL if graceful else Shutdown.NOW)
    with_args = WITH_ARGS.get(command)
    if with_args is not None:
        text = with_args(state, words)
        if text is not None:
            return AdminAnswer(text)
    return AdminAnswer(unknown_command(words[0]))


def status(state: ServerState) -> bytes:
    rows = [b"%s\t%d\t%d\t%d\n" % (f.name, f.total, f.running, len(f.workers)) for f in state.functions.values()]
    return b"".join(rows) + b".\n"


def priority_status(state: ServerState) -> bytes:
    rows = []
    for f in state.functions.values():
        high, normal, low = (len(q) for q in f.queues)
        normal += f.scheduled  # SUBMIT_JOB_EPOCH jobs are NORMAL; gearmand counts them in their queue
        rows.append(b"%s\t%d\t%d\t%d\t%d\n" % (f.name, high, normal, low, len(f.workers)))
    return b"".join(rows) + b".\n"


def workers(state: ServerState) -> bytes:
    rows = []
    for conn in state.conns.values():
        functions = b"".join(b" " + name for name in reversed(conn.abilities))  # gearmand: newest first
        rows.append(b"%d %s %s :%s\n" % (conn.fd, conn.host.encode(), conn.client_id, functions))
    return b"".join(rows) + b".\n"


SIMPLE = {b"status": status, b"prioritystatus": priority_status, b"workers": workers}


def show(state: ServerState, words: list[bytes]) -> bytes | None:
    if len(words) < 2:
        return None
    what = [w.lower() for w in words[1:]]
    if what == [b"jobs"]:
        # handle, retries, ignored (never, here), kept in the queue (a background job)
        rows = [b"%s\t%d\t0\t%d\n" % (j.handle, j.retries, j.background) for j in state.jobs.values()]
        return b"".join(rows) + b".\n"
    if what == [b"unique", b"jobs"]:
        return b"".join(j.unique + b"\n" for j in state.jobs.values()) + b".\n"
    return UNKNOWN_SHOW


def cancel(state: ServerState, words: list[bytes]) -> bytes | None:
    if len(words) < 3:
        return None
    if len(words) != 3 or words[1].lower() != b"job":
        return UNKNOWN_ERROR  # gearmand: an empty answer, replaced by this
    return OK if state.cancel(words[2]) else UNKNOWN_JOB


def create(state: ServerState, words: list[bytes]) -> bytes:
    if len(words) != 3 or words[1].lower() != b"function":
        return bad_arguments(words[0])
    state.function(words[2])
    return OK


def drop(state: ServerState, words: list[bytes]) -> bytes:
    if len(words) != 3 or words[1].lower() != b"function":
        return bad_arguments(words[0])
    dropped = state.drop_function(words[2])
    if dropped is None:
        return NO_FUNCTION
    return OK if dropped else BUSY


def maxqueue(state: ServerState, words: list[bytes]) -> bytes:
    """`maxqueue FUNCTION [N | HIGH NORMAL LOW]`: one number applies to every
    priority; a missing or negative one means no limit (0)."""
    if len(words) == 1:
        return bad_arguments(words[0])
    numbers = [max(atoi(w), 0) for w in words[2:5]]
    if len(numbers) <= 1:
        limits = (numbers[0] if numbers else 0,) * len(Priority)
    else:
        numbers += [0] * (len(Priority) - len(numbers))
        limits = tuple(numbers)
    high, normal, low = limits
    state.set_max_queue(words[1], (high, normal, low))
    return OK


def atoi(word: bytes) -> int:
    """C's atoi(): the leading digits (with a sign), 0 when there are none."""
    digits = word.lstrip()
    sign = -1 if digits[:1] == b"-" else 1
    digits = digits[1:] if digits[:1] in (b"-", b"+") else digits
    end = 0
    while end < len(digits) and digits[end:end + 1].isdigit():
        end += 1
    return sign * int(digits[:end]) if end else 0


WITH_ARGS = {b"show": show, b"cancel": cancel, b"create": create, b"drop": drop, b"maxqueue": maxqueue}
