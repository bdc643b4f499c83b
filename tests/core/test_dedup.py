"""Dedup through the real HTTP path: facts are kept apart per source, the same signed bytes are one webhook whatever
the unsigned headers say, and a replay's dry run plans exactly what the replay does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve
from tests.harness import FIXTURES, Bridge, running_bridge, stripe_case
from tests.providers.signing import sign

API_KEY = "cv_server_key_for_dedup_tests"
WOO_SECRET = "wc_secret_for_dedup_tests"
CAPTURE = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
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


async def stored_webhooks(bridge: Bridge) -> int:
    response = await bridge.ops("GET", "/ops/outbox")
    assert response.status_code == 200
    return sum(response.json()["webhooks"].values())


def woo_order(number: int) -> bytes:
    """The real WooCommerce order.created body with another order id/number."""
    order = orjson.loads((FIXTURES / "woocommerce" / "order.created.json").read_bytes())
    order["id"], order["number"] = number, str(number)
    return orjson.dumps(order)


# -- one order number, two stores --------------------------------------------------------------------------------


async def test_the_same_order_number_from_two_stores_is_delivered_for_each(tmp_path: Path) -> None:
    fake = ConvultraFake(API_KEY)
    sources = {
        name: {"provider": "woocommerce", "secrets": [WOO_SECRET], "mapping": "woocommerce"}
        for name in ("store-a", "store-b")
    }
    async with serve(fake.app) as url:
        destinations = {"convultra": {"type": "convultra", "url": f"{url}/v1/track", "api_key": API_KEY}}
        async with running_bridge(tmp_path, destinations=destinations, extra={"sources": sources}) as bridge:
            body = woo_order(1005)
            for store, delivery_id in (("store-a", "a1"), ("store-b", "b1")):
                headers = sign(
                    "woocommerce", body, secret=WOO_SECRET, now=bridge.state.clock.now(), event_id=delivery_id
                )
                response = await bridge.client.post(f"/webhooks/{store}", content=body, headers=headers)
                assert response.status_code == 200, response.text
                assert response.json()["status"] == "accepted"
            await eventually(lambda: len(fake.received) == 2)
            assert fake.rejected == []
            assert [r["json"]["properties"]["order_id"] for r in fake.received] == ["1005", "1005"]

            async def both_recorded() -> list[dict[str, Any]] | None:
                rows = await bridge.deliveries()
                return rows if [r["status"] for r in rows] == ["delivered", "delivered"] else None

            rows = await eventually(both_recorded)  # the result is recorded just after the fake answered
            assert len({r["webhook_id"] for r in rows}) == 2


# -- the same signed bytes under new unsigned headers --------------------------------------------------------------

REPLAYS: dict[str, tuple[dict[str, Any], bytes, list[dict[str, str]]]] = {
    # provider: (source options, body, header changes a replay makes; each must be a duplicate)
    "shopify": (
        {},
        (FIXTURES / "shopify" / "orders-create.json").read_bytes(),
        [{"X-Shopify-Webhook-Id": "another-webhook-id"}, {"X-Shopify-Topic": "orders/paid"}],
    ),
    "woocommerce": (
        {},
        (FIXTURES / "woocommerce" / "order.created.json").read_bytes(),
        [{"X-WC-Webhook-Delivery-ID": "0" * 32}, {"X-WC-Webhook-Topic": "order.updated"}],
    ),
    "razorpay": (
        {},
        (FIXTURES / "razorpay" / "payment.captured.json").read_bytes(),
        [{"X-Razorpay-Event-Id": "evt_replayed"}],
    ),
    "generic_hmac": (
        {"header": "X-Acme-Signature", "id_header": "X-Acme-Delivery", "type_header": "X-Acme-Event"},
        (FIXTURES / "razorpay" / "payment.captured.json").read_bytes(),
        [{"X-Acme-Delivery": "delivery-2"}, {"X-Acme-Event": "payment.refunded"}],
    ),
}


def generic_headers(body: bytes, secret: str) -> dict[str, str]:
    headers = sign("generic_hmac", body, secret=secret, now=0, options={"header": "X-Acme-Signature"})
    return {**headers, "X-Acme-Delivery": "delivery-1", "X-Acme-Event": "payment.captured"}


@pytest.mark.parametrize("provider", sorted(REPLAYS))
async def test_a_signed_body_replayed_under_new_headers_is_a_duplicate(tmp_path: Path, provider: str) -> None:
    options, body, changes = REPLAYS[provider]
    secret = f"{provider}-secret-for-tests"
    source = {"provider": provider, "secrets": [secret], **options}
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": {"src": source}}) as b:
        now = b.state.clock.now()
        if provider == "generic_hmac":
            headers = generic_headers(body, secret)
        else:
            headers = sign(provider, body, secret=secret, now=now, event_id="first-delivery")
        first = await b.client.post("/webhooks/src", content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["status"] in ("accepted", "ignored")  # stored (generic_hmac has no mapping rules)
        deliveries = await b.deliveries()
        for change in changes:
            replay = await b.client.post("/webhooks/src", content=body, headers={**headers, **change})
            assert replay.status_code == 200, replay.text
            assert replay.json() == {"status": "duplicate", "webhook_ids": first.json()["webhook_ids"]}
        assert await stored_webhooks(b) == 1
        assert await b.deliveries() == deliveries


# -- replay: the dry run plans what the replay does --------------------------------------------------------------


async def test_replay_dry_run_plans_what_the_replay_does(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False) as bridge:
        # one payment, two provider events: the checkout made the purchase, the payment intent made none
        checkout = await bridge.post_stripe(stripe_case("checkout.session.completed"))
        intent = await bridge.post_stripe(stripe_case("payment_intent.succeeded"))
        [intent_id] = intent.json()["webhook_ids"]
        assert len(await bridge.deliveries()) == 1
        assert checkout.json()["webhook_ids"] != [intent_id]

        plan = await bridge.ops("POST", f"/ops/webhooks/{intent_id}/replay", json={"dry_run": True})
        assert plan.status_code == 200, plan.text
        assert [d["action"] for d in plan.json()["deliveries"]] == ["skip (pending)"]
        done = await bridge.ops("POST", f"/ops/webhooks/{intent_id}/replay", json={})
        assert done.status_code == 200, done.text
        assert done.json()["deliveries"] == plan.json()["deliveries"]
        assert done.json()["result"] == {"created": 0, "skipped": 1, "reset": 0}
        assert len(await bridge.deliveries()) == 1
