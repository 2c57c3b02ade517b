"""The config file and aliases from the command line: `gearctl config` and its
sources, the errors (exit 2, file and line), `@alias`/`--alias` choosing the
servers a command talks to, `gearctl aliases`, and `@<Tab>` in a real bash.

Every gearctl here runs in a directory of its own with HOME and XDG_CONFIG_HOME
pointing into it, so no user's or developer's config reaches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Embedded, clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent


class Home:
    """A working directory, HOME and XDG_CONFIG_HOME of their own, and gearctl run in them."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path / "work"
        self.xdg = tmp_path / "xdg"
        self.cwd.mkdir()
        (tmp_path / "home").mkdir()
        # GEARCTL_CONFIG empty is as unset: the file is searched for, whatever clean_env sets
        self.env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(self.xdg), "GEARCTL_CONFIG": "",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def write(self, text: str, name: str = "gearctl.toml") -> Path:
        path = self.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gearctl", *args], cwd=self.cwd, capture_output=True,
                              env=clean_env(**{**self.env, **env}), timeout=60)

    def settings(self, *args: str, root: tuple[str, ...] = (), **env: str) -> dict:
        result = self.run(*root, "config", "--json", *args, **env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path)


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Embedded, Embedded]]:
    first, second = Embedded(tmp_path), Embedded(tmp_path)
    yield first, second
    first.stop()
    second.stop()


FILE = """\
servers = "127.0.0.1:4001"

[worker]
concurrency = 3

[aliases.prod]
servers = ["127.0.0.1:4002"]
tls_key = "secret.key"
"""


def test_config_shows_each_setting_and_where_it_came_from(home: Home) -> None:
    path = home.write(FILE)
    result = home.run("config", "--connect-timeout", "2", GEARCTL_IO_TIMEOUT="7")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.decode().splitlines()[1:]}
    assert result.stdout.decode().splitlines()[0] == f"# config file: {path}"
    assert lines["servers"] == ["servers", "127.0.0.1:4001", "file", f"{path}:1"]
    assert lines["worker.concurrency"] == ["worker.concurrency", "3", "file", f"{path}:4"]
    assert lines["connect_timeout"] == ["connect_timeout", "2.0", "flag", "--connect-timeout"]
    assert lines["io_timeout"] == ["io_timeout", "7.0", "env", "GEARCTL_IO_TIMEOUT"]
    assert lines["worker.retries"] == ["worker.retries", "0", "default"]
    assert lines["client.priority"] == ["client.priority", "normal", "default"]


def test_servers_flag_over_env_over_alias_over_file_over_default(home: Home) -> None:
    def servers(*args: str, root: tuple[str, ...] = (), **env: str) -> tuple[str, str, str | None]:
        entry = home.settings(*args, root=root, **env)["settings"]["servers"]
        return entry["value"], entry["source"], entry["origin"]

    assert servers() == ("127.0.0.1:4730", "default", None)
    path = home.write(FILE)
    assert servers() == ("127.0.0.1:4001", "file", f"{path}:1")
    assert servers(root=("--alias", "prod")) == ("127.0.0.1:4002", "alias", f"@prod {path}:7")
    assert servers(root=("@prod",), GEARCTL_SERVERS="env:1") == ("env:1", "env", "GEARCTL_SERVERS")
    assert servers("-s", "flag:1", GEARCTL_SERVERS="env:1") == ("flag:1", "flag", "--servers")


def test_config_json_shape_and_a_tls_keys_path_but_never_its_contents(home: Home) -> None:
    home.write(FILE)
    (home.cwd / "secret.key").write_text("-----BEGIN PRIVATE KEY----- TOPSECRET")
    document = home.settings(root=("--alias", "prod"))
    assert set(document) == {"file", "alias", "settings", "client", "worker"}
    assert document["alias"] == "prod" and document["file"] == str(home.cwd / "gearctl.toml")
    assert document["settings"]["tls_key"]["value"] == str(home.cwd / "secret.key")
    assert document["worker"]["concurrency"] == {"value": 3, "source": "file",
                                                 "origin": f"{home.cwd / 'gearctl.toml'}:4"}
    for section in ("settings", "client", "worker"):
        for entry in document[section].values():
            assert set(entry) == {"value", "source", "origin"}
    text = home.run("--alias", "prod", "config")
    assert b"secret.key" in text.stdout
    assert b"TOPSECRET" not in text.stdout + text.stderr


def test_the_user_file_is_read_when_the_directory_has_none_and_the_directory_file_wins(home: Home) -> None:
    user_file = home.xdg / "gearctl" / "config.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text('servers = "user:1"\n')
    assert home.settings()["file"] == str(user_file)
    assert home.settings()["settings"]["servers"]["value"] == "user:1"
    home.write('servers = "here:1"\n')
    assert home.settings()["settings"]["servers"]["value"] == "here:1"
    named = home.write('servers = "named:1"\n', "other/named.toml")
    assert home.settings(root=("--config", str(named)))["settings"]["servers"]["value"] == "named:1"  # a root flag
    assert home.settings(GEARCTL_CONFIG=str(named))["settings"]["servers"]["value"] == "named:1"


@pytest.mark.parametrize(("text", "argv", "where", "what"), [
    ('servers = "a"\n[worker\nconcurrency = 2\n', ["status"], ":2:", "not valid TOML"),
    ('servers = "a"\n\n[worker]\nconcurency = 2\n', ["client", "f", "--data", "x"],
     ":4: worker.concurency: unknown key", "did you mean 'concurrency'"),
    ('[worker]\nconcurrency = "two"\n', ["config"], ":2: worker.concurrency: expected an integer",
     'got a string "two"'),
])
def test_a_bad_file_exits_2_naming_file_line_and_key(home: Home, text: str, argv: list[str], where: str,
                                                     what: str) -> None:
    path = home.write(text)
    result = home.run(*argv)
    assert result.returncode == 2
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.startswith(f"gearctl: {path}{where}"), message
    assert what in message and message.count("\n") == 1


def test_check_says_unknown_for_a_bad_file_as_for_a_bad_flag(home: Home) -> None:
    path = home.write("[worker]\nconcurrency = 0\n")
    result = home.run("check")
    assert result.returncode == 3  # a Nagios plugin's UNKNOWN, not CRITICAL (2)
    assert result.stdout.decode() == (f"GEARMAN UNKNOWN - {path}:2: worker.concurrency: "
                                      "expected an integer >= 1, got 0\n")


def test_a_named_file_that_is_missing_exits_2(home: Home) -> None:
    result = home.run("--config", "nowhere.toml", "status")
    assert result.returncode == 2
    assert result.stderr.decode() == "gearctl: config file nowhere.toml: no such file\n"


def test_an_alias_chooses_the_servers_a_command_talks_to(home: Home, two_servers: tuple[Embedded, Embedded]) -> None:
    default, aliased = two_servers
    home.write(f'servers = "{default.address}"\n\n[aliases.other]\nservers = ["{aliased.address}"]\n')
    assert home.run("client", "plain", "--data", "x").returncode == 0
    assert home.run("@other", "client", "by_word", "--data", "x").returncode == 0
    assert home.run("--alias", "other", "client", "by_flag", "--data", "x").returncode == 0
    assert home.run("client", "by_env", "--data", "x", GEARCTL_ALIAS="other").returncode == 0
    assert set(default.status()) == {"plain"}
    assert set(aliased.status()) == {"by_word", "by_flag", "by_env"}
    result = home.run("@other", "ping")
    assert result.returncode == 0
    assert result.stdout.decode().split("\t")[:2] == [aliased.address, "ok"]
    # an explicit flag still wins over the alias
    assert home.run("@other", "client", "by_flag_over_alias", "-s", default.address, "--data", "x").returncode == 0
    assert "by_flag_over_alias" in default.status()


def test_an_unknown_alias_exits_2_listing_the_known_ones(home: Home) -> None:
    home.write('[aliases.prod]\nservers = "a"\n\n[aliases.stage]\nservers = "b"\n')
    for argv in (["@prdo", "status"], ["--alias", "prdo", "status"]):
        result = home.run(*argv)
        assert result.returncode == 2
        assert result.stderr.decode() == "gearctl: unknown alias '@prdo' (known: @prod, @stage)\n"
    home.write("")
    result = home.run("@prod", "status")
    assert result.returncode == 2
    assert "gearctl.toml defines none" in result.stderr.decode()


def test_an_alias_after_the_command_is_said_to_go_before_it(home: Home) -> None:
    home.write('[aliases.prod]\nservers = "127.0.0.1:1"\n')
    for argv in (["status", "@prod"], ["client", "@prod", "payload.json"]):
        result = home.run(*argv)
        assert (result.returncode, result.stderr.decode()) == (
            2, f"gearctl: @prod is an alias; put it before the command: gearctl @prod {argv[0]} ...\n")
    assert home.run("status", "@prod", "--help").returncode == 0  # help is help
    check = home.run("check", "@prod")
    assert check.returncode == 3 and check.stdout.startswith(b"GEARMAN UNKNOWN - @prod is an alias")
    other = home.run("client", "f", "--data", "@prod", "-s", f"127.0.0.1:{free_port()}")  # a payload is no alias
    assert other.returncode == 3 and b"alias" not in other.stderr


def test_aliases_lists_them(home: Home) -> None:
    assert home.run("aliases").stdout == b""
    assert json.loads(home.run("aliases", "--json").stdout) == {"file": None, "aliases": []}
    path = home.write('[aliases.prod]\nservers = "a:1,b:2"\ntls = true\n\n[aliases.dev]\nplugin_dirs = ["p"]\n')
    result = home.run("aliases")
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == [f"@dev\t-\t{path}:5", f"@prod\ta:1,b:2\t{path}:1"]
    assert json.loads(home.run("aliases", "--json").stdout) == {"file": str(path), "aliases": [
        {"name": "dev", "origin": f"{path}:5", "settings": {"plugin_dirs": [str(home.cwd / "p")]}},
        {"name": "prod", "origin": f"{path}:1", "settings": {"servers": "a:1,b:2", "tls": True}}]}


def test_a_worker_takes_its_settings_from_the_file(home: Home, two_servers: tuple[Embedded, Embedded]) -> None:
    server, _ = two_servers
    plugins = home.cwd / "plugins"
    plugins.mkdir(mode=0o755)
    (plugins / "p.py").write_text("from gearctl import job\n\n@job\ndef configured(job):\n    return b'ok'\n")
    home.write(f'servers = "{server.address}"\nplugin_dirs = ["plugins"]\n\n[worker]\nconcurrency = 2\n')
    result = home.run("worker", "--burst")
    assert result.returncode == 0, result.stderr
    assert f"serving configured on {server.address} with 2 process(es)" in result.stderr.decode()


BASH = """
source {script}
gearctl() {{ {python} -m gearctl "$@"; }}
COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_gearctl_completion gearctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""


def test_at_tab_completes_the_aliases_in_a_real_bash(home: Home) -> None:
    home.write('[aliases.prod]\nservers = "a"\n\n[aliases.preview]\nservers = "b"\n\n[aliases.dev]\nservers = "c"\n')

    def complete(words: str) -> list[str]:
        script = BASH.format(script=ROOT / "completions" / "gearctl.bash", python=sys.executable, words=words)
        result = subprocess.run(["bash", "-c", script], cwd=home.cwd, capture_output=True,
                                env=clean_env(**home.env), timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.decode().split()

    # bash splits "@pr" into "@" and "pr" (COMP_WORDBREAKS has '@'): the reply replaces "pr"
    assert complete("gearctl @ pr") == ["preview", "prod"]
    assert complete("gearctl @") == ["@dev", "@preview", "@prod"]
    assert complete("gearctl --alias d") == ["dev"]
    assert complete("gearctl @ prod pi") == ["ping"]  # past the alias, commands complete as before
