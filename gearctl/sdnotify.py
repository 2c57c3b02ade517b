"""systemd's notify protocol, in the standard library: datagrams to $NOTIFY_SOCKET.

A unit with Type=notify hands its main process a datagram socket's path in
NOTIFY_SOCKET (an abstract socket when it starts with "@"); the process sends
newline-separated assignments to it: READY=1, STATUS=..., WATCHDOG=1,
RELOADING=1, STOPPING=1. With NOTIFY_SOCKET unset every send is a no-op, and a
send that fails is logged once at debug level: telling systemd is never worth
failing (or stalling) a worker for. What is sent when is systemd.py's.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

log = logging.getLogger("gearctl.sdnotify")


class Notifier:
    """Sends to one notify socket; `address` None: does nothing."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of `assignments` ("READY=1", "STATUS=..."); True when it went out."""
        if self.address is None or not assignments:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(assignments).encode(), socket.MSG_DONTWAIT, target)
            return True
        except (OSError, ValueError) as e:  # gone, refused, full, a path too long or with a NUL
            if not self._warned:
                self._warned = True
                log.debug("cannot notify systemd at %s: %s", self.address, e)
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def from_environment(environ: MutableMapping[str, str] | None = None, pid: int | None = None,
                     unset: bool = True) -> tuple[Notifier, float | None]:
    """The notifier NOTIFY_SOCKET names and the watchdog interval: half of
    WATCHDOG_USEC, in seconds, when it is set (and WATCHDOG_PID, if set, is
    `pid`), else None. `unset` takes the three out of the environment, as
    sd_notify's unset_environment does: the worker processes and the commands
    they run must not talk to systemd in our name."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    usec, watchdog_pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if unset:
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
    interval: float | None = None
    ours = not watchdog_pid or watchdog_pid == str(os.getpid() if pid is None else pid)
    if usec.isdigit() and int(usec) > 0 and ours:
        interval = int(usec) / 2e6
    return Notifier(address), interval
