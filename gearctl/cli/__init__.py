"""The gearctl command line: thin typer commands over the library, one module per
group. Commands parse flags, call the library and print; app.invoke() is the one
place that turns errors into a one-line message on stderr and an exit code (see
errors.ExitCode, documented in README)."""

from __future__ import annotations

from .app import app, invoke

# Each module registers its commands on the app as it is imported, and --help lists
# them in that order: keep it.
# isort: off
from . import client  # noqa: F401
from . import worker  # noqa: F401
from . import plugins  # noqa: F401
from . import status  # noqa: F401
from . import dead  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """The console entry point (`gearctl`, `python -m gearctl`)."""
    invoke(argv)
