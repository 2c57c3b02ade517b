"""The gearctl command line: typer commands, one module per group."""

from .client import main

__all__ = ["main"]
