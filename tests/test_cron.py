"""examples/cron/crontab: every line parses as a crontab entry, and every entry's
command runs (sh -c, as cron runs it) against the embedded server with the
example plugin directory, and exits as its comment says."""

from __future__ import annotations

import fcntl
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Embedded, clean_env

ROOT = Path(__file__).resolve().parent.parent
CRONTAB = ROOT / "examples" / "cron" / "crontab"
PLUGINS = ROOT / "examples" / "notifications"
FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*$")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_crontab(text: str) -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """The environment lines and the entries (five time fields, the command)."""
    env, entries = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = ASSIGNMENT.match(line)
        if assignment:
            env[assignment.group(1)] = assignment.group(2)
            continue
        fields = line.split(None, 5)
        if len(fields) < 6 or not all(FIELD.match(f) for f in fields[:5]):
            raise ValueError(f"crontab line {number} is neither an assignment nor an entry: {line!r}")
        entries.append((fields[:5], fields[5]))
    return env, entries


def test_parse_crontab() -> None:
    env, entries = parse_crontab("# c\nA=b c\n\n*/5 1,2 * 3-4 * echo  'x y'\n")
    assert env == {"A": "b c"}
    assert entries == [(["*/5", "1,2", "*", "3-4", "*"], "echo  'x y'")]
    with pytest.raises(ValueError, match="line 1"):
        parse_crontab("61x * * * * true")


def test_every_crontab_line_runs_and_exits_as_documented(tmp_path: Path) -> None:
    env, entries = parse_crontab(CRONTAB.read_text())
    assert {"MAILTO", "GEARCTL_SERVERS", "GEARCTL_PLUGIN_PATH"} <= set(env)
    commands = {kind: next(c for _, c in entries if marker(c)) for kind, marker in (
        ("submit", lambda c: c.startswith("gearctl client")),
        ("drain", lambda c: c.startswith("gearctl worker --burst")),
        ("alert", lambda c: "gearctl check" in c and "mail" in c),
        ("guard", lambda c: c.startswith("flock -n") and "--burst" in c))}
    assert len(entries) == len(commands)

    bin_dir = tmp_path / "bin"  # `gearctl` is this checkout's; `mail` keeps what it was given
    bin_dir.mkdir()
    _script(bin_dir / "gearctl", f'cd "{ROOT}" && exec "{sys.executable}" -m gearctl "$@"')
    _script(bin_dir / "mail", f'echo "$@" > "{tmp_path}/mail.args"; cat > "{tmp_path}/mail.body"')
    server = Embedded(tmp_path)
    try:
        run_env = clean_env(**{**env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GEARCTL_SERVERS": server.address,
                               "GEARCTL_PLUGIN_PATH": str(PLUGINS)})

        def run(kind: str) -> subprocess.CompletedProcess:
            command = commands[kind].replace("/tmp/gearctl-", f"{tmp_path}/gearctl-")
            return subprocess.run(["sh", "-c", command], env=run_env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=120)

        submitted = run("submit")
        assert (submitted.returncode, submitted.stdout, submitted.stderr) == (0, b"", b"")  # cron mails nothing
        assert server.queued("notifications_send_users") == 1
        drained = run("drain")
        assert (drained.returncode, drained.stdout, drained.stderr) == (0, b"", b"")
        assert server.queued("notifications_send_users") == 0
        log = tmp_path / "gearctl-drain.log"
        assert b"notifications_send_users" in log.read_bytes()

        alerted = run("alert")  # no worker is registered now: CRITICAL, mailed
        assert alerted.returncode == 0, alerted.stderr
        assert (tmp_path / "mail.body").read_text().startswith("GEARMAN CRITICAL - ")
        assert (tmp_path / "mail.args").read_text() == "-s gearman check failed ops@example.com\n"

        logged = log.stat().st_size
        guarded = run("guard")
        assert guarded.returncode == 0, guarded.stderr
        assert log.stat().st_size > logged
        logged = log.stat().st_size
        with (tmp_path / "gearctl-drain.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the previous run still holds it
            held = run("guard")
        assert held.returncode == 1
        assert log.stat().st_size == logged  # no worker ran
    finally:
        server.stop()


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
