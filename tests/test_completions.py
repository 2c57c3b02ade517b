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
    bin_dir = _gearctl_on_path(tmp_path)
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


def test_dead_show_retry_and_purge_complete_the_dead_jobs(tmp_path: Path, embedded: Embedded) -> None:
    # They offered nothing, and the shells fell back to file names.
    dead_id = "signup-17~dead.1764590460000"
    assert gearctl("client", "mail.dead", "--unique", dead_id, "--data", "{}", "-s", embedded.address).returncode == 0
    assert gearctl("client", "mail", "--unique", "signup-18", "-s", embedded.address).returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert in_bash(tmp_path, f"gearctl dead show -s {embedded.address} sig") == [dead_id]  # IDs only
    for command in ("retry", "purge"):
        offered = in_bash(tmp_path, f"gearctl dead {command} -s {embedded.address} ", GEARCTL_PLUGIN_PATH=str(empty))
        assert dead_id in offered and "mail" in offered and "signup-18" not in offered, offered


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


# -- in a real zsh and a real fish, through the shipped scripts ----------------------
# zsh completes only inside its line editor, so the line is typed into an interactive
# zsh on a pseudo-terminal (zsh's own zpty module): the .zshrc runs compinit, takes
# completions/_gearctl from $fpath as README says (or sources it), and wraps compadd,
# the builtin every completion ends in, to write each candidate to a file as it is
# offered (the way zsh-capture-completion reads them). <Tab> completes; ^X then ends
# the shell, so the driver reads until the shell is gone: no time is waited for.
ZSHRC = r"""
PROMPT='<ready>' RPROMPT=
{setup}
compadd() {{
  local -a hits; builtin compadd -O hits "$@"; print -rn -- "${{(@)^hits/#/<c>}}" >>{out}
  builtin compadd "$@"
}}
finish() {{ print -rn -- '<done>' >>{out}; exit }}
zle -N finish
bindkey '^X' finish
"""
ZSH_DRIVER = r"""
zmodload zsh/zpty || exit 3
zpty shell "ZDOTDIR=$ZDOTDIR_FOR_TEST zsh -i"
zpty -r shell line '*<ready>*'
zpty -n -w shell "$1"$'\t'$'\x18'
while zpty -r shell line; do :; done
"""


def _gearctl_on_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "gearctl").write_text(f'#!/bin/sh\nexec {sys.executable} -m gearctl "$@"\n')
        (bin_dir / "gearctl").chmod(0o755)
    return bin_dir


def in_zsh(tmp_path: Path, line: str, sourced: bool = False, **env: str) -> list[str]:
    """What zsh's completion system offers on <Tab> after `line`."""
    home = tmp_path / "zdot"
    home.mkdir(exist_ok=True)
    out = home / "offered"
    out.write_text("")
    functions = home / "functions"
    functions.mkdir(exist_ok=True)
    (functions / "_gearctl").write_text((ROOT / "completions" / "_gearctl").read_text())
    setup = ("autoload -U compinit && compinit -u -D\nsource " + shlex.quote(str(functions / "_gearctl")) if sourced
             else f"fpath=({shlex.quote(str(functions))} $fpath)\nautoload -U compinit && compinit -u -D")
    (home / ".zshrc").write_text(ZSHRC.format(setup=setup, out=shlex.quote(str(out))))
    run_env = clean_env(PATH=f"{_gearctl_on_path(tmp_path)}:{os.environ['PATH']}", PYTHONPATH=str(ROOT),
                        ZDOTDIR_FOR_TEST=str(home), TERM="dumb", **env)
    result = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "zsh", line], capture_output=True, env=run_env,
                            timeout=60)
    offered = out.read_text()
    assert result.returncode == 0 and offered.endswith("<done>"), (result, offered)
    return sorted({word for word in offered.removesuffix("<done>").split("<c>") if word})


def in_fish(tmp_path: Path, line: str, **env: str) -> list[str]:
    """What fish offers for `line` (`complete -C`: fish's own completion of a
    command line), with completions/gearctl.fish loaded."""
    script = f"source {shlex.quote(str(ROOT / 'completions' / 'gearctl.fish'))}; complete -C {shlex.quote(line)}"
    run_env = clean_env(PATH=f"{_gearctl_on_path(tmp_path)}:{os.environ['PATH']}", PYTHONPATH=str(ROOT),
                        XDG_CONFIG_HOME=str(tmp_path / "fish-config"), **env)
    result = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, env=run_env, timeout=60)
    assert result.returncode == 0, result.stderr
    return [row.split("\t")[0] for row in result.stdout.decode().splitlines() if row]


@pytest.mark.interop  # zsh and fish are peers a Python-only machine lacks
@pytest.mark.parametrize("sourced", [False, True], ids=["from-fpath", "sourced"])
def test_zsh_completes_commands_and_the_plugin_dirs_functions(tmp_path: Path, sourced: bool) -> None:
    # README's zsh install, completions/_gearctl copied into a directory on $fpath: typer's
    # script began with an empty line, so compinit never read its #compdef tag and <Tab>
    # offered nothing.
    assert in_zsh(tmp_path, "gearctl cl", sourced=sourced) == ["client"]
    assert in_zsh(tmp_path, f"gearctl worker -p {EXAMPLE} --functions no", sourced=sourced) \
        == ["notifications_send_users"]


@pytest.mark.interop
def test_fish_completes_commands_options_and_function_names(tmp_path: Path) -> None:
    assert in_fish(tmp_path, "gearctl cl") == ["client"]
    assert in_fish(tmp_path, "gearctl client --pri") == ["--priority"]
    assert in_fish(tmp_path, f"gearctl worker -p {EXAMPLE} --functions no") == ["notifications_send_users"]
    offered = in_fish(tmp_path, f"gearctl worker -p {PLUGINS} -f reverse,")
    assert offered and all(word.startswith("reverse,") for word in offered) and "reverse,reverse" not in offered
