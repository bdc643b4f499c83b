"""Where a delivery's CPU goes, part by part, each against its reference in the same process and the same run:

- **send**: `Sender.send` (render the stored event, send, read and classify the answer, build the attempt) for
  one delivery at a time from 32 workers, against a raw aiohttp post of the same pre-rendered request to the same
  sink from 32 workers. The difference is the bridge's own cost around the HTTP call.
- **outbox**: the outbox's part of a delivery, no HTTP: claims of 100 from a backlog and one `complete` per
  delivery (as the workers hand them over), through `SqliteOutbox` (WAL, `synchronous=FULL`).

What `bench.deliver` measures beyond the sum of these is the dispatcher's orchestration (workers, claim loop,
recorder, limiter). CPU is this process's (the outbox's writer thread included), per delivery.

    .venv/bin/python -m bench.parts [--deliveries 20000] [--rounds 3] [--json out.json]
    .venv/bin/python -m bench.parts --quick    # 500 deliveries, one round: the CI smoke test

Rounds alternate raw and send, so both see the same machine; figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench._common import load_average, local_sink, write_json
from bench.deliver import canonical, post_each, prefill, rendered
from bridge.clock import SystemClock
from bridge.destinations.base import DestinationSettings
from bridge.destinations.http import DESTINATION as HttpDestination
from bridge.lanes import Lane
from bridge.outbox.base import AttemptResult, Delivery
from bridge.outbox.sqlite import SqliteOutbox
from bridge.ratelimit import RateLimiter
from bridge.retry import RetryPolicy
from bridge.sending import Sender, new_session

CONCURRENCY = 32


async def raw(url: str, count: int) -> float:
    requests = rendered(url, count)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        cpu = time.process_time()
        await post_each(session, requests, CONCURRENCY)
        return (time.process_time() - cpu) / count * 1e6


async def send(url: str, count: int) -> float:
    destination = HttpDestination(DestinationSettings(name="sink", type="http", url=url, concurrency=CONCURRENCY))
    lane = Lane(destination, RateLimiter(destination.rate_limits), 60.0)
    now = time.time()
    deliveries = iter(
        [
            Delivery(i, i, "sink", "purchase", f"pi_{i}", orjson.dumps(canonical(i)), 0, "w:1", now + 3600, now)
            for i in range(count)
        ]
    )
    async with new_session() as session:
        sender = Sender(session, SystemClock(), RetryPolicy(), random.Random(1))

        async def worker() -> None:
            for delivery in deliveries:
                [result] = await sender.send(lane, [delivery])
                assert result.verdict == "delivered", result

        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return (time.process_time() - cpu) / count * 1e6


async def outbox_part(db: Path, count: int) -> float:
    await prefill(db, count)
    outbox = SqliteOutbox(db)
    await outbox.open()
    try:
        now = time.time()
        cpu = time.process_time()
        done = claims = 0
        while done < count:
            claims += 1
            batch = await outbox.claim("sink", 100, now, 60, f"w:{claims}")
            assert batch, f"{done} of {count} claimed"
            results = [AttemptResult(d.id, d.lease_owner, now, "delivered", None, 200, 1.0, None, None) for d in batch]
            applied = await asyncio.gather(*(outbox.complete([r]) for r in results))
            assert all(a == [True] for a in applied)
            done += len(batch)
        return (time.process_time() - cpu) / count * 1e6
    finally:
        await outbox.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke test: --deliveries 500 --rounds 1")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.deliveries, args.rounds = 500, 1
    load_before = load_average()
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bridge-parts-") as tmp_name:
        tmp = Path(tmp_name)
        with local_sink(tmp) as sink:
            url = f"{sink}/collect"
            for round_ in range(args.rounds):
                raw_us = uvloop.run(raw(url, args.deliveries))
                send_us = uvloop.run(send(url, args.deliveries))
                outbox_us = uvloop.run(outbox_part(tmp / f"outbox{round_}.db", args.deliveries))
                rounds.append({"raw_us": raw_us, "send_us": send_us, "outbox_us": outbox_us})
    for r in rounds:
        r["send_extra_us"] = r["send_us"] - r["raw_us"]
    report = {
        "benchmark": "parts",
        "deliveries": args.deliveries,
        "load": [load_before, load_average()],
        "rounds": rounds,
        **{key: statistics.median(r[key] for r in rounds) for key in rounds[0]},
    }
    report["ratio"] = report["raw_us"] / report["send_us"]
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"delivery parts, {report['deliveries']} deliveries x {len(report['rounds'])} round(s) (medians), "
        f"{CONCURRENCY} workers, 127.0.0.1 (load {report['load'][0]:.1f} -> {report['load'][1]:.1f})"
    )
    print(f"  raw aiohttp post               {report['raw_us']:>7.0f} us CPU per request")
    print(f"  Sender.send (render..classify) {report['send_us']:>7.0f} us  (+{report['send_extra_us']:.0f} over raw)")
    print(f"  outbox claim + complete        {report['outbox_us']:>7.0f} us per delivery (no HTTP)")
    print(f"  ratio raw / send               {report['ratio']:>7.2f}")
    for i, r in enumerate(report["rounds"], 1):
        print(
            f"  round {i}: raw {r['raw_us']:.0f}, send {r['send_us']:.0f} ({r['send_extra_us']:+.0f}), "
            f"outbox {r['outbox_us']:.0f} us"
        )


if __name__ == "__main__":
    main()
