"""gearctl.testing: a pytest plugin for testing job functions, with no gearmand.

Installing gearctl registers it (the `pytest11` entry point `gearctl.testing`);
without the install, `pytest -p gearctl.testing` loads it. It gives a test:

    def test_send(gearman_server, gearctl_worker):
        gearctl_worker(plugin_dir="gearman")                  # serving, registered
        assert gearman_server.run_job("notifications_send_users", {"users": [3]}) == {...}

- `gearman_server`: gearctl's embedded server (gearctl/server.py) on a free
  127.0.0.1 port, on its own event loop in a thread, started and stopped for
  each test (a few milliseconds). A `GearmanServer`: `.address`, `.host`,
  `.port`, `status()`, `workers()`, `wait_until_idle()`, `run_job()`.
- `gearctl_worker`: a factory that starts a `Worker` in a thread against that
  server, serving a plugin directory or functions, and returns once the server
  lists it; a `RunningWorker` (`.worker`, `.stats`), stopped at teardown.
- `run_job(server_or_address, function, data)`: submit a foreground job, wait,
  return its decoded result; a job that fails raises (JobException holds the
  function's message), so a failing job is a failing test.

Everything waits for a state (the server's admin answers, a thread's end),
never for a time. This module imports only the standard library and pytest at
the top: pytest imports every registered plugin at start, in every project
where gearctl is installed, so the server, worker and client are imported when
a fixture first needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from .admin import FunctionStatus, WorkerInfo
    from .server import Server
    from .worker import Worker, WorkerStats

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0  # seconds any one wait may take before the test fails
POLL = 0.002  # seconds between two admin questions while waiting for a state
_worker_ids = itertools.count(1)


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Ask `predicate` until it returns something true, and return that; after
    `timeout` seconds, TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gearctl.testing: timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


class GearmanServer:
    """The embedded server on its own event loop in a daemon thread, so that
    plain (sync) tests can use it; start() and stop() from the test's thread.
    `options` are gearctl.server.Server's (max_queue, store, ...)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        from .server import Server

        self.server: Server = Server(host, port, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="gearctl-testing-server", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._calls: set[asyncio.Task[Any]] = set()  # call()s under way, on the loop

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        """The port it listens on (the free one it was given, after start())."""
        return self.server.port

    @property
    def address(self) -> str:
        """"127.0.0.1:PORT": what `servers=` of Client and Worker take."""
        return self.server.address

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> GearmanServer:
        """Listen; returns once the port accepts connections. Raises what the
        server raised (ConfigError: the address cannot be bound)."""
        self.thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"gearctl.testing: the embedded server did not start within {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _main(self) -> None:
        try:
            await self.server.start()
        except BaseException as e:
            self._error = e
            return
        finally:
            self._ready.set()
        await self.server.serve_forever()
        # close() closed every connection; their connection_lost callbacks run
        # on the next turn of the loop, which must come before the loop closes.
        # A call() under way (an admin `shutdown` asked through admin()) ends
        # with its connection: let it, or its caller would wait for it forever.
        await asyncio.sleep(0)
        if self._calls:
            await asyncio.wait(self._calls)

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Close the listener and every connection at once (as admin `shutdown`),
        and wait for the thread to end. Nothing happens after an earlier stop."""
        from .serveradmin import Shutdown

        if not self.thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: the server stopped itself (admin `shutdown`)
            self.loop.call_soon_threadsafe(self.server.shutdown, Shutdown.NOW)
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"gearctl.testing: the embedded server did not stop within {timeout:g}s")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = DEFAULT_TIMEOUT) -> T:
        """Run `coro` on the server's event loop and return its result: how the
        helpers here talk to the server from any thread, an async test's included."""
        if not self.thread.is_alive():
            coro.close()
            raise RuntimeError(f"gearctl.testing: the embedded server on {self.address} is not running")
        return asyncio.run_coroutine_threadsafe(self._tracked(coro), self.loop).result(timeout)

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await coro
        finally:
            self._calls.discard(task)

    def admin(self, command: str, *args: str) -> list[str]:
        """One admin text command's answer lines, asked over a connection as any peer asks."""
        from .addresses import ServerAddress
        from .adminio import admin_request

        return self.call(admin_request(ServerAddress(self.host, self.port), command, *args))

    def status(self) -> dict[str, FunctionStatus]:
        """Admin `status`: function -> FunctionStatus (`.queued`, `.running`,
        `.workers`, `.total`), for every function the server knows."""
        from .admin import parse_status

        return {row.function: row for row in parse_status(self.admin("status"))}

    def workers(self) -> list[WorkerInfo]:
        """Admin `workers`: each connection's client id and registered functions."""
        from .admin import parse_workers

        return parse_workers(self.admin("workers"))

    def wait_until_idle(self, function: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until no job of `function` (None: of any function) is queued or
        running: e.g. until background jobs have been done."""

        def idle() -> bool:
            return not any(row.total for name, row in self.status().items() if function in (None, name))

        wait_for(idle, timeout, f"no job of {function or 'any function'} on {self.address}")

    def run_job(self, function: str, data: Any = None, **options: Any) -> Any:
        """gearctl.testing.run_job() on this server."""
        return run_job(self, function, data, **options)


def run_job(server: GearmanServer | str, function: str, data: Any = None, *, encoding: str = "json",
            timeout: float = DEFAULT_TIMEOUT, require_worker: bool = True) -> Any:
    """Submit a foreground job to `server` (a GearmanServer, or "host:port" of
    any Gearman server), wait for it and return its result, decoded.

    `encoding` says how `data` is sent and the result read: "json" (the
    default: a Python value sent as JSON, the result parsed from JSON), "php"
    (PHP serialize() both ways), "auto" (bytes and text as they are, other
    values as JSON; the result read as a worker's `auto` reads a workload) or
    "raw" (bytes or text as they are; the result as bytes). An empty result is
    None, except under "raw" (b"") and "auto".

    Raises gearctl.errors.JobException when the function raised (the message
    is in the error), JobFailed when the job failed, NoWorker when no worker
    has registered `function` (with `require_worker`: the job would wait for
    one until `timeout`), Timeout after `timeout` seconds, PayloadError for
    data the encoding cannot send or a result it cannot read.
    """
    from .codecs import resolve

    codec = resolve(encoding)
    payload = codec.encode(data)
    if isinstance(server, GearmanServer):
        result = server.call(_submit_and_wait(server.address, function, payload, timeout, require_worker),
                             timeout + DEFAULT_TIMEOUT)
    else:
        result = asyncio.run(_submit_and_wait(server, function, payload, timeout, require_worker))
    if not result and encoding in ("json", "php"):
        return None
    return codec.decode(result)


async def _submit_and_wait(address: str, function: str, payload: bytes, timeout: float,
                           require_worker: bool) -> bytes:
    from .client import AsyncClient
    from .errors import NoWorker

    async with AsyncClient(address) as client:
        if require_worker and not await client.workers_for(function, timeout):
            raise NoWorker(f"no worker has registered {function!r} on {address}: start one first "
                           "(the gearctl_worker fixture returns once it has)")
        return await client.run(function, payload, timeout=timeout)


class RunningWorker:
    """A gearctl Worker serving in a thread (its own event loop), as the
    gearctl_worker fixture starts it."""

    def __init__(self, worker: Worker, server: GearmanServer) -> None:
        self.worker = worker
        self.server = server
        self.thread = threading.Thread(target=self._run, name=f"gearctl-testing-worker {worker.client_id}", daemon=True)
        self.error: BaseException | None = None  # what Worker.run() raised, if it did

    @property
    def functions(self) -> list[str]:
        """The names of the functions it serves."""
        return list(self.worker.functions)

    @property
    def stats(self) -> WorkerStats:
        """The worker's live counts: `.done`, `.failed`, `.functions[name]`
        (done, failed, running, last_error, ...)."""
        return self.worker.stats

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # kept, and raised by start() or stop() in the test's thread
            self.error = e

    def registered(self) -> bool:
        """The server lists this worker's connection with every one of its functions."""
        if self.error is not None or not self.thread.is_alive():
            raise RuntimeError(f"gearctl.testing: the worker stopped before registering: {self.error!r}")
        wanted = set(self.worker.functions)
        # A gearctl worker's client id may carry its --prefetch after admin.PREFETCH_TAG.
        from .admin import PREFETCH_TAG

        return any(info.client_id.partition(PREFETCH_TAG)[0] == self.worker.client_id
                   and wanted <= set(info.functions) for info in self.server.workers())

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> RunningWorker:
        """Start serving; returns once the server lists every function as served by it."""
        self.thread.start()
        wait_for(self.registered, timeout, f"the worker to register {', '.join(self.functions)}")
        return self

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop grabbing, let a running job finish, hand back the rest (as
        SIGTERM does a worker process) and wait for the thread. Raises what the
        worker raised, or TimeoutError when a job is still running after `timeout`."""
        self.worker.stop_threadsafe()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"gearctl.testing: the worker did not stop within {timeout:g}s "
                               f"(a job still running: {self.stats.current or 'none known'})")
        if self.error is not None:
            raise self.error


def serve(server: GearmanServer, plugin_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
          *, functions: Iterable[Any] = (), select: Sequence[str] | None = None, allow_insecure_plugins: bool = False,
          timeout: float = DEFAULT_TIMEOUT, **options: Any) -> RunningWorker:
    """Start a Worker on `server` for the functions of `plugin_dir` (one
    directory or several; `select`: only these names) and `functions` (@job
    functions, plain functions or hook entries), and return once it is
    registered. `options` are Worker's keywords (retries, prefetch, ...). A
    plugin error (a file that does not import, a name defined twice) raises
    gearctl.errors.UsageError naming it, rather than serving less."""
    from .errors import UsageError
    from .worker import Worker

    chosen = list(functions)
    if plugin_dir is not None:
        from .plugins import load_plugins

        dirs = [plugin_dir] if isinstance(plugin_dir, (str, os.PathLike)) else list(plugin_dir)
        registry = load_plugins([Path(d) for d in dirs], allow_insecure=allow_insecure_plugins)
        if registry.errors:
            raise UsageError("plugin errors: " + "; ".join(registry.errors))
        chosen += registry.select(select)
    client_id = options.pop("client_id", None) or f"gearctl-testing-{os.getpid()}-{next(_worker_ids)}"
    worker = Worker(chosen, servers=server.address, client_id=client_id, **options)
    running = RunningWorker(worker, server)
    try:
        return running.start(timeout)
    except BaseException:
        running.stop(timeout)
        raise


@pytest.fixture
def gearman_server() -> Iterator[GearmanServer]:
    """The embedded Gearman server on a free 127.0.0.1 port, for this test only."""
    server = GearmanServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gearctl_worker(gearman_server: GearmanServer) -> Iterator[Callable[..., RunningWorker]]:
    """A factory: `gearctl_worker(plugin_dir="gearman")` or
    `gearctl_worker(functions=[fn])` (and Worker's keywords) starts a worker on
    `gearman_server` and returns a RunningWorker once it is registered; every
    worker it started is stopped at the end of the test."""
    started: list[RunningWorker] = []

    def start(plugin_dir: Any = None, **kwargs: Any) -> RunningWorker:
        running = serve(gearman_server, plugin_dir, **kwargs)
        started.append(running)
        return running

    yield start
    errors = []
    for running in reversed(started):
        try:
            running.stop()
        except BaseException as e:
            errors.append(e)
    if errors:
        raise errors[0]
