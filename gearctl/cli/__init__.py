"""The gearctl command line: thin typer commands over the library, one module per
group. Commands parse flags, call the library and print; app.invoke() is the one
place that turns errors into a one-line message on stderr and an exit code (see
errors.ExitCode, documented in README).

A command line runs one command, so main() imports only the module that defines
it (`load_commands`): a one-shot `gearctl client` then neither imports the
worker's, the status commands' or the plugins' modules nor has typer build click
commands for the twenty others. With the lazy imports in the modules themselves
that took it from ~1.8x to ~1.25x the time of `python3 -c 'import asyncio, typer'`
(20 runs each, with a bytecode cache). --help, shell completion, no command or an
unknown one load them all, so what they show is unchanged. Code that inspects the
whole CLI (`app`) calls load_commands() first.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from .app import ROOT_VALUE_FLAGS, app, invoke

# The command modules in the order --help lists their commands: keep it.
COMMAND_MODULES = ("client", "worker", "plugins", "status", "admin", "dead", "server", "config")
# Which module defines each command (tests/test_startup.py checks this against the app).
MODULE_OF = {
    "client": "client",
    "worker": "worker",
    "functions": "plugins",
    "run": "plugins",
    **dict.fromkeys(("status", "workers", "jobs", "job", "cancel", "drop", "version", "ping", "check", "exporter"),
                    "status"),
    **dict.fromkeys(("getpid", "maxqueue", "shutdown"), "admin"),
    "dead": "dead",
    "server": "server",
    "config": "config",
    "aliases": "config",
}
ROOT_FLAGS = frozenset({"--debug"})  # the root's flags that take no value and still run a command

__all__ = ["app", "command_name", "load_commands", "main"]


def command_name(argv: Sequence[str]) -> str | None:
    """The command a command line runs, past the root's flags (--config FILE,
    --alias NAME, an @alias word); None when it runs none (no arguments, --help,
    --version, a flag the root does not have)."""
    words = iter(argv)
    for arg in words:
        if arg in ROOT_VALUE_FLAGS:
            next(words, None)
        elif not (arg in ROOT_FLAGS or arg.startswith(("--config=", "--alias=", "@"))):
            return None if arg.startswith("-") else arg
    return None


def load_commands(argv: Sequence[str] | None = None) -> None:
    """Register the commands `argv` may need on the app: the one it names, or
    all of them (without argv, on --help, for shell completion, or for a name
    that is no command, so that click can suggest the nearest one)."""
    name = None if argv is None else command_name(argv)
    completing = any(key.startswith("_GEARCTL_COMPLETE") for key in os.environ)
    modules = COMMAND_MODULES if name not in MODULE_OF or completing else (MODULE_OF[name],)
    for module in modules:
        importlib.import_module(f"{__name__}.{module}")


def main(argv: list[str] | None = None) -> None:
    """The console entry point (`gearctl`, `python -m gearctl`)."""
    load_commands(sys.argv[1:] if argv is None else argv)
    invoke(argv)
