"""What every gearctl command shares: the typer app and its root flags (--config,
--alias and drush's `@alias` word: the file's settings become click's default_map
here, see config.py), the server and TLS options, the choices and help texts
several commands use, function-name and alias completion, and `invoke()`, the one
place where an error becomes a line on stderr and an exit code. The commands live
in the modules beside this one."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from .. import __version__
from ..client import AsyncClient
from ..config import Config, alias_names
from ..config import load as load_config
from ..connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_SERVERS,
    ServerAddress,
    TLSOptions,
    parse_servers,
)
from ..deadlines import deadline_after, within
from ..errors import ExitCode, GearctlError, UsageError
from ..timeparse import parse_limit
from .helptext import examples
from .streams import OutputClosed, one_line

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

ROOT_VALUE_FLAGS = frozenset({"--config", "--alias"})  # the root's flags that take a value
CONFIG_META = "gearctl.config"  # where the root puts the loaded Config in ctx.meta
FIRST_ARG = "gearctl.first_arg"  # the command's first word, for a misplaced @alias
BARE_AT = "gearctl.bare_at"  # completion: bash split "@pr" into "@" and "pr" (@ is in COMP_WORDBREAKS)


def expand_alias_word(args: list[str], completing: bool = False) -> tuple[list[str], bool]:
    """drush's `gearctl @prod status`: the first word past the root's flags, when
    it starts with '@', becomes `--alias prod`. While completing, a bare '@' (bash
    splits words at '@') joins the next word; a bare '@' last is dropped and
    reported (True), so that the word after it completes as an alias name."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ROOT_VALUE_FLAGS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        elif not arg.startswith("@"):
            break
        elif completing and arg == "@":
            if i + 1 == len(args):
                return args[:i], True
            return [*args[:i], "--alias", args[i + 1], *args[i + 2:]], False
        else:
            return [*args[:i], "--alias", arg[1:], *args[i + 1:]], False
    return args, False


class GearctlGroup(TyperGroup):
    """The root command: `@NAME` before the command selects an alias, and completes as one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args, ctx.meta[BARE_AT] = expand_alias_word(args, completing=ctx.resilient_parsing)
        return super().parse_args(ctx, args)  # type: ignore[no-any-return]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        GLOBAL_FLAGS.command = name or ""  # invoke() reports errors of `check` as a monitoring plugin
        # `gearctl status @prod`: the root callback says where an alias goes (help is help)
        ctx.meta[FIRST_ARG] = rest[0] if rest and not {"--help", "-h"} & set(rest) else ""
        return name, command, rest

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        if not (incomplete.startswith("@") or ctx.meta.get(BARE_AT)):
            return super().shell_complete(ctx, incomplete)  # type: ignore[no-any-return]
        try:
            from typer._click.shell_completion import CompletionItem  # typer 0.28 vendors click
        except ImportError:  # earlier typers depend on click itself
            from click.shell_completion import CompletionItem  # type: ignore[no-redef,assignment,import-not-found,unused-ignore]

        prefix = "@" if incomplete.startswith("@") else ""
        return [CompletionItem(prefix + name) for name in complete_aliases(ctx, incomplete[len(prefix):])]


def completion_config(ctx: typer.Context) -> Config:
    """For shell completion: the config the command line being completed names
    (its --config, and its --alias or @alias: the root's parameters, parsed by
    then), or an empty one when it does not load."""
    params = ctx.find_root().params
    with contextlib.suppress(Exception):
        return load_config(params.get("config_file"), params.get("alias"))
    with contextlib.suppress(Exception):
        return load_config(params.get("config_file"))  # an alias still being typed
    return Config()


def complete_aliases(ctx: typer.Context, incomplete: str) -> list[str]:
    """The config's alias names (for `@<Tab>` and `--alias <Tab>`)."""
    return [name for name in alias_names(completion_config(ctx)) if name.startswith(incomplete)]


app = typer.Typer(
    name="gearctl",
    cls=GearctlGroup,
    help="A command-line tool for the Gearman job server: submit jobs, run workers, watch queues.",
    epilog=examples("gearctl worker -p plugins --functions notifications_send_users",
                    "gearctl client notifications_send_users payload.json",
                    "gearctl @prod status --watch"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# typer may vendor its own click: find its exception base through a public class.
ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


@dataclass
class GlobalFlags:
    """The root command's own flags (`gearctl --debug ...`), kept for invoke()."""

    debug: bool = False
    command: str = ""  # the subcommand, once the command line named one


GLOBAL_FLAGS = GlobalFlags(debug=os.environ.get("GEARCTL_DEBUG", "").lower() in ("1", "true", "yes", "on"))


class PriorityChoice(str, Enum):
    high = "high"
    normal = "normal"
    low = "low"


class EncodingChoice(str, Enum):
    raw = "raw"
    json = "json"
    php = "php"


class DecodeChoice(str, Enum):
    auto = "auto"
    json = "json"
    php = "php"


HELP_DECODE = ("Print the result decoded (PHP serialize() or JSON; auto: whichever it is) as one line of JSON; "
               "WORK_DATA then goes to stderr. With --json: a \"value\" field.")
HELP_ENCODING = "raw: bytes as given. json: checked to be JSON. php: JSON in, PHP serialize() out."


# -- options shared by every command that talks to a server ----------------------
Servers = Annotated[str, typer.Option(
    "--servers", "-s", envvar="GEARCTL_SERVERS", show_default=True, metavar="HOST[:PORT],...",
    help="Job servers, comma-separated; IPv6 as [::1]:4730. Default port 4730.")]
ConnectTimeout = Annotated[float, typer.Option(
    "--connect-timeout", envvar="GEARCTL_CONNECT_TIMEOUT", min=0.01, metavar="SECONDS",
    help="Give up on a server that does not accept the connection within this time.")]
IoTimeout = Annotated[float, typer.Option(
    "--io-timeout", envvar="GEARCTL_IO_TIMEOUT", min=0.01, metavar="SECONDS",
    help="Drop a server that owes replies and sends nothing for this long (its requests fail over).")]
Tls = Annotated[bool, typer.Option(
    "--tls", envvar="GEARCTL_TLS", help="Connect with TLS (gearmand behind a TLS terminator).")]
TlsCa = Annotated[str | None, typer.Option("--tls-ca", envvar="GEARCTL_TLS_CA", metavar="FILE",
                                              help="CA certificates to verify the server with (implies --tls).")]
TlsCert = Annotated[str | None, typer.Option("--tls-cert", envvar="GEARCTL_TLS_CERT", metavar="FILE",
                                                help="Client certificate (implies --tls).")]
TlsKey = Annotated[str | None, typer.Option("--tls-key", envvar="GEARCTL_TLS_KEY", metavar="FILE",
                                               help="Key of the client certificate.")]
OverallTimeout = Annotated[str | None, typer.Option(
    "--timeout", "-t", metavar="DURATION",
    help="Give up on the servers after this long in all (30, 30s, 5m): exit 4.")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gearctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", envvar="GEARCTL_DEBUG",
                                        help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print gearctl's version and exit.")] = False,
    config_file: Annotated[str | None, typer.Option(
        "--config", envvar="GEARCTL_CONFIG", metavar="FILE",
        help="Settings file. Default: ./gearctl.toml, else $XDG_CONFIG_HOME/gearctl/config.toml, "
             "else /etc/gearctl/config.toml.")] = None,
    alias: Annotated[str | None, typer.Option(
        "--alias", envvar="GEARCTL_ALIAS", metavar="NAME", autocompletion=complete_aliases,
        help="Use the servers and settings of the config file's alias NAME (also: gearctl @NAME COMMAND).")] = None,
) -> None:
    """gearctl: submit jobs, run workers and watch queues on Gearman job servers.

    Exit codes: 0 ok, 1 job failed, 2 usage or bad input, 3 no server reachable,
    4 timeout, 5 job raised an exception, 6 no worker for the function,
    7 protocol error, 8 server refused the request.
    """
    GLOBAL_FLAGS.debug = GLOBAL_FLAGS.debug or debug
    config = load_config(config_file, alias)  # a bad one fails the command (`check`: UNKNOWN, see invoke())
    first = ctx.meta.get(FIRST_ARG, "")
    if first.startswith("@") and first[1:] in alias_names(config):  # not a function or a pattern: a lost alias
        raise UsageError(f"{first} is an alias; put it before the command: "
                         f"gearctl {first} {ctx.invoked_subcommand} ...")
    ctx.meta[CONFIG_META] = config
    ctx.default_map = command_defaults(ctx.command, config)


def command_defaults(group: Any, config: Config, prefix: str = "") -> dict[str, Any]:
    """click's default_map for every command of `group` (those loaded): the
    file's values, so that click's order gives flag > env > file > default."""
    defaults: dict[str, Any] = {}
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):  # a group (dead): its subcommands
            found = command_defaults(command, config, f"{prefix}{name} ")
        else:
            found = config.defaults_for(prefix + name, {p.name for p in command.params})
        if found:
            defaults[name] = found
    return defaults


def current_config(ctx: typer.Context) -> Config:
    """The Config the root callback loaded for this command line."""
    config: Config = ctx.find_root().meta.get(CONFIG_META, Config())
    return config

@dataclass(frozen=True)
class ServerOptions:
    """--servers, the timeouts and the TLS flags, as one value (see with_servers)."""

    servers: str = DEFAULT_SERVERS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    io_timeout: float = DEFAULT_IO_TIMEOUT
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float | None = None  # --timeout: the whole conversation with the servers

    def addresses(self) -> list[ServerAddress]:
        return parse_servers(self.servers)

    def tls_options(self) -> TLSOptions:
        return TLSOptions(enabled=self.tls, ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)

    def ssl_context(self) -> Any:
        return self.tls_options().context()

    def bounds(self) -> dict[str, Any]:
        """The library's keyword arguments for --connect-timeout, --io-timeout and
        TLS: every admin wait is bounded by these two documented timeouts."""
        return {"connect_timeout": self.connect_timeout, "io_timeout": self.io_timeout, "tls": self.tls_options()}

    def client(self) -> AsyncClient:
        return AsyncClient(self.addresses(), **self.bounds())

    def run(self, talk: Coroutine[Any, Any, T]) -> T:
        """asyncio.run(talk), bounded by --timeout: past it, Timeout (exit 4)."""
        if self.timeout is None:
            return asyncio.run(talk)
        what = f"after {self.timeout:g}s (--timeout) talking to {self.servers}"
        return asyncio.run(within(talk, deadline_after(self.timeout), what))


NO_SERVER_OPTIONS = ServerOptions()  # the placeholder default; with_servers passes the real one


def with_servers(*, io_timeout: bool = True, timeout: bool = True) -> Callable[[F], F]:
    """Give a command the server and TLS flags as one `server: ServerOptions`
    argument: the flags are declared here once, not in every command. With
    `timeout`, --timeout too (the command then talks through `server.run`);
    commands that have their own (client) or serve until stopped go without."""
    flags: list[tuple[str, Any, Any]] = [("servers", Servers, DEFAULT_SERVERS),
                                         ("connect_timeout", ConnectTimeout, DEFAULT_CONNECT_TIMEOUT)]
    if io_timeout:
        flags.append(("io_timeout", IoTimeout, DEFAULT_IO_TIMEOUT))
    if timeout:
        flags.append(("timeout", OverallTimeout, None))
    flags += [("tls", Tls, False), ("tls_ca", TlsCa, None), ("tls_cert", TlsCert, None), ("tls_key", TlsKey, None)]

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "server"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                 for name, annotation, default in flags]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name, _, _ in flags}
            if given.get("timeout") is not None:
                given["timeout"] = parse_limit(given["timeout"], "--timeout")
            server = ServerOptions(**given)
            return fn(*args, server=server, **kwargs)

        params = kept + added
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return decorate


def _silence_stdout() -> None:
    """The reader went away (| head). Point stdout at devnull so the
    interpreter's final flush does not fail again."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def invoke(argv: list[str] | None = None) -> NoReturn:
    """Run one command line and exit: every error becomes one line on stderr and
    its exit code (errors.ExitCode, documented in README)."""
    command = typer.main.get_command(app)
    if any(key.startswith("_GEARCTL_COMPLETE") for key in os.environ):
        # Shell completion is asking (see completions/): typer's classes answer.
        with contextlib.suppress(ImportError):
            from typer._completion_classes import completion_init

            from .completion import use_our_scripts

            completion_init()
            use_our_scripts()
    try:
        code = command.main(args=argv, prog_name="gearctl", standalone_mode=False)
        if code == ExitCode.INTERRUPTED:  # typer turned Ctrl-C into exit 130, silently
            sys.stderr.write("gearctl: interrupted\n")
    except (OutputClosed, BrokenPipeError):
        _silence_stdout()
        code = ExitCode.OUTPUT_CLOSED
    except GearctlError as e:
        if GLOBAL_FLAGS.debug:
            traceback.print_exc()
        if GLOBAL_FLAGS.command == "check":  # a monitoring plugin that cannot check (a bad value): UNKNOWN
            code = nagios_unknown(str(e))
        else:
            sys.stderr.write(f"gearctl: {one_line(str(e))}\n")
            code = e.exit_code
    except ClickException as e:
        code = _report_bad_usage(e)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("gearctl: interrupted\n")
        code = ExitCode.INTERRUPTED
    sys.exit(int(code or 0))


def nagios_unknown(message: str) -> int:
    """`check` is a monitoring plugin: what keeps it from checking is UNKNOWN (3), one status line."""
    sys.stdout.write(f"GEARMAN UNKNOWN - {one_line(message)}\n")
    return 3


def _report_bad_usage(e: Exception) -> int:
    """click's usage errors (a bad flag or value, a missing argument): one line
    naming the command, or its help when it was given no arguments at all."""
    ctx = getattr(e, "ctx", None)
    if GLOBAL_FLAGS.command == "check":
        return nagios_unknown(e.format_message())  # type: ignore[attr-defined]
    where = ctx.command_path if ctx is not None else "gearctl"
    message = e.format_message()  # type: ignore[attr-defined]
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
        # The error made the help as it was raised (ctx.get_help()): typer's rich help
        # printed itself then (on stdout) and left "" as the message; a plain one is the message.
        if message:
            sys.stderr.write(message + "\n")
    else:
        sys.stderr.write(f"{where}: {one_line(message)} (see {where} --help)\n")
    return int(e.exit_code)  # type: ignore[attr-defined]
