"""Settings from a TOML file (`gearctl.toml`), its drush-style aliases, and
where each setting came from.

The precedence is flag > environment > alias > file > default. click already
orders three of them for every option (command line, envvar, `default_map`,
default), so this module's one job is the `default_map`: the file's values for
each command, an alias's over the file's own, checked first with errors that
name the file, the line and the key (`Config.defaults_for`). What click cannot
tell apart, the file from an alias and a file line, `Config.origin` does; the
CLI asks click for the rest (`gearctl config`).

The keys are data (`GLOBAL_KEYS`, `TABLE_KEYS`): each names the click
parameter it sets, its environment variable and what its TOML value may be.
Paths in a file are relative to the file's directory. No typer here; tomllib
(or tomli on 3.10) is imported only when there is a file to read.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from .addresses import SERVERS_ENV, parse_servers
from .errors import ConfigError, UsageError
from .timeparse import parse_duration

CONFIG_ENV = "GEARCTL_CONFIG"
ALIAS_ENV = "GEARCTL_ALIAS"
FILE_NAME = "gearctl.toml"  # in the current directory
USER_FILE = Path("gearctl") / "config.toml"  # under $XDG_CONFIG_HOME (~/.config)
SYSTEM_FILE = Path("/etc/gearctl/config.toml")
ALIAS_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"


class Source(str, Enum):
    """Where a setting's value came from, strongest first."""

    FLAG = "flag"
    ENV = "env"
    ALIAS = "alias"
    FILE = "file"
    DEFAULT = "default"


class Kind(Enum):
    """What a key's TOML value may be (and what click is handed)."""

    STR = "a string"
    PATH = "a path (string)"
    BOOL = "true or false"
    INT = "an integer"
    NUMBER = "a number"
    DURATION = "a duration (seconds, or a string such as \"30s\", \"5m\")"
    SERVERS = "a server list (\"h1:4730,h2\" or [\"h1:4730\", \"h2\"])"
    NAMES = "a name list (\"a,b\" or [\"a\", \"b\"])"
    PATHS = "a list of paths"
    PREFETCH = "\"auto\" or an integer"


class Key:
    """One key of the file: the click parameter it sets (by default its own
    name) and the environment variable that beats it. (The value classes of this
    module are plain classes: a dataclass costs ~1 ms to create, and every
    command line imports this module.)"""

    __slots__ = ("check", "choices", "env", "kind", "maximum", "minimum", "name", "not_for", "target")

    def __init__(self, name: str, kind: Kind, param: str = "", env: str | None = None,
                 choices: tuple[str, ...] = (), minimum: float | None = None, maximum: float | None = None,
                 not_for: tuple[str, ...] = (), check: Callable[[Any], object] | None = None) -> None:
        self.name = name
        self.kind = kind
        self.target = param or name
        self.env = env
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum  # the flag's own bounds: click's message would not name the file
        self.not_for = not_for  # commands whose parameter of that name means something else
        self.check = check  # the flag's own parser of the converted value (ValueError: why), run as the file is read

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


def _retry_option(name: str) -> Callable[[Any], object]:
    """A check by the retry options' own rules (retry.check_options, imported
    only for a file that sets the key), its message without the key's name."""
    def check(value: Any) -> object:
        from .retry import check_options

        try:
            return check_options({name: value})
        except ValueError as e:
            raise ValueError(str(e).removeprefix(name).removeprefix(":").strip()) from None
    return check


def _function_counts(value: str) -> object:
    from .supervision import parse_function_counts

    return parse_function_counts(value)


LEVELS = ("debug", "info", "warning", "error")
# Top level and [aliases.NAME]: what every command that talks to servers shares.
GLOBAL_KEYS = (
    Key("servers", Kind.SERVERS, env=SERVERS_ENV),
    Key("connect_timeout", Kind.NUMBER, env="GEARCTL_CONNECT_TIMEOUT", minimum=0.01),
    Key("io_timeout", Kind.NUMBER, env="GEARCTL_IO_TIMEOUT", minimum=0.01),
    Key("timeout", Kind.DURATION, not_for=("client",)),  # client's --timeout bounds the job: [client] timeout
    Key("tls", Kind.BOOL, env="GEARCTL_TLS"),
    Key("tls_ca", Kind.PATH, env="GEARCTL_TLS_CA"),
    Key("tls_cert", Kind.PATH, env="GEARCTL_TLS_CERT"),
    Key("tls_key", Kind.PATH, env="GEARCTL_TLS_KEY"),
    Key("plugin_dirs", Kind.PATHS, param="plugin_dir", env="GEARCTL_PLUGIN_PATH"),
    Key("log_format", Kind.STR, choices=("text", "json")),
    Key("log_level", Kind.STR, choices=LEVELS),
)
# [client] and [worker]: a command's own flags, named as the flags are (dashes as underscores).
TABLE_KEYS: dict[str, tuple[Key, ...]] = {
    "client": (
        Key("timeout", Kind.DURATION),
        Key("priority", Kind.STR, choices=("high", "normal", "low")),
        Key("encoding", Kind.STR, choices=("raw", "json", "php")),
        Key("inflight", Kind.INT, minimum=1),
        Key("max_errors", Kind.INT, minimum=1),
        Key("require_workers", Kind.BOOL),
        Key("summary", Kind.BOOL),
    ),
    "worker": (
        Key("functions", Kind.NAMES, check=_function_counts),
        Key("id", Kind.STR, param="client_id"),
        Key("concurrency", Kind.INT, minimum=1, maximum=512),
        Key("prefetch", Kind.PREFETCH),
        Key("prefetch_budget", Kind.DURATION),
        Key("max_jobs", Kind.INT, minimum=1),
        Key("max_lifetime", Kind.DURATION),
        Key("max_memory", Kind.NUMBER, minimum=1),
        Key("graceful_timeout", Kind.DURATION),
        Key("start_timeout", Kind.DURATION),
        Key("poll_interval", Kind.NUMBER, minimum=0.1),
        Key("pidfile", Kind.PATH),
        Key("retries", Kind.INT, minimum=0, maximum=1000),
        Key("retry_backoff", Kind.DURATION),
        Key("retry_backoff_max", Kind.DURATION),
        Key("retry_on", Kind.NAMES, check=_retry_option("retry_on")),
        Key("no_dead_letter", Kind.BOOL),
        Key("dead_letter_suffix", Kind.STR, env="GEARCTL_DEAD_LETTER_SUFFIX",
            check=_retry_option("dead_letter_suffix")),
        Key("metrics_port", Kind.INT, minimum=1, maximum=65535),
        Key("metrics_address", Kind.STR),
    ),
}
SECTIONS = ("", *TABLE_KEYS)  # "" is the top level


class Entry:
    """A checked value from the file, ready for click, and the line it is on."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


class Setting:
    """An effective setting as `gearctl config` shows it."""

    __slots__ = ("key", "origin", "source", "value")

    def __init__(self, key: str, value: Any, source: Source, origin: str | None = None) -> None:
        self.key = key  # "servers", "worker.concurrency"
        self.value = value
        self.source = source
        self.origin = origin  # the flag, the variable, or PATH:LINE

    def describe(self) -> str:
        if self.source is Source.DEFAULT:
            return "default"
        return f"{self.source.value} {self.origin}"

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source.value, "origin": self.origin}


class Config:
    """A loaded (and checked) file; empty when there is none. `alias` is the one
    selected. Not changed once made: select() returns another."""

    def __init__(self, path: Path | None = None, sections: dict[str, dict[str, Entry]] | None = None,
                 aliases: dict[str, dict[str, Entry]] | None = None, alias_lines: dict[str, int] | None = None,
                 alias: str | None = None) -> None:
        self.path = path
        self.sections = sections or {}
        self.aliases = aliases or {}
        self.alias_lines = alias_lines or {}
        self.alias = alias

    def select(self, alias: str | None) -> Config:
        """This config with `alias` selected; an unknown one is a ConfigError (exit 2) listing the known."""
        if alias is None:
            return self
        name = alias[1:] if alias.startswith("@") else alias
        if name not in self.aliases:
            raise ConfigError(f"unknown alias '@{name}' ({self.known_aliases()})")
        return Config(self.path, self.sections, self.aliases, self.alias_lines, name)

    def known_aliases(self) -> str:
        if self.aliases:
            return "known: " + ", ".join(f"@{n}" for n in alias_names(self))
        if self.path is None:
            looked = ", ".join(str(p) for p in search_path(os.environ, Path.cwd()))
            return f"no config file found; looked for {looked}"
        return f"{self.path} defines none"

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"

    def origin(self, section: str, key: str) -> tuple[Source, str] | None:
        """Where the file's value of `key` comes from (the selected alias first), or None."""
        if not section and self.alias is not None and key in self.aliases[self.alias]:
            return Source.ALIAS, f"@{self.alias} {self.where(self.aliases[self.alias][key].line)}"
        entry = self.sections.get(section, {}).get(key)
        return (Source.FILE, self.where(entry.line)) if entry is not None else None

    def get(self, key: str, section: str = "") -> Any:
        """The file's (or the selected alias's) value of `key`, ready for click; None when unset."""
        if not section and self.alias is not None and key in self.aliases[self.alias]:
            return self.aliases[self.alias][key].value
        entry = self.sections.get(section, {}).get(key)
        return entry.value if entry is not None else None

    def defaults_for(self, command: str, params: Collection[str],
                     environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """click's default_map for one command (`params`: its parameter names). A key
        whose environment variable is set is left out: the environment wins, also
        where click does not read the variable itself (GEARCTL_PLUGIN_PATH)."""
        env = os.environ if environ is None else environ
        chosen: dict[str, Any] = {}
        keys = [("", k) for k in GLOBAL_KEYS if command not in k.not_for]
        keys += [(command, k) for k in TABLE_KEYS.get(command, ())]
        for section, key in keys:
            value = self.get(key.name, section)
            if value is not None and key.target in params and not (key.env and env.get(key.env)):
                chosen[key.target] = value
        return chosen

    def setting(self, section: str, key: Key, value: Any, click_source: str, flag: str,
                environ: Mapping[str, str] | None = None) -> Setting:
        """The effective setting, from click's value and ParameterSource name
        (COMMANDLINE, ENVIRONMENT, DEFAULT_MAP, DEFAULT)."""
        env = os.environ if environ is None else environ
        name = f"{section}.{key.name}" if section else key.name
        if click_source == "COMMANDLINE":
            return Setting(name, value, Source.FLAG, flag)
        if click_source == "ENVIRONMENT":
            return Setting(name, value, Source.ENV, key.env)
        if click_source == "DEFAULT" and key.kind is Kind.PATHS and key.env and env.get(key.env):
            # a variable click does not read (GEARCTL_PLUGIN_PATH, split as plugins.plugin_dirs does)
            return Setting(name, [p for p in env[key.env].split(os.pathsep) if p], Source.ENV, key.env)
        found = self.origin(section, key.name) if click_source == "DEFAULT_MAP" else None
        if found is not None:
            return Setting(name, value, *found)
        return Setting(name, value, Source.DEFAULT)


def alias_names(config: Config) -> list[str]:
    """The aliases a config defines, sorted, without their '@' (for completion)."""
    return sorted(config.aliases)


# -- finding and reading the file ----------------------------------------------------

def search_path(environ: Mapping[str, str], cwd: Path) -> list[Path]:
    """Where a file is looked for when none is named, in order."""
    xdg = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return [cwd / FILE_NAME, Path(xdg) / USER_FILE, SYSTEM_FILE]


def find_config(path: str | None = None, environ: Mapping[str, str] | None = None,
                cwd: Path | None = None, search: list[Path] | None = None) -> Path | None:
    """--config PATH, else GEARCTL_CONFIG, else the first of search_path() that exists."""
    env = os.environ if environ is None else environ
    named = path or env.get(CONFIG_ENV)
    if named:
        file = Path(named)
        if not file.is_file() and not file.is_char_device():  # /dev/null: no settings
            raise ConfigError(f"config file {named}: {'is a directory' if file.is_dir() else 'no such file'}")
        return file
    for file in search if search is not None else search_path(env, cwd or Path.cwd()):
        if file.is_file():
            return file
    return None


def load(path: str | None = None, alias: str | None = None, *, environ: Mapping[str, str] | None = None,
         cwd: Path | None = None, search: list[Path] | None = None) -> Config:
    """The config gearctl runs with: the file found (or named), checked, with
    `alias` (else GEARCTL_ALIAS) selected. No file: an empty Config."""
    env = os.environ if environ is None else environ
    found = find_config(path, env, cwd, search)
    config = read(found) if found is not None else Config()
    return config.select(alias or env.get(ALIAS_ENV) or None)


def read(path: Path) -> Config:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read config file {path}: {reason or e}") from e
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    """A file's text -> Config; every mistake is a ConfigError naming PATH:LINE and the key."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the 3.10 backport
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        at = re.search(r"\(at line (\d+), column (\d+)\)", message)
        where = f"{path}:{at.group(1)}:{at.group(2)}" if at else str(path)
        reason = re.sub(r" \(at .*?\)", "", message)
        raise ConfigError(f"{where}: not valid TOML: {reason}") from None
    return _Checker(text, path).config(data)


class _Checker:
    """Checks a parsed file against the keys, with the lines to name in errors."""

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.base = path.parent
        self.lines = key_lines(text)

    def fail(self, dotted: tuple[str, ...], why: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.line(dotted)}: {'.'.join(dotted)}: {why}")

    def line(self, dotted: tuple[str, ...]) -> int:
        for end in range(len(dotted), 0, -1):  # an inline table's key: the line of the table
            if dotted[:end] in self.lines:
                return self.lines[dotted[:end]]
        return 1

    def config(self, data: dict[str, Any]) -> Config:
        sections: dict[str, dict[str, Entry]] = {s: {} for s in SECTIONS}
        aliases: dict[str, dict[str, Entry]] = {}
        tables = {"aliases", *TABLE_KEYS}
        top = {k: v for k, v in data.items() if k not in tables}
        sections[""] = self.table((), top, GLOBAL_KEYS, extra=tables)
        for name, keys in TABLE_KEYS.items():
            if name in data:
                sections[name] = self.table((name,), self.a_table((name,), data[name]), keys)
        for name, body in self.a_table(("aliases",), data.get("aliases", {})).items():
            if not re.fullmatch(ALIAS_NAME, name):
                raise self.fail(("aliases", name), "an alias name is letters, digits, '_', '.' and '-'")
            aliases[name] = self.table(("aliases", name), self.a_table(("aliases", name), body), GLOBAL_KEYS)
        lines = {name: self.line(("aliases", name)) for name in aliases}
        return Config(self.path, sections, aliases, lines)

    def a_table(self, dotted: tuple[str, ...], value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(dotted, f"expected a table, got {_shown(value)}")
        return value

    def table(self, dotted: tuple[str, ...], body: dict[str, Any], keys: tuple[Key, ...],
              extra: Collection[str] = ()) -> dict[str, Entry]:
        known = {k.name: k for k in keys}
        checked = {}
        for name, value in body.items():
            key = known.get(name)
            if key is None:
                raise self.fail((*dotted, name), f"unknown key{_suggestion(name, [*known, *extra])}")
            checked[name] = Entry(self.value(key, value, (*dotted, name)), self.line((*dotted, name)))
        return checked

    def value(self, key: Key, value: Any, dotted: tuple[str, ...]) -> Any:
        try:
            converted = _convert(key, value, self.base)
            if key.check is not None:
                key.check(converted)
            return converted
        except (TypeError, ValueError, UsageError) as e:  # UsageError: parse_servers, parse_duration
            raise self.fail(dotted, str(e)) from None


def _convert(key: Key, value: Any, base: Path) -> Any:
    """A TOML value -> what click takes for the key's parameter; TypeError/ValueError when it is wrong."""
    kind = key.kind
    wrong = TypeError(f"expected {kind.value}, got {_shown(value)}")
    if kind in (Kind.SERVERS, Kind.NAMES, Kind.PATHS) and isinstance(value, str):
        value = [value] if kind is Kind.PATHS else [p for p in value.split(",")]
    if kind in (Kind.SERVERS, Kind.NAMES, Kind.PATHS):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong
        if kind is Kind.SERVERS:
            parse_servers(value)  # a bad spec: its own message
        return [str(base / v) for v in value] if kind is Kind.PATHS else ",".join(v.strip() for v in value)
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind in (Kind.STR, Kind.PATH):
        if not isinstance(value, str):
            raise wrong
        if key.choices and value not in key.choices:
            raise ValueError(f"expected one of {', '.join(key.choices)}, got {_shown(value)}")
        return str(base / value) if kind is Kind.PATH else value
    return _convert_number(key, value, wrong)


def _convert_number(key: Key, value: Any, wrong: TypeError) -> Any:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key.kind is Kind.DURATION:
        if not (is_number or isinstance(value, str)):
            raise wrong
        parse_duration(str(value))
        return str(value)
    if key.kind is Kind.PREFETCH:
        if value == "auto":
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise wrong
        return str(value)
    if not is_number or (key.kind is Kind.INT and not isinstance(value, int)):
        raise wrong
    if key.minimum is not None and value < key.minimum:
        raise ValueError(f"expected {key.kind.value} >= {key.minimum:g}, got {value}")
    if key.maximum is not None and value > key.maximum:
        raise ValueError(f"expected {key.kind.value} <= {key.maximum:g}, got {value}")
    return value


def _shown(value: Any) -> str:
    import json

    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "a table"}
    text = json.dumps(value, default=str)
    return f"{kinds.get(type(value), type(value).__name__)} {text if len(text) < 40 else text[:37] + '...'}"


def _suggestion(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name.replace("-", "_"), known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known here: {', '.join(sorted(known))})"


# -- the line of each key, for errors (tomllib keeps no positions) -------------------
# Patterns, not compiled regexes: re compiles (and caches) them when a file is read.
_HEADER = r"\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$"
_ASSIGN = r"""((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
_PART = r"""[A-Za-z0-9_-]+|"([^"]*)"|'([^']*)'"""


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(0)
                 for m in re.finditer(_PART, text))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The first line of each table header and key, by dotted path: ("worker",
    "concurrency") -> 7. Lines inside multi-line strings are skipped."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_string = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        quotes = line.count('"""') + line.count("'''")
        if in_string:
            in_string = quotes % 2 == 0
            continue
        if header := re.match(_HEADER, line):
            table = _dotted(header.group(1))
            lines.setdefault(table, number)
        elif assign := re.match(_ASSIGN, line):
            lines.setdefault(table + _dotted(assign.group(1)), number)
        in_string = quotes % 2 == 1
    return lines
