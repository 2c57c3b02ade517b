"""No escape sequence off a terminal, and no colour with NO_COLOR on one (README,
"Scripts and cron"): every command that prints, against the embedded server and a
gearctl worker serving tests/plugins."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Embedded, Procs, Terminal, clean_env, free_port, gearctl, wait_until

PLUGINS = Path(__file__).resolve().parent / "plugins"
# SGR parameters that set a colour: 30-39 and 40-49 (38/48 with their 5;N or 2;R;G;B
# arguments), 90-97 and 100-107. Bold (1), dim (2), italic (3) and reset (0) are not colour.
COLOUR = re.compile(r"^(3[0-9]|4[0-9]|9[0-7]|10[0-7])$")


def colour_codes(seen: bytes) -> set[str]:
    """The colour-setting SGR sequences in `seen`."""
    found = set()
    for params in re.findall(rb"\x1b\[([0-9;]*)m", seen):
        if any(COLOUR.match(p) for p in params.decode().split(";")):
            found.add(params.decode())
    return found


def test_colour_codes_tell_colour_from_bold() -> None:
    assert colour_codes(b"\x1b[1m\x1b[0m\x1b[2;3mx\x1b[m") == set()
    assert colour_codes(b"\x1b[1;31mred\x1b[0m \x1b[38;5;2mx") == {"1;31", "38;5;2"}


# Many short command lines, run as forks of one process that imported gearctl and
# every command module first: each is then a few milliseconds instead of an
# interpreter start (~0.2 s), and 30 of them stay cheap on a loaded 2-core machine.
# The command line itself runs as in `gearctl`: cli.main(argv), its exit code, its
# own stdin (/dev/null), stdout and stderr (files, not a terminal).
FORKED = """
import json, os, sys
from gearctl.cli import load_commands, main
load_commands()
cases, where = json.loads(sys.argv[1]), sys.argv[2]
children = {}
for i, argv in enumerate(cases):
    pid = os.fork()
    if pid == 0:
        for fd, name in ((0, os.devnull), (1, f"{where}/{i}.out"), (2, f"{where}/{i}.err")):
            os.dup2(os.open(name, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        code = 70
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    children[pid] = i
codes = {}
while children:
    pid, status = os.wait()
    codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps([codes[i] for i in range(len(cases))]))
"""


def run_forked(commands: list[list[str]], where: Path, env: dict[str, str] | None = None,
               ) -> list[tuple[int, bytes, bytes]]:
    """Run gearctl command lines side by side (see FORKED): exit code, stdout, stderr each."""
    import json

    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", FORKED, json.dumps(commands), str(where)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or plain_env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:  # the forks too: they are in the session (and process group) it leads
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, err
    codes = json.loads(out)
    return [(code, (where / f"{i}.out").read_bytes(), (where / f"{i}.err").read_bytes())
            for i, code in enumerate(codes)]


def plain_env(**extra: str) -> dict[str, str]:
    """clean_env without the variables that force colour (FORCE_COLOR, and the CI ones typer reads)."""
    forcing = ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "NO_COLOR", "TTY_COMPATIBLE")
    return {**{k: v for k, v in clean_env().items() if k not in forcing}, **extra}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Embedded, str]]:
    """The embedded server with a worker for tests/plugins, a job no worker takes
    (a stuck function: red on a terminal) and a dead job; and that job's handle.
    One for the module: its tests only read the queues."""
    server, worker = Embedded(tmp_path_factory.mktemp("served")), Procs()
    try:
        worker.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-s", server.address],
                     env=plain_env())
        wait_until(lambda: server.status().get("reverse", (0, 0, 0))[2] >= 1, 30, what="the worker")
        handle = gearctl("client", "stuck", "--data", "x", "-s", server.address).stdout.decode().strip()
        gearctl("client", "stuck.dead", "--data", "not an envelope", "-s", server.address)
        yield server, handle
    finally:
        worker.stop_all()
        server.stop()


def printing_commands(s: str, handle: str) -> list[list[str]]:
    down = f"127.0.0.1:{free_port()}"
    return [
        [], ["--help"], ["--version"], ["status", "--help"], ["dead", "--help"], ["client"],
        ["status", "-s", s], ["status", "-s", f"{s},{down}"], ["status", "--json", "-s", s],
        ["workers", "-s", s], ["jobs", "-s", s], ["jobs", "--unique", "-s", s], ["job", handle, "-s", s],
        ["version", "-s", s], ["ping", "-s", f"{s},{down}"], ["check", "-s", s], ["check", "--max-queued", "stuck=0",
                                                                                    "-s", s],
        ["getpid", "-s", s], ["maxqueue", "stuck", "5", "-s", s], ["maxqueue", "nothing", "5", "-s", s],
        ["cancel", "H:nowhere:1", "-s", s], ["drop", "nothing", "-s", s], ["shutdown", "-s", s],
        ["functions", "-p", str(PLUGINS)], ["run", "-p", str(PLUGINS), "progress", "--data", "[1]"],
        ["client", "stuck", "--data", "x", "-s", s],
        ["client", "reverse", "--wait", "-t", "30", "--data", "hello", "-s", s],
        ["client", "progress", "--wait", "-t", "30", "-e", "json", "--data", "[1, 2]", "-s", s],
        ["client", "boom", "--wait", "-t", "30", "--data", "x", "-s", s],
        ["client", "boom", "-n", "--wait", "-t", "30", "--summary", "--data", "a\nb", "-s", s],
        ["client", "reverse", "--bogus"], ["status", "-s", down],
        ["dead", "list", "-s", s],
    ]


def test_nothing_off_a_terminal_holds_an_escape_sequence(served: tuple[Embedded, str], tmp_path: Path) -> None:
    server, handle = served
    commands = printing_commands(server.address, handle)
    dead = commands.pop()  # `dead list` holds the dead jobs: not beside `status` and `check`
    results = run_forked(commands, tmp_path / "side-by-side") + run_forked([dead], tmp_path / "dead")
    printed = [(argv, out, err) for argv, (_, out, err) in zip([*commands, dead], results, strict=True)
               if out or err]
    assert len(printed) == len(commands) + 1  # every one of them printed something
    escaped = [(argv, out[:200], err[:200]) for argv, out, err in printed if b"\x1b" in out or b"\x1b" in err]
    assert escaped == []


def test_the_worker_logs_no_escape_sequence_off_a_terminal(tmp_path: Path) -> None:
    server = Embedded(tmp_path)  # a server of its own: no other worker takes the job
    try:
        log = tmp_path / "worker.log"
        assert gearctl("client", "boom", "--data", "x", "-s", server.address).returncode == 0  # a failure to log
        with log.open("wb") as f:
            result = subprocess.run([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "--burst",
                                     "-s", server.address], stdout=f, stderr=subprocess.STDOUT, env=plain_env(),
                                    timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0
    text = log.read_bytes()
    assert b"boom" in text and b"\x1b" not in text


ON_A_TERMINAL = [
    ["status"],  # a stuck function: a red row
    ["client", "boom", "-n", "--wait", "--data", "a\nb"],  # the live table's failed count: red
    ["client", "progress", "--wait", "-e", "json", "--data", "[1, 2]"],  # a progress bar
    ["status", "--help"],
]


def _on_a_terminal(argv: list[str], **env: str) -> bytes:
    with Terminal(argv, stdout_too=True, env=env) as term:
        term.proc.stdin.close()  # type: ignore[union-attr]
        term.proc.wait(60)
    return term.seen


def test_no_colour_with_no_color_on_a_terminal(served: tuple[Embedded, str]) -> None:
    server, _ = served
    s = ["-s", server.address]
    coloured = _on_a_terminal(["status", *s])
    assert colour_codes(coloured), "the stuck function's row is red without NO_COLOR"
    for argv in ON_A_TERMINAL:
        seen = _on_a_terminal([*argv, *s] if argv[-1] != "--help" else argv, NO_COLOR="1")
        assert seen.strip(), argv
        assert colour_codes(seen) == set(), argv
