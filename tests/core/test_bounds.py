"""Bounded inputs on the webhook path, driven through POST /webhooks/{source} with validly signed hostile bodies:
amounts that would print as megabytes, nesting past what the JSON encoder writes, integers past 64 bits, too
many events, events too big. Each is a 400 with nothing stored, or a stored `mapping_failed` with the reason;
never a 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.harness import FIXTURES, Bridge, running_bridge
from tests.providers.signing import sign

SECRETS = {"shopify": "shpss_bounds", "lemonsqueezy": "ls_bounds", "recurly": "rc_bounds", "gocardless": "gc_bounds"}
SOURCES = {name: {"provider": name, "secrets": [secret]} for name, secret in SECRETS.items()}
CAPTURE = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}


def fixture(path: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((FIXTURES / path).read_bytes())
    return document


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep: {"a": {"a": ... {} ...}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def post(bridge: Bridge, source: str, body: bytes | Mapping[str, Any], **sign_options: Any) -> Any:
    # json, not orjson: orjson refuses to write what these tests send
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = sign(source, raw, secret=SECRETS[source], now=time.time(), **sign_options)
    return await bridge.client.post(f"/webhooks/{source}", content=raw, headers=headers)


async def stored_webhooks(bridge: Bridge) -> list[dict[str, Any]]:
    response = await bridge.ops("GET", "/ops/webhooks")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["webhooks"]
    return rows


async def failed_reason(bridge: Bridge, response: Any) -> str:
    """The stored error of a webhook answered mapping_failed (and proof it has no deliveries)."""
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "mapping_failed", response.text
    [webhook_id] = response.json()["webhook_ids"]
    stored = (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).json()
    assert stored["status"] == "mapping_failed" and stored["events"] == []
    assert await bridge.deliveries() == []
    error: str = stored["error"]
    return error


# -- amounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("1e20000000", "exponent +20000000 is beyond ±30"),
        ("1e31", "exponent +31 is beyond ±30"),
        ("1e-31", "exponent -31 is beyond ±30"),
        ("1." + "1" * 40, "41 significant digits, more than 40"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-sNaN", "finite"),
    ],
)
async def test_out_of_range_amount_is_a_stored_mapping_failure(tmp_path: Path, amount: str, words: str) -> None:
    order = fixture("shopify/orders-paid.json")
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        response = await post(b, "shopify", {**order, "total_price": amount}, event_type="orders/paid")
        reason = await failed_reason(b, response)
        assert "order.total" in reason and words in reason, reason
        [webhook_id] = response.json()["webhook_ids"]
        # kept as sent, and replayable once the mapping (or the data) is fixed
        stored = (await b.ops("GET", f"/ops/webhooks/{webhook_id}")).json()
        assert json.loads(stored["body"])["total_price"] == amount
        replayed = await b.ops("POST", f"/ops/webhooks/{webhook_id}/replay", json={"dry_run": True})
        assert replayed.status_code == 200 and replayed.json()["status_after"] == "mapping_failed", replayed.text


async def test_huge_minor_unit_amount_is_a_mapping_failure_not_a_huge_number(tmp_path: Path) -> None:
    order = fixture("lemonsqueezy/order_created.json")
    order["data"]["attributes"]["total"] = "1e20000000"  # minor_to_major(total, currency)
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        reason = await failed_reason(b, await post(b, "lemonsqueezy", order))
        assert "minor_to_major()" in reason and "beyond ±30" in reason, reason


async def test_amount_at_the_bounds_is_exact(tmp_path: Path) -> None:
    order = fixture("shopify/orders-paid.json")
    amount = "1" * 31 + "." + "2" * 9  # 40 digits, exponent +30
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        response = await post(b, "shopify", {**order, "total_price": amount}, event_type="orders/paid")
        assert response.json()["status"] == "accepted", response.text
        [delivery] = await b.deliveries()
        event = (await b.ops("GET", f"/ops/deliveries/{delivery['id']}")).json()["event"]
        assert event["order"]["total"] == amount


# -- nesting and integers at parse time ----------------------------------------------------------------


async def test_nesting_past_the_encoder_limit_is_400_and_nothing_stored(tmp_path: Path) -> None:
    # The Lemon Squeezy mapping copies meta.custom_data into the event: 300 levels once made the JSON encoder
    # raise (500) while storing it.
    order = fixture("lemonsqueezy/order_created.json")
    order["meta"]["custom_data"] = nested(300)
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        response = await post(b, "lemonsqueezy", order)
        assert response.status_code == 400, response.text
        assert "nested deeper than 64 levels" in response.json()["error"]
        assert await stored_webhooks(b) == []


async def test_nesting_depth_is_configurable(tmp_path: Path) -> None:
    order = fixture("lemonsqueezy/order_created.json")
    order["meta"]["custom_data"] = nested(100)  # 102 levels in the body
    extra = {"sources": SOURCES, "limits": {"max_depth": 110}}
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra=extra) as b:
        response = await post(b, "lemonsqueezy", order)
        assert response.json()["status"] == "accepted", response.text
        order["meta"]["custom_data"] = nested(120)
        order["data"]["id"] = "2"
        assert (await post(b, "lemonsqueezy", order)).status_code == 400


async def test_integer_beyond_64_bits_in_the_body_is_400_and_nothing_stored(tmp_path: Path) -> None:
    order = fixture("shopify/orders-paid.json")
    order["customer"]["orders_count"] = 12345678901234567890123456789  # orjson would read it as a lossy float
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        response = await post(b, "shopify", order, event_type="orders/paid")
        assert response.status_code == 400, response.text
        assert "does not fit 64 bits" in response.json()["error"]
        assert await stored_webhooks(b) == []


async def test_whole_number_field_beyond_64_bits_is_a_mapping_failure(tmp_path: Path) -> None:
    order = fixture("shopify/orders-paid.json")
    order["customer"]["orders_count"] = "99999999999999999999"  # text, so the parser keeps it; the field is int
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        reason = await failed_reason(b, await post(b, "shopify", order, event_type="orders/paid"))
        assert "customer.order_count" in reason and "does not fit 64 bits" in reason, reason


# -- events per webhook and event size -----------------------------------------------------------------


async def test_events_per_webhook_are_bounded(tmp_path: Path) -> None:
    batch = (FIXTURES / "gocardless" / "subscriptions.created+mandates.created.json").read_bytes()
    extra = {"sources": SOURCES, "limits": {"max_events_per_webhook": 1}}
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra=extra) as b:
        response = await post(b, "gocardless", batch)
        assert response.status_code == 400, response.text
        assert "carries 2 events, more than 1" in response.json()["error"]
        assert await stored_webhooks(b) == []


async def test_event_bigger_than_the_limit_is_a_mapping_failure(tmp_path: Path) -> None:
    # The event id appears twice in an event (id, and source.webhook_id which Recurly's dedup key embeds): a
    # 300 KB id made a 600 KB delivery.
    account = fixture("recurly/account.created.json")
    account["id"] = "x" * 300_000
    async with running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra={"sources": SOURCES}) as b:
        reason = await failed_reason(b, await post(b, "recurly", account))
        assert "account_created event is" in reason and "more than 262144 (limits.max_event_bytes)" in reason
        account["id"] = "rjxwmwedwqug"
        assert (await post(b, "recurly", account)).json()["status"] == "accepted"
