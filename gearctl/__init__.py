"""gearctl: a command-line tool and Python library for the Gearman job server."""

from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    ConnectionFailed,
    ExitCode,
    GearctlError,
    JobException,
    JobFailed,
    NoServerAvailable,
    NoWorker,
    PayloadError,
    ProtocolError,
    ServerError,
    Timeout,
    UsageError,
)

if TYPE_CHECKING:
    from .addresses import ServerAddress, TLSOptions, parse_servers
    from .client import AsyncClient, Client, Job, JobStatus
    from .execution import WorkerJob
    from .plugins import job
    from .worker import ExitReason, Worker

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigError",
    "ConnectionFailed",
    "ExitCode",
    "ExitReason",
    "GearctlError",
    "Job",
    "JobException",
    "JobFailed",
    "JobStatus",
    "NoServerAvailable",
    "NoWorker",
    "PayloadError",
    "ProtocolError",
    "ServerAddress",
    "ServerError",
    "TLSOptions",
    "Timeout",
    "UsageError",
    "Worker",
    "WorkerJob",
    "__version__",
    "job",
    "parse_servers",
]


# Imported when first asked for: `import gearctl` (a plugin's `from gearctl import
# job`, the pytest plugin, a one-job cron run) pays only for what it uses; the
# client and the worker side each bring asyncio and more.
_LAZY = {
    "AsyncClient": "client", "Client": "client", "Job": "client", "JobStatus": "client",
    "ServerAddress": "addresses", "TLSOptions": "addresses", "parse_servers": "addresses",
    "ExitReason": "worker", "Worker": "worker", "WorkerJob": "execution", "job": "plugins",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gearctl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value
