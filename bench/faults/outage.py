"""Trial 5, a long outage on a scaled clock: 10,000 purchases are queued for Zenovay (documented limits 60
requests per 10 s and 5,000 per hour, one event per request) while it is down (nothing listens on its port)
for 24 hours of clock time; then it comes back. Beside it, a destination that never comes back gets a few
hundred refunds.

The bridge, the trial and the sink read one clock running `scale` times faster than the wall clock
(bench.faults.serve's SharedScaledClock), so a day passes in minutes while every rate-limit window and retry
delay keeps its full size in clock time.

Promises: 100 % of the purchases are delivered, within the retry horizon (the schedule's total with jitter),
no faster than Zenovay's limits (measured at the sink, in clock time); `/ops/outbox` shows the backlog and its
oldest pending age the whole time; the refunds, past the horizon, end `dead` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.faults.harness import (
    BridgeProcess,
    Result,
    Senders,
    ops_get,
    payment,
    refund,
    write_config,
)
from bench.faults.serve import SharedScaledClock
from bridge.retry import DEFAULT_SCHEDULE
from bridge.sinks.server import free_port, serve
from bridge.sinks.zenovay import ZenovayFake

HOUR = 3600.0
CODE = "zfaults01"
JITTER = 0.2
#: the short version divides the outage and the retry schedule by 12 (same shape, 2 h instead of 24 h)
SHORT = {"purchases": 1000, "refunds": 20, "outage_h": 2.0, "divide": 12.0, "scale": 500.0}
FULL = {"purchases": 10_000, "refunds": 200, "outage_h": 24.0, "divide": 1.0, "scale": 500.0}


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, t in enumerate(times):
        while times[left] <= t - window:
            left += 1
        best = max(best, right - left + 1)
    return best


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    plan = FULL if full else SHORT
    scale = float(plan["scale"])
    clock = SharedScaledClock(scale, time.time())
    start = clock.now()
    outage = float(plan["outage_h"]) * HOUR
    schedule = [x / float(plan["divide"]) for x in DEFAULT_SCHEDULE]
    horizon = sum(schedule) * (1 + JITTER)
    purchases, refunds = int(plan["purchases"]), int(plan["refunds"])
    fake = ZenovayFake(CODE, clock=clock.now)
    zenovay_port = free_port()  # nothing listens here until the outage ends
    gone_port = free_port()  # nothing ever listens here
    config = write_config(
        workdir,
        outbox_url=f"sqlite:///{workdir / 'outbox.db'}",
        destinations={
            "zenovay": {
                "type": "zenovay",
                "url": f"http://127.0.0.1:{zenovay_port}/e/{CODE}",
                "default_url": "https://shop.example.com/checkout/success",
                "events": ["purchase"],
                "concurrency": 8,
            },
            "gone": {"type": "http", "url": f"http://127.0.0.1:{gone_port}/hook", "events": ["refund"]},
        },
        # leases and the signature window are clock seconds: scaled, they must cover real latencies
        dispatcher={"lease_seconds": 4 * HOUR, "retry": {"schedule": schedule, "jitter": JITTER}},
        source={"tolerance_seconds": 7 * 24 * HOUR},
    )
    bridge = BridgeProcess(
        config, workdir / "serve.log", launcher_args=["--clock-scale", str(scale), "--clock-origin", str(clock.origin)]
    )
    samples: list[dict[str, Any]] = []
    await bridge.start_ready()
    buyers = Senders(lambda: bridge.base, count=6, prefix="out", limit=purchases, now=clock.now, body=payment)
    refunders = Senders(
        lambda: bridge.base, count=2, prefix="ref", limit=refunds, now=clock.now, body=lambda i, _: refund(i)
    )
    queued_at = start

    async def queue_all() -> None:
        nonlocal queued_at
        await asyncio.gather(buyers.wait(), refunders.wait())
        queued_at = clock.now()

    buyers.start()
    refunders.start()
    queueing = asyncio.create_task(queue_all())
    try:
        while not buyers.acked and not queueing.done():  # watched from the first webhook on, while the rest queues
            await asyncio.sleep(0.05)

        async def sample() -> dict[str, Any]:
            stats = await ops_get(bridge.base, "/ops/outbox")
            zen = stats["destinations"].get("zenovay", {})
            gone = stats["destinations"].get("gone", {})
            row = {"t": clock.now() - start, "zen": zen, "gone": gone}
            samples.append(row)
            return row

        while clock.now() - start < outage:
            await sample()
            await asyncio.sleep(0.25)  # real seconds
        await queueing
        queued_by_h = (queued_at - start) / HOUR
        up_at = clock.now() - start
        async with serve(fake.app, port=zenovay_port):
            # each refund goes dead one retry horizon after it was queued: wait from the last one's queueing
            deadline = queued_at + horizon + 2 * HOUR / float(plan["divide"])
            while clock.now() < deadline:
                row = await sample()
                if row["zen"].get("delivered", 0) >= purchases and row["gone"].get("dead", 0) >= refunds:
                    break
                await asyncio.sleep(0.5)
        dead = await ops_get(bridge.base, "/ops/deliveries", destination="gone", status="dead", limit=1)
        reason = dead["deliveries"][0]["last_error"] if dead["deliveries"] else None
    finally:
        queueing.cancel()  # a failure above leaves no senders running (done already otherwise)
        bridge.stop()
    accepted = [request["at"] for request in fake.received]
    last_at = (max(accepted) - start) / HOUR if accepted else None
    during = [s for s in samples if s["t"] < up_at]
    backlog_visible = all(
        (s["zen"].get("pending", 0) + s["zen"].get("in_flight", 0)) > 0
        and s["zen"].get("oldest_pending_age_seconds") is not None
        for s in during[1:]
    )
    ages = [s["zen"].get("oldest_pending_age_seconds") or 0.0 for s in during]
    growing = all(b >= a - 60 for a, b in zip(ages, ages[1:], strict=False))
    final = samples[-1] if samples else {"zen": {}, "gone": {}}
    result = Result(
        "outage",
        {
            "scale": scale,
            "queued": purchases,
            "queued_by_h": queued_by_h,
            "outage_h": outage / HOUR,
            "delivered": final["zen"].get("delivered", 0),
            "accepted_at_sink": len(fake.received),
            "last_delivery_h": last_at,
            "horizon_h": horizon / HOUR,
            "max_per_10s": most_in_window(accepted, 10.0),
            "max_per_h": most_in_window(accepted, HOUR),
            "rate_limited_by_sink": len(fake.rejected),
            "backlog_samples": len(during),
            "oldest_pending_h_max": max(ages, default=0.0) / HOUR,
            "gone_dead": final["gone"].get("dead", 0),
            "gone_reason": (reason or "")[:60],
        },
    )
    result.check(
        final["zen"].get("delivered", 0) == purchases, f"{final['zen'].get('delivered', 0)}/{purchases} delivered"
    )
    result.check(
        last_at is not None and last_at * HOUR <= horizon,
        f"last delivery at {last_at} h, horizon {horizon / HOUR:.1f} h",
    )
    result.check(most_in_window(accepted, 10.0) <= 60, "more than 60 requests in a 10 s window at the sink")
    result.check(most_in_window(accepted, HOUR) <= 5000, "more than 5000 requests in an hour at the sink")
    result.check(backlog_visible and len(during) > 10, "the backlog or its age was not visible in /ops/outbox")
    result.check(growing, "the oldest pending age did not grow during the outage")
    result.check(final["gone"].get("dead", 0) == refunds, f"{final['gone'].get('dead', 0)}/{refunds} refunds dead")
    result.check(bool(reason) and "gave up after" in (reason or ""), f"dead without the reason: {reason!r}")
    return result
