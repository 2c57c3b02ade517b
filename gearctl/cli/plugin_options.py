"""What the commands that load plugin directories share (worker, functions, run):
the --plugin-dir and --allow-insecure-plugins options and load_registry(). Apart
from app.py so that the commands that load no plugins do not import plugins.py
(and the retry and codec modules behind it) at start-up."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import plugins
from .streams import one_line

PluginDirs = Annotated[list[str] | None, typer.Option(
    "--plugin-dir", "-p", metavar="DIR",
    help="Plugin directory (repeatable). Default: $GEARCTL_PLUGIN_PATH, else the config's plugin_dirs, "
         f"else ./{plugins.DEFAULT_PLUGIN_DIR}.")]


AllowInsecurePlugins = Annotated[bool, typer.Option(
    plugins.INSECURE_FLAG, help="Load plugin files and directories that group or others may write to.")]


def load_registry(plugin_dir: list[str] | None, *, quiet: bool = False,
                  allow_insecure: bool = False) -> plugins.Registry:
    """The plugins of --plugin-dir (or its defaults); each plugin error is one stderr line."""
    registry = plugins.load_plugins(plugins.plugin_dirs(plugin_dir), allow_insecure=allow_insecure)
    if not quiet:
        for error in registry.errors:
            sys.stderr.write(f"gearctl: plugin error: {one_line(error)}\n")
    return registry
