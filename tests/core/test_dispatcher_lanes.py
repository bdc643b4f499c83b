"""How a lane waits and shares: a 429's pause is capped like the delivery's own retry, a paused lane with due
work costs no claim rounds, a lost and re-taken lease's late completion is refused, and a batch that does not
fit one request (or holds one event that cannot be rendered) is split without losing or sinking the others."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bridge.clock import ManualClock
from bridge.destinations.convultra import ConvultraDestination
from bridge.errors import RenderError
from bridge.sinks.convultra import MAX_BATCH, MAX_BODY, ConvultraFake
from bridge.sinks.server import serve
from tests.core.dispatch_helpers import (
    SHOPIFY_SOURCE,
    by_event_id,
    delivery_detail,
    post_shopify,
    recorder,
    shopify_order,
)
from tests.core.test_delivery import eventually
from tests.core.test_dispatcher_faults import START, dispatcher_of, own_dispatcher, status_of
from tests.harness import Bridge, running_bridge, stripe_case

API_KEY = "cv_server_key_for_lane_tests"


def convultra(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "convultra",
        "url": f"{url}/v1/track",
        "api_key": API_KEY,
        "events": ["purchase", "refund"],
        **extra,
    }


async def outbox_lane(bridge: Bridge, name: str) -> dict[str, Any]:
    lane: dict[str, Any] = (await bridge.ops("GET", "/ops/outbox")).json()["destinations"][name]
    return lane


# -- 429 pauses ---------------------------------------------------------------------------------------------


async def test_a_429_pause_is_capped_by_max_retry_after_like_the_retry(tmp_path: Path) -> None:
    clock = ManualClock(START)
    fake = ConvultraFake(API_KEY)
    fake.script(429, headers={"Retry-After": "999999999"}, body={"success": False, "error": "Rate limit exceeded"})
    extra = {"dispatcher": {"retry": {"jitter": 0, "max_retry_after": 300}}}
    async with serve(fake.app) as url:
        async with running_bridge(tmp_path, destinations={"cv": convultra(url)}, clock=clock, extra=extra) as bridge:
            assert (
                await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
            ).status_code == 200
            purchase = await eventually(lambda: _retried(bridge, "cv", "pi_1PgafyB7WZ01zgkWSjxsAJo3"))
            assert purchase["next_attempt_at"] == START + 300
            lane = await outbox_lane(bridge, "cv")
            assert lane["paused_until"] == START + 300 and lane["stalled"] is False
            assert dispatcher_of(bridge).lane_health(clock.now())["cv"].paused_until == START + 300

            assert (await bridge.post_stripe(stripe_case("charge.refunded"), timestamp=clock.now())).status_code == 200
            clock.advance(300)
            dispatcher_of(bridge).wake()
            await eventually(lambda: _all_delivered(bridge, "cv", 2))
            statuses = [r["status"] for r in fake.requests]
            assert statuses[0] == 429 and statuses[1:] and all(s == 200 for s in statuses[1:])
            assert (await outbox_lane(bridge, "cv"))["paused_until"] is None


async def _retried(bridge: Bridge, destination: str, event_id: str) -> dict[str, Any] | None:
    """The delivery once it is pending again after an attempt (before its first claim it is pending too)."""
    detail = await status_of(bridge, destination, event_id, "pending")
    return detail if detail is not None and detail["attempts"] else None


async def _all_delivered(bridge: Bridge, destination: str, count: int) -> bool:
    rows = await bridge.deliveries(destination=destination)
    return len(rows) == count and all(r["status"] == "delivered" for r in rows)


async def test_a_paused_lane_with_due_work_costs_no_claim_rounds(tmp_path: Path) -> None:
    """The claim loop used to see the paused lane's due delivery, wake itself with a zero sleep and spin at 100 %
    CPU until the pause ended. Counted in claim rounds while another lane delivers: a handful, not thousands."""
    clock = ManualClock(START)
    fake = ConvultraFake(API_KEY)
    fake.script(429, headers={"Retry-After": "120"}, body={"success": False, "error": "Rate limit exceeded"})
    async with serve(fake.app) as url, recorder() as (sink, hook_url):
        destinations = {"cv": convultra(url), "hook": {"type": "http", "url": f"{hook_url}/hook"}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            dispatcher = dispatcher_of(bridge)
            assert (
                await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
            ).status_code == 200
            await eventually(lambda: _retried(bridge, "cv", "pi_1PgafyB7WZ01zgkWSjxsAJo3"))
            # a second event: due now on the paused lane, delivered at once on the other
            assert (await bridge.post_stripe(stripe_case("charge.refunded"), timestamp=clock.now())).status_code == 200
            await eventually(lambda: len(sink.requests) == 2)
            assert (await outbox_lane(bridge, "cv"))["paused_until"] == START + 120

            rounds = dispatcher.claim_rounds
            sentinel = stripe_case("customer.subscription.created")  # routed to the hook only
            assert (await bridge.post_stripe(sentinel, timestamp=clock.now())).status_code == 200
            await eventually(lambda: len(sink.requests) == 3 and _hook_idle(bridge))
            assert dispatcher.claim_rounds - rounds <= 6, dispatcher.claim_rounds - rounds
            assert await dispatcher.fill() >= 1.0  # the loop may sleep: nothing it can do is due

            assert len(fake.requests) == 1
            clock.advance(120)
            dispatcher.wake()
            await eventually(lambda: _all_delivered(bridge, "cv", 2))


def _hook_idle(bridge: Bridge) -> bool:
    lane = dispatcher_of(bridge).lanes["hook"]
    return not lane.queue and lane.sending == 0


# -- fencing ------------------------------------------------------------------------------------------------


async def test_a_late_completion_of_a_lost_and_retaken_lease_is_refused(tmp_path: Path) -> None:
    """The first request hangs past its lease; the delivery is claimed again and sent again. The first answer
    (500) then comes back while the second claim still holds the lease: it must not be applied. With one token
    per process instead of one per claim, it would be, and the delivery would end pending instead of delivered."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 2}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            dispatcher = dispatcher_of(bridge)
            sink.hold = True
            sink.script(500)
            assert (
                await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
            ).status_code == 200
            await eventually(lambda: len(sink.requests) == 1)
            clock.advance(31)  # the harness's lease is 30 s
            dispatcher.wake()
            await eventually(lambda: len(sink.requests) == 2)

            sink.release(0)
            await eventually(lambda: dispatcher.lane_stats()["hook"].lost_leases == 1)
            [row] = await bridge.deliveries(destination="hook")
            detail = await delivery_detail(bridge, row["id"])
            assert detail["status"] == "in_flight"
            assert [(a["status_code"], a["applied"]) for a in detail["attempts"]] == [(500, False)]

            sink.release(1)
            done = await eventually(lambda: status_of(bridge, "hook", row["event_id"], "delivered"))
            assert [(a["status_code"], a["applied"]) for a in done["attempts"]] == [(500, False), (200, True)]
            assert (
                'bridge_delivery_lost_leases_total{destination="hook"} 1' in (await bridge.ops("GET", "/metrics")).text
            )


# -- batches ------------------------------------------------------------------------------------------------


def big_order(order_id: int, items: int = 60, coupon: str | None = None) -> bytes:
    """A Shopify order whose Convultra event is ~25 KB: `items` line items with long titles."""
    line = json.loads(shopify_order(order_id))["line_items"][0]
    lines = [
        {**line, "id": order_id * 1000 + i, "sku": f"SKU-{order_id}-{i}", "title": f"Item {i} " + "x" * 240}
        for i in range(items)
    ]
    changes: dict[str, Any] = {"line_items": lines}
    if coupon is not None:
        changes["discount_codes"] = [{"code": coupon, "amount": "1.00", "type": "fixed_amount"}]
    return shopify_order(order_id, **changes)


async def ingest_orders(tmp_path: Path, url: str, bodies: Sequence[tuple[int, bytes]], clock: ManualClock) -> None:
    """Store the orders (and their Convultra deliveries) with the dispatcher off, so they are all due together."""
    async with running_bridge(
        tmp_path, destinations={"cv": convultra(url)}, clock=clock, extra={"sources": SHOPIFY_SOURCE}, dispatch=False
    ) as bridge:
        for order_id, body in bodies:
            assert (await post_shopify(bridge, body, clock.now(), f"wh-{order_id}")).status_code == 200


def events_of(fake: ConvultraFake) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for request in fake.received:
        document = request["json"]
        out += document["events"] if request["path"].endswith("/batch") else [document]
    return out


async def test_a_backlog_over_convultras_body_limit_is_split_into_requests_that_fit(tmp_path: Path) -> None:
    clock = ManualClock(START)
    fake = ConvultraFake(API_KEY)
    orders = [(7000 + i, big_order(7000 + i)) for i in range(120)]
    async with serve(fake.app) as url:
        await ingest_orders(tmp_path, url, orders, clock)
        async with running_bridge(
            tmp_path, destinations={"cv": convultra(url)}, clock=clock, extra={"sources": SHOPIFY_SOURCE}
        ) as bridge:
            await eventually(lambda: _all_delivered(bridge, "cv", len(orders)), timeout=30)
            assert fake.rejected == []
            sizes = [len(r["body"]) for r in fake.received]
            counts = [len(r["json"]["events"]) if r["path"].endswith("/batch") else 1 for r in fake.received]
            assert sum(sizes) > 2 * MAX_BODY  # 100 claimed together could never go as one request
            assert max(sizes) <= MAX_BODY and max(counts) <= MAX_BATCH
            assert max(counts) > 1  # batches were sent, split where they did not fit
            ids = [e["properties"]["event_id"] for e in events_of(fake)]
            assert sorted(ids) == sorted(str(order_id) for order_id, _ in orders)  # each exactly once
            rows = await by_event_id(bridge, "cv")
            assert all(r["attempts"] == 1 for r in rows.values())


class Picky(ConvultraDestination):
    """A batching destination that refuses, at render, any event with the coupon POISON."""

    def payload(self, event: Mapping[str, Any]) -> dict[str, Any]:
        if (event.get("order") or {}).get("coupon") == "POISON":
            raise RenderError("order.coupon POISON is refused by this destination")
        return super().payload(event)


async def test_one_event_that_cannot_be_rendered_does_not_sink_its_batch(tmp_path: Path) -> None:
    clock = ManualClock(START)
    fake = ConvultraFake(API_KEY)
    orders = [(8000 + i, big_order(8000 + i, items=2, coupon="POISON" if i == 2 else None)) for i in range(5)]
    async with serve(fake.app) as url:
        await ingest_orders(tmp_path, url, orders, clock)
        async with running_bridge(
            tmp_path,
            destinations={"cv": convultra(url)},
            clock=clock,
            extra={"sources": SHOPIFY_SOURCE},
            dispatch=False,
        ) as bridge:
            picky = Picky(bridge.settings.destinations["cv"])
            async with own_dispatcher(bridge, {"cv": picky}, clock, bridge.settings.dispatcher) as dispatcher:
                dispatcher.wake()
                rows = await eventually(lambda: _finished(bridge, "cv", 5))
                dead = [r for r in rows.values() if r["status"] == "dead"]
                assert [r["event_id"] for r in dead] == ["8002"]
                assert (await delivery_detail(bridge, dead[0]["id"]))["last_error"] == (
                    "cannot render: order.coupon POISON is refused by this destination"
                )
                assert sorted(e["properties"]["event_id"] for e in events_of(fake)) == ["8000", "8001", "8003", "8004"]
                assert len(fake.received) == 1  # the other four still went together


async def _finished(bridge: Bridge, destination: str, count: int) -> dict[str, dict[str, Any]] | None:
    rows = await by_event_id(bridge, destination)
    done = len(rows) == count and all(r["status"] in ("delivered", "dead") for r in rows.values())
    return rows if done else None


# -- claims a lane cannot use in time -------------------------------------------------------------------------


async def test_a_paused_lane_gives_back_claims_that_would_outlive_their_lease(tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        # the lane holds one delivery per worker and one claim's worth: one in flight and one behind it
        extra = {"dispatcher": {"claim_batch": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, extra=extra) as bridge:
            dispatcher = dispatcher_of(bridge)
            sink.hold = True
            sink.script(429, {"Retry-After": "120"})
            for case in ("payment_intent.succeeded", "charge.refunded", "customer.subscription.created"):
                assert (await bridge.post_stripe(stripe_case(case), timestamp=clock.now())).status_code == 200
            # one request in flight, one claimed behind it, one pending
            await eventually(lambda: len(sink.requests) == 1 and len(dispatcher.lanes["hook"].queue) == 1)
            sink.release_all()
            await eventually(lambda: dispatcher.lane_stats()["hook"].released == 1)
            rows = await bridge.deliveries(destination="hook")
            assert sorted((r["status"], r["attempts"]) for r in rows) == [
                ("pending", 0),
                ("pending", 0),
                ("pending", 1),
            ]
            assert not dispatcher.lanes["hook"].queue
            clock.advance(120)
            dispatcher.wake()
            await eventually(lambda: _all_delivered(bridge, "hook", 3))


async def test_claims_that_waited_past_their_lease_margin_are_given_back_and_sent(tmp_path: Path) -> None:
    """A delivery waits in the queue behind a slow request until less than a request timeout of its lease is
    left. It used to be dropped unsent and left in_flight until the lease ran out; now it is given back at once
    (counted) and claimed again with a fresh lease."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        # the lane holds one delivery per worker and one claim's worth: one in flight and one behind it
        extra = {"dispatcher": {"claim_batch": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, extra=extra) as bridge:
            dispatcher = dispatcher_of(bridge)
            sink.hold = True
            for case in ("payment_intent.succeeded", "charge.refunded", "customer.subscription.created"):
                assert (await bridge.post_stripe(stripe_case(case), timestamp=clock.now())).status_code == 200
            # one request in flight, one claimed behind it, one pending
            await eventually(lambda: len(sink.requests) == 1 and len(dispatcher.lanes["hook"].queue) == 1)
            clock.advance(25)  # lease 30 s, timeout 10 s: 5 s left is too little to send them
            sink.release_all()
            await eventually(lambda: _all_delivered(bridge, "hook", 3))
            assert dispatcher.lane_stats()["hook"].released == 1
            assert len(sink.requests) == 3
            assert all(r["attempts"] == 1 for r in await bridge.deliveries(destination="hook"))
