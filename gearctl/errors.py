"""The error tree and the exit codes every gearctl command shares.

Every error gearctl raises on purpose derives from GearctlError and carries the
exit code the CLI turns it into; cli/app.py (invoke) maps them in one place. Errors say whose
fault they are: the caller's (bad input, a local protocol misuse) or the peer's
(a server that sent something invalid, or refused).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in README. Stable: scripts depend on them."""

    OK = 0  # the job was submitted (background) or completed (foreground)
    JOB_FAILED = 1  # the worker sent WORK_FAIL
    USAGE = 2  # bad flag, unreadable file, invalid JSON for --encoding json/php
    NO_SERVER = 3  # no server could be reached (or the connection was lost)
    TIMEOUT = 4  # --timeout ran out before the job was created or finished
    JOB_EXCEPTION = 5  # the worker sent WORK_EXCEPTION
    NO_WORKER = 6  # --require-workers: no worker registered the function
    PROTOCOL = 7  # the peer sent something that is not valid Gearman
    SERVER_REFUSED = 8  # every server answered the request with ERROR (e.g. queue full)
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it
    OUTPUT_CLOSED = 141  # stdout was closed early (| head): what a process killed by SIGPIPE returns


def reason_at(address: object, error: object) -> str:
    """`error` said of `address` on a line that names the address already: most
    errors about one server start with it (`127.0.0.1:4730: connection refused`)."""
    return str(error).removeprefix(f"{address}: ")


class GearctlError(Exception):
    """Base of every error gearctl raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE
    down: tuple[tuple[str, str], ...] = ()  # no server answered: each one's (address, error), for a --json document


class UsageError(GearctlError):
    """The caller asked for something impossible: a bad option, file or payload."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A setting (flag, environment variable, file) could not be understood."""


class PayloadError(UsageError):
    """A payload could not be read, encoded or decoded; carries the data that failed."""

    def __init__(self, message: str, data: bytes | None = None) -> None:
        super().__init__(message)
        self.data = data


class ProtocolError(GearctlError):
    """Bytes that are not valid Gearman protocol."""

    exit_code = ExitCode.PROTOCOL


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol cannot carry (caller's fault)."""

    exit_code = ExitCode.USAGE


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid (the peer's fault)."""

    exit_code = ExitCode.PROTOCOL


class ConnectionFailed(GearctlError):
    """A server could not be reached, or the connection to it was lost."""

    exit_code = ExitCode.NO_SERVER


class NoServerAvailable(ConnectionFailed):
    """Every configured server was tried and none could take the request."""


class ServerError(GearctlError):
    """The server answered a request with an ERROR packet or an ERR line."""

    exit_code = ExitCode.SERVER_REFUSED

    def __init__(self, code: str, text: str, server: str = "") -> None:
        where = f"{server}: " if server else ""
        super().__init__(f"{where}server error {code}: {text}" if text else f"{where}server error {code}")
        self.code = code
        self.text = text
        self.server = server


class NotFound(ServerError):
    """No server holds the job (or function) asked for, as gearctl found by
    looking (exit 8, as a server's own UNKNOWN_JOB). Said as it is, with no
    "server error": no server sent one."""

    def __init__(self, text: str, code: str = "UNKNOWN_JOB") -> None:
        super().__init__(code, text)
        self.args = (text,)


class Timeout(GearctlError):
    """A deadline passed before the server or the job answered."""

    exit_code = ExitCode.TIMEOUT


class JobFailed(GearctlError):
    """The worker reported WORK_FAIL for the job."""

    exit_code = ExitCode.JOB_FAILED


class JobException(JobFailed):
    """The worker reported WORK_EXCEPTION for the job; the message is its text."""

    exit_code = ExitCode.JOB_EXCEPTION


class NoWorker(GearctlError):
    """No worker has registered the function on any server."""

    exit_code = ExitCode.NO_WORKER
