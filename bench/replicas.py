"""Several `bridge serve` replicas on one PostgreSQL database: ingest and delivery throughput with 1, 2 and 3
replicas, and how long a webhook takes to reach its destination (p50/p99, from the POST being sent to the
destination receiving the event).

    .venv/bin/python -m bench.replicas [--webhooks 3000] [--concurrency 32] [--paced 300] [--rate 50]
                                       [--replicas 1 2 3]

For each replica count: a fresh database on the shared server (BRIDGE_BENCH_PG_ADMIN, default
postgresql://postgres@127.0.0.1:5432/postgres; created and dropped), N replicas (`--role all`), one generic HTTP
destination without a rate limit pointing at a uvloop sink in its own process that notes when each event
arrives, and a client posting distinct signed Stripe payments round-robin over the replicas with `concurrency`
requests in flight. Ingest rate: webhooks acknowledged per second while posting. Delivery rate: events arrived
per second from the first POST to the last arrival. Under that burst the latency is mostly time in the queue, so
a second, paced run (`--paced` webhooks at `--rate` per second, round-robin: with several replicas most of them
are stored by a replica that does not send, and the sender is woken by NOTIFY) gives the latency of the path
itself. A destination's lane is sent by one replica at a time (the
lane lease that keeps its documented limits for the fleet), so extra replicas add ingest capacity, not sending
capacity for one destination.

Everything shares the machine: on a 2-core machine the replicas, PostgreSQL, the sink and the client compete
for the same cores, so the figures show the overhead of more replicas, not scaling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import uvloop
import yaml

from bench._common import ROOT, free_port, python, spawn, stop, wait_http
from bridge.demo import stripe_signature

SECRET = "whsec_bench_replicas_secret"
TOKEN = "bench-ops-token-0123456789"
ADMIN = os.environ.get("BRIDGE_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def payments(count: int, run: str) -> list[tuple[str, bytes]]:
    template = orjson.loads((ROOT / "fixtures" / "stripe" / "payment_intent.succeeded.json").read_bytes())
    out = []
    for index in range(count):
        payment = f"pi_{run}_{index}"
        template["id"] = f"evt_{run}_{index}"
        template["data"]["object"]["id"] = payment
        template["created"] = int(time.time())
        out.append((payment, orjson.dumps(template)))
    return out


def config(path: Path, dsn: str, sink: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": dsn},
                "ops": {"token": TOKEN},
                "mappings": str(ROOT / "mappings"),
                "sources": {"stripe": {"provider": "stripe", "secrets": [SECRET]}},
                "destinations": {"sink": {"type": "http", "url": sink, "events": ["purchase"], "concurrency": 32}},
                "log": {"level": "WARNING"},
            }
        )
    )
    return path


async def post_all(
    bases: list[str], bodies: list[tuple[str, bytes]], concurrency: int
) -> tuple[float, dict[str, float], int]:
    """Post every body round-robin; (seconds, send time per payment id, non-2xx answers)."""
    sent: dict[str, float] = {}
    failures = 0
    queue = iter(enumerate(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for index, (payment, body) in queue:
                base = bases[index % len(bases)]
                headers = {
                    "Stripe-Signature": stripe_signature(body, SECRET, int(time.time())),
                    "Content-Type": "application/json",
                }
                sent[payment] = time.time()
                async with session.post(f"{base}/webhooks/stripe", data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, sent, failures


async def arrivals(sink_port: int) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{sink_port}/count") as response:
        return int(await response.text())


async def post_paced(bases: list[str], bodies: list[tuple[str, bytes]], rate: float) -> dict[str, float]:
    """Post one body every 1/rate seconds, round-robin; the send time per payment id."""
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        for index, (payment, body) in enumerate(bodies):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            headers = {
                "Stripe-Signature": stripe_signature(body, SECRET, int(time.time())),
                "Content-Type": "application/json",
            }
            sent[payment] = time.time()
            async with session.post(f"{bases[index % len(bases)]}/webhooks/stripe", data=body, headers=headers) as r:
                await r.read()
    return sent


async def wait_arrivals(sink_port: int, count: int) -> None:
    deadline = time.monotonic() + 300
    while await arrivals(sink_port) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("deliveries did not all arrive within 300 s")
        await asyncio.sleep(0.05)


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def run_once(replicas: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    admin = await asyncpg.connect(ADMIN)
    name = f"bridge_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = f"{ADMIN.rsplit('/', 1)[0]}/{name}"
    sink_port = free_port()
    stamps = tmp / f"arrivals-{replicas}.tsv"
    sink = spawn([python(), "-m", "bench._stamp_sink", str(sink_port), str(stamps)], tmp / "sink.log")
    procs = []
    try:
        cfg = config(tmp / f"bridge-{replicas}.yaml", dsn, f"http://127.0.0.1:{sink_port}/collect")
        ports = [free_port() for _ in range(replicas)]
        for port in ports:
            cmd = [python(), "-m", "bridge", "serve", "--config", str(cfg), "--port", str(port)]
            procs.append(spawn(cmd, tmp / f"serve-{replicas}-{port}.log"))
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        wait_http(f"http://127.0.0.1:{sink_port}/count", timeout=10)
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        run = f"r{replicas}_{uuid.uuid4().hex[:6]}"
        burst = payments(args.webhooks, f"{run}_burst")
        first = time.time()
        ingest_seconds, sent, failures = await post_all(bases, burst, args.concurrency)
        await wait_arrivals(sink_port, args.webhooks - failures)
        paced = await post_paced(bases, payments(args.paced, f"{run}_paced"), args.rate)
        await wait_arrivals(sink_port, args.webhooks - failures + len(paced))
    finally:
        for proc in procs:
            stop(proc)
        stop(sink)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    arrived: dict[str, float] = {}
    for line in stamps.read_text().splitlines():
        key, _, at = line.partition("\t")
        arrived.setdefault(key, float(at))  # a duplicate keeps its first arrival
    burst_arrivals = [arrived[p] for p in sent if p in arrived]
    burst_p50, burst_p99 = percentiles([(arrived[p] - sent[p]) * 1000 for p in sent if p in arrived])
    p50, p99 = percentiles([(arrived[p] - t) * 1000 for p, t in paced.items() if p in arrived])
    return {
        "ingest": (args.webhooks - failures) / ingest_seconds,
        "delivery": len(burst_arrivals) / (max(burst_arrivals) - first),
        "burst_p50": burst_p50,
        "burst_p99": burst_p99,
        "p50": p50,
        "p99": p99,
        "failures": float(failures),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webhooks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--paced", type=int, default=300, help="webhooks of the paced latency run")
    parser.add_argument("--rate", type=float, default=50.0, help="webhooks per second in the paced run")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bridge-replicas-") as tmp_name:
        for count in args.replicas:
            results[count] = uvloop.run(run_once(count, args, Path(tmp_name)))
    cores = os.cpu_count()
    print(
        f"burst: {args.webhooks} signed Stripe webhooks, {args.concurrency} in flight; paced: {args.paced} at "
        f"{args.rate:g}/s"
    )
    print("round-robin over the replicas, one PostgreSQL database, one destination, 127.0.0.1")
    print(
        f"{'replicas':>8} {'ingest/s':>9} {'delivered/s':>12} {'burst p50':>10} {'burst p99':>10} "
        f"{'paced p50':>10} {'paced p99':>10} {'non-2xx':>8}"
    )
    for count, r in results.items():
        print(
            f"{count:>8} {r['ingest']:>9.0f} {r['delivery']:>12.0f} {r['burst_p50']:>8.0f}ms {r['burst_p99']:>8.0f}ms "
            f"{r['p50']:>8.1f}ms {r['p99']:>8.1f}ms {r['failures']:>8.0f}"
        )
    print(
        f"(this machine has {cores} cores shared by every replica, PostgreSQL, the sink and the client: on few "
        "cores more replicas show their overhead, not scaling; one replica sends for the destination at a time)"
    )


if __name__ == "__main__":
    main()
