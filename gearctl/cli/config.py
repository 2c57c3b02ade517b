"""`gearctl config` and `gearctl aliases`: the effective settings and where each
came from, and the config file's aliases (config.py reads and checks the file).

click knows whether a value came from a flag, the environment, the default_map
(the file) or the default; config.Config knows which file line (or alias) a
default_map value came from. The [client] and [worker] settings are asked of
those commands' own click contexts, built here without running them."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from ..config import GLOBAL_KEYS, TABLE_KEYS, Config, Key, Setting, alias_names
from .app import NO_SERVER_OPTIONS, ServerOptions, app, command_defaults, current_config, with_servers
from .helptext import examples
from .plugin_options import PluginDirs
from .streams import Out

AsJson = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


@app.command("config", epilog=examples("gearctl config", "gearctl @prod config --json",
                                         "gearctl --config ./ci.toml config"))
@with_servers()
def config_command(
    ctx: typer.Context,
    plugin_dir: PluginDirs = None,
    as_json: AsJson = False,
    server: ServerOptions = NO_SERVER_OPTIONS,
) -> int:
    """Print the effective settings and where each came from: a flag, the environment,
    the config file (PATH:LINE), an alias, or the default.

    The server, TLS and plugin flags given here show as flags, as they would on any
    command; the client and worker tables' settings show as those commands see them.

    Examples:

        gearctl config

        gearctl @prod config --json | jq .settings.servers

        gearctl --config /etc/gearctl/config.toml config -s gear3:4730
    """
    config = current_config(ctx)
    contexts = {name: _context_of(ctx, name, config) for name in TABLE_KEYS}
    settings = [_setting(config, "", key, ctx if key.target in ctx.params else contexts["worker"])
                for key in GLOBAL_KEYS if key.target in ctx.params or key.target in contexts["worker"].params]
    for section, keys in TABLE_KEYS.items():
        settings += [_setting(config, section, key, contexts[section]) for key in keys]
    out = Out()
    if as_json:
        from .. import render

        document: dict[str, Any] = {"file": str(config.path) if config.path else None, "alias": config.alias,
                                    "settings": {}, **{section: {} for section in TABLE_KEYS}}
        for setting in settings:
            section, _, name = setting.key.rpartition(".")
            document[section or "settings"][name] = setting.as_json()
        out.line(render.json_line(document))
        return 0
    out.line(f"# config file: {config.path or 'none'}" + (f", alias @{config.alias}" if config.alias else ""))
    width = max(len(s.key) for s in settings)
    values = [_shown(s.value) for s in settings]
    value_width = min(max(len(v) for v in values), 40)
    for setting, value in zip(settings, values, strict=True):
        out.line(f"{setting.key:<{width}}  {value:<{value_width}}  {setting.describe()}".rstrip())
    return 0


@app.command("aliases", epilog=examples("gearctl aliases", "gearctl aliases --json"))
def aliases_command(ctx: typer.Context, as_json: AsJson = False) -> int:
    """List the config file's aliases (its aliases.NAME tables; use one as `gearctl @NAME COMMAND`).

    Examples:

        gearctl aliases

        gearctl aliases --json | jq -r '.aliases[].name'
    """
    config = current_config(ctx)
    rows: list[dict[str, Any]] = [{"name": name, "origin": config.where(config.alias_lines[name]),
             "settings": {key: entry.value for key, entry in config.aliases[name].items()}}
            for name in alias_names(config)]
    out = Out()
    if as_json:
        from .. import render

        out.line(render.json_line({"file": str(config.path) if config.path else None, "aliases": rows}))
        return 0
    for row in rows:
        out.line(f"@{row['name']}\t{row['settings'].get('servers', '-')}\t{row['origin']}")
    return 0


def _context_of(ctx: typer.Context, name: str, config: Config) -> Any:
    """The click context `gearctl NAME` would run with (no arguments), not run."""
    import importlib

    importlib.import_module(f"{__package__}.{name}")  # a command line loads only its own command's module
    command = typer.main.get_command(app).get_command(ctx, name)  # type: ignore[attr-defined]
    defaults = command_defaults(_Only(name, command), config).get(name)
    return command.make_context(name, [], parent=ctx.find_root(), resilient_parsing=True, default_map=defaults)


class _Only:
    """A stand-in group holding one command, for command_defaults()."""

    def __init__(self, name: str, command: Any) -> None:
        self.commands = {name: command}


def _setting(config: Config, section: str, key: Key, ctx: Any) -> Setting:
    param = next(p for p in ctx.command.params if p.name == key.target)
    source = ctx.get_parameter_source(key.target)
    value = ctx.params.get(key.target)
    if isinstance(value, Enum):
        value = value.value
    elif isinstance(value, tuple):
        value = list(value)
    flag = max(param.opts, key=len)
    return config.setting(section, key, value, source.name if source is not None else "DEFAULT", flag)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
