from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from bridge.destinations import destination_class
from bridge.destinations.base import DestinationSettings, Verdict
from bridge.destinations.mixpanel import MixpanelDestination
from bridge.sinks.mixpanel import MixpanelFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver
from tests.destinations.wave import build, clock_after, moment

OPTIONS = {"project_token": "mp_token", "api_secret": "mp_secret"}


def make(event: dict[str, Any] | None = None, url: str = "", **options: Any) -> Any:
    return build("mixpanel", clock_after(event or events.purchase()), url, options={**OPTIONS, **options})


def test_purchase_golden() -> None:
    assert destination_class("mixpanel") is MixpanelDestination
    request = make().render([events.purchase()])
    assert request.url == "https://api.mixpanel.com/import?strict=1"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"mp_secret:").decode()
    [sent] = body(request)
    assert sent["event"] == "Purchase"
    properties = sent["properties"]
    assert properties["time"] == int(moment("2024-01-15T14:30:45Z") * 1000)
    assert re.fullmatch(r"[A-Za-z0-9-]{36}", properties["$insert_id"])
    assert properties["distinct_id"] == "cus_Q1w2E3r4" and properties["token"] == "mp_token"
    assert properties["ip"] == "203.0.113.7" and properties["amount"] == 54.98 and properties["currency"] == "USD"
    assert b"Bill" not in request.body  # no contact data in Mixpanel events


def test_regions_service_accounts_and_names() -> None:
    account = make(region="eu", service_account="bridge.sa", project_id="3141592")
    request = account.render([events.purchase()])
    assert request.url == "https://api-eu.mixpanel.com/import?strict=1&project_id=3141592"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"bridge.sa:mp_secret").decode()
    assert make(region="in").url.startswith("https://api-in.mixpanel.com/")
    assert make().destination_event_name("subscription_renewed") == "Subscription Renewed"


def test_no_ip_means_no_geoip_and_denied_means_no_user() -> None:
    event = events.subscription_renewed()
    assert body(make(event).render([event]))[0]["properties"]["ip"] == "0"
    denied = events.purchase()
    denied["consent"] = {"analytics": False}
    properties = body(make(denied).render([denied]))[0]["properties"]
    assert properties["distinct_id"] == "" and properties["ip"] == "0"


def test_partial_failure_marks_only_the_failed_events() -> None:
    answer = {
        "code": 400,
        "error": "some data points in the request failed validation",
        "failed_records": [{"index": 1, "$insert_id": "x", "field": "properties.time", "message": "too old"}],
        "num_records_imported": 2,
        "status": "Bad Request",
    }
    outcome = make().classify(400, {}, orjson.dumps(answer))
    assert outcome.verdict is Verdict.DELIVERED and "2 imported" in outcome.reason
    assert outcome.for_event(0).verdict is Verdict.DELIVERED and outcome.for_event(2).verdict is Verdict.DELIVERED
    assert outcome.for_event(1).verdict is Verdict.DEAD and "properties.time: too old" in outcome.for_event(1).reason
    assert make().classify(400, {}, b'{"error":"bad"}').verdict is Verdict.DEAD
    assert make().classify(429, {}, b"").verdict is Verdict.RETRY
    assert make().classify(401, {}, b"").verdict is Verdict.DEAD


async def test_the_strict_sink_imports_and_reports_partial_failures() -> None:
    samples = [events.purchase(), events.refund(), events.subscription_canceled()]
    fake = MixpanelFake("mp_token", "mp_secret")
    async with serve(fake.app) as base:
        destination = make(samples[2], base)
        fake.now = destination.clock.now
        answer, outcome = await deliver(destination, samples)
        assert (answer.status, outcome.verdict) == (200, Verdict.DELIVERED), fake.rejected[-1:]
        await deliver(destination, samples)  # the same events again: deduplicated by Mixpanel
        # one event Mixpanel refuses (a blocklisted distinct_id) among good ones: partial ingestion
        bad = events.numbered_purchase(7)
        bad["customer"] = {"id": "undefined"}
        answer, outcome = await deliver(destination, [events.numbered_purchase(6), bad, events.numbered_purchase(8)])
        assert answer.status == 400
        assert [outcome.for_event(i).verdict for i in range(3)] == [Verdict.DELIVERED, Verdict.DEAD, Verdict.DELIVERED]
    assert len(fake.events) == 5 and fake.duplicates == 3
    assert {e["properties"].get("order_id") for e in fake.events} >= {"ord_000006", "ord_000008"}


def test_settings_are_not_in_repr() -> None:
    destination = MixpanelDestination(DestinationSettings(name="m", type="mixpanel", options=OPTIONS))
    assert "mp_secret" not in repr(destination)
