"""Security (issue 11): command functions never go through a shell and never get
the payload in argv; payloads are never unpickled or evaluated; PHP objects are
never instantiated as Python classes; plugin files and directories that group or
others may write to are refused unless --allow-insecure-plugins; a dead-letter
envelope never carries TLS key paths or the environment."""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, clean_env, gearctl, wait_until

from gearctl import codecs, php, plugins
from gearctl.deadletter import Envelope
from gearctl.errors import PayloadError

GEARCTL = [sys.executable, "-m", "gearctl"]
PACKAGE = Path(codecs.__file__).parent
TESTS = Path(__file__).parent


def shell_payload(tmp: Path) -> bytes:
    return f"; rm -rf {tmp}/x $(touch {tmp}/pwned) `touch {tmp}/pwned2` && touch {tmp}/pwned3 | sh".encode()


def no_shell_ran(tmp: Path) -> None:
    assert (tmp / "x").exists(), "rm -rf ran"
    for name in ("pwned", "pwned2", "pwned3"):
        assert not (tmp / name).exists(), f"a shell ran: {name} appeared"


RECORDER = """
import json, sys
record = sys.argv[1]
data = sys.stdin.buffer.read()
open(record + ".argv", "w").write(json.dumps(sys.argv))
open(record + ".stdin", "wb").write(data)
sys.stdout.buffer.write(data)
"""


@pytest.fixture
def command_plugin(tmp_path: Path) -> Path:
    """A plugin dir with `shell_check`, a command function that records its argv and stdin."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir(mode=0o755)
    (plugin_dir / "cmd.py").write_text(
        "import sys\n"
        f"RECORDER = {RECORDER!r}\n"
        "def gearman_functions():\n"
        f"    return [{{'function_name': 'shell_check', 'command': [sys.executable, '-c', RECORDER, "
        f"{str(tmp_path / 'record')!r}]}}]\n")
    os.chmod(plugin_dir / "cmd.py", 0o644)
    (tmp_path / "x").write_text("still here")
    return plugin_dir


def test_no_module_can_reach_a_shell() -> None:
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for danger in (r"shell\s*=\s*True", r"create_subprocess_shell", r"os\.system\(", r"os\.popen\(",
                   r"\bpickle\b", r"\bmarshal\b", r"\bshelve\b", r"(?<![\w.])eval\(", r"(?<![\w.])exec\(",
                   r"yaml\.load\(", r"getattr\(builtins"):
        assert not re.search(danger, source), danger
    assert "create_subprocess_exec(" in (PACKAGE / "execution.py").read_text()


def test_a_command_function_gets_the_payload_on_stdin_never_through_a_shell(
        gearmand: Gearmand, command_plugin: Path, tmp_path: Path) -> None:
    payload = shell_payload(tmp_path)
    queued = gearctl("client", "shell_check", "--data", payload.decode(), "-s", gearmand.address)
    assert queued.returncode == 0, queued.stderr
    done = gearctl("worker", "-p", str(command_plugin), "--burst", "-s", gearmand.address)
    assert done.returncode == 0, done.stderr
    record = tmp_path / "record"
    assert (record.with_suffix(".stdin")).read_bytes() == payload  # data, byte for byte
    argv = json.loads(record.with_suffix(".argv").read_text())
    assert argv[1:] == [str(record)]  # the plugin's argv only: the payload is not in it
    assert not any("pwned" in a or "rm -rf" in a for a in argv)
    no_shell_ran(tmp_path)


def test_run_passes_the_payload_as_data_too(command_plugin: Path, tmp_path: Path) -> None:
    payload = shell_payload(tmp_path)
    ran = gearctl("run", "shell_check", "--data", payload.decode(), "-p", str(command_plugin))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == payload
    no_shell_ran(tmp_path)


class Planted:
    """Unpickling this creates a file: the proof that something unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def hostile_payloads(tmp: Path) -> dict[str, bytes]:
    marker = str(tmp / "unpickled")
    return {f"pickle-{n}": pickle.dumps(Planted(marker), protocol=n) for n in (0, 4)} | {
        "expression": f"__import__('os').system('touch {tmp}/evaluated')".encode(),
        "json-expression": json.dumps(f"__import__('os').system('touch {tmp}/evaluated')").encode(),
    }


def nothing_ran(tmp: Path) -> None:
    assert not (tmp / "unpickled").exists(), "a payload was unpickled"
    assert not (tmp / "evaluated").exists(), "a payload was evaluated"


def test_no_codec_unpickles_or_evaluates(tmp_path: Path) -> None:
    for name, data in hostile_payloads(tmp_path).items():
        for codec in codecs.CODECS.values():
            try:
                value = codec.decode(data)
            except PayloadError:
                continue
            assert isinstance(value, (bytes, str)), (name, codec.name, value)  # data stays data
        for decoding in ("auto", "json", "php"):
            with contextlib.suppress(PayloadError):
                codecs.as_json_text(data, decoding)
        for encoding in ("raw", "json", "php"):
            with contextlib.suppress(PayloadError):
                codecs.prepare_payload(data, encoding)
    nothing_ran(tmp_path)


@pytest.fixture
def data_kind_plugin(tmp_path: Path) -> Path:
    """`kind_<encoding>`: answers what type job.data turned out to be."""
    plugin_dir = tmp_path / "kinds"
    plugin_dir.mkdir(mode=0o755)
    (plugin_dir / "kinds.py").write_text(
        "from gearctl import job\n"
        "def _make(enc):\n"
        "    @job('kind_' + enc, encoding=enc)\n"
        "    def kind(j):\n"
        "        return type(j.data).__name__.encode()\n"
        "    return kind\n"
        "kinds = [_make(e) for e in ('auto', 'raw', 'json', 'php')]\n"
        "kind_auto, kind_raw, kind_json, kind_php = kinds\n"
        "@job('echo', encoding='raw')\n"
        "def echo(j):\n"
        "    return j.workload()\n")
    os.chmod(plugin_dir / "kinds.py", 0o644)
    return plugin_dir


def test_a_worker_keeps_hostile_payloads_as_data_under_every_encoding(
        gearmand: Gearmand, procs: Procs, data_kind_plugin: Path, tmp_path: Path) -> None:
    procs.start([*GEARCTL, "worker", "-p", str(data_kind_plugin), "-s", gearmand.address], env=clean_env())
    wait_until(lambda: gearmand.status().get("kind_php", (0, 0, 0))[2] >= 1, 30, what="the worker registered")
    for name, data in hostile_payloads(tmp_path).items():
        payload = tmp_path / f"{name}.bin"
        payload.write_bytes(data)
        for encoding in ("auto", "raw", "json", "php"):
            got = gearctl("client", f"kind_{encoding}", str(payload), "--wait", "-s", gearmand.address,
                          "--timeout", "60")
            if got.returncode == 0:
                assert got.stdout in (b"bytes", b"str"), (name, encoding, got.stdout)
            else:  # a payload that is not JSON / PHP fails its job, and says why
                assert got.returncode == 5 and encoding in ("json", "php", "auto"), (name, encoding, got)
                assert re.search(rb"invalid (JSON|PHP)", got.stderr), got.stderr
        for decoding in ("auto", "json", "php"):  # and the client's --decode of an answer holding it
            echoed = gearctl("client", "echo", str(payload), "--wait", "--decode", decoding, "-s",
                             gearmand.address, "--timeout", "60")
            if echoed.returncode == 0:
                shown = json.loads(echoed.stdout)
                assert isinstance(shown, str) or set(shown) == {"__base64__"}, (name, decoding, shown)
            else:  # README: a result that does not decode exits 2
                assert echoed.returncode == 2 and decoding != "auto", (name, decoding, echoed)
                assert echoed.stderr.startswith(b"gearctl: --decode ") and b"invalid" in echoed.stderr, echoed
    nothing_ran(tmp_path)


# Names a PHP payload might give its class that are also Python classes in scope.
PYTHON_NAMES = ["stdClass", "Exception", "Path", "Popen", "PhpObject", "Envelope", "WorkerJob", "Planted", "object",
                "type", "os", "subprocess", "builtins"]


@pytest.mark.parametrize("name", PYTHON_NAMES)
def test_php_objects_are_only_ever_php_objects(name: str) -> None:
    data = f'O:{len(name)}:"{name}":1:{{s:4:"path";s:3:"/tm";}}'.encode()
    value = php.loads(data)
    assert type(value) is php.PhpObject and value.php_class == name
    assert type(codecs.CODECS["auto"].decode(data)) is php.PhpObject
    assert json.loads(codecs.as_json_text(data, "php"))["__php_class__"] == name
    custom = f'C:{len(name)}:"{name}":3:{{abc}}'.encode()  # Serializable: kept as its bytes, never run
    assert type(php.loads(custom)) is php.PhpSerializable


def test_a_php_worker_payload_with_objects_reaches_the_function_as_php_objects(
        gearmand: Gearmand, procs: Procs, data_kind_plugin: Path, tmp_path: Path) -> None:
    procs.start([*GEARCTL, "worker", "-p", str(data_kind_plugin), "-s", gearmand.address], env=clean_env())
    wait_until(lambda: gearmand.status().get("kind_php", (0, 0, 0))[2] >= 1, 30, what="the worker registered")
    got = gearctl("client", "kind_php", "--data", 'O:5:"Popen":1:{s:4:"args";s:2:"ls";}', "--wait", "-s",
                  gearmand.address, "--timeout", "60")
    assert got.returncode == 0 and got.stdout == b"PhpObject", got


# -- plugin permissions ---------------------------------------------------------------
def shared_group() -> int:
    """A group that is no one's private group (its files' group write is others' too)."""
    for name in ("users", "nogroup", "staff"):
        with contextlib.suppress(KeyError):
            gid = grp.getgrnam(name).gr_gid
            if not plugins.private_group(os.getuid(), gid):
                return gid
    pytest.skip("no shared group on this machine")


def insecure_dir(tmp_path: Path, dir_mode: int, file_mode: int, gid: int | None = None) -> Path:
    """A plugin directory with these modes, its group a shared one unless `gid` says."""
    plugin_dir = tmp_path / f"p{dir_mode:o}{file_mode:o}"
    plugin_dir.mkdir()
    (plugin_dir / "decorated.py").write_text((TESTS / "plugins" / "decorated.py").read_text())
    group = shared_group() if gid is None else gid
    for path in (plugin_dir / "decorated.py", plugin_dir):
        os.chown(path, -1, group)
    os.chmod(plugin_dir / "decorated.py", file_mode)
    os.chmod(plugin_dir, dir_mode)
    return plugin_dir


def test_group_write_is_fine_when_the_group_is_the_owners_private_one(tmp_path: Path) -> None:
    own = os.getgid()
    if not plugins.private_group(os.getuid(), own):
        pytest.skip("this user's group is not a private group")
    plugin_dir = insecure_dir(tmp_path, 0o775, 0o664, gid=own)  # a checkout made with umask 002
    loaded = plugins.load_plugins([plugin_dir])
    assert "reverse" in loaded.functions and not loaded.errors
    os.chmod(plugin_dir, 0o777)  # others may write: refused whatever the group
    assert plugins.load_plugins([plugin_dir]).errors


@pytest.mark.parametrize(("dir_mode", "file_mode", "who"), [
    (0o755, 0o666, "file writable by group and others (mode 0666)"),
    (0o755, 0o664, "file writable by group (mode 0664)"),
    (0o757, 0o644, "directory writable by others (mode 0757)"),
    (0o1777, 0o644, "directory writable by group and others (mode 1777)"),
])
def test_insecure_plugins_are_refused_with_a_clear_message(tmp_path: Path, dir_mode: int, file_mode: int,
                                                           who: str) -> None:
    plugin_dir = insecure_dir(tmp_path, dir_mode, file_mode)
    refused = plugins.load_plugins([plugin_dir])
    assert not refused.functions
    (error,) = refused.errors
    named = plugin_dir if "directory" in who else plugin_dir / "decorated.py"
    assert error == f"{named}: refusing a plugin {who}; chmod go-w it, or pass --allow-insecure-plugins", error
    allowed = plugins.load_plugins([plugin_dir], allow_insecure=True)
    assert "reverse" in allowed.functions and not allowed.errors


def test_a_safe_plugin_passes_the_check(tmp_path: Path) -> None:
    assert plugins.insecure(insecure_dir(tmp_path, 0o755, 0o644)) is None
    assert plugins.insecure(TESTS / "plugins") is None
    assert "cannot check its permissions" in (plugins.insecure(tmp_path / "missing.py") or "")


@pytest.mark.parametrize("command", [["functions"], ["run", "reverse", "--data", "abc"]])
def test_functions_and_run_refuse_insecure_plugins(tmp_path: Path, command: list[str]) -> None:
    plugin_dir = insecure_dir(tmp_path, 0o755, 0o666)
    refused = gearctl(*command, "-p", str(plugin_dir))
    assert refused.returncode == 2, refused
    first = refused.stderr.splitlines()[0].decode()
    assert first == (f"gearctl: plugin error: {plugin_dir}/decorated.py: refusing a plugin file writable by "
                     "group and others (mode 0666); chmod go-w it, or pass --allow-insecure-plugins"), first
    allowed = gearctl(*command, "-p", str(plugin_dir), "--allow-insecure-plugins")
    assert allowed.returncode == 0, allowed.stderr
    assert (b"cba" if command[0] == "run" else b"reverse") in allowed.stdout


def test_the_worker_refuses_insecure_plugins_and_its_processes_honour_the_flag(
        gearmand: Gearmand, tmp_path: Path) -> None:
    plugin_dir = insecure_dir(tmp_path, 0o777, 0o644)
    refused = gearctl("worker", "-p", str(plugin_dir), "-f", "reverse", "--burst", "-s", gearmand.address)
    assert refused.returncode == 2, refused
    assert b"refusing a plugin directory writable by group and others (mode 0777)" in refused.stderr
    assert b"--allow-insecure-plugins" in refused.stderr
    queued = gearctl("client", "reverse", "--data", "abc", "-s", gearmand.address)
    assert queued.returncode == 0
    # The flag reaches the worker processes (they load the plugins again): the job runs.
    served = gearctl("worker", "-p", str(plugin_dir), "-f", "reverse", "--burst", "-s", gearmand.address,
                     "--allow-insecure-plugins")
    assert served.returncode == 0, served.stderr
    assert gearmand.queued("reverse") == 0


# -- the dead-letter envelope ---------------------------------------------------------
ENVELOPE_FIELDS = {"function", "unique", "workload", "attempts", "error", "traceback", "host", "first_failure",
                   "last_failure", "handle", "state"}


def test_the_envelope_has_no_field_for_tls_or_the_environment() -> None:
    assert {f.name for f in dataclasses.fields(Envelope)} == ENVELOPE_FIELDS
    assert not [f for f in ENVELOPE_FIELDS if re.search(r"tls|key|cert|ca$|env|secret|password", f)]


def test_an_encoded_envelope_carries_no_key_path_or_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEARCTL_TLS_KEY", "/etc/ssl/private/worker-key.pem")
    monkeypatch.setenv("APP_SECRET", "s3cr3t-v4lue")
    envelope = Envelope(function="f", unique="u", workload=b"payload", attempts=3, error="RuntimeError: boom",
                        traceback="Traceback ...", host="web1", first_failure=1.0, last_failure=2.0)
    encoded = envelope.encode()
    for leak in (b"worker-key.pem", b"/etc/ssl", b"s3cr3t", b"GEARCTL_", b"APP_SECRET"):
        assert leak not in encoded
    assert set(json.loads(encoded)) == ENVELOPE_FIELDS | {"gearctl_dead_letter"}


DEAD_LETTERS = "retries" in plugins.HOOK_KEYS  # the retries helper's dead-letter path has landed


@pytest.mark.skipif(not DEAD_LETTERS, reason="a worker sends dead letters once the retries helper's work "
                                             "(hook key 'retries', dead_letter) lands")
def test_a_dead_job_from_a_worker_with_a_tls_key_and_secrets_leaks_neither(
        gearmand: Gearmand, tmp_path: Path) -> None:
    key = tmp_path / "worker-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
    queued = gearctl("client", "boom", "--data", "x", "-s", gearmand.address)
    assert queued.returncode == 0
    # --tls-key alone does not turn TLS on: the worker talks plain, holding the path.
    done = gearctl("worker", "-p", str(TESTS / "plugins"), "-f", "boom", "--burst", "--tls-key", str(key), "-s",
                   gearmand.address, env={"APP_SECRET": "s3cr3t-v4lue"})
    assert done.returncode == 0, done.stderr
    wait_until(lambda: gearmand.queued("boom.dead") == 1, 30, what="the dead letter")
    grab = subprocess.run(["gearman", "-w", "-f", "boom.dead", "-c", "1", "-p", str(gearmand.port), "-h",
                           "127.0.0.1"], capture_output=True, timeout=60)  # prints the workload
    encoded = grab.stdout
    assert b"gearctl_dead_letter" in encoded, grab
    for leak in (str(key).encode(), b"worker-key.pem", b"PRIVATE KEY", b"s3cr3t", b"APP_SECRET"):
        assert leak not in encoded
