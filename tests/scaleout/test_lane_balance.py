"""Lane balance across live replicas on one PostgreSQL database: the first dispatcher to start takes every lane;
once three are alive, each holds its share (six destinations: two each) after a lane renewal, the lanes moving
only through a release (never two holders of one lane), and every delivery reaches its sink exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridge.clock import ManualClock
from bridge.dispatcher import Dispatcher
from bridge.fleet import share
from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.core.test_disabled_destination import dispatcher_of
from tests.harness import Bridge, running_bridge
from tests.outbox.conftest import fresh_database
from tests.scaleout.support import purchase

pytestmark = pytest.mark.postgres

START = 1_900_000_000.0
NAMES = [f"d{i}" for i in range(6)]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


def held(dispatcher: Dispatcher) -> set[str]:
    return {name for name, lane in dispatcher.lanes.items() if lane.seeded}


def one_holder_each(dispatchers: list[Dispatcher]) -> bool:
    """No lane is held by two dispatchers (checked at every look); True once each holds exactly its share."""
    counts = Counter(name for d in dispatchers for name in held(d))
    assert max(counts.values(), default=0) <= 1, counts
    return all(len(held(d)) == 2 and not any(lane.yielding for lane in d.lanes.values()) for d in dispatchers)


async def post(bridge: Bridge, clock: ManualClock, first: int, count: int) -> None:
    for i in range(first, first + count):
        assert (await bridge.post_stripe(purchase(i, clock.now()), timestamp=clock.now())).status_code == 200


async def test_live_replicas_share_the_lanes_and_each_delivery_arrives_once(tmp_path: Path, pg_url: str) -> None:
    clock = ManualClock(START)
    extra: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": 0.5}}
    async with recorder() as (sink, url), AsyncExitStack() as stack:
        config = {name: {"type": "http", "url": f"{url}/{name}", "events": ["purchase"]} for name in NAMES}
        first = await stack.enter_async_context(
            running_bridge(tmp_path / "r0", destinations=config, clock=clock, extra=extra)
        )
        await post(first, clock, 0, 4)  # sent by the first while it is alone
        bridges = [first]
        for i in (1, 2):
            bridges.append(
                await stack.enter_async_context(
                    running_bridge(tmp_path / f"r{i}", destinations=config, clock=clock, extra=extra)
                )
            )
        dispatchers = [dispatcher_of(bridge) for bridge in bridges]
        assert held(dispatchers[0]) == set(NAMES) and not held(dispatchers[1]) and not held(dispatchers[2])
        assert [d.keeper.share for d in dispatchers] == [6, 3, 2]  # each counted those alive when it started

        clock.advance(dispatchers[0].keeper.ttl / 3)  # one lane renewal: the first sees three alive
        await post(bridges[1], clock, 4, 4)  # work arrives while lanes move
        for dispatcher in dispatchers:
            dispatcher.wake()
        await eventually(lambda: all(d.keeper.renew_at > clock.now() for d in dispatchers), timeout=30)
        await eventually(lambda: one_holder_each(dispatchers), timeout=30)
        assert [d.keeper.share for d in dispatchers] == [share(6, 3)] * 3 == [2, 2, 2]

        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT destination, owner FROM lanes WHERE owner IS NOT NULL")
        finally:
            await conn.close()
        owners = {str(row[0]): str(row[1]) for row in rows}
        assert {owners[name] for d in dispatchers for name in held(d)} == {d.owner for d in dispatchers}
        assert all(owners[name] == d.owner for d in dispatchers for name in held(d))
        assert sum(1 for name in owners if name.startswith("@")) == 3  # one presence per live dispatcher

        await post(bridges[2], clock, 8, 4)
        expected = len(NAMES) * 12

        async def all_delivered() -> bool:
            rows = await bridges[0].deliveries()
            return len(rows) == expected and all(row["status"] == "delivered" for row in rows)

        await eventually(all_delivered, timeout=60)
        sent = Counter((r["path"], r["headers"]["idempotency-key"]) for r in sink.requests)
        assert len(sent) == expected and max(sent.values()) == 1  # every delivery, each exactly once
        assert all(len(held(d)) == 2 for d in dispatchers)  # each sent for its own two destinations
