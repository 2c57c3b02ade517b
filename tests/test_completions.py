"""Shell completion: the scripts in completions/ and function-name completion."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Gearmand, gearctl

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
