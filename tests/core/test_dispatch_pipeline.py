"""How the dispatcher keeps its workers busy: a lane holds a full claim beyond what its workers are sending, and a
worker goes on to its next request while the outbox is still committing the previous attempt."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from bridge.clock import ManualClock
from bridge.dispatcher import Dispatcher, new_session
from bridge.outbox.sqlite import SqliteOutbox
from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.core.test_dispatcher_faults import START, dispatcher_of
from tests.harness import Bridge, running_bridge, stripe_case

CASES = ("payment_intent.succeeded", "charge.refunded", "customer.subscription.created")


async def _all_delivered(bridge: Bridge, destination: str, count: int) -> bool:
    rows = await bridge.deliveries(destination=destination)
    return len(rows) == count and all(r["status"] == "delivered" for r in rows)


async def test_one_claim_fills_the_lane_beyond_its_workers(tmp_path: Path) -> None:
    """One worker, three due deliveries: the first claim takes all three (one sent, two queued behind it), so the
    worker never waits for a claim's commit between requests. With room for only two per worker, one stayed in
    the outbox until the lane ran low."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            dispatcher = dispatcher_of(bridge)
            sink.hold = True
            for case in CASES:
                assert (await bridge.post_stripe(stripe_case(case), timestamp=clock.now())).status_code == 200
            await eventually(lambda: len(sink.requests) == 1 and len(dispatcher.lanes["hook"].queue) == 2)
            rows = await bridge.deliveries(destination="hook")
            assert sorted(r["status"] for r in rows) == ["in_flight"] * 3
            sink.release_all()
            await eventually(lambda: _all_delivered(bridge, "hook", 3))


async def test_a_worker_sends_on_while_its_last_attempt_is_being_recorded(tmp_path: Path) -> None:
    """The outbox's writer is held (a commit stuck behind a slow disk) when the first answer comes back. The
    worker does not wait for that attempt to be recorded: it sends the next delivery at once. The recorded
    attempts land when the writer goes on, and stop() would wait for them like for a send."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            dispatcher = dispatcher_of(bridge)
            lane = dispatcher.lanes["hook"]
            outbox = bridge.state.outbox
            assert isinstance(outbox, SqliteOutbox) and outbox._writer is not None
            sink.hold = True
            for case in CASES[:2]:
                assert (await bridge.post_stripe(stripe_case(case), timestamp=clock.now())).status_code == 200
            await eventually(lambda: len(sink.requests) == 1 and len(lane.queue) == 1)

            inside, go_on = threading.Event(), threading.Event()

            def hold_the_writer(conn: object) -> None:
                inside.set()
                go_on.wait(30)

            held = asyncio.ensure_future(outbox._writer.call(hold_the_writer))
            await eventually(inside.is_set)
            sink.release_all()
            await eventually(lambda: len(sink.requests) == 2)  # sent while the first attempt waits to be recorded
            assert lane.recording >= 1
            rows = await bridge.deliveries(destination="hook")
            assert sorted(r["status"] for r in rows) == ["in_flight", "in_flight"]  # leased until recorded

            go_on.set()
            await held
            await eventually(lambda: _all_delivered(bridge, "hook", 2))
            assert lane.recording == 0
            assert dispatcher.lane_stats()["hook"].delivered == 2


class ClaimsSeen:
    """The app's outbox, counting the claims that have reached it (everything else passes straight through)."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox
        self.entered = 0

    async def claim(self, *args: Any) -> Any:
        self.entered += 1
        return await self.outbox.claim(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outbox, name)


async def test_one_round_claims_for_every_lane_in_one_commit(tmp_path: Path) -> None:
    """Five destinations with work due: the round's five claims reach the outbox together and commit as one
    transaction. Claimed one after the other, each waited for the previous commit (the fifth lane for four)."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {f"d{i}": {"type": "http", "url": f"{url}/d{i}"} for i in range(5)}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, dispatch=False) as bridge:
            assert (
                await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
            ).status_code == 200
            outbox = bridge.state.outbox
            assert isinstance(outbox, SqliteOutbox) and outbox._writer is not None
            claiming = ClaimsSeen(outbox)
            async with new_session() as session:
                dispatcher = Dispatcher(
                    claiming,  # type: ignore[arg-type]
                    bridge.state.destinations,
                    session,
                    clock,
                    bridge.settings.dispatcher,
                )
                assert sorted(await dispatcher.keeper.hold()) == [f"d{i}" for i in range(5)]  # the lanes' leases
                inside, go_on = threading.Event(), threading.Event()

                def hold_the_writer(conn: object) -> None:
                    inside.set()
                    go_on.wait(30)

                held = asyncio.ensure_future(outbox._writer.call(hold_the_writer))
                await eventually(inside.is_set)
                commits = outbox._writer.commits
                round_ = asyncio.ensure_future(dispatcher.fill())
                await eventually(lambda: claiming.entered == 5)  # all five wait behind the held writer
                go_on.set()
                await held
                await round_
                assert outbox._writer.commits - commits == 2  # the held one, then all five claims at once
                assert sorted(name for name, lane in dispatcher.lanes.items() if len(lane.queue) == 1) == [
                    f"d{i}" for i in range(5)
                ]
                await dispatcher.stop()
