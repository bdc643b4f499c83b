from __future__ import annotations

import uuid
from typing import Any

import orjson

from bridge.destinations import destination_class
from bridge.destinations._dedup import NAMESPACE
from bridge.destinations.base import Verdict
from bridge.destinations.posthog import PostHogDestination
from bridge.sinks.posthog import PostHogFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send
from tests.destinations.wave import build, clock_after

OPTIONS = {"api_key": "phc_project_key"}


def make(event: dict[str, Any] | None = None, url: str = "", **options: Any) -> Any:
    return build("posthog", clock_after(event or events.purchase()), url, options={**OPTIONS, **options})


def test_purchase_golden() -> None:
    assert destination_class("posthog") is PostHogDestination
    request = make().render([events.purchase()])
    assert request.url == "https://us.i.posthog.com/batch/"
    assert "Authorization" not in request.headers  # the key travels in the body, as PostHog wants
    assert b'"revenue":54.98,' in request.body
    sent = body(request)
    assert (sent["api_key"], sent["historical_migration"]) == ("phc_project_key", False)
    assert sent["batch"] == [
        {
            "event": "purchase",
            "uuid": str(uuid.uuid5(NAMESPACE, "purchase:ord_4835925655784")),
            "timestamp": "2024-01-15T14:30:45.000Z",
            "properties": {
                "distinct_id": "cus_Q1w2E3r4",
                "revenue": 54.98,
                "value": 54.98,
                "currency": "USD",
                "order_id": "ord_4835925655784",
                "coupon": "SPRING10",
                "items": [
                    {
                        "sku": "LB00161-34689553170476",
                        "product_id": "6979886940352",
                        "name": "Lovebox Original Color & Photo",
                        "price": 24.99,
                        "quantity": 2,
                    }
                ],
                "$current_url": "https://shop.example.com/checkout/success?order=1005",
                "$referrer": "https://www.google.com/",
                "$ip": "203.0.113.7",
                "$useragent": events.CHROME_UA,
                "utm_source": "google",
                "utm_campaign": "spring",
                "event_id": "ord_4835925655784",
                "source_provider": "stripe",
                "gift": True,
                "$set": {"email": "Bill.Call@Example.com", "phone": "+1 (843) 555-0142", "name": "Bill Call"},
            },
        }
    ]


def test_eu_region_and_no_ip_means_no_geoip() -> None:
    event = events.refund()
    request = make(event, region="eu").render([event])
    assert request.url == "https://eu.i.posthog.com/batch/"
    properties = body(request)["batch"][0]["properties"]
    assert properties["$geoip_disable"] is True and "$ip" not in properties
    assert "revenue" not in properties and properties["value"] == 24.99


def test_analytics_denied_is_anonymous_and_never_a_person() -> None:
    event = events.purchase()
    event["consent"] = {"analytics": False}
    request = make(event).render([event])
    sent = body(request)["batch"][0]
    assert sent["properties"]["distinct_id"] == sent["uuid"]
    assert sent["properties"]["$process_person_profile"] is False and "$set" not in sent["properties"]
    for raw in (b"Bill", b"203.0.113.7", b"cus_Q1w2E3r4"):
        assert raw not in request.body


def test_quota_limited_answers_are_dead_letters() -> None:
    destination = make()
    outcome = destination.classify(200, {}, orjson.dumps({"status": 1, "quota_limited": ["events"]}))
    assert outcome.verdict is Verdict.DEAD and "quota" in outcome.reason
    assert destination.classify(200, {}, b'{"status":1}').verdict is Verdict.DELIVERED
    assert destination.classify(401, {}, b"").verdict is Verdict.DEAD
    assert destination.classify(429, {}, b"").verdict is Verdict.RETRY
    assert destination.classify(503, {}, b"").verdict is Verdict.RETRY


async def test_the_strict_sink_takes_rendered_batches_and_merges_retries() -> None:
    fake = PostHogFake("phc_project_key")
    samples = [events.purchase(), events.refund(), events.subscription_started(), events.pos_purchase()]
    async with serve(fake.app) as base:
        destination = make(samples[0], base)
        destination.clock.advance(365 * 86400)
        fake.now = destination.clock.now
        answer, outcome = await deliver(destination, samples)
        assert (answer.status, outcome.verdict) == (200, Verdict.DELIVERED), fake.rejected[-1:]
        await deliver(destination, samples)
        request = destination.render(samples[:1])
        bad = body(request)
        bad["batch"][0]["uuid"] = "not-a-uuid"
        assert (await send(request.__class__("POST", request.url, request.headers, orjson.dumps(bad)))).status == 400
    assert len(fake.events) == 4 and fake.duplicates == 4
    assert fake.events[3]["properties"]["$process_person_profile"] is False  # a POS sale without a customer
