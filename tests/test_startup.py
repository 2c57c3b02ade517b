"""What a command imports. A one-shot `gearctl client` from cron or a shell loop
pays for every module it loads, so a command loads only what it uses: rich only
to draw on a terminal, prometheus-client only in `exporter`, plugins only in
`worker`/`run`/`functions` (README, Architecture). Each test runs the real
command line, off a terminal, against a real gearmand, and lists the modules the
process had imported when it exited."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, c_worker, clean_env, gearctl, stderr_on_a_terminal

# Runs gearctl as `python -m gearctl` does, and writes sys.modules to the file
# named by its first argument when the process exits (after main()'s sys.exit).
PROBE = textwrap.dedent("""
    import atexit, runpy, sys

    listing = sys.argv.pop(1)

    def dump():
        with open(listing, "w") as f:
            f.write("\\n".join(sorted(sys.modules)))

    atexit.register(dump)
    runpy.run_module("gearctl", run_name="__main__", alter_sys=True)
""")

# Never on a command line that draws nothing, serves no metrics and loads no plugins.
NEVER = {"rich", "prometheus_client", "gearctl.plugins", "gearctl.worker", "gearctl.supervisor",
         "gearctl.cli.worker", "gearctl.cli.plugins"}
# Nor, for a plain submit, the admin side, the payload codecs or the other commands.
NOT_FOR_A_SUBMIT = NEVER | {"gearctl.monitor", "gearctl.admin", "gearctl.codecs", "gearctl.php",
                            "gearctl.cli.status", "gearctl.cli.admin", "gearctl.cli.dead", "gearctl.cli.each_line",
                            "gearctl.sessions"}  # the worker's sans-IO state: the client needs replies.py


def imported(tmp_path: Path, *argv: str, input: bytes | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `gearctl ARGV` (stdout and stderr piped): the result and the modules it imported."""
    listing = tmp_path / "modules.txt"
    result = subprocess.run([sys.executable, "-c", PROBE, str(listing), *argv], input=input,
                            capture_output=True, env=clean_env(), timeout=60)
    return result, set(listing.read_text().split())


def among(modules: set[str], names: set[str]) -> list[str]:
    """The modules of `names` (packages with their submodules) that were imported."""
    return sorted(m for m in modules if m in names or any(m.startswith(n + ".") for n in names))


def test_a_background_submit_imports_only_what_it_uses(gearmand: Gearmand, tmp_path: Path) -> None:
    result, modules = imported(tmp_path, "client", "oneshot", "--data", "x", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"H:")
    assert gearmand.queued("oneshot") == 1
    assert among(modules, NOT_FOR_A_SUBMIT) == []
    assert "gearctl.cli.client" in modules  # the probe saw the command run


def test_a_foreground_submit_imports_only_what_it_uses(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    c_worker(procs, gearmand, "echoed", "cat")  # the C worker answers with the workload
    result, modules = imported(tmp_path, "client", "echoed", "--wait", "--data", "hello", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello"
    assert among(modules, NOT_FOR_A_SUBMIT) == []


def test_status_json_draws_nothing_and_loads_no_plugins(gearmand: Gearmand, tmp_path: Path) -> None:
    gearctl("client", "counted", "--data", "x", "-s", gearmand.address)
    result, modules = imported(tmp_path, "status", "--json", "-s", gearmand.address)
    assert result.returncode == 0, result.stderr
    assert b'"counted"' in result.stdout
    assert among(modules, NEVER | {"gearctl.cli.client", "gearctl.cli.dead"}) == []


def test_the_probe_sees_rich_and_plugins_where_they_are_used(tmp_path: Path) -> None:
    # typer draws --help with rich; `functions` loads the plugin directories.
    result, modules = imported(tmp_path, "client", "--help")
    assert result.returncode == 0, result.stderr
    assert among(modules, {"rich"}) != []
    (tmp_path / "plugins").mkdir(mode=0o755)
    result, modules = imported(tmp_path, "functions", "-p", str(tmp_path / "plugins"))
    assert result.returncode == 0, result.stderr
    assert among(modules, {"gearctl.plugins"}) == ["gearctl.plugins"]


def test_on_a_terminal_the_live_table_is_drawn_in_colour(gearmand: Gearmand) -> None:
    code, _, seen = stderr_on_a_terminal(["client", "coloured", "-n", "-q", "-s", gearmand.address],
                                         input=b"".join(b"%d\n" % i for i in range(50)))
    assert code == 0
    assert b"submitted" in seen and b"\x1b[" in seen  # rich's table, with its styles
    assert b"50 submitted, 50 queued" in seen


# -- which command modules a command line loads (gearctl.cli.load_commands) -------------

def test_every_command_is_found_in_the_module_that_defines_it() -> None:
    from gearctl.cli import COMMAND_MODULES, MODULE_OF, app, load_commands

    load_commands()
    defined = {(info.name or info.callback.__name__).replace("_", "-"): info.callback.__module__  # type: ignore[union-attr]
               for info in app.registered_commands}
    for group in app.registered_groups:
        callbacks = [c.callback for c in group.typer_instance.registered_commands]  # type: ignore[union-attr]
        defined[group.name] = callbacks[0].__module__  # type: ignore[union-attr,index]
    assert {name: f"gearctl.cli.{module}" for name, module in MODULE_OF.items()} == defined
    assert set(COMMAND_MODULES) == set(MODULE_OF.values())


@pytest.mark.parametrize(("argv", "name"), [
    ([], None),
    (["--help"], None),
    (["-h"], None),
    (["--version"], None),
    (["--bogus", "client"], None),
    (["client", "F", "--data", "x"], "client"),
    (["--debug", "client", "--help"], "client"),
    (["dead", "list"], "dead"),
    (["clinet"], "clinet"),
])
def test_the_command_a_command_line_names(argv: list[str], name: str | None) -> None:
    from gearctl.cli import command_name

    assert command_name(argv) == name


def test_the_root_help_still_lists_every_command() -> None:
    result = gearctl("--help")
    assert result.returncode == 0
    for name in ("client", "worker", "functions", "run", "status", "exporter", "dead"):
        assert f" {name} ".encode() in result.stdout


def test_a_mistyped_command_still_gets_a_suggestion() -> None:
    result = gearctl("stauts")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "gearctl: No such command 'stauts'. Did you mean 'status'? (see gearctl --help)")
