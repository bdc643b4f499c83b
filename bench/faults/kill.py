"""Trial 1, kill -9 under load: concurrent senders post signed webhooks without pause, deliveries are in flight
at a slow sink, and `bridge serve` is SIGKILLed at a random moment and restarted on the same SQLite file, again
and again. Then the load stops and the backlog drains.

Promise: every webhook answered 2xx is delivered (lost = 0). Duplicates are allowed (at least once: a delivery
in flight when the process died is sent again) and counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve

SHORT = {"kills": 3, "senders": 4, "up": (0.8, 2.0), "sink_delay": 0.2}
FULL = {"kills": 20, "senders": 8, "up": (0.5, 4.0), "sink_delay": 0.2}


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    plan = FULL if full else SHORT
    rand = rng(seed)
    fake = ConvultraFake(CONVULTRA_KEY)
    slow = Slow(fake.app, float(plan["sink_delay"]))  # type: ignore[arg-type]
    async with serve(slow) as sink:
        config = write_config(
            workdir,
            outbox_url=f"sqlite:///{workdir / 'outbox.db'}",
            destinations={"convultra": convultra(sink, concurrency=4)},
        )
        bridge = BridgeProcess(config, workdir / "serve.log")
        senders = Senders(lambda: bridge.base, count=int(plan["senders"]), prefix="kill")  # type: ignore[call-overload]
        await bridge.start_ready()
        senders.start()
        in_flight_at_kill: list[int] = []
        restart_s: list[float] = []
        low, high = plan["up"]  # type: ignore[misc]
        try:
            for _ in range(int(plan["kills"])):  # type: ignore[call-overload]
                await asyncio.sleep(rand.uniform(low, high))
                in_flight_at_kill.append(slow.waiting)
                bridge.kill()
                restart_s.append(await bridge.start_ready())
            # the providers stop sending new webhooks; what was not acknowledged yet is still retried until it is
            await senders.settle(120)
            load_stopped = time.monotonic()

            async def drained() -> bool:
                return senders.acked <= set(order_counts(fake)) and await outbox_busy(bridge.base) == 0

            finished = await until(drained, timeout=300, every=0.2)
            drain_s = time.monotonic() - load_stopped
        finally:
            await senders.stop()
            code = bridge.stop()
    counts = order_counts(fake)
    lost = senders.acked - set(counts)
    result = Result(
        "kill",
        {
            "kills": len(in_flight_at_kill),
            "acknowledged": len(senders.acked),
            "delivered": len(set(counts) & senders.acked),
            "lost": len(lost),
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "in_flight_at_kill": sum(in_flight_at_kill),
            "restart_s_max": max(restart_s, default=0.0),
            "drain_s": drain_s,
            "refused_by_sink": len(fake.rejected),
            "answers": dict(senders.statuses),
        },
    )
    result.check(finished, "the backlog did not drain within 300 s")
    result.check(not lost, f"acknowledged but never delivered: {sorted(lost)[:10]}")
    result.check(sum(in_flight_at_kill) > 0, "no kill found a delivery in flight: the trial tested nothing")
    result.check(fake.rejected == [], f"the sink refused requests: {[r['why'] for r in fake.rejected[:3]]}")
    result.check(code in (0, -15), f"the last bridge did not shut down cleanly on SIGTERM (exit {code})")
    return result
