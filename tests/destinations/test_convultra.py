from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations._common import BatchTooLarge
from bridge.destinations.base import OptionError, RateLimit, Verdict
from bridge.destinations.convultra import ConvultraDestination, e164
from bridge.errors import RenderError
from bridge.sinks.base import strict_json
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send, settings

KEY = "cv_server_key_123"


def make(url: str = "https://cv.example.com/v1/track", **options: Any) -> ConvultraDestination:
    return ConvultraDestination(settings("convultra", url, options={"api_key": KEY, **options}))


def test_registered_by_type() -> None:
    assert destination_class("convultra") is ConvultraDestination


def test_purchase_golden() -> None:
    request = make().render([events.purchase()])
    assert request.method == "POST"
    assert request.url == "https://cv.example.com/v1/track"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert "api_key" not in request.url
    assert b'"value":54.98,' in request.body  # a JSON number with exactly the decimal's digits
    assert body(request) == {
        "event_type": "purchase",
        "timestamp": "2024-01-15T14:30:45Z",
        "session_id": "sess_abc123456",
        "user_id": "cus_Q1w2E3r4",
        "properties": {
            "order_id": "ord_4835925655784",
            "event_id": "ord_4835925655784",
            "value": 54.98,
            "currency": "USD",
            "coupon": "SPRING10",
            "items": [
                {
                    "id": "LB00161-34689553170476",
                    "product_id": "6979886940352",
                    "variant_id": "41141193965760",
                    "name": "Lovebox Original Color & Photo",
                    "brand": "Lovebox INC",
                    "category": "Home,Living",
                    "variant": "USA wall plug",
                    "price": 24.99,
                    "quantity": 2,
                }
            ],
        },
        "user_data": {
            "email": "bill.call@example.com",
            "phone": "+18435550142",
            "first_name": "Bill",
            "last_name": "Call",
            "city": "Charleston",
            "state": "SC",
            "postal_code": "29401",
            "country": "US",
        },
        "context": {
            "ip": "203.0.113.7",
            "user_agent": events.CHROME_UA,
            "page_url": "https://shop.example.com/checkout/success?order=1005",
            "referrer": "https://www.google.com/",
            "gclid": "Cj0KCQiA-test",
        },
    }


def test_value_is_exact_for_awkward_amounts() -> None:
    event = events.purchase()
    event["order"]["total"] = "1234567890123.10"
    raw = make().render([event]).body
    assert strict_json(raw)["properties"]["value"] == Decimal("1234567890123.10")
    assert b'"value":1234567890123.10' in raw


def test_refund_and_subscription_omit_empty_fields() -> None:
    refund = body(make().render([events.refund()]))
    assert refund == {
        "event_type": "refund",
        "timestamp": "2024-01-20T09:00:00Z",
        "user_id": "cus_Q1w2E3r4",
        "properties": {"order_id": "ord_4835925655784", "event_id": "re_3Oabc123", "value": 24.99, "currency": "USD"},
        "user_data": {"email": "bill.call@example.com"},
    }
    sub = body(make().render([events.subscription_started()]))
    assert sub["event_type"] == "subscription"
    assert sub["properties"] == {
        "order_id": "sub_1PqRsT",
        "event_id": "sub_1PqRsT",
        "value": 19.0,
        "currency": "EUR",
        "subscription_id": "sub_1PqRsT",
        "plan": "pro_monthly",
    }
    assert "context" not in sub and "session_id" not in sub


def test_name_table_and_routing() -> None:
    dest = make()
    assert dest.routes("purchase") and dest.routes("refund") and dest.routes("subscription_started")
    assert not dest.routes("consent_updated") and not dest.routes("payment_failed")
    assert not dest.routes("my_custom_event")
    with pytest.raises(RenderError, match="consent_updated"):
        dest.render([events.consent_updated()])
    filtered = ConvultraDestination(
        settings("convultra", "https://cv.example.com/v1/track", events=("purchase",), options={"api_key": KEY})
    )
    assert filtered.routes("purchase") and not filtered.routes("refund")
    renamed = ConvultraDestination(
        settings(
            "convultra",
            "https://cv.example.com/v1/track",
            event_names={"purchase": "order_paid", "payment_failed": "payment_failed"},
            options={"api_key": KEY},
        )
    )
    assert body(renamed.render([events.purchase()]))["event_type"] == "order_paid"
    assert renamed.routes("payment_failed")


def test_options_validation() -> None:
    with pytest.raises(OptionError) as missing:
        ConvultraDestination(settings("convultra", "https://cv.example.com/v1/track"))
    assert missing.value.key == "api_key"
    with pytest.raises(OptionError) as unknown:
        make(apikey="x")
    assert unknown.value.key == "apikey"
    with pytest.raises(OptionError) as bad_url:
        make(url="cv.example.com/v1/track")
    assert bad_url.value.key == "url"
    with pytest.raises(OptionError) as leaky:
        make(url="https://cv.example.com/v1/track?api_key=abc")
    assert leaky.value.key == "url"
    assert KEY not in repr(make())


def test_defaults() -> None:
    dest = make()
    assert dest.rate_limits == (RateLimit(1000, 60.0),)
    assert dest.max_batch == 100 and dest.max_body_bytes == 1_000_000
    custom = ConvultraDestination(
        settings(
            "convultra", "https://cv.example.com/v1/track", rate_limits=(RateLimit(10, 1),), options={"api_key": KEY}
        )
    )
    assert custom.rate_limits == (RateLimit(10, 1),)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("+1 (843) 555-0142", "+18435550142"), ("0049 30 1234567", "+49301234567"), ("843-555-0142", None), ("", None)],
)
def test_phone_e164(raw: str, expected: str | None) -> None:
    assert e164(raw) == expected


def test_bad_money_is_a_render_error() -> None:
    event = events.purchase()
    event["order"]["total"] = "fifty"
    with pytest.raises(RenderError, match="order.total"):
        make().render([event])
    event = events.purchase()
    event["order"]["currency"] = "US"
    with pytest.raises(RenderError, match="currency"):
        make().render([event])


def test_batch_render() -> None:
    batch = [events.numbered_purchase(n) for n in range(3)]
    request = make().render(batch)
    assert request.url == "https://cv.example.com/v1/track/batch"
    document = body(request)
    assert list(document) == ["events"]
    assert [e["properties"]["order_id"] for e in document["events"]] == ["ord_000000", "ord_000001", "ord_000002"]
    assert document["events"][0] == body(make().render([batch[0]]))


def test_batch_limits() -> None:
    dest = make()
    hundred = [events.numbered_purchase(n) for n in range(100)]
    assert len(body(dest.render(hundred))["events"]) == 100
    with pytest.raises(BatchTooLarge) as too_many:
        dest.render([*hundred, events.numbered_purchase(100)])
    assert too_many.value.fits == 100
    big = []
    for n in range(30):
        event = events.numbered_purchase(n)
        event["order"]["items"] = event["order"]["items"] * 400  # ~ 100 kB per event
        big.append(event)
    with pytest.raises(BatchTooLarge) as too_big:
        dest.render(big)
    fits = too_big.value.fits
    assert 1 <= fits < 30
    assert len(dest.render(big[:fits]).body) <= 1_000_000
    with pytest.raises(BatchTooLarge):
        dest.render(big[: fits + 1])
    groups = dest.partition(big + hundred)
    assert sum(len(g) for g in groups) == 130
    assert [e["id"] for g in groups for e in g] == [e["id"] for e in big + hundred]
    for group in groups:
        request = dest.render(group)
        assert len(request.body) <= 1_000_000 and len(group) <= 100


def test_single_event_over_limit_is_permanent() -> None:
    event = events.purchase()
    event["order"]["items"] = event["order"]["items"] * 5000
    with pytest.raises(RenderError) as info:
        make().render([event])
    assert not isinstance(info.value, BatchTooLarge)


@pytest.mark.parametrize(
    ("status", "verdict", "needle"),
    [
        (200, Verdict.DELIVERED, "HTTP 200"),
        (400, Verdict.DEAD, "bad request"),
        (401, Verdict.DEAD, "api_key"),
        (403, Verdict.DEAD, "forbidden"),
        (413, Verdict.DEAD, "1 MB"),
        (429, Verdict.RETRY, "rate limited"),
        (500, Verdict.RETRY, "HTTP 500"),
        (503, Verdict.RETRY, "HTTP 503"),
        (408, Verdict.RETRY, "HTTP 408"),
        (302, Verdict.RETRY, "redirect"),
    ],
)
def test_classify(status: int, verdict: Verdict, needle: str) -> None:
    outcome = make().classify(status, {}, orjson.dumps({"success": status < 300, "error": "Invalid API key"}))
    assert outcome.verdict is verdict
    assert needle in outcome.reason
    if status >= 400:
        assert "Invalid API key" in outcome.reason


def test_classify_success_false_is_dead() -> None:
    outcome = make().classify(200, {}, b'{"success": false, "error": "quota"}')
    assert outcome.verdict is Verdict.DEAD and "quota" in outcome.reason


async def test_fake_accepts_rendered_requests() -> None:
    fake = ConvultraFake(KEY)
    async with serve(fake.app) as base:
        dest = make(url=f"{base}/v1/track")
        for event in (events.purchase(), events.refund(), events.subscription_started(), events.pos_purchase()):
            answer, outcome = await deliver(dest, [event])
            assert answer.status == 200, answer.body
            assert outcome.verdict is Verdict.DELIVERED
        answer, outcome = await deliver(dest, [events.numbered_purchase(n) for n in range(100)])
        assert answer.status == 200 and answer.json()["accepted"] == 100
    assert len(fake.received) == 5 and not fake.rejected
    first = fake.received[0]
    assert first["path"] == "/v1/track" and first["query"] == {}
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    assert first["json"]["properties"]["value"] == Decimal("54.98")
    assert fake.received[-1]["path"] == "/v1/track/batch"


async def test_fake_rejects_broken_requests() -> None:
    fake = ConvultraFake(KEY)
    async with serve(fake.app) as base:
        good = make(url=f"{base}/v1/track").render([events.purchase()])
        no_auth = good.__class__(
            good.method, good.url, {k: v for k, v in good.headers.items() if k != "Authorization"}, good.body
        )
        assert (await send(no_auth)).status == 401
        wrong = make(url=f"{base}/v1/track", api_key="nope")
        answer, outcome = await deliver(wrong, [events.purchase()])
        assert answer.status == 401 and outcome.verdict is Verdict.DEAD and "Invalid API key" in outcome.reason
        document = body(good)
        document["properties"]["value"] = "54.98"  # a string, not the documented number
        as_string = good.__class__(good.method, good.url, good.headers, orjson.dumps(document))
        answer = await send(as_string)
        assert answer.status == 400 and b"value must be a number" in answer.body
        del document["event_type"]
        assert (await send(good.__class__(good.method, good.url, good.headers, orjson.dumps(document)))).status == 400
        batch = body(make(url=f"{base}/v1/track").render([events.numbered_purchase(n) for n in range(2)]))
        batch["events"] = batch["events"] * 51  # 102 events
        over = good.__class__("POST", f"{base}/v1/track/batch", good.headers, orjson.dumps(batch))
        assert (await send(over)).status == 400
        huge = good.__class__("POST", f"{base}/v1/track/batch", good.headers, b" " * 1_000_001)
        assert (await send(huge)).status == 413
    assert len(fake.rejected) == 6 and not fake.received


async def test_fake_scripted_answers_and_rate_limit() -> None:
    now = [0.0]
    fake = ConvultraFake(KEY, rate_limit=(2, 60.0), clock=lambda: now[0])
    async with serve(fake.app) as base:
        dest = make(url=f"{base}/v1/track")
        fake.script(500)
        fake.script(429, headers={"Retry-After": "7"}, body={"success": False, "error": "slow down"})
        answer, outcome = await deliver(dest, [events.purchase()])
        assert answer.status == 500 and outcome.verdict is Verdict.RETRY
        answer, outcome = await deliver(dest, [events.purchase()])
        assert answer.status == 429 and answer.headers["Retry-After"] == "7" and outcome.verdict is Verdict.RETRY
        assert (await deliver(dest, [events.purchase()]))[0].status == 200
        assert (await deliver(dest, [events.purchase()]))[0].status == 200
        answer, outcome = await deliver(dest, [events.purchase()])
        assert answer.status == 429 and outcome.verdict is Verdict.RETRY and "Retry-After" in answer.headers
        now[0] = 61.0
        assert (await deliver(dest, [events.purchase()]))[0].status == 200


def test_configured_headers_cannot_replace_auth() -> None:
    dest = ConvultraDestination(
        settings(
            "convultra",
            "https://cv.example.com/v1/track",
            headers={"X-Team": "growth", "authorization": "Bearer other"},
            options={"api_key": KEY},
        )
    )
    headers = dest.render([events.purchase()]).headers
    assert headers["X-Team"] == "growth"
    assert headers["Authorization"] == f"Bearer {KEY}" and "authorization" not in headers
