"""config.py without servers or subprocesses: where the file is found, what it may
hold and the errors that name file, line and key, aliases, and the precedence
flag > env > alias > file > default as click applies it to the real commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from gearctl import config
from gearctl.cli import command_name, load_commands
from gearctl.cli.app import app, command_defaults, expand_alias_word
from gearctl.config import Config, ConfigError, Source, alias_names, find_config, key_lines, parse, search_path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gearctl.toml"


def write(tmp_path: Path, text: str, name: str = "gearctl.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.read(path)
    return str(caught.value)


# -- where the file is read from -------------------------------------------------------

def test_the_search_path_is_cwd_then_xdg_then_etc(tmp_path: Path) -> None:
    assert search_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, tmp_path) == [
        tmp_path / "gearctl.toml", Path("/x/gearctl/config.toml"), Path("/etc/gearctl/config.toml")]
    assert search_path({"HOME": "/h"}, tmp_path)[1] == Path("/h/.config/gearctl/config.toml")


def test_the_first_file_found_is_read_and_a_named_one_beats_them(tmp_path: Path) -> None:
    cwd_file, user_file, system_file = (tmp_path / n for n in ("cwd.toml", "user.toml", "system.toml"))
    search = [cwd_file, user_file, system_file]
    assert find_config(None, {}, tmp_path, search) is None
    system_file.write_text("")
    assert find_config(None, {}, tmp_path, search) == system_file
    user_file.write_text("")
    assert find_config(None, {}, tmp_path, search) == user_file
    cwd_file.write_text("")
    assert find_config(None, {}, tmp_path, search) == cwd_file
    named = write(tmp_path, "", "named.toml")
    assert find_config(None, {"GEARCTL_CONFIG": str(named)}, tmp_path, search) == named
    assert find_config(str(system_file), {"GEARCTL_CONFIG": str(named)}, tmp_path, search) == system_file


def test_a_named_file_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*missing\.toml: no such file"):
        find_config(str(tmp_path / "missing.toml"), {}, tmp_path, [])
    with pytest.raises(ConfigError, match="is a directory"):
        find_config(str(tmp_path), {}, tmp_path, [])
    assert find_config("/dev/null", {}, tmp_path, []) == Path("/dev/null")  # no settings at all


def test_no_file_is_an_empty_config(tmp_path: Path) -> None:
    loaded = config.load(environ={}, cwd=tmp_path, search=[tmp_path / "none.toml"])
    assert loaded.path is None and loaded.aliases == {}
    assert loaded.defaults_for("status", {"servers", "timeout"}, {}) == {}


# -- what it holds ----------------------------------------------------------------------

def test_the_example_config_is_valid_and_read_as_documented() -> None:
    loaded = config.read(EXAMPLE)
    assert loaded.get("servers") == "127.0.0.1:4730"
    assert loaded.get("plugin_dirs") == [str(EXAMPLE.parent / "notifications")]  # relative to the file
    assert loaded.get("concurrency", "worker") == 4
    assert loaded.get("retry_on", "worker") == "exception,timeout"
    assert loaded.get("timeout", "client") == "30s"
    assert alias_names(loaded) == ["prod", "staging"]
    prod = loaded.select("prod")
    assert prod.get("servers") == "gear1.example.com:4730,gear2.example.com:4730"
    assert prod.get("tls_key") == "/etc/gearctl/client.key"
    assert prod.get("connect_timeout") == 5  # not in the alias: the file's


def test_values_are_converted_for_click(tmp_path: Path) -> None:
    loaded = parse('servers = "a:1, b"\ntimeout = 90\ntls_ca = "ca.pem"\n'
                   '[worker]\nprefetch = 16\nfunctions = ["f", "g"]\nmax_memory = 256\n', tmp_path / "g.toml")
    assert loaded.get("servers") == "a:1,b"
    assert loaded.get("timeout") == "90"
    assert loaded.get("tls_ca") == str(tmp_path / "ca.pem")
    assert loaded.get("prefetch", "worker") == "16"
    assert loaded.get("functions", "worker") == "f,g"
    assert loaded.get("max_memory", "worker") == 256


def test_malformed_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'servers = "a"\n\n[worker]\nconcurrency = = 4\n')
    assert message.startswith(f"{tmp_path / 'gearctl.toml'}:4:")
    assert "not valid TOML" in message


@pytest.mark.parametrize(("text", "line", "key", "why"), [
    ('servers = "a"\nconect_timeout = 3\n', 2, "conect_timeout", "did you mean 'connect_timeout'?"),
    ('[worker]\nconcurrency = 2\nconcurency = 4\n', 3, "worker.concurency", "did you mean 'concurrency'?"),
    ('[wroker]\nconcurrency = 2\n', 1, "wroker", "did you mean 'worker'?"),
    ('[aliases.prod]\nservers = "a"\n\n[aliases.prod.worker]\nretries = 1\n', 4, "aliases.prod.worker",
     "unknown key"),
    ('[worker]\n\nconcurrency = "four"\n', 3, "worker.concurrency", 'expected an integer, got a string "four"'),
    ('[worker]\nconcurrency = 0\n', 2, "worker.concurrency", "expected an integer >= 1, got 0"),
    ('[worker]\nmetrics_port = 70000\n', 2, "worker.metrics_port", "expected an integer <= 65535, got 70000"),
    ('[worker]\nretry_on = ["exception", "crash"]\n', 2, "worker.retry_on",
     "'crash' is not one of exception, fail, timeout"),
    ('[worker]\ndead_letter_suffix = ""\n', 2, "worker.dead_letter_suffix", "must be a non-empty string"),
    ('[worker]\nfunctions = "mail:4,resize:x"\n', 2, "worker.functions", "'resize:x': processes must be a whole"),
    ('tls = "yes"\n', 1, "tls", "expected true or false"),
    ('servers = 4730\n', 1, "servers", "expected a server list"),
    ('servers = ["h:99999"]\n', 1, "servers", "port 99999 is out of range"),
    ('log_format = "xml"\n', 1, "log_format", "expected one of text, json"),
    ('[client]\ntimeout = "soon"\n', 2, "client.timeout", "cannot read duration"),
    ('worker = 3\n', 1, "worker", "expected a table"),
    ('aliases = { prod = { servers = 1 } }\n', 1, "aliases.prod.servers", "expected a server list"),
    ('[aliases."no way"]\nservers = "a"\n', 1, "aliases.no way", "an alias name is"),
])
def test_unknown_keys_and_wrong_types_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                             why: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'gearctl.toml'}:{line}: {key}: "), message
    assert why in message


def test_key_lines_follow_tables_dotted_keys_and_skip_multiline_strings() -> None:
    text = ('a = 1\n[worker]\nb = """\nc = 2\n"""\n"d" = 3\n[aliases . "p"]\nx.y = 4\n')
    lines = key_lines(text)
    assert lines[("a",)] == 1 and lines[("worker", "b")] == 3 and lines[("worker", "d")] == 6
    assert ("worker", "c") not in lines
    assert lines[("aliases", "p")] == 7 and lines[("aliases", "p", "x", "y")] == 8


# -- aliases ----------------------------------------------------------------------------

def test_an_unknown_alias_lists_the_known_ones(tmp_path: Path) -> None:
    loaded = parse('[aliases.prod]\nservers = "a"\n[aliases.stage]\nservers = "b"\n', tmp_path / "g.toml")
    with pytest.raises(ConfigError, match=r"unknown alias '@prode' \(known: @prod, @stage\)"):
        loaded.select("prode")
    assert loaded.select("@stage").alias == "stage"
    with pytest.raises(ConfigError, match=r"g\.toml defines none"):
        parse("", tmp_path / "g.toml").select("prod")
    with pytest.raises(ConfigError, match=r"no config file found; looked for .*gearctl\.toml"):
        Config().select("prod")


def test_alias_words_become_the_alias_flag() -> None:
    assert expand_alias_word(["@prod", "status"]) == (["--alias", "prod", "status"], False)
    assert expand_alias_word(["--debug", "--config", "@x", "@prod", "ping"]) == (
        ["--debug", "--config", "@x", "--alias", "prod", "ping"], False)
    assert expand_alias_word(["client", "f", "--data", "@prod"]) == (["client", "f", "--data", "@prod"], False)
    # bash splits words at '@' (COMP_WORDBREAKS): while completing, "@" "prod" is one alias
    assert expand_alias_word(["@", "prod", "ping"], completing=True) == (["--alias", "prod", "ping"], False)
    assert expand_alias_word(["@"], completing=True) == ([], True)


@pytest.mark.parametrize(("argv", "name"), [
    (["@prod", "status"], "status"),
    (["--config", "x.toml", "client", "f"], "client"),
    (["--config=x.toml", "--alias", "prod", "worker"], "worker"),
    (["aliases"], "aliases"),
])
def test_the_command_name_is_found_past_config_and_alias(argv: list[str], name: str) -> None:
    assert command_name(argv) == name


# -- precedence, as click applies the file to the real commands -------------------------

FILE = 'servers = "file:1"\n[worker]\nconcurrency = 3\n[aliases.prod]\nservers = "alias:1"\n'


def worker_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
                  alias: str | None = None, text: str = FILE) -> tuple[dict[str, Any], Any]:
    """The worker command's parameters for `args`, with the file and `env`, as the root callback sets them up."""
    for key in [*config.GLOBAL_KEYS, *config.TABLE_KEYS["worker"]]:
        if key.env:
            monkeypatch.delenv(key.env, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_commands()
    group = typer.main.get_command(app)
    root = group.make_context("gearctl", ["worker"], resilient_parsing=True)
    root.default_map = command_defaults(group, parse(text, tmp_path / "g.toml").select(alias))
    command = group.get_command(root, "worker")  # type: ignore[attr-defined]
    ctx = command.make_context("worker", args, parent=root)
    return ctx.params, ctx


def test_servers_flag_beats_env_beats_alias_beats_file_beats_default(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def servers(args: list[str], env: dict[str, str], alias: str | None = None, text: str = FILE) -> str:
        return str(worker_params(tmp_path, monkeypatch, args, env, alias, text)[0]["servers"])

    assert servers(["-s", "flag:1"], {"GEARCTL_SERVERS": "env:1"}, "prod") == "flag:1"
    assert servers([], {"GEARCTL_SERVERS": "env:1"}, "prod") == "env:1"
    assert servers([], {}, "prod") == "alias:1"
    assert servers([], {}) == "file:1"
    assert servers([], {}, text="") == "127.0.0.1:4730"


def test_a_worker_setting_flag_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_params(tmp_path, monkeypatch, ["-c", "5"], {})[0]["concurrency"] == 5
    assert worker_params(tmp_path, monkeypatch, [], {})[0]["concurrency"] == 3
    assert worker_params(tmp_path, monkeypatch, [], {}, text="")[0]["concurrency"] == 1
    suffix = '[worker]\ndead_letter_suffix = ".file"\n'  # a worker setting with an environment variable
    env = {"GEARCTL_DEAD_LETTER_SUFFIX": ".env"}
    assert worker_params(tmp_path, monkeypatch, ["--dead-letter-suffix", ".flag"], env, text=suffix)[0][
        "dead_letter_suffix"] == ".flag"
    assert worker_params(tmp_path, monkeypatch, [], env, text=suffix)[0]["dead_letter_suffix"] == ".env"
    assert worker_params(tmp_path, monkeypatch, [], {}, text=suffix)[0]["dead_letter_suffix"] == ".file"


def test_plugin_path_in_the_environment_beats_the_files_plugin_dirs(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'plugin_dirs = ["from_file"]\n'
    params, ctx = worker_params(tmp_path, monkeypatch, [], {}, text=text)
    assert list(params["plugin_dir"]) == [str(tmp_path / "from_file")]
    params, ctx = worker_params(tmp_path, monkeypatch, [], {"GEARCTL_PLUGIN_PATH": "/a:/b"}, text=text)
    assert not params["plugin_dir"]  # left to plugins.plugin_dirs(), which reads the variable
    key = next(k for k in config.GLOBAL_KEYS if k.name == "plugin_dirs")
    shown = Config().setting("", key, params["plugin_dir"], ctx.get_parameter_source("plugin_dir").name,
                             "--plugin-dir", {"GEARCTL_PLUGIN_PATH": "/a:/b"})
    assert (shown.source, shown.origin, shown.value) == (Source.ENV, "GEARCTL_PLUGIN_PATH", ["/a", "/b"])


def test_the_global_timeout_is_not_the_clients_job_timeout(tmp_path: Path) -> None:
    loaded = parse('timeout = "5s"\n[client]\npriority = "high"\n', tmp_path / "g.toml")
    assert loaded.defaults_for("client", {"timeout", "priority"}, {}) == {"priority": "high"}
    assert loaded.defaults_for("dead list", {"timeout", "priority"}, {}) == {"timeout": "5s"}


def test_settings_say_where_they_came_from(tmp_path: Path) -> None:
    loaded = parse('servers = "f:1"\n\n[aliases.prod]\nservers = "a:1"\ntls = true\n', tmp_path / "g.toml")
    key = config.GLOBAL_KEYS[0]
    assert loaded.setting("", key, "x", "COMMANDLINE", "--servers", {}).describe() == "flag --servers"
    assert loaded.setting("", key, "x", "ENVIRONMENT", "--servers", {}).describe() == "env GEARCTL_SERVERS"
    assert loaded.setting("", key, "f:1", "DEFAULT_MAP", "--servers", {}).describe() == f"file {tmp_path}/g.toml:1"
    aliased = loaded.select("prod").setting("", key, "a:1", "DEFAULT_MAP", "--servers", {})
    assert aliased.as_json() == {"value": "a:1", "source": "alias", "origin": f"@prod {tmp_path}/g.toml:4"}
    assert loaded.setting("", key, "d", "DEFAULT", "--servers", {}).as_json() == {
        "value": "d", "source": "default", "origin": None}


def test_every_key_sets_a_parameter_of_its_commands_with_the_same_variable() -> None:
    """The keys are data: a flag renamed (or its variable) without its key fails here."""
    load_commands()
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    for section, keys in [("", config.GLOBAL_KEYS), *config.TABLE_KEYS.items()]:
        for key in keys:
            owners = [commands[section]] if section else [c for c in commands.values() if hasattr(c, "params")]
            params = [p for c in owners for p in c.params if p.name == key.target]
            assert params, f"{section}.{key.name}: no parameter {key.target}"
            for param in params:
                if param.envvar or key.kind is not config.Kind.PATHS:
                    assert param.envvar == key.env, f"{section}.{key.name}: {param.envvar} != {key.env}"
                bounds = (getattr(param.type, "min", None), getattr(param.type, "max", None))
                if bounds != (None, None):  # the file is checked against the flag's own range
                    assert bounds == (key.minimum, key.maximum), f"{section}.{key.name}: {bounds}"
