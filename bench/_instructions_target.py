"""One run for `bench.instructions`, meant to be counted under valgrind: send `count` deliveries to the sink one
of three ways, from inputs prepared beforehand (not counted per delivery), then exit.

    python -m bench._instructions_target raw|floor|bridge WORKDIR URL COUNT

- raw: a plain aiohttp client posting the pre-rendered requests (WORKDIR/requests.json) from 32 workers;
- floor: the least durable dispatcher (bench/_floor_dispatch.py) draining WORKDIR/floor-COUNT.db;
- bridge: `bridge serve`'s app (its lifespan: outbox, dispatcher, metrics, upkeep; no HTTP server and no mapping
  reload watcher) with the collector tuned as `bridge serve` tunes it, draining WORKDIR/outbox-COUNT.db until
  every delivery is recorded as delivered.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop

from bench._floor_dispatch import floor_client
from bench.deliver import drain_config, post_each
from bridge import logs
from bridge.app import create_app
from bridge.collector import tune_for_serving
from bridge.config import load_settings
from bridge.destinations.base import HttpRequest
from bridge.mapping import load_mappings

CONCURRENCY = 32


async def raw(workdir: Path, count: int) -> None:
    rows = orjson.loads((workdir / "requests.json").read_bytes())[:count]
    requests = [HttpRequest(method, url, headers, body.encode()) for method, url, headers, body in rows]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        await post_each(session, requests, CONCURRENCY)


async def floor(workdir: Path, count: int) -> None:
    [(_, url, headers, _)] = orjson.loads((workdir / "requests.json").read_bytes())[:1]
    figures = await floor_client(workdir / f"floor-{count}.db", url, count, CONCURRENCY, headers)
    assert figures["delivered"] == count, figures


async def bridge(workdir: Path, url: str, count: int) -> None:
    """`bridge serve`'s app without the HTTP server: config, logging, mappings, the app's lifespan (outbox,
    dispatcher with its metrics hook, upkeep), the collector tuned, until every delivery is recorded."""
    config = drain_config(workdir / f"bridge-{count}.yaml", workdir / f"outbox-{count}.db", url, CONCURRENCY)
    settings = load_settings(config, {})
    logs.configure("INFO", "json", logs.secret_values(settings))
    # no mapping-reload watcher: its cost is per second, not per delivery, and the run is ~40x slower under valgrind
    app = create_app(settings, mappings=load_mappings(settings.mappings_dir), reload_interval=None)
    tune_for_serving()
    async with app.router.lifespan_context(app):
        state = app.state.bridge
        lane = state.dispatcher.lanes["sink"]
        while lane.stats.delivered < count:  # every answer back (counted in memory, so watching costs little)
            await asyncio.sleep(0.01)
        for _ in range(1000):  # then every attempt recorded
            stats = await state.outbox.stats(time.time())
            if stats["destinations"]["sink"]["delivered"] == count:
                break
            await asyncio.sleep(0.01)
    assert stats["destinations"]["sink"]["delivered"] == count, stats


def main(argv: list[str]) -> None:
    target, workdir, url, count = argv[0], Path(argv[1]), argv[2], int(argv[3])
    if target == "raw":
        uvloop.run(raw(workdir, count))
    elif target == "floor":
        uvloop.run(floor(workdir, count))
    elif target == "bridge":
        uvloop.run(bridge(workdir, url, count))
    else:
        raise SystemExit(f"unknown target {target!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
