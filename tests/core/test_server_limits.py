"""`bridge serve` over real sockets: a client that stalls mid-body gets 408 and loses its connection; the
server: section's connection limit and keep-alive timeout reach uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridge.sinks.server import free_port
from tests.harness import MAPPINGS, OPS_TOKEN, STRIPE_SECRET

pytestmark = pytest.mark.slow
PATIENCE = 20.0  # upper bound for anything the server must do; never a measured duration


@contextlib.asynccontextmanager
async def bridge_serve(tmp_path: Path, server: dict[str, Any]) -> AsyncIterator[int]:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
                "ops": {"token": OPS_TOKEN},
                "mappings": str(MAPPINGS),
                "server": {"host": "127.0.0.1", "port": port, **server},
                "sources": {"stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET]}},
            }
        )
    )
    log = (tmp_path / "serve.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(int(PATIENCE / 0.05)):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("bridge serve did not become ready")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status code and head of one HTTP/1.1 response."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    return int(head.split(b" ", 2)[1]), head


async def get_healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
    await writer.drain()
    status, head = await read_response(reader)
    [length] = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    await asyncio.wait_for(reader.readexactly(length), PATIENCE)
    return status


async def test_a_stalled_body_gets_408_and_the_connection_is_closed(tmp_path: Path) -> None:
    async with bridge_serve(tmp_path, {"body_timeout_seconds": 0.5}) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
            b"Stripe-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n"
            b'{"id": "evt_partial", "type": "charge.'
        )
        await writer.drain()  # and then nothing more: the client stalls
        status, head = await read_response(reader)
        assert status == 408, head
        assert b"connection: close" in head.lower()
        await asyncio.wait_for(reader.read(), PATIENCE)  # the server hangs up: EOF
        writer.close()
        async with httpx.AsyncClient() as client:
            listed = await client.get(
                f"http://127.0.0.1:{port}/ops/webhooks", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
            )
            assert listed.json()["webhooks"] == []


async def test_connections_past_limit_concurrency_get_503(tmp_path: Path) -> None:
    async with bridge_serve(tmp_path, {"limit_concurrency": 3, "keep_alive_seconds": 60}) as port:
        held = []
        for _ in range(2):  # two kept-alive connections, each proven accepted by one answered request
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await get_healthz(reader, writer) == 200
            held.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await get_healthz(reader, writer) == 503  # the third connection reaches the limit
        for w in [*held, writer]:
            w.close()


async def test_idle_keep_alive_connections_close_after_the_configured_time(tmp_path: Path) -> None:
    # uvicorn's own default is 5 s; waiting at most 4 s for the server to hang up proves the setting arrived
    async with bridge_serve(tmp_path, {"keep_alive_seconds": 1}) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await get_healthz(reader, writer) == 200
        assert await asyncio.wait_for(reader.read(), 4.0) == b""
        writer.close()
