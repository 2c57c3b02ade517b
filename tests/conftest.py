"""Real peers for the tests: gearmand on a free loopback port, the C gearman
tools, PHP workers, and gearctl itself run as a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent

# A suite started in the background of a non-interactive shell (`pytest &`, nohup,
# some CI runners) inherits SIGINT ignored, and so would every gearctl it starts:
# the Ctrl-C tests would then hang instead of testing anything. Commands are
# started with SIGINT at its default, as a terminal starts them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Write gearctl's bytecode once, as `pip install` does for an installed copy.
    The suite runs the checkout (`python -m gearctl`), and with PYTHONDONTWRITEBYTECODE
    set (CI images often set it) each of its ~2,000 gearctl processes would compile
    every module it imports anew, about 50 ms each."""
    import compileall

    compileall.compile_dir(HERE.parent / "gearctl", quiet=1)


PHP_DIR = HERE / "php"
GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ServerExited(RuntimeError):
    """The server process ended before it accepted a connection."""


class Gearmand:
    """One gearmand process on 127.0.0.1, stopped by pid."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        # A free port can be taken between free_port() and the server's bind (tests
        # run in 2 pytest-xdist processes): a server that does not come up as itself
        # on it (it exits, or gearmand keeps retrying the bind) is stopped and started
        # again on another port, twice at most.
        for attempt in range(3):
            self.port = free_port()
            self.argv = self.command(tmp, *extra)
            try:
                self.start()
                return
            except (ServerExited, AssertionError):
                self.stop()
                if attempt == 2:
                    raise

    def command(self, tmp: Path, *extra: str) -> list[str]:
        self.log = tmp / f"gearmand-{self.port}.log"
        return [GEARMAND, "-L", "127.0.0.1", "-p", str(self.port), "-l", str(self.log), "--verbose", "ERROR",
                "-P", str(tmp / f"gearmand-{self.port}.pid"), "-t", "2", *extra]

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._accepting, 10, what=f"gearmand on port {self.port}")

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _accepting(self) -> bool:
        if self.proc.poll() is not None:
            said = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise ServerExited(f"{self.argv[0]} exited with {self.proc.returncode}: {said}")
        # Up, and ours: the port answers `getpid` with this process's pid (another
        # test's server on a port taken in between would answer with its own).
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.settimeout(5)
                s.sendall(b"getpid\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = s.recv(64)
                    if not chunk:
                        return False
                    answer += chunk
                return answer == f"OK {self.proc.pid}\n".encode()
        except OSError:
            return False

    def admin(self, command: str) -> list[str]:
        """A raw admin command; the response lines (without the '.' end)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            buf = b""
            listing = command in ("status", "workers", "show jobs", "show unique jobs", "prioritystatus")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if listing and (buf == b".\n" or buf.endswith(b"\n.\n")):
                    break
                if not listing and buf.endswith(b"\n"):
                    break
        lines = buf.decode().replace("\r", "").split("\n")
        return [line for line in lines if line and line != "."]

    def status(self) -> dict[str, tuple[int, int, int]]:
        """function -> (total, running, workers), counts parsed from the right."""
        out = {}
        for line in self.admin("status"):
            name, total, running, workers = line.rsplit("\t", 3)
            out[name] = (int(total), int(running), int(workers))
        return out

    def queued(self, function: str) -> int:
        return self.status().get(function, (0, 0, 0))[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Embedded(Gearmand):
    """`python -m gearctl.server` on a free loopback port, with Gearmand's helpers
    (admin, status, stop by pid); it stands in wherever the suite takes a Gearmand."""

    def command(self, tmp: Path, *extra: str) -> list[str]:
        self.log = tmp / f"embedded-{self.port}.log"
        self.log.touch()
        return [sys.executable, "-m", "gearctl.server", "--host", "127.0.0.1", "--port", str(self.port), *extra]


# -- conformance: one test, both servers -------------------------------------------
# A test (or a module, with `pytestmark = pytest.mark.conformance`) marked
# `conformance` runs once against gearmand and once against `gearctl server`:
# its `gearmand` fixture is then whichever the `server_kind` parameter names
# (test ids end in [gearmand] and [embedded]). Unmarked tests get gearmand.
SERVER_KINDS = ("gearmand", "embedded")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("conformance"):
        metafunc.parametrize("server_kind", SERVER_KINDS, indirect=True)


# -- interop: the half of the suite that needs gearmand, the C tools, PHP or stunnel --
# `pytest -m "not interop"` runs the other half (pure units and the embedded
# server) on a machine with Python alone. A test is interop when it starts
# gearmand through a fixture (the `gearmand` fixture unless its server kind is
# embedded), or is marked so because it runs a peer itself. The guard below
# keeps the marks honest: a test not marked interop that starts a peer fails.
PEERS = frozenset({"gearmand", "gearman", "gearadmin", "php", "stunnel", "stunnel4", "zsh", "fish"})
GEARMAND_FIXTURES = frozenset({"gearmand", "gearmand_factory", "persistent_gearmand_factory"})


def _server_kind_of(item: pytest.Item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return str(params.get("server_kind", "gearmand"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        uses_gearmand = bool(names & GEARMAND_FIXTURES) and _server_kind_of(item) != "embedded"
        if uses_gearmand and not item.get_closest_marker("interop"):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(autouse=True)
def _peers_only_in_interop_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("interop"):
        return
    real_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        argv0 = args if isinstance(args, (str, bytes, os.PathLike)) else next(iter(args), "")  # type: ignore[call-overload]
        name = (os.path.basename(os.fsdecode(argv0)).split() or [""])[0] if argv0 else ""
        if name in PEERS:
            raise AssertionError(f"{request.node.nodeid} runs {name} but is not marked interop "
                                 "(pytest.mark.interop): `pytest -m 'not interop'` must run without it")
        real_init(self, args, *rest, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture
def server_kind(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "gearmand")


@pytest.fixture
def gearmand(tmp_path: Path, server_kind: str) -> Iterator[Gearmand]:
    """The server under test: gearmand, or in a conformance test each server in turn."""
    server = Embedded(tmp_path) if server_kind == "embedded" else Gearmand(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    """`gearctl server` (python -m gearctl.server) on a free port, stopped by pid."""
    server = Embedded(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def gearmand_factory(tmp_path: Path) -> Iterator:
    started: list[Gearmand] = []

    def start(*extra: str) -> Gearmand:
        server = Gearmand(tmp_path, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Procs:
    """Background peer processes (C workers, PHP workers), killed by pid at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdout=kwargs.pop("stdout", subprocess.DEVNULL),
                                stderr=kwargs.pop("stderr", subprocess.DEVNULL), **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """SIGTERM first (a gearctl worker supervisor then stops its children),
        SIGKILL what is still there after 5 s."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for proc in self.procs:  # a test that failed before reading a pipe leaves it open
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.stop_all()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any GEARCTL_ setting (a developer's own
    must not leak into a test), plus `extra`. Every gearctl a test starts gets it.
    GEARCTL_CONFIG=/dev/null: no config file either (a developer's
    ~/.config/gearctl/config.toml, /etc/gearctl); a test that wants one says so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARCTL_")}
    env["GEARCTL_CONFIG"] = os.devnull
    env.update(extra)
    return env


def gearctl(*args: str, input: bytes | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the gearctl CLI as users do, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "gearctl", *args], input=input, capture_output=True,
                          env=clean_env(**(env or {})), timeout=timeout)


def held_command(release: Path) -> list[str]:
    """A command for the C worker (`c_worker(..., *held_command(path))`) that runs
    until the test creates `release` (at most 120 s), so its job is still running
    when a command looks at it, however slow the machine."""
    script = 'i=0; while [ ! -e "$0" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done'
    return ["sh", "-c", script, str(release)]


def c_worker(procs: Procs, server: Gearmand, function: str, *command: str, count: int | None = None,
             registered: bool = True, **kwargs) -> subprocess.Popen:
    """The C `gearman -w` worker; with a command it pipes the workload to it."""
    argv = ["gearman", "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", function]
    if count is not None:
        argv += ["-c", str(count)]
    if command:
        argv += ["--", *command]
    proc = procs.start(argv, **kwargs)
    if registered:  # off when queued jobs may let the worker finish before we look
        wait_until(lambda: server.status().get(function, (0, 0, 0))[2] >= 1, 10, what=f"C worker for {function}")
    return proc


def php_worker(procs: Procs, server: Gearmand, *functions: str) -> subprocess.Popen:
    """tests/php/worker.php serving `functions` (see that file for what each does)."""
    proc = procs.start(["php", str(PHP_DIR / "worker.php"), server.address, *functions])

    def registered() -> bool:
        status = server.status()
        return all(status.get(f, (0, 0, 0))[2] >= 1 for f in functions)

    wait_until(registered, 10, what=f"PHP worker for {functions}")
    return proc


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """gearctl with stderr (and with `stdout_too`, stdout; with `stdin_too`, stdin:
    answer it with os.write(term.master, ...)) on a pseudo-terminal, stdin and
    stdout otherwise piped. A reader thread keeps what the terminal
    showed in `seen`, so a long-running command (a worker drawing its live
    table) never blocks on a full terminal and the test can act while it runs."""

    def __init__(self, argv: list[str], stdout_too: bool = False, env: dict | None = None,
                 stdin_too: bool = False) -> None:
        import pty
        import threading

        self.master, slave = pty.openpty()
        full_env = clean_env(**{"COLUMNS": "120", "LINES": "40", "TERM": "xterm", **(env or {})})
        self.proc = subprocess.Popen([sys.executable, "-m", "gearctl", *argv],
                                     stdin=slave if stdin_too else subprocess.PIPE,
                                     stdout=slave if stdout_too else subprocess.PIPE, stderr=slave, env=full_env)
        os.close(slave)
        self.seen = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the terminal has gone
                return
            if not chunk:
                return
            with self._lock:
                self.seen += chunk

    def text(self) -> str:
        """What the terminal showed, escape sequences left out."""
        with self._lock:
            return ANSI.sub(b"", self.seen).decode("utf-8", "replace")

    def frame(self, marker: str) -> str:
        """The latest redraw of a live view: the text from the last `marker` on."""
        text = self.text()
        return text[text.rfind(marker):] if marker in text else ""

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "the terminal") -> None:
        try:
            wait_until(lambda: predicate(self), timeout, interval=0.05, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the terminal showed:\n{self.text()[-4000:]}") from None

    def close(self) -> None:
        """After the process ended: the rest of the output, then the terminal closed."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._reader.join(5)
        os.close(self.master)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def table_cells(frame: str) -> list[list[str]]:
    """The rows of the tables in a frame of a live view, as lists of stripped cells."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in frame.splitlines() if line.count("│") >= 3]


def worker_processes(frame: str) -> list[list[str]]:
    """The process rows of `gearctl worker`'s live table: pid, state, current job,
    done, failed, prefetch, memory, uptime."""
    return [row for row in table_cells(frame) if row[0].isdigit() and len(row) == 8]


def stderr_on_a_terminal(argv: list[str], input: bytes | None = None, timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run gearctl with stderr on a pseudo-terminal (stdin and stdout piped):
    exit code, stdout, and everything the terminal showed."""
    with Terminal(argv) as term:
        out, _ = term.proc.communicate(input, timeout=timeout)
    return term.proc.returncode, out, term.seen


def on_a_terminal(argv: list[str], env: dict | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run gearctl to its end with stdout and stderr on a pseudo-terminal: exit
    code, and the text the terminal showed (escape sequences left out)."""
    with Terminal(argv, stdout_too=True, env=env) as term:
        term.proc.stdin.close()  # type: ignore[union-attr]
        code = term.proc.wait(timeout)
    return code, term.text()


# -- the reliability suite: a gearmand with a persistent queue, killed and restarted ------

class PersistentGearmand(Gearmand):
    """gearmand with `-q libsqlite3` on a database in `db_dir`. After `kill()` (-9),
    `start()` brings it back on the same port with the same database, so every
    background job it acknowledged is queued again."""

    def __init__(self, tmp: Path, db_dir: Path, *extra: str) -> None:
        self.db = db_dir / f"queue-{time.monotonic_ns()}.db"
        super().__init__(tmp, "-q", "libsqlite3", "--libsqlite3-db", str(self.db), *extra)


def child_pids(parent: int) -> list[int]:
    """The live (not zombie) children of `parent`, read from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                kids.append(int(entry))
    return kids


@pytest.fixture
def persistent_gearmand_factory(tmp_path: Path) -> Iterator:
    """Start `PersistentGearmand`s; stopped by pid at teardown. The database lives on
    /dev/shm when there is one: libsqlite3 commits every job, and on a disk those
    fsyncs hold gearmand to ~400 jobs/s. A kill -9 loses nothing either way (the
    writes are in the kernel, not in the dead process)."""
    import tempfile

    shm = Path("/dev/shm")
    db_dir = Path(tempfile.mkdtemp(prefix="gearctl-queue-", dir=shm if shm.is_dir() else tmp_path))
    started: list[PersistentGearmand] = []

    def start(*extra: str) -> PersistentGearmand:
        server = PersistentGearmand(tmp_path, db_dir, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    shutil.rmtree(db_dir, ignore_errors=True)
