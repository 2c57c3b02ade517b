"""--pidfile, for the commands that run until stopped (worker, server): one
writer at a time, written whole, removed only by the process it names."""

from __future__ import annotations

import os

from .errors import UsageError


def alive(pid: int) -> bool:
    """Is process `pid` running (ours or another user's)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(path: str) -> None:
    """Write this process's pid to `path`; UsageError (exit 2) when the file names
    another process that is running. A stale file is replaced."""
    try:
        with open(path) as f:
            other = int(f.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid() and alive(other):
        raise UsageError(f"pidfile {path} names process {other}, which is running")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"cannot write pidfile {path}: {e.strerror or e}") from None


def release(path: str) -> None:
    """Remove `path` if it names this process (never another's)."""
    try:
        with open(path) as f:
            if int(f.read().strip() or 0) == os.getpid():
                os.unlink(path)
    except (OSError, ValueError):
        pass
