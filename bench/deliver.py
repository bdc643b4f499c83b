"""Delivery drain: a backlog of pending deliveries drained by `bridge serve` to a local sink, against a raw
aiohttp client sending the same requests to the same sink in the same run.

    .venv/bin/python bench/deliver.py [--deliveries 50000] [--concurrency 32]

The backlog is written straight into the SQLite outbox (real ingest writes, group-committed), then
`bridge serve` starts on it and the time until the ops API reports nothing pending is measured. The sink is a
minimal uvloop HTTP/1.1 responder in its own process. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop
import yaml

from bench._common import ROOT, free_port, python, spawn, stop, wait_http
from bridge.destinations.base import DestinationSettings
from bridge.destinations.http import DESTINATION as HttpDestination
from bridge.outbox import open_outbox
from bridge.outbox.base import NewDelivery, NewRequest, NewWebhook

TOKEN = "bench-ops-token-0123456789"


def canonical(index: int) -> dict[str, object]:
    events = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.expected.json").read_bytes())
    event: dict[str, object] = events[0]
    event["id"] = f"pi_drain_{index}"
    return event


async def prefill(db: Path, count: int) -> None:
    outbox = open_outbox(f"sqlite:///{db}")
    await outbox.open()
    now = time.time()
    try:
        for start in range(0, count, 2000):
            batch = []
            for index in range(start, min(start + 2000, count)):
                payload = orjson.dumps(canonical(index))
                batch.append(
                    outbox.ingest(
                        NewRequest(
                            source="stripe",
                            provider="stripe",
                            received_at=now,
                            headers=b"{}",
                            body=b'{"id": "evt_drain_%d"}' % index,
                            webhooks=[
                                NewWebhook(
                                    provider_event_id=f"evt_drain_{index}",
                                    event_type="checkout.session.completed",
                                    status="accepted",
                                    error=None,
                                    events=b"[" + payload + b"]",
                                    deliveries=[NewDelivery("sink", "purchase", f"pi_drain_{index}", payload)],
                                )
                            ],
                        )
                    )
                )
            await asyncio.gather(*batch)
    finally:
        await outbox.close()


async def drain_with_bridge(config: Path, port: int, count: int, log: Path) -> float:
    proc = spawn([python(), "-m", "bridge", "serve", "--config", str(config), "--port", str(port)], log)
    try:
        started = time.perf_counter()
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            while True:
                async with session.get(f"http://127.0.0.1:{port}/ops/outbox") as response:
                    stats = await response.json()
                sink = stats["destinations"].get("sink", {})
                if sink.get("delivered", 0) >= count:
                    return time.perf_counter() - started
                await asyncio.sleep(0.05)
    finally:
        stop(proc)


async def raw_client(url: str, count: int, concurrency: int) -> float:
    destination = HttpDestination(DestinationSettings(name="sink", type="http", url=url))
    requests = [destination.render([canonical(i)]) for i in range(count)]
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for request in queue:
                async with session.request(
                    request.method, request.url, data=request.body, headers=request.headers
                ) as response:
                    await response.read()
                    assert response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-drain-") as tmp_name:
        tmp = Path(tmp_name)
        sink_port = free_port()
        sink = spawn([python(), "-m", "bench._sink", str(sink_port)], tmp / "sink.log")
        try:
            time.sleep(0.5)
            sink_url = f"http://127.0.0.1:{sink_port}/collect"
            db = tmp / "outbox.db"
            t0 = time.perf_counter()
            uvloop.run(prefill(db, args.deliveries))
            prefill_seconds = time.perf_counter() - t0
            config = tmp / "bridge.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "outbox": {"url": f"sqlite:///{db}"},
                        "ops": {"token": TOKEN},
                        "mappings": str(ROOT / "mappings"),
                        "destinations": {"sink": {"type": "http", "url": sink_url, "concurrency": args.concurrency}},
                    }
                )
            )
            bridge_seconds = uvloop.run(drain_with_bridge(config, free_port(), args.deliveries, tmp / "serve.log"))
            raw_seconds = uvloop.run(raw_client(sink_url, args.deliveries, args.concurrency))
        finally:
            stop(sink)
    bridge_rate = args.deliveries / bridge_seconds
    raw_rate = args.deliveries / raw_seconds
    print(f"delivery drain of {args.deliveries} pending deliveries, concurrency {args.concurrency}, 127.0.0.1")
    print(f"  prefill (ingest writes)    {args.deliveries / prefill_seconds:>10.0f} rows/s")
    print(f"  bridge serve drain         {bridge_rate:>10.0f} deliveries/s  ({bridge_seconds:.1f} s, incl. start-up)")
    print(f"  raw aiohttp, same requests {raw_rate:>10.0f} requests/s    ({raw_seconds:.1f} s)")
    print(f"  ratio bridge / raw         {bridge_rate / raw_rate:>10.2f}")


if __name__ == "__main__":
    main()
