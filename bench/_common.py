"""Helpers shared by the benchmarks: processes on loopback, readiness, wrk output parsing."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def python() -> str:
    return sys.executable


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/sec, p50 and p99 (ms) and non-2xx count from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    result = {"rps": rps, "non2xx": 0.0, "errors": 0.0}
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if total:
        result["requests"] = float(total.group(1))
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match:
            result[f"p{pct}"] = float(match.group(1)) * _UNITS[match.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx:
        result["non2xx"] = float(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        result["errors"] = float(sum(int(x) for x in errors.groups()))
    return result


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of process `pid`, in KiB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def load_average() -> float:
    """The 1-minute load average (printed with every result: the machine is shared)."""
    return os.getloadavg()[0]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def write_json(path: Path, report: object) -> None:
    path.write_bytes(json.dumps(report, indent=2).encode() + b"\n")


def profiler(pid: int, out: Path, log: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` into `out` as collapsed stacks until `pid` exits: all threads, thread names shown,
    only samples holding the GIL (what the event loop and the writer thread compete for; SQLite's own C work
    runs without the GIL and is left out). Summarise with `python -m bench.profile OUT`."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise SystemExit(f"--profile needs py-spy beside {sys.executable}: .venv/bin/pip install -e '.[bench]'")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--threads", "--nolineno", "--gil"]
    return spawn([*command, "--rate", "250", "-o", str(out)], log)


@contextlib.contextmanager
def local_sink(tmp: Path, *options: str) -> Iterator[str]:
    """`bench._sink` in a process of its own on 127.0.0.1 (its log in `tmp`/sink.log), once it answers; yields its
    base URL and stops it after."""
    port = free_port()
    sink = spawn([python(), "-m", "bench._sink", str(port), *options], tmp / "sink.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/")
        yield base
    finally:
        stop(sink)
