"""A restart does not reset a destination's rate limits: the new process seeds its windows from the attempts the
outbox recorded, and keeps the pause a 429 asked for. The real app in-process on a SQLite file, a ManualClock
(time moves only when the test says), a recording endpoint on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.clock import ManualClock
from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.harness import Bridge, running_bridge
from tests.scaleout.support import purchase

START = 1_900_000_000.0


def hook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "url": f"{url}/hook", "concurrency": 1, "events": ["purchase"], **extra}


async def lane(bridge: Bridge, name: str) -> dict[str, Any]:
    found: dict[str, Any] = (await bridge.ops("GET", "/ops/outbox")).json()["destinations"][name]
    return found


async def post(bridge: Bridge, clock: ManualClock, first: int, count: int) -> None:
    for i in range(first, first + count):
        response = await bridge.post_stripe(purchase(i, clock.now()), timestamp=clock.now())
        assert response.status_code == 200, response.text


async def test_a_restarted_bridge_keeps_the_rate_limit_window_of_the_one_before(tmp_path: Path) -> None:
    clock = ManualClock(START)
    limited = {"rate_limits": [{"requests": 5, "per_seconds": 60}]}
    async with recorder() as (sink, url):
        async with running_bridge(tmp_path, destinations={"hook": hook(url, **limited)}, clock=clock) as first:
            await post(first, clock, 0, 8)
            await eventually(lambda: len(sink.requests) == 5)
            await eventually(lambda: _recorded(first, 5))
            assert (await lane(first, "hook"))["paused_until"] == START + 60  # the window is full
        assert len(sink.requests) == 5

        clock.advance(10)  # restarted ten seconds later: five requests are still in the last minute
        async with running_bridge(tmp_path, destinations={"hook": hook(url, **limited)}, clock=clock) as second:
            state = await lane(second, "hook")
            # seeded from the outbox, not empty: each answer (start + its latency) holds its place for a minute
            assert START + 60 <= state["paused_until"] < START + 61, state
            assert state["stalled"] is False
            assert len(sink.requests) == 5
            clock.advance(51)
            second.state.dispatcher.wake()  # type: ignore[union-attr]
            await eventually(lambda: len(sink.requests) == 8)


async def test_a_429_pause_outlives_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        sink.script(429, {"Retry-After": "300"})
        async with running_bridge(tmp_path, destinations={"hook": hook(url)}, clock=clock) as first:
            await post(first, clock, 0, 1)
            await eventually(lambda: len(sink.requests) == 1)
            await eventually(lambda: _paused(first, START + 300))
        clock.advance(5)
        async with running_bridge(tmp_path, destinations={"hook": hook(url)}, clock=clock) as second:
            await post(second, clock, 1, 1)  # new work, due now: still waits for the pause
            assert (await lane(second, "hook"))["paused_until"] == START + 300
            assert len(sink.requests) == 1
            clock.advance(300)
            second.state.dispatcher.wake()  # type: ignore[union-attr]
            await eventually(lambda: len(sink.requests) == 3)


async def _recorded(bridge: Bridge, count: int) -> bool:
    rows = await bridge.deliveries(status="delivered")
    return len(rows) == count


async def _paused(bridge: Bridge, until: float) -> bool:
    return bool((await lane(bridge, "hook"))["paused_until"] == until)
