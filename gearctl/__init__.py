"""gearctl: a command-line tool and Python library for the Gearman job server."""

from .client import AsyncClient, Client, Job, JobStatus
from .errors import ExitCode, GearctlError

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "ExitCode", "GearctlError", "Job", "JobStatus", "__version__"]
