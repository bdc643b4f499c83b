"""`bridge serve` as real processes for the scale-out tests: config files, start, readiness, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness import MAPPINGS, OPS_TOKEN, STRIPE_SECRET


def write_config(path: Path, outbox_url: str, destinations: Mapping[str, Any], **extra: Any) -> Path:
    config: dict[str, Any] = {
        "outbox": {"url": outbox_url},
        "ops": {"token": OPS_TOKEN},
        "mappings": str(MAPPINGS),
        "sources": {"stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET]}},
        "destinations": dict(destinations),
        "log": {"level": "INFO", "format": "text"},
        **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Replica:
    """One `bridge serve` process on 127.0.0.1."""

    config: Path
    port: int
    log: Path
    role: str = "all"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        args = [sys.executable, "-m", "bridge", "serve", "--config", str(self.config), "--port", str(self.port)]
        if self.role != "all":
            args += ["--role", self.role]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until /readyz answers 200 (a bound for a loaded machine, not a timing assumption)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient() as client:
            while loop.time() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    tail = self.log.read_text()[-3000:] if self.log.exists() else ""
                    raise AssertionError(f"bridge serve exited ({self.proc and self.proc.returncode}):\n{tail}")
                try:
                    if (await client.get(f"{self.base}/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"bridge serve on {self.port} did not become ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease given back, nothing flushed."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
