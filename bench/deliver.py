"""Delivery drain: a backlog of pending deliveries drained by `bridge serve` to a local sink, against a raw
aiohttp client sending the same requests to the same sink in the same run, and against the floor: the least a
durable dispatcher does (bench/_floor_dispatch.py; docs/adr/0009-throughput-floors-and-one-ingest-process.md).

    .venv/bin/python -m bench.deliver [--deliveries 50000] [--concurrency 32] [--rounds 3] [--json out.json]
    .venv/bin/python -m bench.deliver --quick    # 1,000 deliveries: the CI smoke test

Each round runs the bridge, the raw client and the floor in turn on a fresh backlog; with several rounds the
figures are medians and each ratio is the median of the rounds' own ratios.

The backlog is written straight into the SQLite outbox (real ingest writes, group-committed), then
`bridge serve` starts on it and the sink's request count is watched until everything arrived; the rate counts
from the first delivery seen, so start-up is left out. CPU per delivery: the server's utime + stime over that span, and
the raw client's own process time. The sink is a
minimal uvloop HTTP/1.1 responder in its own process. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
import yaml

from bench._common import (
    ROOT,
    cpu_seconds,
    free_port,
    load_average,
    local_sink,
    profiler,
    python,
    spawn,
    stop,
    wait_http,
    write_json,
)
from bench._floor_dispatch import fill, floor_client
from bridge.destinations.base import DestinationSettings, HttpRequest
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


async def drain_with_bridge(
    config: Path, port: int, sink: str, count: int, log: Path, profile: Path | None = None
) -> dict[str, float]:
    """Start `bridge serve` on the filled outbox and watch the sink's request count (every 0.05 s) until every
    delivery arrived, then the ops API until every one is recorded as delivered.

    The rate is taken between the first look that saw a delivery arrive and the one that saw the last, so the
    start-up (imports, opening the outbox) is not counted, and the bridge spends nothing on being watched;
    `with_startup_s` is the whole time from the spawn to the last delivery recorded."""
    async with aiohttp.ClientSession() as session:
        base = await _get(session, f"{sink}/__count")  # before the bridge can send anything
    spawned = time.perf_counter()
    proc = spawn([python(), "-m", "bridge", "serve", "--config", str(config), "--port", str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
            profiler(proc.pid, profile, log.with_name("py-spy.log"))
        first: tuple[float, int, float] | None = None
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            while True:
                arrived = await _get(session, f"{sink}/__count") - base
                now, cpu = time.perf_counter(), cpu_seconds(proc.pid)
                if first is None and arrived > 0:
                    first = (now, arrived, cpu)
                if arrived >= count:
                    break
                await asyncio.sleep(0.05)
            assert first is not None
            if arrived == first[1]:  # all of it between two looks: no steady-state figure
                raise RuntimeError("the drain finished within one look: use more --deliveries")
            figures = {
                "rate": (arrived - first[1]) / (now - first[0]),
                "cpu_us": (cpu - first[2]) / (arrived - first[1]) * 1e6,
            }
            while (await _get(session, f"http://127.0.0.1:{port}/ops/outbox"))["destinations"]["sink"].get(
                "delivered", 0
            ) < count:
                await asyncio.sleep(0.05)
            figures["with_startup_s"] = time.perf_counter() - spawned
            return figures
    finally:
        stop(proc)


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        return orjson.loads(await response.read())


def rendered(url: str, count: int) -> list[HttpRequest]:
    destination = HttpDestination(DestinationSettings(name="sink", type="http", url=url))
    return [destination.render([canonical(i)]) for i in range(count)]


async def floor_dispatch(path: Path, url: str, count: int, concurrency: int) -> dict[str, float]:
    """The same requests sent by the least durable dispatcher (bench/_floor_dispatch.py): their bodies stored in an
    SQLite outbox first (not timed), then claimed, sent and recorded."""
    requests = rendered(url, count)
    fill(path, [bytes(r.body) for r in requests])
    return await floor_client(path, url, count, concurrency, dict(requests[0].headers))


async def post_each(session: aiohttp.ClientSession, requests: Iterable[HttpRequest], concurrency: int) -> None:
    """The raw client: every request posted as it is from `concurrency` workers, each answer read and a 200."""
    queue = iter(requests)

    async def worker() -> None:
        for request in queue:
            async with session.request(request.method, request.url, data=request.body, headers=request.headers) as r:
                await r.read()
                assert r.status == 200

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def raw_client(url: str, count: int, concurrency: int) -> dict[str, float]:
    requests = rendered(url, count)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started, cpu = time.perf_counter(), time.process_time()
        await post_each(session, requests, concurrency)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rate": count / seconds, "cpu_us": cpu / count * 1e6, "seconds": seconds}


def drain_config(path: Path, db: Path, sink_url: str, concurrency: int) -> Path:
    """A bridge.yaml (written to `path`) that drains the SQLite outbox `db` to the sink through one http
    destination, `sink`."""
    path.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": f"sqlite:///{db}"},
                "ops": {"token": TOKEN},
                "mappings": str(ROOT / "mappings"),
                "destinations": {"sink": {"type": "http", "url": sink_url, "concurrency": concurrency}},
            }
        )
    )
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="repeat bridge, raw and floor; medians are reported")
    parser.add_argument("--quick", action="store_true", help="smoke test: --deliveries 1000")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="py-spy the bridge into this file (see bench.profile)")
    args = parser.parse_args(argv)
    if args.quick:
        args.deliveries = 1000
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bridge-drain-") as tmp_name:
        tmp = Path(tmp_name)
        with local_sink(tmp) as sink_base:
            sink_url = f"{sink_base}/collect"
            rounds = []
            for round_ in range(args.rounds):  # bridge, raw and floor in turn, each round on a fresh backlog
                db = tmp / f"outbox{round_}.db"
                t0 = time.perf_counter()
                uvloop.run(prefill(db, args.deliveries))
                prefill_seconds = time.perf_counter() - t0
                config = drain_config(tmp / f"bridge{round_}.yaml", db, sink_url, args.concurrency)
                log = tmp / f"serve{round_}.log"
                bridge = uvloop.run(
                    drain_with_bridge(config, free_port(), sink_base, args.deliveries, log, args.profile)
                )
                raw = uvloop.run(raw_client(sink_url, args.deliveries, args.concurrency))
                floor = uvloop.run(
                    floor_dispatch(tmp / f"floor{round_}.db", sink_url, args.deliveries, args.concurrency)
                )
                rounds.append({"bridge": bridge, "raw": raw, "floor": floor, "prefill_s": prefill_seconds})

    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    for r in rounds:  # the ratios of one round: its three runs saw the same machine
        r["ratio"] = r["bridge"]["rate"] / r["raw"]["rate"]
        r["cpu_ratio"] = r["bridge"]["cpu_us"] / r["raw"]["cpu_us"]
        r["floor_ratio"] = r["floor"]["rate"] / r["raw"]["rate"]
    report = {
        "benchmark": "deliver",
        "deliveries": args.deliveries,
        "concurrency": args.concurrency,
        "load": [load_before, load_average()],
        "prefill_rows_per_s": args.deliveries / statistics.median(r["prefill_s"] for r in rounds),
        "bridge": {key: median("bridge", key) for key in rounds[0]["bridge"]},
        "raw": {key: median("raw", key) for key in rounds[0]["raw"]},
        "floor": {key: median("floor", key) for key in rounds[0]["floor"]},
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
        "floor_ratio": statistics.median(r["floor_ratio"] for r in rounds),
        "rounds": rounds,
    }
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def print_report(report: dict[str, Any]) -> None:
    bridge, raw = report["bridge"], report["raw"]
    print(
        f"delivery drain of {report['deliveries']} pending deliveries, concurrency {report['concurrency']}, "
        f"127.0.0.1 (load {report['load'][0]:.1f} -> {report['load'][1]:.1f})"
    )
    print(f"  prefill (ingest writes)    {report['prefill_rows_per_s']:>10.0f} rows/s")
    print(
        f"  bridge serve drain         {bridge['rate']:>10.0f} deliveries/s  {bridge['cpu_us']:>6.0f} us CPU each"
        f"  ({bridge['with_startup_s']:.1f} s incl. start-up)"
    )
    print(f"  raw aiohttp, same requests {raw['rate']:>10.0f} requests/s    {raw['cpu_us']:>6.0f} us CPU each")
    floor = report["floor"]
    print(f"  floor: durable, nothing else {floor['rate']:>8.0f} deliveries/s  {floor['cpu_us']:>6.0f} us CPU each")
    print(f"  ratio bridge / raw         {report['ratio']:>10.2f}  (CPU per delivery: {report['cpu_ratio']:.2f}x)")
    print(f"  ratio floor / raw          {report['floor_ratio']:>10.2f}  (what any durable dispatcher can reach here)")
    if len(report["rounds"]) > 1:
        print(f"  (medians of {len(report['rounds'])} rounds; ratios are medians of each round's own)")
        for i, r in enumerate(report["rounds"], 1):
            print(
                f"  round {i}: bridge {r['bridge']['rate']:.0f}/s {r['bridge']['cpu_us']:.0f} us, "
                f"raw {r['raw']['rate']:.0f}/s {r['raw']['cpu_us']:.0f} us, floor {r['floor']['rate']:.0f}/s "
                f"{r['floor']['cpu_us']:.0f} us: bridge/raw {r['ratio']:.2f}, floor/raw {r['floor_ratio']:.2f}"
            )


if __name__ == "__main__":
    main()
