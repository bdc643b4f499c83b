"""Signed Stripe webhooks in → Convultra requests out, through the dispatcher, a real SQLite outbox and a strict
local Convultra fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bridge.clock import ManualClock
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve
from tests.harness import Bridge, running_bridge, stripe_case
from tests.sentinel import send_sentinel, settled, without_sentinel

API_KEY = "cv_server_key_for_tests"


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll an async or sync check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def convultra_bridge(
    tmp_path: Path, fake: ConvultraFake, clock: ManualClock | None = None, witness: ConvultraFake | None = None
) -> AsyncIterator[Bridge]:
    """A bridge delivering to `fake`; with `witness`, also purchases to a second Convultra account (its own
    destination, so its own lane)."""
    async with serve(fake.app) as url, serve((witness or fake).app) as witness_url:
        destinations: dict[str, Any] = {
            "convultra": {
                "type": "convultra",
                "url": f"{url}/v1/track",
                "api_key": API_KEY,
                "events": ["purchase", "refund", "subscription_started"],
            }
        }
        if witness is not None:
            destinations["witness"] = {**destinations["convultra"], "url": f"{witness_url}/v1/track"}
            destinations["witness"]["events"] = ["purchase"]
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            yield bridge


async def test_signed_samples_arrive_as_exact_convultra_requests(tmp_path: Path) -> None:
    fake = ConvultraFake(API_KEY)
    async with convultra_bridge(tmp_path, fake) as bridge:
        for case in ("checkout.session.completed", "payment_intent.succeeded", "charge.refunded"):
            assert (await bridge.post_stripe(stripe_case(case))).status_code == 200
        await eventually(lambda: len(fake.received) == 2)
        sentinel = await send_sentinel(bridge, [fake])  # posted after: once it is in, nothing else is on its way
        await settled(bridge)
        assert fake.rejected == []
        names = sorted(r["event_name"] for r in await bridge.deliveries())
        assert names == ["purchase", "purchase", "refund"]  # checkout + payment_intent are one; the other: sentinel
        assert len(fake.received) == 3
        purchase, refund = sorted(without_sentinel(fake.received, sentinel), key=lambda r: r["json"]["event_type"])
        assert purchase["path"] == "/v1/track"
        assert purchase["headers"]["authorization"] == f"Bearer {API_KEY}"
        assert "api_key" not in purchase["query"]
        assert purchase["headers"]["user-agent"].startswith("bridge/")
        body = purchase["json"]
        assert body["event_type"] == "purchase"
        assert body["timestamp"] == "2024-07-26T00:35:01Z"
        assert body["properties"]["order_id"] == "pi_1PgafyB7WZ01zgkWSjxsAJo3"
        assert str(body["properties"]["value"]) == "10.99"  # exact: parsed as Decimal by the strict fake
        assert body["properties"]["currency"] == "USD"
        assert body["user_data"]["email"] == "example@example.com"
        assert refund["json"]["event_type"] == "refund"
        assert {r["status"] for r in await bridge.deliveries()} == {"delivered"}


async def test_server_error_then_success_is_delivered_on_retry(tmp_path: Path) -> None:
    clock = ManualClock(start=1_900_000_000.0)
    fake = ConvultraFake(API_KEY)
    fake.script(500, body={"success": False, "error": "boom"})
    async with convultra_bridge(tmp_path, fake, clock) as bridge:
        body = stripe_case("payment_intent.succeeded")
        assert (await bridge.post_stripe(body, timestamp=clock.now())).status_code == 200
        row = await eventually(lambda: _attempted(bridge, 1))
        assert row["status"] == "pending"
        assert row["next_attempt_at"] == clock.now() + 10  # first step of the schedule, jitter 0 in tests
        assert row["attempts"][0]["status_code"] == 500
        clock.advance(9)
        await send_sentinel(bridge, [fake], timestamp=clock.now())  # due now: claimed in the same pass as the retry
        assert await _row(bridge, row["id"], "pending", attempts=1)  # not yet due
        assert len(fake.requests) == 2  # the 500 and the sentinel
        clock.advance(1)
        bridge.state.dispatcher.wake()  # type: ignore[union-attr]
        row = await eventually(lambda: _row(bridge, row["id"], "delivered"))
        assert [a["status_code"] for a in row["attempts"]] == [500, 200]


async def test_429_with_retry_after_waits_that_long(tmp_path: Path) -> None:
    clock = ManualClock(start=1_900_000_000.0)
    fake = ConvultraFake(API_KEY)
    fake.script(429, headers={"Retry-After": "120"}, body={"success": False, "error": "Rate limit exceeded"})
    witness = ConvultraFake(API_KEY)  # the 429 pauses the whole destination: the sentinel shows in another lane
    async with convultra_bridge(tmp_path, fake, clock, witness) as bridge:
        body = stripe_case("payment_intent.succeeded")
        assert (await bridge.post_stripe(body, timestamp=clock.now())).status_code == 200
        row = await eventually(lambda: _attempted(bridge, 1))
        assert row["next_attempt_at"] == clock.now() + 120
        clock.advance(119)
        await send_sentinel(bridge, [witness], timestamp=clock.now())  # claimed in the same pass as a due retry
        assert await _row(bridge, row["id"], "pending", attempts=1)  # not yet due
        assert len(fake.requests) == 1  # the paused destination sent nothing, not even the sentinel
        clock.advance(1)
        bridge.state.dispatcher.wake()  # type: ignore[union-attr]
        await eventually(lambda: _row(bridge, row["id"], "delivered"))


async def test_400_is_dead_with_the_response_recorded_and_ops_retry_delivers(tmp_path: Path) -> None:
    fake = ConvultraFake(API_KEY)
    fake.script(400, body={"success": False, "error": "Invalid event payload"})
    async with convultra_bridge(tmp_path, fake) as bridge:
        assert (await bridge.post_stripe(stripe_case("payment_intent.succeeded"))).status_code == 200
        row = await eventually(lambda: _status(bridge, "dead"))
        [attempt] = row["attempts"]
        assert attempt["status_code"] == 400
        assert "Invalid event payload" in attempt["response_excerpt"]
        assert row["last_error"]
        status = (await bridge.ops("GET", "/ops/outbox")).json()
        assert status["destinations"]["convultra"]["dead"] == 1

        response = await bridge.ops("POST", f"/ops/deliveries/{row['id']}/retry")
        assert response.status_code == 200 and response.json() == {"retried": 1}
        row = await eventually(lambda: _status(bridge, "delivered"))
        assert [a["status_code"] for a in row["attempts"]] == [400, 200]
        assert len(fake.received) == 1


async def test_bulk_retry_by_filter(tmp_path: Path) -> None:
    fake = ConvultraFake(API_KEY)
    fake.script(401, body={"success": False, "error": "Invalid API key"}, times=2)
    async with convultra_bridge(tmp_path, fake) as bridge:
        for case in ("payment_intent.succeeded", "charge.refunded"):
            assert (await bridge.post_stripe(stripe_case(case))).status_code == 200
        await eventually(lambda: _count(bridge, "dead", 2))
        response = await bridge.ops(
            "POST", "/ops/deliveries/retry", json={"status": "dead", "destination": "convultra"}
        )
        assert response.json() == {"retried": 2}
        await eventually(lambda: _count(bridge, "delivered", 2))


async def test_ops_routes_need_the_token(tmp_path: Path) -> None:
    fake = ConvultraFake(API_KEY)
    async with convultra_bridge(tmp_path, fake) as bridge:
        assert (await bridge.client.get("/ops/outbox")).status_code == 401
        wrong = await bridge.client.get("/ops/outbox", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await bridge.client.get("/healthz")).json() == {"status": "ok"}
        assert (await bridge.client.get("/readyz")).json() == {"status": "ready", "role": "all"}
        assert (await bridge.client.get("/metrics")).status_code == 401  # it names sources and destinations
        metrics = (await bridge.ops("GET", "/metrics")).text
        assert 'bridge_deliveries{destination="convultra",status="pending"}' in metrics


async def _attempted(bridge: Bridge, n: int) -> dict[str, Any] | None:
    rows = await bridge.deliveries(destination="convultra")
    if not rows:
        return None
    row = (await bridge.ops("GET", f"/ops/deliveries/{rows[0]['id']}")).json()
    return row if len(row["attempts"]) >= n and row["status"] != "in_flight" else None


async def _row(bridge: Bridge, delivery_id: int, status: str, attempts: int | None = None) -> dict[str, Any] | None:
    """The delivery if it has this status (and this many attempts), else None."""
    detail: dict[str, Any] = (await bridge.ops("GET", f"/ops/deliveries/{delivery_id}")).json()
    if detail["status"] != status or (attempts is not None and len(detail["attempts"]) != attempts):
        return None
    return detail


async def _status(bridge: Bridge, status: str) -> dict[str, Any] | None:
    rows = await bridge.deliveries(status=status)
    if not rows:
        return None
    detail: dict[str, Any] = (await bridge.ops("GET", f"/ops/deliveries/{rows[0]['id']}")).json()
    return detail


async def _count(bridge: Bridge, status: str, n: int) -> bool:
    return len(await bridge.deliveries(status=status)) == n
