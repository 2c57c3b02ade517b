"""Shell completion: the scripts in completions/ and function-name completion."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Embedded, Gearmand, clean_env, free_port, gearctl

ROOT = Path(__file__).parent.parent
PLUGINS = Path(__file__).parent / "plugins"


@pytest.mark.parametrize(("shell", "name"), [("bash", "gearctl.bash"), ("zsh", "_gearctl"), ("fish", "gearctl.fish")])
def test_shipped_scripts_match_what_gearctl_generates(shell: str, name: str) -> None:
    generated = gearctl(env={"_GEARCTL_COMPLETE": f"source_{shell}"})
    assert generated.returncode == 0
    assert generated.stdout.decode() == (ROOT / "completions" / name).read_text()


def _bash(words: str, **env: str) -> list[str]:
    result = gearctl(env={"COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1),
                          "_GEARCTL_COMPLETE": "complete_bash", **env})
    return result.stdout.decode().split()


def test_commands_and_options_complete() -> None:
    assert "client" in _bash("gearctl cl")
    assert "--priority" in _bash("gearctl client --pri")


def test_function_names_complete_from_plugins_and_servers(gearmand: Gearmand) -> None:
    assert gearctl("client", "only_on_the_server", "-s", gearmand.address).returncode == 0
    env = {"GEARCTL_PLUGIN_PATH": str(PLUGINS), "GEARCTL_SERVERS": gearmand.address}
    assert _bash("gearctl run re", **env) == ["reverse"]
    names = _bash("gearctl client ", **env)
    assert "notifications_send_users" in names and "only_on_the_server" in names


# -- in a real bash, through the shipped completion function ------------------------
EXAMPLE = ROOT / "examples" / "notifications"


def in_bash(tmp_path: Path, line: str, **env: str) -> list[str]:
    """What bash's completion of `line` (the last word being completed; a line
    ending in a space completes a new, empty word) offers: completions/gearctl.bash
    sourced in a real bash, its function called as bash calls it on <Tab>, with a
    `gearctl` on PATH that runs this checkout."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "gearctl").write_text(f'#!/bin/sh\nexec {sys.executable} -m gearctl "$@"\n')
        (bin_dir / "gearctl").chmod(0o755)
    words = line.split(" ")
    script = (f"source {ROOT / 'completions' / 'gearctl.bash'}\n"
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_gearctl_completion gearctl\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    run_env = clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(ROOT), **env)
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, env=run_env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [w for w in result.stdout.decode().split("\n") if w]


def test_worker_functions_complete_from_the_plugin_dir_on_the_line(tmp_path: Path) -> None:
    # GEARCTL_PLUGIN_PATH names another directory: the line's -p wins
    offered = in_bash(tmp_path, f"gearctl worker -p {EXAMPLE} --functions no", GEARCTL_PLUGIN_PATH=str(PLUGINS))
    assert offered == ["notifications_send_users"]


def test_worker_functions_complete_the_name_after_the_last_comma(tmp_path: Path) -> None:
    offered = in_bash(tmp_path, f"gearctl worker -p {PLUGINS} -f reverse,")
    assert offered and all(word.startswith("reverse,") for word in offered)
    assert "reverse,reverse" not in offered  # a name already listed is not offered again
    assert set(in_bash(tmp_path, f"gearctl worker -p {PLUGINS} -f boom,rev")) == {"boom,reverse"}


def test_run_completes_the_line_plugin_dirs_functions_not_the_servers(tmp_path: Path, embedded: Embedded) -> None:
    assert gearctl("client", "only_on_the_server", "-s", embedded.address).returncode == 0
    offered = in_bash(tmp_path, f"gearctl run -p {EXAMPLE} ", GEARCTL_SERVERS=embedded.address)
    assert offered == ["notifications_send_users"]


def test_client_and_drop_complete_the_functions_of_the_servers_on_the_line(tmp_path: Path, embedded: Embedded) -> None:
    assert gearctl("client", "only_on_the_server", "-s", embedded.address).returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    for command in ("client", "drop"):
        assert in_bash(tmp_path, f"gearctl {command} -s {embedded.address} only", GEARCTL_PLUGIN_PATH=str(empty)) \
            == ["only_on_the_server"]


def test_job_unique_completes_the_servers_unique_keys(tmp_path: Path, embedded: Embedded) -> None:
    assert gearctl("client", "f", "--unique", "report-2026-12", "-s", embedded.address).returncode == 0
    assert in_bash(tmp_path, f"gearctl job -s {embedded.address} --unique rep") == ["report-2026-12"]


def test_a_server_that_is_down_leaves_fewer_names_not_an_error(tmp_path: Path) -> None:
    offered = in_bash(tmp_path, f"gearctl client -s 127.0.0.1:{free_port()} no", GEARCTL_PLUGIN_PATH=str(EXAMPLE))
    assert offered == ["notifications_send_users"]


def test_completion_reads_the_config_and_the_alias_the_line_names(tmp_path: Path, embedded: Embedded) -> None:
    assert gearctl("client", "prod_only", "-s", embedded.address).returncode == 0
    config = tmp_path / "gearctl.toml"
    config.write_text(f'plugin_dirs = ["{EXAMPLE}"]\n\n[aliases.prod]\nservers = ["{embedded.address}"]\n')
    env = {"GEARCTL_CONFIG": str(config)}
    assert in_bash(tmp_path, "gearctl run no", **env) == ["notifications_send_users"]  # the file's plugin_dirs
    assert in_bash(tmp_path, "gearctl @prod drop pro", **env) == ["prod_only"]  # the alias's servers
    assert in_bash(tmp_path, "gearctl drop pro", **env) == []  # no alias: not that server
