from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations._common import BatchTooLarge
from bridge.destinations.base import OptionError, Verdict
from bridge.destinations.ga4 import Ga4Destination, derived_client_id
from bridge.errors import RenderError
from bridge.sinks.ga4 import Ga4Fake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send, settings
from tests.destinations.wave import build, clock_after, moment

OPTIONS = {"measurement_id": "G-TEST1234", "api_secret": "ga4_secret_value"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make(event: dict[str, Any] | None = None, url: str = "", seconds: float = 60.0, **options: Any) -> Any:
    return build("ga4", clock_after(event or events.purchase(), seconds), url, options={**OPTIONS, **options})


def test_registered_and_secret_kept_out_of_repr() -> None:
    assert destination_class("ga4") is Ga4Destination
    assert "ga4_secret_value" not in repr(make())


def test_purchase_golden() -> None:
    request = make().render([events.purchase()])
    assert request.method == "POST"
    assert request.url == (
        "https://www.google-analytics.com/mp/collect?measurement_id=G-TEST1234&api_secret=ga4_secret_value"
    )
    assert request.headers["Content-Type"] == "application/json"
    micros = int(moment("2024-01-15T14:30:45Z") * 1_000_000)
    assert b'"value":54.98,' in request.body  # a JSON number with exactly the decimal's digits
    assert body(request) == {
        "client_id": derived_client_id("customer:cus_Q1w2E3r4"),
        "user_id": "cus_Q1w2E3r4",
        "user_data": {
            "sha256_email_address": [sha("bill.call@example.com")],
            "sha256_phone_number": [sha("+18435550142")],
            "address": [
                {
                    "sha256_first_name": sha("bill"),
                    "sha256_last_name": sha("call"),
                    "sha256_street": sha("1 hills plantation drive"),
                    "city": "charleston",
                    "region": "sc",
                    "postal_code": "29401",
                    "country": "US",
                }
            ],
        },
        "timestamp_micros": micros,
        "events": [
            {
                "name": "purchase",
                "timestamp_micros": micros,
                "params": {
                    "transaction_id": "ord_4835925655784",
                    "value": 54.98,
                    "currency": "USD",
                    "tax": 5.0,
                    "shipping": 0.0,
                    "coupon": "SPRING10",
                    "event_id": "ord_4835925655784",
                    "items": [
                        {
                            "item_id": "LB00161-34689553170476",
                            "item_name": "Lovebox Original Color & Photo",
                            "item_brand": "Lovebox INC",
                            "item_category": "Home,Living",
                            "item_variant": "USA wall plug",
                            "price": 24.99,
                            "quantity": 2,
                        }
                    ],
                },
            }
        ],
    }
    assert len(str(micros)) == 16
    assert "consent" not in body(request)  # the event carries no ad consent signal: none is claimed
    assert b"Bill.Call" not in request.body and b"bill.call@" not in request.body and b"555-0142" not in request.body


def test_client_id_from_the_ga_cookie_and_regional_host() -> None:
    event = events.purchase()
    event["context"]["client_id"] = "GA1.1.1234567890.1700000000"
    request = make(event, region="eu").render([event])
    assert request.url.startswith("https://region1.google-analytics.com/mp/collect?")
    assert body(request)["client_id"] == "1234567890.1700000000"


def test_refund_keeps_the_purchase_transaction_id() -> None:
    request = make(events.refund()).render([events.refund()])
    params = body(request)["events"][0]["params"]
    assert body(request)["events"][0]["name"] == "refund"
    assert params["transaction_id"] == "ord_4835925655784"  # the order the refund belongs to
    assert params["value"] == 24.99 and params["currency"] == "USD"


def test_subscription_events_use_custom_names_and_scalar_params() -> None:
    event = events.subscription_started()
    payload = body(make(event).render([event]))["events"][0]
    assert payload["name"] == "subscription_started"
    assert "transaction_id" not in payload["params"]
    assert payload["params"]["subscription_id"] == "sub_1PqRsT"
    assert payload["params"]["value"] == 19.0 and payload["params"]["currency"] == "EUR"


def test_events_older_than_72_hours_are_refused_with_the_reason() -> None:
    event = events.purchase()
    assert make(event, seconds=71 * 3600).render([event])
    with pytest.raises(RenderError, match="72 h"):
        make(event, seconds=73 * 3600).render([event])


def test_a_future_time_is_clamped_to_now() -> None:
    event = events.purchase()
    request = make(event, seconds=-600).render([event])
    assert body(request)["timestamp_micros"] == int((moment(event["occurred_at"]) - 600) * 1_000_000)


def test_value_without_currency_is_refused() -> None:
    event = events.purchase()
    del event["order"]["currency"]
    with pytest.raises(RenderError, match="currency"):
        make(event).render([event])


def test_ad_user_data_denied_sends_the_consent_block_and_no_user_data() -> None:
    event = events.purchase()
    event["consent"] = {"analytics": True, "ad_user_data": False, "ad_personalization": False}
    payload = body(make(event).render([event]))
    assert payload["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}
    assert "user_data" not in payload and payload["user_id"] == "cus_Q1w2E3r4"
    ignored = body(make(event, consent="ignore").render([event]))
    assert ignored["user_data"]["sha256_email_address"] == [sha("bill.call@example.com")]


def test_analytics_denied_sends_an_unattributable_event() -> None:
    event = events.purchase()
    event["consent"] = {"analytics": False, "marketing": False}
    payload = body(make(event).render([event]))
    assert payload["client_id"] == derived_client_id("purchase:ord_4835925655784")
    assert "user_id" not in payload and "user_data" not in payload


def test_require_sends_only_with_granted_consent() -> None:
    destination = make(consent="require")
    granted = events.purchase()
    unknown = events.pos_purchase()
    assert destination.accepts(granted) and not destination.accepts(unknown)
    with pytest.raises(RenderError, match="not sent"):
        destination.render([unknown])


def test_batches_hold_one_identity() -> None:
    first, second = events.numbered_purchase(1), events.numbered_purchase(2)
    destination = make(first)
    payload = body(destination.render([first, second]))
    assert [e["params"]["transaction_id"] for e in payload["events"]] == ["ord_000001", "ord_000002"]
    other = events.numbered_purchase(3)
    other["customer"] = {"id": "cus_other"}
    with pytest.raises(BatchTooLarge) as raised:
        destination.render([first, other])
    assert raised.value.fits == 1


def test_a_stale_event_in_a_batch_does_not_sink_the_others() -> None:
    fresh, stale = events.numbered_purchase(1), events.numbered_purchase(2)
    stale["occurred_at"] = "2024-01-10T00:00:00Z"
    destination = make(fresh)
    with pytest.raises(BatchTooLarge) as raised:
        destination.render([fresh, stale])
    assert raised.value.fits == 1
    with pytest.raises(BatchTooLarge) as raised:
        destination.render([stale, fresh])
    assert raised.value.fits == 1  # the stale one goes alone, and fails alone
    with pytest.raises(RenderError, match="72 h"):
        destination.render([stale])


def test_more_than_25_events_split() -> None:
    batch = [events.numbered_purchase(n) for n in range(26)]
    with pytest.raises(BatchTooLarge) as raised:
        make(batch[0]).render(batch)
    assert raised.value.fits == 25


def test_event_name_table_is_checked_against_ga4_rules() -> None:
    reserved = settings("ga4", options=OPTIONS, event_names={"purchase": "session_start"})
    with pytest.raises(OptionError, match="reserved"):
        Ga4Destination(reserved)
    too_long = settings("ga4", options=OPTIONS, event_names={"refund": "r" * 41})
    with pytest.raises(OptionError, match="1-40 letters"):
        Ga4Destination(too_long)
    with pytest.raises(OptionError, match="measurement_id"):
        make(measurement_id="UA-1234-1")


def test_debug_validation_messages_are_dead_letters() -> None:
    destination = make(debug=True)
    assert destination.render([events.purchase()]).url.startswith("https://www.google-analytics.com/debug/mp/collect")
    answer = orjson.dumps(
        {"validationMessages": [{"fieldPath": "events", "description": "bad", "validationCode": "VALUE_INVALID"}]}
    )
    outcome = destination.classify(200, {}, answer)
    assert outcome.verdict is Verdict.DEAD and "events: bad (VALUE_INVALID)" in outcome.reason
    assert destination.classify(200, {}, b'{"validationMessages":[]}').verdict is Verdict.DELIVERED
    assert destination.classify(204, {}, b"").verdict is Verdict.DELIVERED
    assert destination.classify(500, {}, b"").verdict is Verdict.RETRY


async def test_the_strict_sink_takes_every_rendered_event() -> None:
    event = events.purchase()
    clock = clock_after(event)
    fake = Ga4Fake("G-TEST1234", "ga4_secret_value", now=clock.now)
    async with serve(fake.app) as base:
        for sample in (events.purchase(), events.refund(), events.subscription_started()):
            destination = build("ga4", clock_after(sample), base, options=OPTIONS)
            fake.now = destination.clock.now
            answer, outcome = await deliver(destination, [sample])
            assert (answer.status, outcome.verdict) == (204, Verdict.DELIVERED), fake.rejected[-1:]
        debug = build("ga4", clock, base, options={**OPTIONS, "debug": True})
        fake.now = clock.now
        answer, outcome = await deliver(debug, [event])
        assert answer.json() == {"validationMessages": []} and outcome.verdict is Verdict.DELIVERED
    assert fake.transactions == {"ord_4835925655784": 1}
    assert fake.rejected == [] and len(fake.received) == 4


async def test_the_sink_refuses_what_ga4_drops_silently() -> None:
    event = events.purchase()
    clock = clock_after(event)
    destination = make(event)
    good = destination.render([event])
    strict = Ga4Fake("G-TEST1234", "ga4_secret_value", now=clock.now)
    realistic = Ga4Fake("G-TEST1234", "ga4_secret_value", mode="realistic", now=clock.now)
    bad = body(good)
    bad["events"][0]["params"]["value"] = "54.98"  # value as text
    bad["events"][0]["timestamp_micros"] = int(moment(event["occurred_at"]) * 1000)  # milliseconds
    bad["user_data"]["sha256_email_address"] = ["bill.call@example.com"]  # plaintext
    for fake, status in ((strict, 400), (realistic, 204)):
        async with serve(fake.app) as base:
            url = good.url.replace("https://www.google-analytics.com", base)
            answer = await send(good.__class__("POST", url, good.headers, orjson.dumps(bad)))
            assert answer.status == status
    assert {
        m["fieldPath"] for m in strict.rejected[0]["json"] and orjson.loads(strict.rejected[0]["body"]) and []
    } == set()
    assert "value must be a number" in strict.rejected[0]["why"]
    assert "16 digits" in strict.rejected[0]["why"] and "SHA-256" in strict.rejected[0]["why"]
    assert realistic.received == [] and len(realistic.dropped_as_bot) == 1
