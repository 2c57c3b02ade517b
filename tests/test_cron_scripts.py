"""At home in scripts (README, "Scripts and cron"): every command's --help ends
with examples, `gearctl --version`, `gearctl` alone, and a foreground result that
ends its line on a terminal while piped output stays byte-exact."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Embedded, Procs, clean_env, gearctl, on_a_terminal, wait_until

from gearctl import __version__
from gearctl.cli.helptext import HEADING, examples

PLUGINS = Path(__file__).resolve().parent / "plugins"


def every_command() -> dict[str, Any]:
    """Every command by its path (`status`, `dead list`), groups included: its click command."""
    import typer.main

    from gearctl.cli import app, load_commands

    load_commands()
    found: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        if path:
            found[path] = command
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def example_lines(help_text: str) -> list[str]:
    """The command lines under the last "Examples:" heading, which must end the help."""
    lines = [line.strip() for line in help_text.splitlines()]
    assert HEADING in lines, "no Examples block"
    after = [line for line in lines[len(lines) - lines[::-1].index(HEADING):] if line]
    return after


def test_examples_are_the_heading_then_one_line_each() -> None:
    text = examples("gearctl a", "gearctl b --c")
    assert example_lines("Usage: x\n\n" + text + "\n") == ["gearctl a", "gearctl b --c"]


def test_every_command_has_two_or_three_examples_of_itself() -> None:
    commands = every_command()
    assert {"status", "getpid", "maxqueue", "shutdown", "dead", "dead list", "client", "worker"} <= set(commands)
    for path, command in commands.items():
        shown = example_lines(command.epilog or "")
        assert 2 <= len(shown) <= 3, (path, shown)
        # gearctl, maybe an @alias or a root option with its value, then the command itself
        itself = re.compile(rf"gearctl(?: @\S+| --(?:config|alias) \S+)* {re.escape(path)}\b")
        assert all(itself.search(line) for line in shown), (path, shown)


@pytest.mark.parametrize("command", [["status"], ["dead", "purge"]])
def test_the_examples_end_the_help(command: list[str]) -> None:
    result = gearctl(*command, "--help")
    assert result.returncode == 0
    shown = example_lines(result.stdout.decode())
    assert shown == example_lines(every_command()[" ".join(command)].epilog)


def test_version_and_no_arguments() -> None:
    version = gearctl("--version")
    assert (version.returncode, version.stdout) == (0, f"gearctl {__version__}\n".encode())
    bare = gearctl()
    assert bare.returncode == 2  # README: kept on purpose, an empty command line is not a success
    assert b"Usage: gearctl [OPTIONS] COMMAND" in bare.stdout and b"client" in bare.stdout
    assert bare.stdout.count(b"Usage:") == 1  # it was printed twice
    for command in ("client", "run", "dead"):  # commands with a required argument, given none
        shown = gearctl(command)
        assert shown.returncode == 2 and shown.stdout.count(b"Usage:") == 1, shown


@pytest.fixture
def worker_server(tmp_path: Path, procs: Procs) -> Iterator[Embedded]:
    server = Embedded(tmp_path)
    try:
        procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", server.address],
                    env=clean_env())
        wait_until(lambda: server.status().get("reverse", (0, 0, 0))[2] >= 1, 30, what="the worker")
        yield server
    finally:
        procs.stop_all()
        server.stop()


def test_a_foreground_result_ends_its_line_on_a_terminal_only(worker_server: Embedded) -> None:
    s = worker_server.address
    piped = gearctl("client", "reverse", "--wait", "--data", "hello", "-s", s)
    assert (piped.returncode, piped.stdout) == (0, b"olleh")
    ended = gearctl("client", "reverse", "--wait", "--data", "\nhello", "-s", s)
    assert ended.stdout == b"olleh\n"  # already ends its line: nothing added, on a terminal neither
    code, shown = on_a_terminal(["client", "reverse", "--wait", "--data", "hello", "-s", s])
    assert (code, shown) == (0, "olleh\n")
    code, shown = on_a_terminal(["client", "reverse", "--wait", "--data", "\nhello", "-s", s])
    assert (code, shown) == (0, "olleh\n")
    code, shown = on_a_terminal(["client", "progress", "--wait", "-e", "json", "--data", "[1]", "-s", s])
    assert code == 0 and shown.endswith('{"total":1}\n')  # WORK_DATA then the result, then the newline


def test_job_watch_off_a_terminal_prints_lines_not_bars(tmp_path: Path) -> None:
    server = Embedded(tmp_path)
    try:
        handle = gearctl("client", "nobody_serves", "--data", "x", "-s", server.address).stdout.decode().strip()
        watch = subprocess.Popen([sys.executable, "-m", "gearctl", "job", handle, "--watch", "-i", "0.05",
                                  "-s", server.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=clean_env())
        try:
            assert watch.stdout is not None
            first = watch.stdout.readline()  # it is watching: now the job may end
            assert gearctl("cancel", handle, "-s", server.address).returncode == 0
            rest, err = watch.communicate(timeout=60)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
    finally:
        server.stop()
    assert watch.returncode == 0, err
    assert first + rest == f"{handle}\tqueued\t-\n{handle}\tdone\t-\n".encode()


def test_run_ends_its_result_line_on_a_terminal_only() -> None:
    piped = gearctl("run", "-p", str(PLUGINS), "reverse", "--data", "hello")
    assert (piped.returncode, piped.stdout) == (0, b"olleh")
    code, shown = on_a_terminal(["run", "-p", str(PLUGINS), "reverse", "--data", "hello"])
    assert (code, shown) == (0, "olleh\n")
