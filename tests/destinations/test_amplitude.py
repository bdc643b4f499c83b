from __future__ import annotations

import uuid
from typing import Any

import orjson

from bridge.destinations import destination_class
from bridge.destinations._dedup import NAMESPACE
from bridge.destinations.amplitude import AmplitudeDestination
from bridge.destinations.base import RateLimit, Verdict
from bridge.sinks.amplitude import AmplitudeFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver
from tests.destinations.wave import build, clock_after, moment

OPTIONS = {"api_key": "amp_key"}


def make(event: dict[str, Any] | None = None, url: str = "", **options: Any) -> Any:
    return build("amplitude", clock_after(event or events.purchase()), url, options={**OPTIONS, **options})


def test_purchase_golden() -> None:
    destination = make()
    assert destination_class("amplitude") is AmplitudeDestination
    assert destination.rate_limits == (RateLimit(100, 1.0),) and destination.max_batch == 10
    request = destination.render([events.purchase()])
    assert request.url == "https://api2.amplitude.com/2/httpapi"
    sent = body(request)
    assert sent["api_key"] == "amp_key" and "options" not in sent
    [event] = sent["events"]
    assert event["time"] == int(moment("2024-01-15T14:30:45Z") * 1000)  # milliseconds
    assert event["insert_id"] == str(uuid.uuid5(NAMESPACE, "purchase:ord_4835925655784"))
    assert (event["user_id"], event["device_id"]) == ("cus_Q1w2E3r4", "anon-7f3e9a21")
    assert (event["revenue"], event["revenueType"], event["currency"]) == (54.98, "Purchase", "USD")
    assert event["ip"] == "203.0.113.7" and event["event_type"] == "purchase"


def test_refunds_are_negative_revenue_and_short_ids_are_declared() -> None:
    event = events.refund()
    event["customer"]["id"] = "c42"
    request = make(event, region="eu").render([event])
    assert request.url == "https://api.eu.amplitude.com/2/httpapi"
    sent = body(request)
    assert b'"revenue":-24.99,' in request.body
    assert sent["events"][0]["revenueType"] == "Refund"
    assert sent["options"] == {"min_id_length": 3}


def test_denied_analytics_sends_no_user() -> None:
    event = events.purchase()
    event["consent"] = {"analytics": False}
    sent = body(make(event).render([event]))["events"][0]
    assert "user_id" not in sent and "ip" not in sent and sent["device_id"] == sent["insert_id"]


def test_invalid_indices_are_dead_and_the_rest_retried() -> None:
    answer = {
        "code": 400,
        "error": "Request contains invalid or missing fields",
        "events_with_invalid_fields": {"time": [2]},
        "events_with_missing_fields": {"event_type": [0]},
    }
    outcome = make().classify(400, {}, orjson.dumps(answer))
    assert outcome.verdict is Verdict.RETRY
    assert [outcome.for_event(i).verdict for i in range(3)] == [Verdict.DEAD, Verdict.RETRY, Verdict.DEAD]
    throttled = make().classify(429, {}, orjson.dumps({"throttled_users": {"cus_1": 31}, "eps_threshold": 30}))
    assert throttled.verdict is Verdict.RETRY and throttled.retry_after == 30.0 and "cus_1" not in throttled.reason
    assert make().classify(400, {}, b'{"error":"Invalid API key"}').verdict is Verdict.DEAD
    assert make().classify(502, {}, b"").verdict is Verdict.RETRY


async def test_the_strict_sink_takes_rendered_batches() -> None:
    fake = AmplitudeFake("amp_key")
    samples = [events.purchase(), events.refund(), events.subscription_renewed(), events.pos_purchase()]
    async with serve(fake.app) as base:
        destination = make(samples[2], base)
        answer, outcome = await deliver(destination, samples)
        assert (answer.status, outcome.verdict) == (200, Verdict.DELIVERED), fake.rejected[-1:]
        await deliver(destination, samples[:2])
        wrong = build("amplitude", destination.clock, base, options={"api_key": "nope"})
        answer, outcome = await deliver(wrong, samples[:1])
        assert answer.status == 400 and outcome.verdict is Verdict.DEAD
    assert len(fake.events) == 4 and fake.duplicates == 2
