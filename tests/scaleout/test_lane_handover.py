"""Lanes handed over between replicas on one PostgreSQL database: a replica that stops gracefully releases its
lanes and says so (NOTIFY on bridge_lanes), and another takes them at once, not when it next renews its leases.
The clock never moves and the poll interval is ten minutes, so a take-over can only come from the wake-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.dispatcher import Dispatcher
from bridge.outbox.postgres import PostgresOutbox
from tests.core.test_delivery import eventually
from tests.core.test_disabled_destination import dispatcher_of
from tests.harness import Bridge, running_bridge
from tests.outbox.conftest import fresh_database

pytestmark = pytest.mark.postgres

START = 1_900_000_000.0
POLL = 600.0
DESTINATIONS = {
    name: {"type": "http", "url": f"http://127.0.0.1:9/{name}", "events": ["purchase"]} for name in ("a", "b")
}


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


async def listening(bridge: Bridge) -> None:
    outbox = bridge.state.outbox
    assert isinstance(outbox, PostgresOutbox) and outbox.listener is not None
    await eventually(outbox.listener.listening.is_set)


def holds_every_lane(dispatcher: Dispatcher) -> bool:
    return all(lane.seeded for lane in dispatcher.lanes.values())


async def test_a_replica_that_stops_hands_its_lanes_over_at_once(tmp_path: Path, pg_url: str) -> None:
    clock = ManualClock(START)
    extra: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": POLL}}
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            running_bridge(tmp_path / "a", destinations=DESTINATIONS, clock=clock, extra=extra)
        )
        async with running_bridge(tmp_path / "b", destinations=DESTINATIONS, clock=clock, extra=extra) as second:
            dispatcher = dispatcher_of(second)
            assert holds_every_lane(dispatcher_of(first))
            assert not any(lane.seeded for lane in dispatcher.lanes.values())  # the first took every lane
            await listening(second)

            await stack.aclose()  # the first replica stops gracefully

            await eventually(lambda: holds_every_lane(dispatcher), timeout=30)
            assert dispatcher.keeper.taken == 2
            assert clock.now() == START and dispatcher.polls == 0  # on the wake-up, not on a renewal
