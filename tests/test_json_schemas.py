"""Every command's --json output against the schema README writes for it
("Scripts and cron", "JSON schemas"): the blocks are read from README.md, so a
change of shape fails here until README says it too. The notation is README's;
`conforms` is its checker, tested first on its own."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Embedded, Procs, clean_env, free_port, gearctl, wait_until
from test_no_ansi import run_forked

from gearctl.deadletter import Envelope

README = Path(__file__).resolve().parent.parent / "README.md"
PLUGINS = Path(__file__).resolve().parent / "plugins"
TYPES: dict[str, Any] = {"string": str, "number": (int, float), "boolean": bool, "null": type(None), "integer": int}


class Mismatch(AssertionError):
    pass


def readme_schemas(text: str | None = None) -> dict[str, Any]:
    """README's schema blocks: `<!-- schema: NAME -->` then a ```json block."""
    found = re.findall(r"<!-- schema: (.+?) -->\n```json\n(.*?)\n```", text or README.read_text(), re.S)
    return {name: json.loads(block) for name, block in found}


def _is(value: Any, type_name: str) -> bool:
    if type_name == "any":
        return True
    if type_name not in TYPES:
        raise ValueError(f"no such type in the notation: {type_name!r}")
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, TYPES[type_name])


def conforms(value: Any, shape: Any, schemas: dict[str, Any], where: str = "$") -> None:
    """Raise Mismatch (naming the place) unless `value` has `shape` (README's notation)."""
    if isinstance(shape, str):
        if not any(_is(value, t) for t in shape.split("|")):
            raise Mismatch(f"{where}: {value!r} is not {shape}")
    elif isinstance(shape, list):
        if len(shape) != 1:
            raise ValueError(f"{where}: a list shape holds one item shape")
        if not isinstance(value, list):
            raise Mismatch(f"{where}: {value!r} is not a list")
        for i, item in enumerate(value):
            conforms(item, shape[0], schemas, f"{where}[{i}]")
    elif set(shape) == {"one of"}:
        _one_of(value, shape["one of"], schemas, where)
    elif set(shape) == {"ref"}:
        conforms(value, schemas[shape["ref"]], schemas, where)
    elif not isinstance(value, dict):
        raise Mismatch(f"{where}: {value!r} is not an object")
    elif set(shape) == {"*"}:
        for key, item in value.items():
            conforms(item, shape["*"], schemas, f"{where}.{key}")
    else:
        _object(value, shape, schemas, where)


def _one_of(value: Any, alternatives: list[Any], schemas: dict[str, Any], where: str) -> None:
    misses = []
    for alternative in alternatives:
        try:
            return conforms(value, alternative, schemas, where)
        except Mismatch as e:
            misses.append(str(e))
    raise Mismatch(" and ".join(misses))


def _object(value: dict[str, Any], shape: dict[str, Any], schemas: dict[str, Any], where: str) -> None:
    keys = {k.rstrip("?"): s for k, s in shape.items()}
    required = {k for k in shape if not k.endswith("?")}
    if required - value.keys():
        raise Mismatch(f"{where}: missing {sorted(required - value.keys())}")
    if value.keys() - keys.keys():
        raise Mismatch(f"{where}: keys the schema does not have: {sorted(value.keys() - keys.keys())}")
    for key, item in value.items():
        conforms(item, keys[key], schemas, f"{where}.{key}")


# -- the checker ------------------------------------------------------------------------

SAMPLE = {"a": {"n": "integer", "s?": "string|null", "l": [{"one of": ["null", {"x": "boolean"}]}]},
          "b": {"ref": "a"}, "m": {"*": ["number"]}}


@pytest.mark.parametrize("value", [{"n": 1, "l": []}, {"n": 1, "s": None, "l": [None, {"x": True}]}])
def test_conforming_values_pass(value: Any) -> None:
    conforms(value, SAMPLE["b"], SAMPLE)


@pytest.mark.parametrize("value", [
    {"n": 1},  # a key missing
    {"n": 1, "l": [], "extra": 0},  # a key the schema lacks
    {"n": True, "l": []},  # a bool is not an integer
    {"n": 1.5, "l": []},
    {"n": 1, "s": 3, "l": []},
    {"n": 1, "l": {}},
    {"n": 1, "l": [{"x": 1}]},
    [],
])
def test_values_of_another_shape_fail(value: Any) -> None:
    with pytest.raises(Mismatch):
        conforms(value, SAMPLE["a"], SAMPLE)


def test_any_keys_and_numbers() -> None:
    conforms({"p": [1, 2.5], "q": []}, SAMPLE["m"], SAMPLE)
    with pytest.raises(Mismatch):
        conforms({"p": ["1"]}, SAMPLE["m"], SAMPLE)


def test_readme_blocks_are_read() -> None:
    text = '<!-- schema: x y -->\n```json\n{"a": "string"}\n```\n'
    assert readme_schemas(text) == {"x y": {"a": "string"}}


# -- every command ------------------------------------------------------------------------

def _json_commands() -> set[str]:
    """The commands (`dead list` for a group's) that have a --json flag."""
    import typer.main

    from gearctl.cli import app, load_commands

    load_commands()
    root = typer.main.get_command(app)
    found = set()

    def walk(command: Any, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        if any("--json" in getattr(p, "opts", ()) for p in command.params):
            found.add(path)

    walk(root, "")
    return found


def test_every_json_command_has_a_schema_in_readme() -> None:
    schemas = readme_schemas()
    assert _json_commands() <= set(schemas), sorted(_json_commands() - set(schemas))


def test_every_commands_json_has_its_readme_shape(tmp_path: Path, procs: Procs) -> None:
    schemas = readme_schemas()
    server = Embedded(tmp_path)
    try:
        s = server.address
        both = f"{s},127.0.0.1:{free_port()}"  # one answers, one is down: both shapes of a server's record
        procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", s], env=clean_env())
        wait_until(lambda: server.status().get("reverse", (0, 0, 0))[2] >= 1, 30, what="the worker")
        handle = gearctl("client", "held_fn", "--data", "x", "--unique", "k1", "-s", s).stdout.decode().strip()
        envelope = Envelope("held_fn", "k0", b"x", 3, "RuntimeError: down", "Traceback ...", "web1", 1.0, 2.0,
                            "H:web1:1")
        assert gearctl("client", "held_fn.dead", "-u", "k0~dead.1", "-", "-s", s,
                       input=envelope.encode()).returncode == 0
        assert gearctl("client", "held_fn.dead", "--data", "not an envelope", "-s", s).returncode == 0
        config = tmp_path / "gearctl.toml"
        config.write_text(f'servers = ["{s}"]\n\n[worker]\nconcurrency = 2\n\n[aliases.prod]\nservers = ["{s}"]\n')
        lines = {
            "status": ["status", "--json", "-s", both],
            "workers": ["workers", "--json", "-s", both],
            "jobs": ["jobs", "--json", "-s", both],
            "jobs --unique": ["jobs", "--unique", "--json", "-s", both],
            "job": ["job", handle, "--json", "-s", s],
            "job -u": ["job", "-u", "k1", "--json", "-s", s],
            "version": ["version", "--json", "-s", both],
            "ping": ["ping", "--json", "-s", both],
            "getpid": ["getpid", "--json", "-s", both],
            "client": ["client", "held_fn", "--data", "y", "--json", "-s", s],
            "client --wait": ["client", "progress", "--wait", "--data", "[1, 2]", "-e", "json", "--json",
                              "--decode", "json", "-s", s],
            "client -n": ["client", "reverse", "-n", "--wait", "-e", "json", "--json", "--data", '"ab"\nnot json',
                          "-s", s],
            "run": ["run", "-p", str(PLUGINS), "progress", "--data", "[1]", "--json"],
            "functions": ["functions", "-p", str(PLUGINS), "--json"],
            "config": ["--config", str(config), "config", "--json"],
            "aliases": ["--config", str(config), "aliases", "--json"],
        }
        dead = {"dead list": ["dead", "list", "--json", "-s", s], "dead show": ["dead", "show", "k0~dead.1", "--json",
                                                                                 "-s", s]}
        runs = dict(zip(lines, run_forked(list(lines.values()), tmp_path / "all"), strict=True))
        for name, argv in dead.items():  # one at a time: each holds the dead jobs while it looks
            runs[name] = run_forked([argv], tmp_path / name.replace(" ", "-"))[0]
    finally:
        server.stop()
    checked = set()
    for name, (_, out, err) in runs.items():
        schema = name.split(" -")[0] if name.split(" -")[0] in ("job", "client") else name
        documents = out.decode().splitlines() if schema == "client" else [out.decode()]
        assert documents and documents[0], (name, err)
        for document in documents:
            conforms(json.loads(document), schemas[schema], schemas, name)
        checked.add(schema)
    assert checked == set(schemas)
    assert len(runs["client -n"][1].splitlines()) == 2  # a job's record and an invalid line's


@pytest.mark.parametrize("schema", ["status", "workers", "jobs", "jobs --unique", "dead list", "version", "ping",
                                    "getpid"])
def test_with_every_server_down_json_still_prints_its_document(schema: str) -> None:
    """A script's `| jq` gets a document, every server in it down, and the exit
    code and stderr line say what happened (README: JSON schemas, Exit codes)."""
    gone = f"127.0.0.1:{free_port()}"
    result = gearctl(*schema.split(" ")[:1], *schema.split(" ")[1:], "--json", "-s", gone, "--connect-timeout", "2")
    assert result.returncode == 3, result
    document = json.loads(result.stdout)
    conforms(document, readme_schemas()[schema], readme_schemas(), schema)
    assert [(s["address"], s["up"]) for s in document["servers"]] == [(gone, False)]
    if schema not in ("version", "ping"):  # those two report each server in their document alone
        err = result.stderr.decode()
        assert err.startswith("gearctl: ") and err.endswith(f"{gone}: connection refused\n") and err.count("\n") == 1
