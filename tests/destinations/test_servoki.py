from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations.base import HttpRequest, OptionError, RateLimit, Verdict
from bridge.destinations.servoki import DEFAULT_URL, ServokiDestination
from bridge.errors import RenderError
from bridge.sinks.server import serve
from bridge.sinks.servoki import PATH, ServokiFake
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send, settings

KEY = "servoki_abcdef0123456789"


def make(url: str = "", **options: Any) -> ServokiDestination:
    return ServokiDestination(settings("servoki", url, options={"api_key": KEY, "site": "shop.example.com", **options}))


def test_registered_by_type() -> None:
    assert destination_class("servoki") is ServokiDestination


def test_purchase_golden() -> None:
    request = make().render([events.purchase()])
    assert request.method == "POST" and request.url == DEFAULT_URL
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert b'"value":54.98,' in request.body
    assert body(request) == {
        "site": "shop.example.com",
        "event_type": "purchase",
        "vid": "anon-7f3e9a21",
        "value": 54.98,
        "currency": "USD",
        "event_id": "ord_4835925655784",
        "occurred_at": "2024-01-15T14:30:45Z",
        "props": {
            "order_id": "ord_4835925655784",
            "order_number": "#1005",
            "coupon": "SPRING10",
            "channel": "web",
            "utm_source": "google",
            "utm_campaign": "spring",
            "gift": True,
        },
        "consent": True,
    }


def test_refund_and_subscription() -> None:
    refund = body(make().render([events.refund()]))
    assert refund == {
        "site": "shop.example.com",
        "event_type": "refund",
        "value": -24.99,
        "currency": "USD",
        "event_id": "re_3Oabc123",
        "occurred_at": "2024-01-20T09:00:00Z",
        "props": {"order_id": "ord_4835925655784"},
    }
    sub = body(make(site="4711").render([events.subscription_started()]))
    assert sub["site"] == "4711"
    assert sub["event_type"] == "subscription_started"
    assert sub["value"] == 19.0 and sub["currency"] == "EUR"
    assert sub["consent"] is False
    assert sub["props"] == {
        "subscription_id": "sub_1PqRsT",
        "plan": "pro_monthly",
        "interval": "month",
        "status": "active",
    }


def test_currency_validated_before_sending() -> None:
    for bad in ("EURO", "€", "12", ""):
        event = events.purchase()
        event["order"]["currency"] = bad
        with pytest.raises(RenderError, match="currency"):
            make().render([event])
    event = events.purchase()
    del event["order"]["currency"]
    with pytest.raises(RenderError, match="currency"):
        make().render([event])


def test_names_and_routing() -> None:
    dest = make()
    assert dest.routes("purchase") and dest.routes("payment_failed")
    assert not dest.routes("consent_updated") and not dest.routes("contract_updated") and not dest.routes("x_custom")
    assert dest.rate_limits == (RateLimit(600, 60.0),)


@pytest.mark.parametrize(
    ("options", "key"),
    [({"api_key": ""}, "api_key"), ({"site": ""}, "site"), ({"site": "not a domain"}, "site"), ({"vid": "x"}, "vid")],
)
def test_option_errors(options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as info:
        make(**options)
    assert info.value.key == key
    with pytest.raises(OptionError) as bad_url:
        make(url="servoki.com/api")
    assert bad_url.value.key == "url"


@pytest.mark.parametrize(
    ("status", "verdict", "needle"),
    [
        (202, Verdict.DELIVERED, "accepted"),
        (200, Verdict.DELIVERED, "HTTP 200"),
        (400, Verdict.DEAD, "invalid body"),
        (401, Verdict.DEAD, "api_key"),
        (404, Verdict.DEAD, "unknown site 'shop.example.com'"),
        (429, Verdict.RETRY, "600"),
        (500, Verdict.RETRY, "HTTP 500"),
    ],
)
def test_classify(status: int, verdict: Verdict, needle: str) -> None:
    outcome = make().classify(status, {}, b'{"error":"boom"}')
    assert outcome.verdict is verdict and needle in outcome.reason


async def test_fake_accepts_and_dedups() -> None:
    fake = ServokiFake(KEY, sites={"shop.example.com", "4711"})
    async with serve(fake.app) as base:
        dest = make(url=base + PATH)
        for event in (events.purchase(), events.refund(), events.subscription_started(), events.purchase()):
            answer, outcome = await deliver(dest, [event])
            assert answer.status == 202, answer.body
            assert outcome.verdict is Verdict.DELIVERED
        answer, _ = await deliver(make(url=base + PATH, site="4711"), [events.pos_purchase()])
        assert answer.status == 202
    assert len(fake.received) == 5 and not fake.rejected
    assert len(fake.counted) == 4  # the retried purchase counts once


async def test_fake_rejects_wrong_key_unknown_site_and_bad_bodies() -> None:
    fake = ServokiFake(KEY, sites={"shop.example.com"})
    async with serve(fake.app) as base:
        answer, outcome = await deliver(make(url=base + PATH, api_key="servoki_wrong"), [events.purchase()])
        assert answer.status == 401 and outcome.verdict is Verdict.DEAD and "api_key" in outcome.reason
        answer, outcome = await deliver(make(url=base + PATH, site="other.example.com"), [events.purchase()])
        assert answer.status == 404 and outcome.verdict is Verdict.DEAD
        assert "unknown site 'other.example.com'" in outcome.reason
        good = make(url=base + PATH).render([events.purchase()])
        for change in ({"currency": "usd"}, {"value": "54.98"}, {"event_type": ""}, {"extra": 1}):
            document = {**body(good), **change}
            answer = await send(HttpRequest("POST", good.url, good.headers, orjson.dumps(document)))
            assert answer.status == 400, change
    assert len(fake.rejected) == 6 and not fake.received


async def test_fake_rate_limit() -> None:
    now = [100.0]
    fake = ServokiFake(KEY, sites={"shop.example.com"}, rate_limit=(3, 60.0), clock=lambda: now[0])
    async with serve(fake.app) as base:
        dest = make(url=base + PATH)
        statuses = [(await deliver(dest, [events.purchase()]))[0].status for _ in range(4)]
        assert statuses == [202, 202, 202, 429]
        answer, outcome = await deliver(dest, [events.purchase()])
        assert outcome.verdict is Verdict.RETRY and int(answer.headers["Retry-After"]) == 60
        now[0] += 60.5
        assert (await deliver(dest, [events.purchase()]))[0].status == 202
