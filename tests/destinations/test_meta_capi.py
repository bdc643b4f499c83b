from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations._common import BatchTooLarge
from bridge.destinations.base import OptionError, Verdict
from bridge.destinations.meta_capi import MetaCapiDestination
from bridge.errors import RenderError
from bridge.sinks.meta_capi import MetaCapiFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send
from tests.destinations.wave import build, clock_after, moment

OPTIONS = {"pixel_id": "1234567890", "access_token": "EAAB_meta_token"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make(event: dict[str, Any] | None = None, url: str = "", seconds: float = 60.0, **options: Any) -> Any:
    return build("meta_capi", clock_after(event or events.purchase(), seconds), url, options={**OPTIONS, **options})


def test_registered_and_token_kept_out_of_url_and_repr() -> None:
    assert destination_class("meta_capi") is MetaCapiDestination
    destination = make()
    request = destination.render([events.purchase()])
    assert request.url == "https://graph.facebook.com/v25.0/1234567890/events"
    assert request.headers["Authorization"] == "Bearer EAAB_meta_token"
    assert "EAAB" not in repr(destination) and "access_token" not in request.url
    with pytest.raises(OptionError, match="access token"):
        make(url="https://graph.facebook.com/?access_token=x")


def test_purchase_golden() -> None:
    request = make().render([events.purchase()])
    assert b'"value":54.98,' in request.body
    assert body(request) == {
        "data": [
            {
                "event_name": "Purchase",
                "event_time": int(moment("2024-01-15T14:30:45Z")),
                "event_id": "ord_4835925655784",
                "action_source": "website",
                "event_source_url": "https://shop.example.com/checkout/success?order=1005",
                "user_data": {
                    "em": [sha("bill.call@example.com")],
                    "ph": [sha("18435550142")],
                    "fn": sha("bill"),
                    "ln": sha("call"),
                    "ct": sha("charleston"),
                    "st": sha("sc"),
                    "zp": sha("29401"),
                    "country": sha("us"),
                    "external_id": [sha("cus_Q1w2E3r4")],
                    "client_ip_address": "203.0.113.7",
                    "client_user_agent": events.CHROME_UA,
                },
                "custom_data": {
                    "currency": "USD",
                    "value": 54.98,
                    "order_id": "ord_4835925655784",
                    "contents": [{"id": "LB00161-34689553170476", "quantity": 2, "item_price": 24.99}],
                    "content_type": "product",
                    "num_items": 2,
                },
                "data_processing_options": [],
            }
        ]
    }
    assert len(str(body(request)["data"][0]["event_time"])) == 10  # seconds, not milliseconds
    for raw in (b"Bill.Call", b"bill.call@", b"843", b"Charleston"):
        assert raw not in request.body


def test_browser_ids_travel_unhashed_and_fbc_is_built_from_fbclid() -> None:
    event = events.purchase()
    event["context"].update(fbp="fb.1.1596403881668.1116446470", fbclid="IwAR2xYz_CaseSensitive")
    user = body(make(event).render([event]))["data"][0]["user_data"]
    assert user["fbp"] == "fb.1.1596403881668.1116446470"
    assert user["fbc"] == f"fb.1.{int(moment(event['occurred_at']) * 1000)}.IwAR2xYz_CaseSensitive"
    event["context"]["fbc"] = "fb.1.1554763741205.AbCdEfGhIjKlMnOp"
    assert body(make(event).render([event]))["data"][0]["user_data"]["fbc"] == "fb.1.1554763741205.AbCdEfGhIjKlMnOp"


def test_prehashed_email_is_not_hashed_again() -> None:
    event = events.purchase()
    event["customer"]["email"] = sha("bill.call@example.com")
    assert body(make(event).render([event]))["data"][0]["user_data"]["em"] == [sha("bill.call@example.com")]


def test_seven_day_window() -> None:
    event = events.purchase()
    assert make(event, seconds=6.9 * 86400).render([event])
    with pytest.raises(RenderError, match="7 days"):
        make(event, seconds=7.1 * 86400).render([event])
    physical = make(event, seconds=30 * 86400, action_source="physical_store")
    assert body(physical.render([event]))["data"][0]["action_source"] == "physical_store"


def test_action_source_follows_what_the_event_carries() -> None:
    renewal = events.subscription_renewed()
    assert body(make(renewal).render([renewal]))["data"][0]["action_source"] == "system_generated"
    started = events.subscription_started()
    assert body(make(started).render([started]))["data"][0]["action_source"] == "other"
    with pytest.raises(RenderError, match="user agent and the page URL"):
        make(started, action_source="website").render([started])


def test_purchase_needs_value_and_currency() -> None:
    event = events.purchase()
    del event["order"]["total"]
    with pytest.raises(RenderError, match="value and currency"):
        make(event).render([event])


def test_ad_user_data_denied_keeps_every_identifier_out() -> None:
    event = events.purchase()
    event["consent"] = {"ad_user_data": False, "ad_personalization": False}
    destination = make(event)
    assert destination.accepts(event)
    sent = body(destination.render([event]))["data"][0]
    assert sent["user_data"] == {"client_user_agent": events.CHROME_UA}
    assert sent["opt_out"] is True
    request = destination.render([event])
    assert b"203.0.113.7" not in request.body and sha("bill.call@example.com").encode() not in request.body
    server_only = events.subscription_renewed()
    server_only["consent"] = {"ad_user_data": False}
    assert not destination.accepts(server_only)  # nothing left Meta could take: not routed
    anonymous = events.refund()
    del anonymous["customer"]
    assert not destination.accepts(anonymous)  # no customer data at all: not routed either
    with pytest.raises(RenderError, match="at least one customer information parameter"):
        destination.render([anonymous])


def test_require_and_ignore() -> None:
    event = events.pos_purchase()  # consent unknown
    event["customer"] = {"email": "pos@example.com"}
    assert not make(event, consent="require").accepts(event)
    assert make(event).accepts(event)
    denied = events.purchase()
    denied["consent"] = {"ad_user_data": False}
    sent = body(make(denied, consent="ignore").render([denied]))["data"][0]
    assert sent["user_data"]["em"] == [sha("bill.call@example.com")] and "opt_out" not in sent


def test_one_bad_event_is_sent_alone() -> None:
    good, bad = events.numbered_purchase(1), events.numbered_purchase(2)
    del bad["order"]["currency"]
    destination = make(good)
    with pytest.raises(BatchTooLarge) as raised:
        destination.render([good, bad, events.numbered_purchase(3)])
    assert raised.value.fits == 1
    assert len(body(destination.render([good, events.numbered_purchase(3)]))["data"]) == 2


def test_test_event_code_and_limited_data_use() -> None:
    sent = body(make(test_event_code="TEST123", limited_data_use=True).render([events.purchase()]))
    assert sent["test_event_code"] == "TEST123"
    event = sent["data"][0]
    assert event["data_processing_options"] == ["LDU"]
    assert (event["data_processing_options_country"], event["data_processing_options_state"]) == (0, 0)


@pytest.mark.parametrize(
    ("status", "answer", "verdict", "words"),
    [
        (200, {"events_received": 1, "messages": [], "fbtrace_id": "A1"}, Verdict.DELIVERED, "1 events received"),
        (200, {"error": {"message": "Invalid parameter", "code": 100}}, Verdict.DEAD, "invalid parameter"),
        (400, {"error": {"message": "Malformed access token", "code": 190}}, Verdict.DEAD, "access token"),
        (400, {"error": {"message": "too old", "code": 100, "error_subcode": 2804003}}, Verdict.DEAD, "100/2804003"),
        (400, {"error": {"message": "limit", "code": 4}}, Verdict.RETRY, "application request limit"),
        (500, {"error": {"message": "x", "code": 999, "is_transient": True}}, Verdict.RETRY, "transient"),
        (503, {}, Verdict.RETRY, "HTTP 503"),
    ],
)
def test_responses(status: int, answer: dict[str, Any], verdict: Verdict, words: str) -> None:
    outcome = make().classify(status, {}, orjson.dumps(answer))
    assert outcome.verdict is verdict and words in outcome.reason


async def test_the_strict_sink_takes_every_rendered_event() -> None:
    samples = [events.purchase(), events.refund(), events.subscription_started(), events.subscription_renewed()]
    clock = clock_after(samples[0])
    fake = MetaCapiFake("1234567890", "EAAB_meta_token", now=clock.now)
    async with serve(fake.app) as base:
        for sample in samples:
            destination = build("meta_capi", clock_after(sample), base, options={**OPTIONS, "test_event_code": "T1"})
            fake.now = destination.clock.now
            answer, outcome = await deliver(destination, [sample])
            assert (answer.status, outcome.verdict) == (200, Verdict.DELIVERED), fake.rejected[-1:]
        fake.now = clock.now
        again = build("meta_capi", clock, base, options=OPTIONS)
        assert (await deliver(again, [events.purchase()]))[0].status == 200  # a retry: Meta keeps the first
    assert len(fake.events) == 4 and fake.duplicates == 1 and len(fake.test_events) == 4
    assert fake.rejected == [] and not fake.token_in_query


async def test_the_sink_refuses_what_meta_refuses() -> None:
    event = events.purchase()
    clock = clock_after(event)
    request = make(event).render([event])
    fake = MetaCapiFake("1234567890", "EAAB_meta_token", now=clock.now)
    cases = {
        "milliseconds": lambda e: e.update(event_time=e["event_time"] * 1000),
        "plaintext": lambda e: e["user_data"].update(em=["bill.call@example.com"]),
        "hashed ip": lambda e: e["user_data"].update(client_ip_address=sha("203.0.113.7")),
        "website without ua": lambda e: e["user_data"].pop("client_user_agent"),
        "value as text": lambda e: e["custom_data"].update(value="54.98"),
    }
    async with serve(fake.app) as base:
        url = request.url.replace("https://graph.facebook.com", base)
        for change in cases.values():
            document = body(request)
            change(document["data"][0])
            answer = await send(request.__class__("POST", url, request.headers, orjson.dumps(document)))
            assert answer.status == 400 and answer.json()["error"]["code"] == 100
        clock.advance(8 * 86400)
        answer = await send(request.__class__("POST", url, request.headers, request.body))
        assert answer.json()["error"]["error_subcode"] == 2804003
    assert fake.events == []
