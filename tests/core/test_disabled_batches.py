"""A 410 Gone answered to a request that carried several deliveries (a Convultra batch) holds the whole batch:
end to end over HTTP with the strict Convultra sink, signed Shopify webhooks and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import orjson

from bridge.clock import ManualClock
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve
from tests.core.dispatch_helpers import SHOPIFY_SOURCE, shopify_order
from tests.core.test_delivery import eventually
from tests.core.test_disabled_destination import disabled, rounds
from tests.core.test_dispatcher_lanes import API_KEY, convultra, events_of, ingest_orders
from tests.harness import Bridge, running_bridge

START = 1_900_000_000.0
ORDERS = [7100 + i for i in range(12)]


async def rows(bridge: Bridge) -> dict[str, tuple[str, int]]:
    """(status, attempts) of each Convultra delivery, by event id."""
    return {row["event_id"]: (row["status"], row["attempts"]) for row in await bridge.deliveries(destination="cv")}


async def test_a_410_to_a_batch_holds_every_delivery_of_it_and_enable_sends_each_once(tmp_path: Path) -> None:
    clock = ManualClock(START)
    fake = ConvultraFake(API_KEY)
    fake.script(410, body={"success": False, "error": "This project was deleted"})  # served before any check
    async with serve(fake.app) as url:
        await ingest_orders(tmp_path, url, [(order, shopify_order(order)) for order in ORDERS], clock)
        async with running_bridge(
            tmp_path, destinations={"cv": convultra(url)}, clock=clock, extra={"sources": SHOPIFY_SOURCE}
        ) as bridge:
            await eventually(lambda: disabled(bridge, "cv"), timeout=30)

            async def held() -> bool:  # the 410 recorded on every delivery of the batch
                return all(state == ("pending", 1) for state in (await rows(bridge)).values())

            await eventually(held, timeout=30)
            [gone] = fake.rejected  # one request carried them all, and it was the only one
            assert gone["status"] == 410 and gone["path"].endswith("/batch")
            assert len(orjson.loads(gone["body"])["events"]) == len(ORDERS) == len(await rows(bridge))
            state = await disabled(bridge, "cv")
            assert state["by"] == "destination" and "410" in state["reason"]
            await rounds(bridge)
            assert fake.received == [] and len(fake.rejected) == 1  # held: nothing more was sent

            answer = await bridge.ops("POST", "/ops/destinations/cv/enable")
            assert answer.status_code == 200 and answer.json()["changed"] is True

            async def all_delivered() -> bool:
                return all(state == ("delivered", 2) for state in (await rows(bridge)).values())

            await eventually(all_delivered, timeout=30)
            sent = [event["properties"]["event_id"] for event in events_of(fake)]
            assert sorted(sent) == sorted(str(order) for order in ORDERS)  # each delivered once
            assert await disabled(bridge, "cv") is None
