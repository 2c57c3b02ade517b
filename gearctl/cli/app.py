"""What every gearctl command shares: the typer app and its root flags, the server
and TLS options, the choices and help texts several commands use, function-name
completion, and `invoke()`, the one place where an error becomes a line on stderr
and an exit code. The commands live in the modules beside this one."""

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

from .. import __version__
from ..client import AsyncClient
from ..connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_SERVERS,
    ServerAddress,
    TLSOptions,
    parse_servers,
)
from ..deadlines import deadline_after, within
from ..errors import ExitCode, GearctlError
from ..timeparse import parse_duration
from .streams import OutputClosed, one_line

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

app = typer.Typer(
    name="gearctl",
    help="A command-line tool for the Gearman job server: submit jobs, run workers, watch queues.",
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
    debug: Annotated[bool, typer.Option("--debug", envvar="GEARCTL_DEBUG",
                                        help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print gearctl's version and exit.")] = False,
) -> None:
    """gearctl: submit jobs, run workers and watch queues on Gearman job servers.

    Exit codes: 0 ok, 1 job failed, 2 usage or bad input, 3 no server reachable,
    4 timeout, 5 job raised an exception, 6 no worker for the function,
    7 protocol error, 8 server refused the request.
    """
    GLOBAL_FLAGS.debug = GLOBAL_FLAGS.debug or debug


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

    def client(self) -> AsyncClient:
        return AsyncClient(self.addresses(), connect_timeout=self.connect_timeout, io_timeout=self.io_timeout,
                           tls=self.tls_options())

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
                given["timeout"] = parse_duration(given["timeout"])
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

            completion_init()
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
        sys.stderr.write(f"gearctl: {one_line(str(e))}\n")
        code = e.exit_code
    except ClickException as e:
        code = _report_bad_usage(e)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("gearctl: interrupted\n")
        code = ExitCode.INTERRUPTED
    sys.exit(int(code or 0))


def _report_bad_usage(e: Exception) -> int:
    """click's usage errors (a bad flag or value, a missing argument): one line
    naming the command, or its help when it was given no arguments at all."""
    ctx = getattr(e, "ctx", None)
    if ctx is not None and ctx.info_name == "check":
        # A monitoring plugin: a bad argument is UNKNOWN (3) with one status line.
        sys.stdout.write(f"GEARMAN UNKNOWN - {one_line(e.format_message())}\n")  # type: ignore[attr-defined]
        return 3
    where = ctx.command_path if ctx is not None else "gearctl"
    message = e.format_message()  # type: ignore[attr-defined]
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
        sys.stderr.write(ctx.get_help() + "\n")
    else:
        sys.stderr.write(f"{where}: {one_line(message)} (see {where} --help)\n")
    return int(e.exit_code)  # type: ignore[attr-defined]
