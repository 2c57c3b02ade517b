"""The Python API (gearctl.Client / AsyncClient) against a real gearmand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, c_worker, free_port, php_worker

from gearctl import AsyncClient, Client, Job
from gearctl.connection import TLSOptions
from gearctl.errors import ConnectionFailed, JobException, JobFailed, NoServerAvailable, NoWorker, Timeout
from gearctl.protocol import decode_all

pytestmark = pytest.mark.conformance  # each test against gearmand and gearctl server


@pytest.mark.interop
def test_sync_client_submit_run_and_status(gearmand: Gearmand, procs: Procs) -> None:
    with Client(gearmand.address) as client:
        job = client.submit("later", b"payload")
        assert job.state == "queued" and job.handle and str(job.server) == gearmand.address
        status = client.status(job.handle)
        assert status.known and not status.running
        c_worker(procs, gearmand, "upper", "tr", "a-z", "A-Z")
        assert client.run("upper", b"abc", timeout=10) == b"ABC"
        assert not client.status("H:no:such").known


@pytest.mark.interop
def test_status_follows_work_status(gearmand: Gearmand, procs: Procs, tmp_path) -> None:
    # The job sends 2/4, then waits for the release file: status is read while it
    # is surely running, then after it ended.
    php_worker(procs, gearmand, "php_status_held")
    release = tmp_path / "release"

    async def go() -> list[tuple[bool, bool, int, int]]:
        async with AsyncClient(gearmand.address) as client:
            job = await client.submit("php_status_held", str(release).encode(), background=True)
            seen = []
            for _ in range(600):
                status = await client.status(job.handle)
                if status.denominator:
                    seen.append((status.known, status.running, status.numerator, status.denominator))
                    break
                await asyncio.sleep(0.05)
            release.touch()
            for _ in range(600):
                status = await client.status(job.handle)
                if not status.known:
                    seen.append((status.known, status.running, status.numerator, status.denominator))
                    break
                await asyncio.sleep(0.05)
            return seen

    assert asyncio.run(go()) == [(True, True, 2, 4), (False, False, 0, 0)]


def test_status_unique_counts_waiting_clients(gearmand: Gearmand) -> None:
    async def go():
        async with AsyncClient(gearmand.address) as a, AsyncClient(gearmand.address) as b:
            ja = await a.submit("slowpoke", b"1", background=False, unique="u-1")
            jb = await b.submit("slowpoke", b"1", background=False, unique="u-1")
            status = await a.status_unique("u-1")
            return ja, jb, status

    ja, jb, status = asyncio.run(go())
    assert ja.handle == jb.handle
    assert status.unique == "u-1" and status.handle is None
    assert status.known and status.waiting == 2


@pytest.mark.interop
def test_coalesced_foreground_jobs_both_get_the_result(gearmand: Gearmand, procs: Procs) -> None:
    async def go():
        async with AsyncClient(gearmand.address) as client:
            first = await client.submit("upper", b"same", background=False, unique="k")
            second = await client.submit("upper", b"same", background=False, unique="k")
            c_worker(procs, gearmand, "upper", "tr", "a-z", "A-Z", registered=False)
            return await first.wait(10), await second.wait(10), first.handle == second.handle

    assert asyncio.run(go()) == (b"SAME", b"SAME", True)


@pytest.mark.interop
def test_job_errors_are_raised(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_fail", "php_exception")
    with Client(gearmand.address) as client:
        with pytest.raises(JobFailed) as failed:
            client.run("php_fail", timeout=10)
        assert type(failed.value) is JobFailed
        with pytest.raises(JobException, match="boom: bad input z"):
            client.run("php_exception", b"z", timeout=10)
        with pytest.raises(Timeout):
            client.run("nobody_home", timeout=0.3)
        with pytest.raises(NoWorker):
            asyncio.run(AsyncClient(gearmand.address).require_workers("nobody_home"))


@pytest.mark.interop
def test_submit_many_pipelines_foreground_jobs(gearmand: Gearmand, procs: Procs) -> None:
    c_worker(procs, gearmand, "upper", "tr", "a-z", "A-Z")
    done: list[Job] = []

    async def go():
        async with AsyncClient(gearmand.address) as client:
            jobs = (Job("upper", b"job%d" % i, background=False) for i in range(200))
            return await client.submit_many(jobs, window=50, on_done=done.append, timeout=60)

    counts = asyncio.run(go())
    assert counts == {"complete": 200}
    assert sorted(j.result for j in done) == sorted(b"JOB%d" % i for i in range(200))


def test_submit_many_to_no_server_reports_every_job() -> None:
    done: list[Job] = []

    async def go():
        async with AsyncClient(f"127.0.0.1:{free_port()}", connect_timeout=2) as client:
            jobs = [Job("f", b"%d" % i) for i in range(50)]
            return await client.submit_many(jobs, on_done=done.append)

    counts = asyncio.run(go())
    assert counts == {"error": 50} and len(done) == 50
    assert all(isinstance(j.error, ConnectionFailed) for j in done)


def test_no_server_raises(gearmand: Gearmand) -> None:
    with Client(f"127.0.0.1:{free_port()}", connect_timeout=2) as client, pytest.raises(NoServerAvailable):
        client.submit("f", b"x")


def test_server_lost_while_waiting_is_an_error_not_a_hang(gearmand: Gearmand) -> None:
    async def go():
        async with AsyncClient(gearmand.address) as client:
            job = await client.submit("forever", b"", background=False)
            os.kill(gearmand.pid, signal.SIGKILL)
            with pytest.raises(ConnectionFailed, match="connection lost"):
                await job.wait(10)
            return job.state

    assert asyncio.run(go()) == "error"


# -- TLS: a real TLS terminator (the role stunnel plays) in front of gearmand ------------

def _make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def _tls_terminator(cert: Path, key: Path, backend_port: int) -> tuple[int, socket.socket]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                front = ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            except BaseException:
                raw.close()
                raise
            back = socket.create_connection(("127.0.0.1", backend_port))
            threading.Thread(target=pump, args=(front, back), daemon=True).start()
            threading.Thread(target=pump, args=(back, front), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return port, listener


@pytest.mark.interop
def test_tls_through_a_terminator(gearmand: Gearmand, procs: Procs, tmp_path: Path) -> None:
    cert, key = _make_cert(tmp_path)
    port, listener = _tls_terminator(cert, key, gearmand.port)
    try:
        c_worker(procs, gearmand, "upper", "tr", "a-z", "A-Z")
        with Client(f"127.0.0.1:{port}", tls=TLSOptions(ca=str(cert))) as client:
            assert client.run("upper", b"secret", timeout=10) == b"SECRET"
            assert client.workers_for("upper") == 1  # admin commands go through TLS too
        # An untrusted certificate is refused, with a clear reason.
        with Client(f"127.0.0.1:{port}", tls=TLSOptions(enabled=True), connect_timeout=5) as client, \
                pytest.raises(NoServerAvailable, match=r"(?i)certificate"):
            client.submit("upper", b"x")
    finally:
        listener.close()



@pytest.mark.interop
def test_run_returns_the_result_and_keeps_work_data_apart(gearmand: Gearmand, procs: Procs) -> None:
    php_worker(procs, gearmand, "php_data")
    with Client(gearmand.address) as client:
        assert client.run("php_data", timeout=20) == b"end"
        job = client.submit("php_data", background=False)
        assert client.wait(job, timeout=20) == b"end"
        assert job.chunks == [b"part1;", b"part2;"] and job.result == b"end"


@pytest.mark.parametrize("options", [{}, {"background": False, "priority": "high"}, {"unique": "key-1"},
                                     {"when": 2_000_000_000}], ids=["plain", "foreground-high", "keyed", "scheduled"])
def test_a_job_made_like_another_is_a_fresh_job_with_the_same_options(options: dict) -> None:
    template = Job("resize", b"first", **options)
    template.state, template.handle, template.chunks = "complete", "H:x:1", [b"old"]  # its state stays its own
    made, fresh = template.like(b"second", 7), Job("resize", b"second", index=7, **options)
    for slot in Job.__slots__:
        if slot != "_wire_unique":
            assert getattr(made, slot) == getattr(fresh, slot), slot
    (got,), (want,) = decode_all(made.packet()), decode_all(fresh.packet())
    assert got.type is want.type and got.get("function") == b"resize" and got.args[-1] == b"second"
    if options.get("unique"):
        assert made.to_dict()["unique"] == "key-1"  # a key of its own coalesces, as --unique does
    else:
        assert made.to_dict()["unique"] not in (template.to_dict()["unique"], fresh.to_dict()["unique"])
