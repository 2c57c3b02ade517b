"""gearctl: a command-line tool and Python library for the Gearman job server."""

from typing import TYPE_CHECKING, Any

from .client import AsyncClient, Client, Job, JobStatus
from .connection import ServerAddress, TLSOptions, parse_servers
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


def __getattr__(name: str) -> Any:
    # The worker side is imported when first asked for: `gearctl client` starts
    # without it (a one-job cron run pays every millisecond of import).
    if name in ("ExitReason", "Worker"):
        from . import worker

        return getattr(worker, name)
    if name == "WorkerJob":
        from .execution import WorkerJob

        return WorkerJob
    if name == "job":
        from .plugins import job

        return job
    raise AttributeError(f"module 'gearctl' has no attribute {name!r}")
