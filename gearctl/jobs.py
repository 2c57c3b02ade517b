"""TEMPORARY shim (issue 10): jobs.py is now execution.py. It keeps gearctl/cli.py
importing until the CLI moves to `from .execution import ...`; delete it then."""

from .execution import Outcome, OutcomeState, WorkerJob, execute

__all__ = ["Outcome", "OutcomeState", "WorkerJob", "execute"]
