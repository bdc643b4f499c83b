"""Kill -9 `bridge serve` while deliveries are in flight; restart on the same database; every acknowledged
webhook is delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import free_port, serve
from tests.harness import MAPPINGS, STRIPE_SECRET, stripe_case, stripe_headers

API_KEY = "cv_crash_key"
pytestmark = pytest.mark.slow


class Slow:
    """Wrap an ASGI app so every HTTP request takes `delay` seconds: deliveries stay in flight. `waiting` counts
    requests that have arrived and not been answered yet."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.waiting = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.waiting += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.waiting -= 1
        await self.app(scope, receive, send)


def payment(index: int) -> bytes:
    event = orjson.loads(stripe_case("payment_intent.succeeded"))
    event["id"] = f"evt_crash_{index}"
    event["data"]["object"]["id"] = f"pi_crash_{index}"
    return orjson.dumps(event)


def order_ids(fake: ConvultraFake) -> set[str]:
    """Order ids of every accepted event, single or batched."""
    ids = set()
    for request in fake.received:
        body = request["json"]
        for event in body["events"] if "events" in body else [body]:
            ids.add(event["properties"]["order_id"])
    return ids


def start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(f"bridge serve exited with {proc.returncode}")
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("bridge serve did not become ready")


async def test_sigkill_with_deliveries_in_flight_loses_nothing(tmp_path: Path) -> None:
    fake = ConvultraFake(API_KEY)
    slow = Slow(fake.app, 0.3)
    async with serve(slow) as sink:
        config = tmp_path / "bridge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
                    "mappings": str(MAPPINGS),
                    "sources": {"stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET]}},
                    "destinations": {
                        "convultra": {
                            "type": "convultra",
                            "url": f"{sink}/v1/track",
                            "api_key": API_KEY,
                            "events": ["purchase"],
                            "concurrency": 4,
                        }
                    },
                }
            )
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "serve.log"
        proc = start(config, port, log)
        acknowledged: set[str] = set()
        try:
            await wait_ready(base, proc)
            async with httpx.AsyncClient(base_url=base) as client:
                for index in range(40):
                    body = payment(index)
                    response = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
                    if response.status_code == 200:
                        acknowledged.add(f"pi_crash_{index}")
            # kill while a request is in flight at the (slow) sink: sent, not yet answered
            for _ in range(500):
                if slow.waiting:
                    break
                await asyncio.sleep(0.005)
            assert slow.waiting, "no delivery was ever in flight"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            delivered_before_restart = order_ids(fake)
            assert len(delivered_before_restart) < len(acknowledged), "the kill came too late to test anything"

            proc = start(config, port, log)
            await wait_ready(base, proc)
            for _ in range(600):
                if acknowledged <= order_ids(fake):
                    break
                await asyncio.sleep(0.05)
            assert len(acknowledged) == 40
            assert acknowledged <= order_ids(fake)
            assert fake.rejected == []
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)  # uvicorn re-raises SIGTERM after its graceful shutdown
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise
    assert '"msg":"bridge stopped"' in log.read_text()  # the second process shut down cleanly
