from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations._common import BatchTooLarge
from bridge.destinations.base import Verdict
from bridge.destinations.segment import SegmentDestination
from bridge.errors import RenderError
from bridge.sinks.segment import SegmentFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send
from tests.destinations.wave import build, clock_after

OPTIONS = {"write_key": "seg_write_key"}


def make(event: dict[str, Any] | None = None, url: str = "", **options: Any) -> Any:
    return build("segment", clock_after(event or events.purchase()), url, options={**OPTIONS, **options})


def test_purchase_golden() -> None:
    destination = make()
    assert destination_class("segment") is SegmentDestination
    request = destination.render([events.purchase()])
    assert request.url == "https://api.segment.io/v1/batch"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"seg_write_key:").decode()
    assert "seg_write_key" not in repr(destination)
    assert b'"total":54.98,' in request.body
    sent = body(request)
    assert sent["sentAt"] == "2024-01-15T14:31:45.000Z"
    assert sent["batch"] == [
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "purchase:ord_4835925655784",
            "timestamp": "2024-01-15T14:30:45.000Z",
            "userId": "cus_Q1w2E3r4",
            "anonymousId": "anon-7f3e9a21",
            "properties": {
                "order_id": "ord_4835925655784",
                "total": 54.98,
                "revenue": 54.98,
                "subtotal": 49.98,
                "tax": 5.0,
                "shipping": 0.0,
                "discount": 0,
                "coupon": "SPRING10",
                "currency": "USD",
                "products": [
                    {
                        "product_id": "6979886940352",
                        "variant_id": "41141193965760",
                        "sku": "LB00161-34689553170476",
                        "name": "Lovebox Original Color & Photo",
                        "brand": "Lovebox INC",
                        "category": "Home,Living",
                        "variant": "USA wall plug",
                        "price": 24.99,
                        "quantity": 2,
                    }
                ],
                "gift": True,
            },
            "context": {
                "ip": "203.0.113.7",
                "userAgent": events.CHROME_UA,
                "page": {
                    "url": "https://shop.example.com/checkout/success?order=1005",
                    "referrer": "https://www.google.com/",
                },
                "campaign": {"source": "google", "name": "spring"},
                "traits": {
                    "email": "  Bill.Call@Example.com ".strip(),
                    "phone": "+1 (843) 555-0142",
                    "first_name": "Bill",
                    "last_name": "Call",
                    "address": {
                        "street": "1 Hills Plantation Drive",
                        "city": "Charleston",
                        "state": "SC",
                        "postal_code": "29401",
                        "country": "US",
                    },
                },
                "consent": {"categoryPreferences": {"analytics": True, "marketing": True}},
            },
        }
    ]


def test_names_and_consent_preference_event() -> None:
    destination = make()
    assert destination.destination_event_name("refund") == "Order Refunded"
    assert destination.destination_event_name("vip_upgraded") == "Vip Upgraded"
    consent = events.consent_updated()
    message = body(make(consent).render([consent]))["batch"][0]
    assert message["event"] == "Segment Consent Preference Updated"
    assert message["context"]["consent"] == {"categoryPreferences": {"analytics": True, "marketing": False}}


def test_message_id_is_the_same_for_every_attempt_and_bounded() -> None:
    event = events.purchase()
    first = body(make(event).render([event]))["batch"][0]["messageId"]
    assert first == body(make(event).render([events.purchase()]))["batch"][0]["messageId"]
    event["id"] = "x" * 200
    long_id = body(make(event).render([event]))["batch"][0]["messageId"]
    assert len(long_id) == 36 and long_id == body(make(event).render([event]))["batch"][0]["messageId"]


def test_analytics_denied_sends_the_event_anonymously() -> None:
    event = events.purchase()
    event["consent"] = {"analytics": False}
    request = make(event).render([event])
    message = body(request)["batch"][0]
    assert "userId" not in message and message["anonymousId"]
    assert "traits" not in message["context"] and "ip" not in message["context"] and "gift" not in message["properties"]
    for raw in (b"Bill", b"203.0.113.7", b"cus_Q1w2E3r4", b"anon-7f3e9a21"):
        assert raw not in request.body
    assert message["properties"]["total"] == 54.98
    assert not make(event, consent="require").accepts(event)


def test_size_limits() -> None:
    event = events.purchase()
    event["properties"] = {"blob": "x" * 40_000}
    with pytest.raises(RenderError, match="32000 per event"):
        make(event).render([event])
    big = []
    for n in range(30):
        item = events.numbered_purchase(n)
        item["properties"] = {"blob": "y" * 20_000}
        big.append(item)
    destination = make()
    with pytest.raises(BatchTooLarge) as raised:
        destination.render(big)
    fits = raised.value.fits
    assert 15 < fits < 30 and len(destination.render(big[:fits]).body) <= 475_000
    with pytest.raises(BatchTooLarge):
        destination.render(big[: fits + 1])


def test_responses() -> None:
    destination = make()
    assert destination.classify(200, {}, b'{"success":true}').verdict is Verdict.DELIVERED
    assert destination.classify(400, {}, b'{"success":false}').verdict is Verdict.DEAD
    assert destination.classify(429, {}, b"").verdict is Verdict.RETRY
    assert destination.classify(503, {}, b"").verdict is Verdict.RETRY


async def test_the_strict_sink_takes_rendered_batches_and_dedups_retries() -> None:
    fake = SegmentFake("seg_write_key")
    samples = [events.purchase(), events.refund(), events.subscription_canceled(), events.consent_updated()]
    async with serve(fake.app) as base:
        destination = make(samples[-1], base)
        destination.clock.advance(100 * 86400)  # no age limit: late events still go
        answer, outcome = await deliver(destination, samples)
        assert (answer.status, outcome.verdict) == (200, Verdict.DELIVERED), fake.rejected[-1:]
        await deliver(destination, samples[:1])  # a retry of the purchase
        bad = body(destination.render(samples[:1]))
        del bad["batch"][0]["userId"], bad["batch"][0]["anonymousId"]
        request = destination.render(samples[:1])
        refused = await send(request.__class__("POST", request.url, request.headers, orjson.dumps(bad)))
        assert refused.status == 400
    assert [m["event"] for m in fake.messages] == [
        "Order Completed",
        "Order Refunded",
        "Subscription Canceled",
        "Segment Consent Preference Updated",
    ]
    assert fake.duplicates == 1 and "userId or anonymousId" in fake.rejected[0]["why"]
