from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations.base import HttpRequest, OptionError, Verdict
from bridge.destinations.data_activation import DataActivationDestination
from bridge.errors import RenderError
from bridge.sinks.data_activation import PATH, DataActivationFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send, settings

KEY = "da_live_secret"
URL = "https://ingest.activation.example/v1/events"
EMAIL_HASH = hashlib.sha256(b"bill.call@example.com").hexdigest()


def make(url: str = URL, **options: Any) -> DataActivationDestination:
    return DataActivationDestination(settings("data_activation", url, options={"api_key": KEY, **options}))


def test_registered_by_type() -> None:
    assert destination_class("data_activation") is DataActivationDestination


def test_purchase_golden() -> None:
    request = make().render([events.purchase()])
    assert request.method == "POST" and request.url == URL
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Idempotency-Key"] == "ord_4835925655784"
    assert request.headers["Content-Type"] == "application/json"
    assert b'"order_value":54.98,' in request.body
    assert body(request) == {
        "event": "purchase_completed",
        "timestamp": "2024-01-15T14:30:45Z",
        "customer_id": "cus_Q1w2E3r4",
        "email_hash": EMAIL_HASH,  # of the trimmed, lower-cased "  Bill.Call@Example.com "
        "event_id": "ord_4835925655784",
        "properties": {
            "order_id": "ord_4835925655784",
            "order_number": "#1005",
            "order_value": 54.98,
            "currency": "USD",
            "product_ids": ["6979886940352"],
            "coupon": "SPRING10",
            "gift": True,
        },
    }


def test_subscription_events() -> None:
    dest = make(email_hash=False)
    started = body(dest.render([events.subscription_started()]))
    assert started["event"] == "subscription_started" and "email_hash" not in started
    assert started["properties"] == {
        "subscription_id": "sub_1PqRsT",
        "plan": "pro_monthly",
        "interval": "month",
        "status": "active",
        "amount": 19.0,
        "currency": "EUR",
        "start_date": "2024-02-01T00:00:00Z",
    }
    canceled = body(dest.render([events.subscription_canceled()]))
    assert canceled["event"] == "subscription_canceled"
    assert canceled["properties"]["cancel_date"] == "2024-05-10T08:00:00Z"
    assert canceled["properties"]["reason"] == "too_expensive"
    renewed = body(dest.render([events.subscription_renewed()]))
    assert renewed["event"] == "contract_renewed"
    assert renewed["properties"]["new_end_date"] == "2025-03-01T00:00:00Z"
    consent = body(dest.render([events.consent_updated()]))
    assert consent["event"] == "consent_updated"
    assert consent["properties"] == {
        "consent_type": "marketing",
        "status": "denied",
        "consents": {"marketing": "denied", "analytics": "granted"},
    }


def test_name_table() -> None:
    dest = make()
    assert dest.destination_event_name("purchase") == "purchase_completed"
    assert dest.destination_event_name("subscription_renewed") == "contract_renewed"
    assert dest.destination_event_name("contract_updated") == "contract_renewed"
    for name in ("refund", "payment_failed", "trial_started", "custom_event"):
        assert not dest.routes(name)
    assert dest.rate_limits == ()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda e: e.pop("customer"), "customer identifier"),
        (lambda e: e.__setitem__("occurred_at", "yesterday"), "timestamp"),
        (lambda e: e.pop("occurred_at"), "timestamp"),
        (lambda e: e["order"].pop("total"), "order_value"),
        (lambda e: e["order"].pop("currency"), "currency"),
        (lambda e: e.pop("id"), "id"),
    ],
)
def test_validated_before_sending(change: Any, needle: str) -> None:
    event = events.purchase()
    change(event)
    with pytest.raises(RenderError, match=needle):
        make().render([event])


def test_required_properties_per_event() -> None:
    renewed = events.subscription_renewed()
    del renewed["subscription"]["contract_end_date"], renewed["subscription"]["current_period_end"]
    with pytest.raises(RenderError, match="new_end_date"):
        make().render([renewed])
    consent = events.consent_updated()
    consent["consent"] = {}
    with pytest.raises(RenderError, match="consent_type"):
        make().render([consent])
    started = events.subscription_started()
    del started["subscription"]["plan"]
    with pytest.raises(RenderError, match="plan"):
        make().render([started])


@pytest.mark.parametrize(
    ("options", "url", "key"),
    [({}, "", "url"), ({"api_key": ""}, URL, "api_key"), ({"email_hash": "sometimes"}, URL, "email_hash")],
)
def test_option_errors(options: dict[str, Any], url: str, key: str) -> None:
    with pytest.raises(OptionError) as info:
        make(url=url, **options)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.DELIVERED), (202, Verdict.DELIVERED), (400, Verdict.DEAD), (401, Verdict.DEAD),
     (429, Verdict.RETRY), (500, Verdict.RETRY), (503, Verdict.RETRY)],
)  # fmt: skip
def test_classify(status: int, verdict: Verdict) -> None:
    outcome = make().classify(status, {}, b'{"error":"x"}')
    assert outcome.verdict is verdict
    if status == 401:
        assert "credentials" in outcome.reason


async def test_fake_accepts_and_dedups() -> None:
    fake = DataActivationFake(KEY)
    async with serve(fake.app) as base:
        dest = make(url=base + PATH)
        samples = [
            events.purchase(),
            events.subscription_started(),
            events.subscription_canceled(),
            events.subscription_renewed(),
            events.consent_updated(),
        ]
        for event in samples:
            answer, outcome = await deliver(dest, [event])
            assert answer.status == 202, answer.body
            assert outcome.verdict is Verdict.DELIVERED
        answer, outcome = await deliver(dest, [events.purchase()])  # a retry
        assert answer.status == 200 and outcome.verdict is Verdict.DELIVERED
    assert len(fake.counted) == 5 and len(fake.received) == 6


async def test_fake_rejects_bad_credentials_and_payloads() -> None:
    fake = DataActivationFake(KEY, rate_limits=[(2, 60.0)], clock=lambda: 0.0)
    async with serve(fake.app) as base:
        answer, outcome = await deliver(make(url=base + PATH, api_key="wrong"), [events.purchase()])
        assert answer.status == 401 and outcome.verdict is Verdict.DEAD
        good = make(url=base + PATH).render([events.purchase()])
        document = body(good)
        del document["customer_id"], document["email_hash"]
        answer = await send(HttpRequest("POST", good.url, good.headers, orjson.dumps(document)))
        assert answer.status == 400 and b"customer identifier" in answer.body
        assert make().classify(answer.status, answer.headers, answer.body).verdict is Verdict.DEAD
        document = body(good)
        document["properties"]["order_value"] = "54.98"
        answer = await send(HttpRequest("POST", good.url, good.headers, orjson.dumps(document)))
        assert answer.status == 429  # the third request in the window
        assert answer.headers["Retry-After"] == "60"
    assert [r["status"] for r in fake.rejected] == [401, 400, 429]
    fake = DataActivationFake(KEY)
    async with serve(fake.app) as base:
        answer = await send(HttpRequest("POST", base + PATH, good.headers, orjson.dumps(document)))
        assert answer.status == 400 and b"order_value" in answer.body
        del document["properties"]["order_id"]
        answer = await send(HttpRequest("POST", base + PATH, good.headers, orjson.dumps(document)))
        assert answer.status == 400 and b"order_id" in answer.body
    assert len(fake.rejected) == 2 and not fake.received
