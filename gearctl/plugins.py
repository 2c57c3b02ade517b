"""Plugin directories: finding job functions, the @job decorator, the hook contract.

A plugin is any `*.py` file in a plugin directory. It offers job functions in
either of two forms (both may appear in one file):

1. The hook, the Python form of Drupal's hook_gearman_drush_function():

       def gearman_functions():
           return [{"function_name": "notifications_send_users",
                    "function": send_users, "context": {"batch": 100}, "timeout": 30}]

   Keys: function_name (required), function or command (exactly one),
   context, timeout (seconds; 0 or None: no limit), encoding, and the retry
   options (retry.OPTION_KEYS: retries, retry_backoff, retry_backoff_max,
   retry_on, dead_letter, dead_letter_suffix; those not given take the
   worker's defaults).

2. The decorator: `@job`, `@job("name")`, `@job(timeout=30, encoding="php", retries=3)`.

Loading is local in its failures: a file that does not import, or whose hook
is malformed, is recorded in `Registry.errors` with its path and the others
still load. Two files that define one function name are a conflict naming both.
Loading returns a fresh Registry every time, so a reload is a second call.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import os
import stat
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from . import retry
from .codecs import DECODINGS
from .errors import UsageError
from .retry import RetryPolicy

DEFAULT_PLUGIN_DIR = "gearctl_plugins"  # relative to the current directory
PLUGIN_PATH_ENV = "GEARCTL_PLUGIN_PATH"
HOOK = "gearman_functions"
HOOK_KEYS = frozenset({"function_name", "function", "command", "context", "timeout", "encoding", "processes",
                       *retry.OPTION_KEYS})
_MARK = "__gearctl_job__"

F = TypeVar("F", bound=Callable[..., Any])


class PluginError(UsageError):
    """A plugin file or entry that cannot be used; names the file."""


@dataclass
class JobFunction:
    """One job function, from a hook entry or a decorator."""

    name: str
    function: Callable[..., Any] | None = None
    command: list[str] | None = None
    context: Any = None
    timeout: float | None = None
    encoding: str = "auto"
    source: str = ""  # file the function was declared in
    line: int = 0
    retry: Mapping[str, Any] = field(default_factory=dict)  # the retry options it declares (retry.check_options)
    processes: int | None = None  # worker processes of its own (supervision.slot_plan); None: the shared pool

    def policy(self, defaults: RetryPolicy) -> RetryPolicy:
        """Its retry policy: the worker's defaults, with what it declares on top."""
        return defaults.merged(self.retry)

    @functools.cached_property
    def is_async(self) -> bool:
        return self.function is not None and inspect.iscoroutinefunction(self.function)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source

    @property
    def kind(self) -> str:
        if self.command is not None:
            return "command"
        return "async" if self.is_async else "function"


@dataclass(frozen=True)
class _JobSpec:
    name: str | None
    timeout: float | None
    encoding: str
    context: Any
    retry: Mapping[str, Any]
    processes: int | None = None


def _check_processes(processes: Any, where: str) -> int | None:
    if processes is None:
        return None
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise PluginError(f"{where}: processes must be a whole number of at least 1, got {processes!r}")
    return processes


def _check_retry(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The retry options given (None: not given), checked; PluginError naming where and the key."""
    try:
        return retry.check_options({k: v for k, v in options.items() if v is not None})
    except ValueError as e:
        raise PluginError(f"{where}: {e}") from None


def _check_options(name: str | None, timeout: Any, encoding: Any, where: str) -> float | None:
    if name is not None and (not isinstance(name, str) or not name or "\0" in name):
        raise PluginError(f"{where}: function name must be a non-empty string without NUL bytes, got {name!r}")
    if encoding not in DECODINGS:
        raise PluginError(f"{where}: encoding must be one of {', '.join(DECODINGS)}, got {encoding!r}")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise PluginError(f"{where}: timeout must be a number of seconds >= 0, got {timeout!r}")
    return float(timeout) or None  # 0 means no limit, as in the Drupal hook


@overload
def job(fn: F, /) -> F: ...


@overload
def job(name: str | None = None, /, *, timeout: float | None = None, encoding: str = "auto",
        context: Any = None, retries: int | None = None, retry_backoff: float | str | None = None,
        retry_backoff_max: float | str | None = None, retry_on: Iterable[str] | str | None = None,
        dead_letter: bool | None = None, dead_letter_suffix: str | None = None,
        processes: int | None = None) -> Callable[[F], F]: ...


def job(fn: Any = None, /, *, timeout: float | None = None, encoding: str = "auto",
        context: Any = None, retries: int | None = None, retry_backoff: float | str | None = None,
        retry_backoff_max: float | str | None = None, retry_on: Iterable[str] | str | None = None,
        dead_letter: bool | None = None, dead_letter_suffix: str | None = None, processes: int | None = None) -> Any:
    """Mark a function as a Gearman job function.

        @job
        def resize(job): ...

        @job("notifications_send_users", timeout=30, encoding="php", retries=3, retry_backoff="30s")
        async def send(job): ...

    The name defaults to the function's own name. Options are checked at once;
    retry options left out take the worker's defaults (retry.RetryPolicy).
    `processes=N` gives the function N worker processes of its own, apart from
    the shared pool (`worker --functions NAME:N` says the same and wins).
    """
    name = fn if isinstance(fn, str) or fn is None else None
    timeout_s = _check_options(name, timeout, encoding, "@job")
    declared = _check_retry({"retries": retries, "retry_backoff": retry_backoff,
                             "retry_backoff_max": retry_backoff_max, "retry_on": retry_on,
                             "dead_letter": dead_letter, "dead_letter_suffix": dead_letter_suffix}, "@job")
    own = _check_processes(processes, "@job")

    def mark(function: F) -> F:
        if not callable(function):
            raise PluginError(f"@job decorates functions, not {type(function).__name__}")
        setattr(function, _MARK, _JobSpec(name, timeout_s, encoding, context, declared, own))
        return function

    if callable(fn) and not isinstance(fn, str):
        return mark(fn)
    return mark


@dataclass
class Registry:
    """What a plugin load found: functions by name, and every problem by file."""

    functions: dict[str, JobFunction] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # "path: what went wrong"
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # name -> the files defining it
    files: list[str] = field(default_factory=list)

    def add(self, fn: JobFunction) -> None:
        if fn.name in self.conflicts:
            self.conflicts[fn.name].append(fn.where)
            return
        existing = self.functions.get(fn.name)
        if existing is None:
            self.functions[fn.name] = fn
            return
        if existing.function is not None and existing.function is fn.function and (
                existing.timeout, existing.encoding, existing.context, existing.retry) == (
                fn.timeout, fn.encoding, fn.context, fn.retry):
            return  # the same function object seen twice (imported into a second plugin)
        del self.functions[fn.name]
        self.conflicts[fn.name] = [existing.where, fn.where]

    def select(self, names: Sequence[str] | None) -> list[JobFunction]:
        """The functions to serve: `names`, or all. Raises PluginError for a name
        that is missing or defined twice, saying where to look."""
        wanted = list(names) if names else sorted(set(self.functions) | set(self.conflicts))
        chosen, problems = [], []
        for name in wanted:
            if name in self.conflicts:
                problems.append(f"{name!r} is defined more than once: {' and '.join(self.conflicts[name])}")
            elif name in self.functions:
                chosen.append(self.functions[name])
            else:
                problems.append(f"no plugin defines {name!r}")
        if problems:
            hint = f" (plugin files read: {len(self.files)}; errors: {len(self.errors)})"
            raise PluginError("; ".join(problems) + hint)
        if not chosen:
            raise PluginError("no job functions found; add a plugin file or use --plugin-dir")
        return chosen


def plugin_dirs(cli_dirs: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """--plugin-dir values; else GEARCTL_PLUGIN_PATH entries; else ./gearctl_plugins."""
    if cli_dirs:
        return [Path(d) for d in cli_dirs]
    environ: Mapping[str, str] = os.environ if env is None else env
    dirs = [Path(p) for p in environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    return dirs or [Path(DEFAULT_PLUGIN_DIR)]


def load_plugins(dirs: Iterable[Path], *, allow_insecure: bool = False) -> Registry:
    """Every plugin file of `dirs`. A directory or file that others could
    write to is refused (an error naming it), unless `allow_insecure`."""
    registry = Registry()
    for directory in dirs:
        if not directory.is_dir():
            registry.errors.append(f"{directory}: not a directory" if directory.exists()
                                   else f"{directory}: no such plugin directory")
            continue
        if not allow_insecure and (refusal := insecure(directory)):
            registry.errors.append(refusal)
            continue
        for path in sorted(directory.glob("*.py")):
            registry.files.append(str(path))
            if not allow_insecure and (refusal := insecure(path)):
                registry.errors.append(refusal)
                continue
            _load_file(path, registry)
    return registry


def _load_file(path: Path, registry: Registry) -> None:
    try:
        module = _import(path)
    except BaseException as e:  # a plugin may raise anything, SystemExit included
        if isinstance(e, KeyboardInterrupt):
            raise
        registry.errors.append(f"{path}: cannot import: {_describe(e)}")
        return
    seen: set[int] = set()
    for value in list(vars(module).values()):
        if _decorated(value) and id(value) not in seen:
            seen.add(id(value))
            registry.add(_from_decorated(value, path))
    hook = getattr(module, HOOK, None)
    if hook is None:
        return
    try:
        with contextlib.redirect_stdout(sys.stderr):  # as at import: stdout is not the plugin's
            entries = hook()
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, (list, tuple)):
            raise PluginError(f"{HOOK}() must return a list of dicts, got {type(entries).__name__}")
        for index, entry in enumerate(entries):
            registry.add(_from_hook(entry, path, index))
    except PluginError as e:
        registry.errors.append(str(e))
    except Exception as e:
        registry.errors.append(f"{path}: {HOOK}() failed: {_describe(e)}")


def _decorated(value: Any) -> bool:
    return isinstance(getattr(value, _MARK, None), _JobSpec) and callable(value)


def _from_decorated(value: Any, path: Path) -> JobFunction:
    spec: _JobSpec = getattr(value, _MARK)
    return JobFunction(name=spec.name or value.__name__, function=value, context=spec.context, timeout=spec.timeout,
                       encoding=spec.encoding, source=_source_file(value, path), line=_source_line(value),
                       retry=spec.retry, processes=spec.processes)


def as_job_function(item: Any, index: int = 0) -> JobFunction:
    """What a Python caller hands `Worker` as a JobFunction: a JobFunction as it
    is, an @job function, a hook entry (a dict with function_name, function or
    command, context, timeout, encoding: checked as the hook's are), or a plain
    callable, named by its __name__. Raises PluginError for anything else."""
    if isinstance(item, JobFunction):
        return item
    if isinstance(item, dict):
        return _from_hook(item, Path("<python>"), index, label="job function")
    if not callable(item):
        raise PluginError(f"job function {index}: expected a function, a @job function, a hook entry (dict) "
                          f"or a JobFunction, got {type(item).__name__}")
    path = Path(_source_file(item, Path("<python>")))
    if _decorated(item):
        return _from_decorated(item, path)
    name = getattr(item, "__name__", None)
    _check_options(name, None, "auto", f"job function {index}")
    if name is None:
        raise PluginError(f"job function {index}: {item!r} has no __name__; decorate it with @job('name')")
    return JobFunction(name=name, function=item, source=str(path), line=_source_line(item))


def _from_hook(entry: Any, path: Path, index: int, label: str | None = None) -> JobFunction:
    label = label or f"{path}: {HOOK}() entry"  # how messages name the entry
    where = f"{label} {index}"
    if not isinstance(entry, dict):
        raise PluginError(f"{where}: expected a dict, got {type(entry).__name__}")
    unknown = set(entry) - HOOK_KEYS
    if unknown:
        raise PluginError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"allowed: {', '.join(sorted(HOOK_KEYS))}")
    name = entry.get("function_name")
    if name is None:
        raise PluginError(f"{where}: function_name is missing")
    where = f"{label} {name!r}"
    encoding = entry.get("encoding", "auto")
    timeout = _check_options(name, entry.get("timeout"), encoding, where)
    declared = _check_retry({key: entry[key] for key in retry.OPTION_KEYS if key in entry}, where)
    own = _check_processes(entry.get("processes"), where)
    function, command = entry.get("function"), entry.get("command")
    if (function is None) == (command is None):
        raise PluginError(f"{where}: give exactly one of 'function' (a callable) or 'command' (an argv list)")
    if function is not None and not callable(function):
        raise PluginError(f"{where}: 'function' is not callable: {function!r}")
    if command is not None and (isinstance(command, str) or not isinstance(command, (list, tuple)) or not command
                                or not all(isinstance(a, str) for a in command)):
        raise PluginError(f"{where}: 'command' must be a non-empty list of strings (argv, no shell)")
    return JobFunction(name=name, function=function, command=list(command) if command else None,
                       context=entry.get("context"), timeout=timeout, encoding=encoding,
                       source=_source_file(function, path) if function else str(path),
                       line=_source_line(function) if function else 0, retry=declared, processes=own)


def _import(path: Path) -> Any:
    """Import one plugin file under a private module name (a reload imports it anew)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"gearctl_plugin_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.parent.resolve())
    added = directory not in sys.path
    if added:  # so a plugin can import helper modules that sit beside it
        sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        # A plugin's print() at import goes to stderr: stdout may be carrying
        # `gearctl functions --json` or a job's result.
        with contextlib.redirect_stdout(sys.stderr):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if added:
            sys.path.remove(directory)
    return module


def _describe(error: BaseException) -> str:
    """'ModuleNotFoundError: No module named x (line 3)': the error and where in the plugin."""
    text = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    plugin_frames = [f for f in frames if "gearctl" not in Path(f.filename).parts[-2:-1]]
    if isinstance(error, SyntaxError) and error.lineno:
        return f"{text}"
    if plugin_frames:
        return f"{text} (line {plugin_frames[-1].lineno})"
    return text


def _source_file(fn: Any, default: Path) -> str:
    """Where `fn` was written: the plugin path as given when it is that file."""
    try:
        found = inspect.getsourcefile(fn)
    except TypeError:
        found = None
    if not found or Path(found).resolve() == default.resolve():
        return str(default)
    return found


def _source_line(fn: Any) -> int:
    try:
        return inspect.getsourcelines(fn)[1]
    except Exception:  # no source (OSError, TypeError), or source that is not Python (a tokenize error)
        return 0


INSECURE_FLAG = "--allow-insecure-plugins"


def private_group(uid: int, gid: int) -> bool:
    """Is `gid` the private group of user `uid` (named as the user, no other
    member, no other user's primary group), as Debian and Ubuntu give every user,
    with umask 002? Then group write is the owner's alone, and a checkout made
    under that umask is fine."""
    import grp
    import pwd

    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except (KeyError, OverflowError):
        return False
    if group.gr_name != user.pw_name or user.pw_gid != gid or not set(group.gr_mem) <= {user.pw_name}:
        return False
    return not any(other.pw_gid == gid and other.pw_uid != uid for other in pwd.getpwall())


def insecure(path: Path) -> str | None:
    """Why a plugin file or directory must not be loaded, or None. Whoever may
    write to it may run code as the worker: refuse one that group or others may
    write to (a directory's sticky bit does not help: they could add a file)."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return f"{path}: cannot check its permissions: {e.strerror or e}"
    st = path.stat()
    writable = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit
                and not (who == "group" and private_group(st.st_uid, st.st_gid))]
    if not writable:
        return None
    kind = "directory" if stat.S_ISDIR(mode) else "file"
    return (f"{path}: refusing a plugin {kind} writable by {' and '.join(writable)} "
            f"(mode {stat.S_IMODE(mode):04o}); chmod go-w it, or pass {INSECURE_FLAG}")
