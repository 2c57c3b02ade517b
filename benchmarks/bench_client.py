#!/usr/bin/env python3
"""gearctl client beside the C `gearman` tool, in one run, on a private gearmand.

    python3 benchmarks/bench_client.py [--jobs 20000] [--roundtrips 2000] [--repeat 3]

Measures whole commands (process start included), best of --repeat:
  background: `gearman -b -n -f F < lines`      vs `gearctl client F -n -q < lines`
  foreground: `gearman -n -f F < lines`         vs `gearctl client F -n --wait --inflight 1 < lines`
              (one job after another, each served by the same C `gearman -w` worker)
and, for reference, gearctl's pipelined foreground (`--wait` with the default window).
Every run's job count is checked on the server; a mismatch fails the benchmark.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GEARCTL = [sys.executable, "-m", "gearctl"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(port: int, command: str) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not (buf == b".\n" or buf.endswith(b"\n.\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [line for line in buf.decode().split("\n") if line and line != "."]


def queued(port: int, function: str) -> int:
    for line in admin(port, "status"):
        name, total, _running, _workers = line.rsplit("\t", 3)
        if name == function:
            return int(total)
    return 0


IN_RUN = re.compile(rb"\(([\d,]+) jobs/s\)")
in_run_rates: dict[str, list[float]] = {}


def timed(argv: list[str], stdin: Path, name: str = "") -> float:
    with stdin.open("rb") as f:
        start = time.perf_counter()
        result = subprocess.run(argv, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed ({result.returncode}): {' '.join(argv)}\n"
                         f"{result.stderr.decode(errors='replace')}")
    if match := IN_RUN.search(result.stderr):  # gearctl --summary: the rate once started
        in_run_rates.setdefault(name, []).append(float(match.group(1).replace(b",", b"")))
    return elapsed


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("gearmand") or "/usr/sbin/gearmand", "-L", "127.0.0.1", "-p", str(self.port),
             "-l", str(tmp / "gearmand.log"), "-P", str(tmp / "gearmand.pid"), "--verbose", "ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("gearmand did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000, help="background jobs per run")
    parser.add_argument("--roundtrips", type=int, default=2_000, help="foreground jobs per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("gearman"):
        raise SystemExit("the C gearman tool is not installed (Debian: gearman-tools)")

    tmp = Path(tempfile.mkdtemp(prefix="gearctl-bench-"))
    bg_lines, fg_lines = tmp / "bg.txt", tmp / "fg.txt"
    bg_lines.write_bytes(b"".join(b"payload-%d\n" % i for i in range(args.jobs)))
    fg_lines.write_bytes(b"".join(b"rt-%d\n" % i for i in range(args.roundtrips)))
    workers: list[subprocess.Popen] = []
    results: dict[str, float] = {}
    server: Server | None = None
    try:
        def best(name: str, make_argv, lines: Path, expect: int) -> None:
            # A fresh gearmand per run: one that already holds 60,000 jobs is slower,
            # and whichever tool ran second would pay for the first one's jobs.
            times = []
            for _ in range(args.repeat):
                fresh = Server(tmp)
                try:
                    times.append(timed(make_argv(fresh.port), lines, name))
                    if (got := queued(fresh.port, "bg")) != expect:
                        raise SystemExit(f"{name}: expected {expect} jobs queued, the server has {got}")
                finally:
                    fresh.stop()
            results[name] = expect / min(times)

        best("C gearman -b -n", lambda port: ["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-n", "-f", "bg"],
             bg_lines, args.jobs)
        best("gearctl client -n", lambda port: [*GEARCTL, "client", "bg", "-n", "-q", "--summary",
                                                "-s", f"127.0.0.1:{port}"], bg_lines, args.jobs)

        server = Server(tmp)
        base = ["-h", "127.0.0.1", "-p", str(server.port)]
        addr = ["-s", f"127.0.0.1:{server.port}"]
        fg = "roundtrip"
        workers.append(subprocess.Popen(["gearman", *base, "-w", "-f", fg], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        time.sleep(0.3)

        def fg_best(name: str, make_argv) -> None:
            times = [timed(make_argv(), fg_lines) for _ in range(args.repeat)]
            results[name] = args.roundtrips / min(times)

        fg_best("C gearman -n (foreground)", lambda: ["gearman", *base, "-n", "-f", fg])
        fg_best("gearctl -n --wait --inflight 1", lambda: [*GEARCTL, "client", fg, "-n", "--wait", "-q",
                                                           "--inflight", "1", *addr])
        fg_best("gearctl -n --wait (pipelined)", lambda: [*GEARCTL, "client", fg, "-n", "--wait", "-q", *addr])
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGTERM)
                worker.wait(10)
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"gearctl vs the C gearman tool ({os.cpu_count()} cores, best of {args.repeat}, process start included)")
    print(f"{'run':36} {'jobs/s':>10}")
    for name, rate in results.items():
        print(f"{name:36} {rate:>10,.0f}")
    bg_ratio = results["gearctl client -n"] / results["C gearman -b -n"]
    fg_ratio = results["gearctl -n --wait --inflight 1"] / results["C gearman -n (foreground)"]
    pipe_ratio = results["gearctl -n --wait (pipelined)"] / results["C gearman -n (foreground)"]
    print(f"ratio background submit ({args.jobs} jobs), gearctl / C:      {bg_ratio:6.2f}x")
    if rates := in_run_rates.get("gearctl client -n"):
        in_run = max(rates)
        print(f"  gearctl once started (without interpreter start-up): {in_run:,.0f} jobs/s, "
              f"{in_run / results['C gearman -b -n']:.2f}x")
    print(f"ratio foreground one-by-one ({args.roundtrips} jobs), gearctl / C: {fg_ratio:6.2f}x")
    print(f"ratio foreground pipelined, gearctl / C one-by-one:     {pipe_ratio:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
