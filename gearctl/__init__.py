"""gearctl: a command-line tool and Python library for the Gearman job server."""

from .client import AsyncClient, Client, Job, JobStatus
from .errors import ExitCode, GearctlError
from .execution import WorkerJob
from .plugins import job

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "ExitCode", "GearctlError", "Job", "JobStatus", "WorkerJob", "__version__", "job"]
