"""Disabled destinations across replicas sharing one PostgreSQL outbox: a 410 recorded by the replica that holds
the lane disables the destination for the fleet; another replica that takes the lane over sends nothing of it; an
enable made on any replica wakes the one that holds the lane, and each held delivery is sent once; a disable made
by ops on another replica stops the holder before it sends what it had already claimed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.holds import CHECKING
from bridge.outbox.postgres import PostgresOutbox
from bridge.sinks.server import serve
from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.core.test_disabled_destination import Endpoint, disabled, dispatcher_of, payment, rounds, statuses
from tests.harness import Bridge, running_bridge
from tests.ops.support import until
from tests.outbox.conftest import fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


async def test_a_replica_sees_the_destination_another_disabled_and_enable_wakes_the_holder(
    tmp_path: Path, pg_url: str
) -> None:
    sink = Endpoint(410)
    # a long poll: the enable must reach the lane's holder by its wake-up, not by polling
    extra: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": 0.2}}
    slow: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": 600}}
    async with serve(sink.app) as url, AsyncExitStack() as stack:
        config = {"gone": {"type": "http", "url": f"{url}/hook", "events": ["*"]}}
        first = await stack.enter_async_context(running_bridge(tmp_path / "a", destinations=config, extra=extra))
        assert dispatcher_of(first).lanes["gone"].seeded
        async with running_bridge(tmp_path / "b", destinations=config, extra=slow) as second:
            lanes = dispatcher_of(second).lanes
            assert not lanes["gone"].seeded  # the first replica holds the lane
            assert (await second.post_stripe(payment(1))).status_code == 200

            async def seen_by_second() -> bool:
                return await disabled(second) is not None

            await until(seen_by_second, what="the second replica to see the destination disabled")
            assert (await disabled(second))["by"] == "destination" and sink.hits == ["pi_gone_1"]
            assert (await second.post_stripe(payment(2))).status_code == 200

            # the holder stops: the second replica takes the lane over, and sends nothing of it
            await stack.aclose()

            async def taken_over() -> bool:
                return lanes["gone"].seeded

            await until(taken_over, what="the second replica to take the lane")
            await rounds(second)
            assert sink.hits == ["pi_gone_1"]
            assert await statuses(second) == [("pending", 0), ("pending", 1)]

            # a third replica comes up and enables the destination: the holder (the second) is woken over NOTIFY
            sink.status = 200
            async with running_bridge(tmp_path / "c", destinations=config, extra=extra) as third:
                outbox = second.state.outbox
                assert isinstance(outbox, PostgresOutbox) and outbox.listener is not None
                await until(_set(outbox.listener.listening), what="the holder to listen")
                answer = await third.ops("POST", "/ops/destinations/gone/enable")
                assert answer.status_code == 200 and answer.json()["changed"] is True

                async def all_delivered() -> bool:
                    return await statuses(second) == [("delivered", 1), ("delivered", 2)]

                await until(all_delivered, timeout=30, what="the held deliveries")
                assert sorted(sink.accepted) == ["pi_gone_1", "pi_gone_2"]
                assert not dispatcher_of(third).lanes["gone"].seeded  # the second sent them


def _set(event: Any) -> Any:
    async def check() -> bool:
        return bool(event.is_set())

    return check


async def _listening(bridge: Bridge) -> None:
    outbox = bridge.state.outbox
    assert isinstance(outbox, PostgresOutbox) and outbox.listener is not None
    await until(_set(outbox.listener.listening), what="the replica to listen")


async def test_a_disable_made_on_another_replica_stops_the_holder_before_it_sends_what_it_claimed(
    tmp_path: Path, pg_url: str
) -> None:
    """The clock never moves and the poll interval is ten minutes: the holder renews no lease and reads no state
    on its own, so it can only learn of the disable from the announcement."""
    clock = ManualClock(1_900_000_000.0)
    extra: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": 600}}
    async with recorder() as (sink, url), AsyncExitStack() as stack:
        # the request held at the sink must not time out (real seconds) while the test waits on a busy machine
        hook = {"type": "http", "url": f"{url}/hook", "events": ["*"], "concurrency": 1, "timeout_seconds": 25}
        config = {"gone": hook}
        holder = await stack.enter_async_context(
            running_bridge(tmp_path / "a", destinations=config, clock=clock, extra=extra)
        )
        ops = await stack.enter_async_context(
            running_bridge(tmp_path / "b", destinations=config, clock=clock, extra=extra, role="ingest")
        )
        await _listening(holder)
        lane = dispatcher_of(holder).lanes["gone"]
        sink.hold = True  # the first request waits at the sink; the other two stay claimed in the lane
        for i in range(3):
            assert (await ops.post_stripe(payment(i), timestamp=clock.now())).status_code == 200
        await eventually(lambda: len(sink.requests) == 1 and len(lane.queue) == 2, timeout=30)

        answer = await ops.ops("POST", "/ops/destinations/gone/disable", json={"reason": "paused by the vendor"})
        assert answer.status_code == 200 and answer.json()["changed"] is True

        async def given_back() -> bool:  # unsent: no attempt counted
            return await statuses(ops) == [("in_flight", 0), ("pending", 0), ("pending", 0)]

        await until(given_back, what="the holder to give back what it had claimed")
        assert lane.disabled is not None and lane.disabled is not CHECKING and not lane.queue
        assert lane.disabled.reason == "paused by the vendor"
        sink.release_all()  # the request already out completes; nothing else goes

        async def first_recorded() -> bool:
            return await statuses(ops) == [("delivered", 1), ("pending", 0), ("pending", 0)]

        await until(first_recorded, what="the request in flight to be recorded")
        await rounds(holder)
        assert len(sink.requests) == 1
        assert clock.now() == 1_900_000_000.0

        answer = await ops.ops("POST", "/ops/destinations/gone/enable")
        assert answer.status_code == 200 and answer.json()["changed"] is True

        async def all_delivered() -> bool:
            return await statuses(ops) == [("delivered", 1)] * 3

        await until(all_delivered, timeout=30, what="the held deliveries")
        assert len(sink.requests) == 3  # each delivery sent once
