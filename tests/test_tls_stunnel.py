"""TLS through a real stunnel (Debian's gearmand is built without TLS): client,
worker and status with CA verification and a client certificate, and the
failures an operator meets (a wrong CA, an expired certificate, a client with no
certificate, a plaintext server) as one clear line, exit 3, and no hang.

The certificates are made here with the openssl command: a CA, a server and a
client certificate it signs, a second CA nobody trusts, and expired ones
(`openssl x509 -req -days -1`: valid until a day before it was made)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Gearmand, Procs, clean_env, free_port, gearctl, wait_until

from gearctl.addresses import describe_socket_error

pytestmark = [pytest.mark.conformance, pytest.mark.interop]  # stunnel, against gearmand and gearctl server

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
PLUGINS = Path(__file__).parent / "plugins"
needs_stunnel = pytest.mark.skipif(STUNNEL is None, reason="stunnel4 is not installed (apt-get install stunnel4)")
# A TLS failure must be told at once: well inside the subprocess's own 60 s limit.
PATIENCE = 30


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Pki:
    """Keys and certificates in `tmp`: `ca`, `server`, `client` (signed by `ca`),
    `other_ca` (signs nothing here), `expired_server` and `expired_client`."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "pki"
        self.dir.mkdir()
        self.ca = self._ca("ca")
        self.other_ca = self._ca("other_ca")
        self.server = self._signed("server", "127.0.0.1", days=2, san="IP:127.0.0.1")
        self.client = self._signed("client", "gearctl-test-client", days=2)
        self.expired_server = self._signed("expired_server", "127.0.0.1", days=-1, san="IP:127.0.0.1")
        self.expired_client = self._signed("expired_client", "gearctl-test-client", days=-1)

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def _ca(self, name: str) -> Path:
        cert = self.dir / f"{name}.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=gearctl test {name}",
                 "-keyout", str(self.key(name)), "-out", str(cert))
        return cert

    def _signed(self, name: str, cn: str, days: int, san: str = "") -> Path:
        cert, csr, ext = self.dir / f"{name}.pem", self.dir / f"{name}.csr", self.dir / f"{name}.ext"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(self.key(name)),
                 "-out", str(csr))
        ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.key("ca")),
                 "-set_serial", str(time.monotonic_ns()), "-days", str(days), "-extfile", str(ext), "-out", str(cert))
        return cert

    def client_flags(self, name: str = "client", ca: Path | None = None) -> list[str]:
        return ["--tls-ca", str(ca or self.ca), "--tls-cert", str(self.dir / f"{name}.pem"),
                "--tls-key", str(self.key(name))]


class Stunnel:
    """stunnel in the foreground on a free loopback port in front of `backend`,
    requiring a client certificate signed by the CA (`verify = 2`); stopped by pid."""

    def __init__(self, procs: Procs, tmp: Path, backend: Gearmand, cert: Path, key: Path, ca: Path) -> None:
        self.port = free_port()
        conf = tmp / f"stunnel-{self.port}.conf"
        self.log = tmp / f"stunnel-{self.port}.log"
        conf.write_text(f"foreground = yes\npid =\noutput = {self.log}\ndebug = 5\n\n[gearman]\n"
                        f"accept = 127.0.0.1:{self.port}\nconnect = 127.0.0.1:{backend.port}\n"
                        f"cert = {cert}\nkey = {key}\nCAfile = {ca}\nverify = 2\n")
        self.proc = procs.start([str(STUNNEL), str(conf)])
        wait_until(self._listening, 30, what=f"stunnel on port {self.port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"stunnel exited with {self.proc.returncode}: {self.log_text()}")
        return "Configuration successful" in self.log_text()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tls"))


def _one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gearctl: "), result.stderr
    assert any(n.lower() in lines[0].lower() for n in needles), lines[0]
    return lines[0]


@needs_stunnel
def test_client_worker_and_status_over_tls_with_a_client_certificate(gearmand: Gearmand, procs: Procs,
                                                                     tmp_path: Path, pki: Pki) -> None:
    tunnel = Stunnel(procs, tmp_path, gearmand, pki.server, pki.key("server"), pki.ca)
    tls = ["-s", tunnel.address, *pki.client_flags()]
    procs.start([sys.executable, "-m", "gearctl", "worker", "-p", str(PLUGINS), "-f", "reverse", *tls], env=clean_env())
    wait_until(lambda: gearmand.status().get("reverse", (0, 0, 0))[2] == 1, 30, what="the worker, over TLS")

    result = gearctl("client", "reverse", "--wait", "--data", "over tls", *tls)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"slt revo"
    status = gearctl("status", "--json", *tls)
    assert status.returncode == 0, status.stderr
    (server,) = json.loads(status.stdout)["servers"]
    assert server["up"] and server["address"] == tunnel.address
    assert {f["function"]: f["workers"] for f in server["functions"]}["reverse"] == 1
    assert "Certificate accepted" in tunnel.log_text()  # stunnel checked the client's certificate


# What stderr says for each: the reason, not just "unreachable". A rejected client
# certificate is told by the server's alert after the client's side of a TLS 1.3
# handshake is done, so its line may say the connection went ("not connected").
REJECTED = ("certificate", "not connected", "connection lost")


@needs_stunnel
@pytest.mark.parametrize(("case", "needles"), [
    ("wrong CA", ("certificate was not accepted: self-signed certificate in certificate chain",)),
    ("expired server certificate", ("certificate was not accepted: certificate has expired",)),
    ("expired client certificate", REJECTED),
    ("no client certificate", REJECTED),
    # gearmand closes on the ClientHello; gearctl server answers its first line as an unknown admin command
    ("plaintext server", ("tls handshake failed: the server closed the connection (a plaintext port, not tls?)",
                          "tls handshake failed: the server answered in plaintext (a plaintext port, not tls?)")),
])
def test_tls_failures_are_one_line_exit_3_and_no_hang(gearmand: Gearmand, procs: Procs, tmp_path: Path, pki: Pki,
                                                     case: str, needles: tuple[str, ...]) -> None:
    flags = pki.client_flags()
    if case == "plaintext server":
        address = gearmand.address
    else:
        cert = pki.expired_server if case == "expired server certificate" else pki.server
        address = Stunnel(procs, tmp_path, gearmand, cert, pki.key(cert.stem), pki.ca).address
        if case == "wrong CA":
            flags = pki.client_flags(ca=pki.other_ca)
        elif case == "expired client certificate":
            flags = pki.client_flags("expired_client")
        elif case == "no client certificate":
            flags = ["--tls-ca", str(pki.ca)]
    timeouts = ["--connect-timeout", "5", "--io-timeout", "5"]
    for argv in (["client", "reverse", "--data", "x"], ["client", "reverse", "--wait", "--data", "x"], ["status"]):
        result = gearctl(*argv, "-s", address, *flags, *timeouts, timeout=PATIENCE)  # a hang fails here
        assert result.returncode == 3, (case, argv, result.stderr)
        _one_error_line(result, *needles)
    # The worker logs the reason and, with --burst and no server to drain, exits 3.
    worker = gearctl("worker", "-p", str(PLUGINS), "-f", "reverse", "--burst", "-s", address, *flags,
                     "--connect-timeout", "5", timeout=PATIENCE)
    assert worker.returncode == 3, worker.stderr
    assert any(n in worker.stderr.decode().lower() for n in needles), worker.stderr
    assert gearmand.status().get("reverse", (0, 0, 0))[0] == 0  # nothing got through


def test_describe_socket_error_says_why_a_tls_connection_failed() -> None:
    expired = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    expired.verify_message = "certificate has expired"
    assert describe_socket_error(expired) == "TLS: the server's certificate was not accepted: certificate has expired"
    plaintext = "TLS handshake failed: the server closed the connection (a plaintext port, not TLS?)"
    assert describe_socket_error(ConnectionResetError(), tls=True) == plaintext
    assert describe_socket_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), tls=True) == plaintext
    # A refused connection is refused, TLS or not; without TLS a reset is a reset.
    assert describe_socket_error(ConnectionRefusedError(111, "Connection refused"), tls=True) == "connection refused"
    assert describe_socket_error(ConnectionResetError(104, "Connection reset by peer")) == "connection reset by peer"
