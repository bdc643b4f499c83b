"""Trial 7, a restart storm on PostgreSQL: three `bridge serve` replicas share one database (a private
cluster), senders spread signed webhooks over all three, deliveries are in flight at a slow sink, and one
replica is SIGKILLed and restarted again and again.

Promises: nothing acknowledged is lost; a delivery reaches the sink twice only because the killed replica had
it in flight (its lease expires and another replica sends it again). Each replica talks to the sink on its own
port, so the sink knows who sent what.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench.faults.harness import (
    CONVULTRA_KEY,
    BridgeProcess,
    Result,
    Senders,
    Slow,
    convultra,
    order_counts,
    outbox_busy,
    rng,
    until,
    write_config,
)
from bench.faults.pg import PrivateCluster
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve

SHORT = {"kills": 3, "senders": 6, "up": (1.0, 2.5)}
FULL = {"kills": 15, "senders": 9, "up": (1.0, 4.0)}
LEASE = 6.0
TIMEOUT = 3.0


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    plan = FULL if full else SHORT
    rand = rng(seed)
    cluster = PrivateCluster()
    cluster.init()
    fake = ConvultraFake(CONVULTRA_KEY)
    slow = Slow(fake.app, 0.2)
    replicas: list[BridgeProcess] = []
    kills: list[tuple[float, int]] = []
    try:
        async with AsyncExitStack() as stack:
            sinks = [await stack.enter_async_context(serve(slow)) for _ in range(3)]
            for index, sink in enumerate(sinks):
                config = write_config(
                    workdir,
                    outbox_url=cluster.url,
                    destinations={"convultra": convultra(sink, concurrency=4, timeout_seconds=TIMEOUT)},
                    dispatcher={"lease_seconds": LEASE},
                    name=f"replica{index}.yaml",
                )
                replicas.append(BridgeProcess(config, workdir / f"replica{index}.log"))
            for replica in replicas:
                await replica.start_ready()
            turn = itertools.cycle(replicas)
            senders = Senders(lambda: next(turn).base, count=int(plan["senders"]), prefix="storm")  # type: ignore[call-overload]
            senders.start()
            victim = replicas[0]
            low, high = plan["up"]  # type: ignore[misc]
            try:
                for _ in range(int(plan["kills"])):  # type: ignore[call-overload]
                    await asyncio.sleep(rand.uniform(low, high))
                    kills.append((time.monotonic(), slow.waiting))
                    victim.kill()
                    await victim.start_ready()
                await senders.settle(120)
                stopped = time.monotonic()

                async def drained() -> bool:
                    return senders.acked <= set(order_counts(fake)) and await outbox_busy(replicas[1].base) == 0

                finished = await until(drained, timeout=180, every=0.2)
                drain_s = time.monotonic() - stopped
            finally:
                await senders.stop()
                codes = [replica.stop() for replica in replicas]
    finally:
        cluster.destroy()
    victim_host = sinks[0].removeprefix("http://")
    copies: dict[str, list[str]] = {}
    for request in fake.received:
        host = request["headers"].get("host", "")
        for event in events_of_request(request):
            order = (event.get("properties") or {}).get("order_id", "").removeprefix("pi_")
            copies.setdefault(order, []).append(host)
    duplicated = {order: hosts for order, hosts in copies.items() if len(hosts) > 1}
    not_from_victim = {order: hosts for order, hosts in duplicated.items() if hosts[0] != victim_host}
    counts = order_counts(fake)
    lost = senders.acked - set(counts)
    result = Result(
        "storm",
        {
            "replicas": 3,
            "kills": len(kills),
            "in_flight_at_kill": sum(waiting for _, waiting in kills),
            "acknowledged": len(senders.acked),
            "delivered": len(set(counts) & senders.acked),
            "lost": len(lost),
            "duplicates": sum(len(h) - 1 for h in duplicated.values()),
            "duplicates_not_from_killed": len(not_from_victim),
            "drain_s": drain_s,
            "answers": dict(senders.statuses),
        },
    )
    result.check(finished, "the backlog did not drain within 180 s")
    result.check(not lost, f"acknowledged but never delivered: {sorted(lost)[:10]}")
    result.check(not not_from_victim, f"duplicates first sent by a replica that was never killed: {not_from_victim}")
    result.check(fake.rejected == [], f"the sink refused requests: {[r['why'] for r in fake.rejected[:3]]}")
    result.check(all(code in (0, -15) for code in codes), f"replicas did not stop cleanly: {codes}")
    return result


def events_of_request(request: dict[str, Any]) -> list[dict[str, Any]]:
    body = request["json"]
    events = body["events"] if isinstance(body, dict) and "events" in body else [body]
    return [event for event in events if isinstance(event, dict)]
