"""Shell completion of function names and unique keys, from what the command line
being completed names: its --plugin-dir values (else GEARCTL_PLUGIN_PATH, else the
config's plugin_dirs, else ./gearctl_plugins) and its --servers (else
GEARCTL_SERVERS, else the config's), asked with a short timeout. The config is
the one the line names (its --config and @alias: app.completion_config). Click
parses the words typed so far (resiliently) before it calls a completer, so
`ctx.params` holds the options already on the line.

A completer never prints and never raises: a broken plugin or a server down
leaves fewer names, not a traceback in the user's prompt. Nothing heavy is
imported until a completer runs (the command modules import this at start-up).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import typer

ASK_TIMEOUT = 0.5  # per server, connect and answer: a prompt must not hang on a dead server

# The zsh script (completions/_gearctl). typer's own starts with an empty line, and
# compinit reads only a file's first line for its #compdef tag: copied into a
# directory on $fpath, as README says, it was never registered. This one starts
# with the tag and works both ways: autoloaded by compinit from $fpath (the file is
# then the body of _gearctl: it completes at once) or sourced (it registers).
ZSH_SCRIPT = """#compdef %(prog_name)s

%(complete_func)s() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" %(autocomplete_var)s=complete_zsh %(prog_name)s)
}

if [[ "$funcstack[1]" == "_%(prog_name)s" ]]; then
  %(complete_func)s "$@"
else
  compdef %(complete_func)s %(prog_name)s
fi
"""


def use_our_scripts() -> None:
    """Make typer's completion classes print our zsh script (ZSH_SCRIPT)."""
    with contextlib.suppress(ImportError, AttributeError):
        from typer._completion_classes import ZshComplete

        ZshComplete.source_template = ZSH_SCRIPT


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def _params(ctx: typer.Context | None) -> dict[str, Any]:
    """The options on the line so far, this command's and its parents'."""
    found: dict[str, Any] = {}
    node: Any = ctx  # its parents are click's own Context class (typer vendors click)
    while node is not None:
        for key, value in node.params.items():
            found.setdefault(key, value)
        node = node.parent
    return found


def _configured(ctx: typer.Context | None, key: str) -> Any:
    """The config's value of `key` for the line being completed (None: unset)."""
    from .app import completion_config

    with _quiet(), contextlib.suppress(Exception):
        return completion_config(ctx).get(key) if ctx is not None else None
    return None


def _given(ctx: typer.Context | None, name: str) -> bool:
    """Was parameter `name` on the line or in its environment variable (not a default)?"""
    node: Any = ctx
    while node is not None:
        if name in node.params:
            source = node.get_parameter_source(name)
            return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
        node = node.parent
    return False


def plugin_functions(ctx: typer.Context | None) -> set[str]:
    """The functions of the plugin directories the line names (else the defaults)."""
    import os

    from .. import plugins

    dirs = _params(ctx).get("plugin_dir") or None
    if not dirs and not os.environ.get(plugins.PLUGIN_PATH_ENV):
        dirs = _configured(ctx, "plugin_dirs")
    with _quiet(), contextlib.suppress(Exception):
        return set(plugins.load_plugins(plugins.plugin_dirs(dirs)).functions)
    return set()


def _reports(ctx: typer.Context | None, *, uniques: bool = False) -> list[Any]:
    import asyncio

    from .. import monitor
    from ..addresses import resolve_servers

    with _quiet(), contextlib.suppress(Exception):
        given = _params(ctx).get("servers") if _given(ctx, "servers") else None
        servers = resolve_servers(given or _configured(ctx, "servers"))
        return list(asyncio.run(monitor.collect(servers, status=not uniques, uniques=uniques,
                                                connect_timeout=ASK_TIMEOUT, io_timeout=ASK_TIMEOUT)))
    return []


def server_functions(ctx: typer.Context | None) -> set[str]:
    """The functions the servers on the line (else GEARCTL_SERVERS) know."""
    return {fs.function for report in _reports(ctx) for fs in report.status}


def _matching(names: set[str], incomplete: str) -> list[str]:
    # A name with a tab or a newline would break the shell's word list.
    return sorted(n for n in names if n.startswith(incomplete) and not any(c in n for c in "\t\n "))


def complete_functions(ctx: typer.Context, incomplete: str) -> list[str]:
    """FUNCTION of client, drop and dead: the plugins' functions and the servers'."""
    return _matching(plugin_functions(ctx) | server_functions(ctx), incomplete)


def complete_plugin_functions(ctx: typer.Context, incomplete: str) -> list[str]:
    """FUNCTION of run: the plugins' functions only (run needs no server)."""
    return _matching(plugin_functions(ctx), incomplete)


def complete_function_list(ctx: typer.Context, incomplete: str) -> list[str]:
    """worker --functions a,b,c: completes the name after the last comma, offering
    the whole word (the shell replaces the word being completed), and leaves out
    the names already listed."""
    done, _, last = incomplete.rpartition(",")
    listed = {name.partition(":")[0] for name in done.split(",")} if done else set()
    prefix = f"{done}," if done else ""
    return [prefix + name for name in _matching(plugin_functions(ctx) - listed, last)]


def complete_unique_keys(ctx: typer.Context, incomplete: str) -> list[str]:
    """job --unique KEY: the unique keys the servers hold (show unique jobs)."""
    keys = {key for report in _reports(ctx, uniques=True) for key in report.uniques}
    return _matching(keys, incomplete)


def _dead_ids(ctx: typer.Context | None) -> set[str]:
    """The IDs of the dead jobs the servers hold: their unique keys (`...~dead.MS`)."""
    from ..deadletter import is_dead_unique

    return {key for report in _reports(ctx, uniques=True) for key in report.uniques if is_dead_unique(key)}


def complete_dead_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    """dead show ID: the dead jobs' IDs."""
    return _matching(_dead_ids(ctx), incomplete)


def complete_dead_targets(ctx: typer.Context, incomplete: str) -> list[str]:
    """dead retry/purge FUNCTION|ID: the functions (plugins' and servers'), and the dead jobs' IDs."""
    return _matching(plugin_functions(ctx) | server_functions(ctx) | _dead_ids(ctx), incomplete)

