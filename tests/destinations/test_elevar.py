from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations.base import USER_AGENT, HttpRequest, OptionError, Verdict
from bridge.destinations.elevar import ElevarDestination
from bridge.errors import RenderError
from bridge.sinks.elevar import PATH, ElevarFake
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send, settings

SITE = "ws_1234"
KEY = "elv_server_key"
ENDPOINT = "https://server.elevar.example/api/v1/server"


def make(url: str = ENDPOINT, **options: Any) -> ElevarDestination:
    base = {"website_id": SITE, "server_key": KEY, "default_source_url": "https://shop.example.com/"}
    return ElevarDestination(settings("elevar", url, options={**base, **options}))


def test_registered_by_type() -> None:
    assert destination_class("elevar") is ElevarDestination


def test_purchase_golden() -> None:
    request = make(affiliation="Example Shop").render([events.purchase()])
    query = parse_qs(urlsplit(request.url).query)
    assert request.url.startswith(ENDPOINT + "?source_url=https%3A%2F%2Fshop.example.com%2Fcheckout%2Fsuccess%3Forder")
    assert query == {"source_url": ["https://shop.example.com/checkout/success?order=1005"]}
    assert request.headers == {
        "content-type": "application/json",
        "x-website-id": SITE,
        "authorization": f"Bearer {KEY}",
        "user-agent": events.CHROME_UA,
        "x-forwarded-for": "203.0.113.7",
    }
    assert body(request) == {
        "event": "dl_purchase",
        "event_id": "ord_4835925655784",
        "event_time": "2024-01-15T14:30:45Z",
        "marketing": {
            "landing_site": "/products/lovebox?utm_source=google&utm_campaign=spring",
            "gclid": "Cj0KCQiA-test",
            "utm_source": "google",
            "utm_campaign": "spring",
        },
        "user_properties": {
            "customer_id": "cus_Q1w2E3r4",
            "customer_email": "bill.call@example.com",
            "customer_first_name": "Bill",
            "customer_last_name": "Call",
            "customer_address_1": "1 Hills Plantation Drive",
            "customer_city": "Charleston",
            "customer_country": "US",
            "customer_province": "South Carolina",
            "customer_province_code": "SC",
            "customer_zip": "29401",
            "customer_phone": "+1 (843) 555-0142",
            "customer_order_count": "3",
            "customer_total_spent": "412.40",
            "customer_tags": "vip,newsletter",
            "visitor_type": "logged_in",
        },
        "ecommerce": {
            "currencyCode": "USD",
            "purchase": {
                "actionField": {
                    "id": "ord_4835925655784",
                    "order_name": "#1005",
                    "revenue": "54.98",
                    "tax": "5.00",
                    "shipping": "0.00",
                    "sub_total": "49.98",
                    "affiliation": "Example Shop",
                    "product_sub_total": "49.98",
                    "discount_amount": "0",
                    "sales_channel": "web",
                },
                "products": [
                    {
                        "id": "LB00161-34689553170476",
                        "name": "Lovebox Original Color & Photo",
                        "brand": "Lovebox INC",
                        "category": "Home,Living",
                        "variant": "USA wall plug",
                        "price": "24.99",
                        "quantity": "2",
                        "position": "1",
                        "product_id": "6979886940352",
                        "variant_id": "41141193965760",
                        "cogs": "11.05",
                        "compare_at_price": "29.99",
                        "image": "https://cdn.example.com/small.png",
                        "inventory": "",
                    }
                ],
            },
        },
        "page": {"raw_referrer": "https://www.google.com/"},
    }


def test_pos_order_uses_configured_defaults() -> None:
    dest = make(default_user_agent="Mozilla/5.0 (POS)", default_ip="198.51.100.1", default_landing_site="/pos")
    request = dest.render([events.pos_purchase()])
    assert parse_qs(urlsplit(request.url).query) == {"source_url": ["https://shop.example.com/"]}
    assert request.headers["user-agent"] == "Mozilla/5.0 (POS)"
    assert request.headers["x-forwarded-for"] == "198.51.100.1"
    document = body(request)
    assert document["marketing"] == {"landing_site": "/pos"}
    assert document["user_properties"] == {"visitor_type": "guest"}
    assert document["ecommerce"]["purchase"]["actionField"] == {
        "id": "ord_pos_9001",
        "order_name": "#POS-9001",
        "revenue": "119.99",
        "sales_channel": "pos",
        "physical_location_id": "00000000042",
    }
    plain = make().render([events.pos_purchase()])
    assert plain.headers["user-agent"] == USER_AGENT and "x-forwarded-for" not in plain.headers
    assert body(plain)["marketing"] == {"landing_site": "/"}


def test_debug_flag_and_visitor_type() -> None:
    request = make(debug=True, visitor_type="guest").render([events.purchase()])
    assert request.url.endswith("&debug=1")
    assert body(request)["user_properties"]["visitor_type"] == "guest"
    assert "debug" not in make().render([events.purchase()]).url


def test_name_table() -> None:
    dest = make()
    assert dest.routes("purchase")
    for name in ("refund", "subscription_started", "subscription_renewed", "consent_updated", "custom_thing"):
        assert not dest.routes(name)
    with pytest.raises(RenderError, match="event_names"):
        dest.render([events.refund()])
    configured = ElevarDestination(
        settings(
            "elevar",
            ENDPOINT,
            event_names={"subscription_started": "dl_subscription_purchase"},
            options={"website_id": SITE, "server_key": KEY, "default_source_url": "https://shop.example.com/"},
        )
    )
    assert configured.routes("subscription_started")
    document = body(configured.render([events.subscription_started()]))
    assert document["event"] == "dl_subscription_purchase"
    assert document["ecommerce"] == {
        "currencyCode": "EUR",
        "purchase": {"actionField": {"id": "sub_1PqRsT", "revenue": "19.00"}, "products": []},
    }


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"website_id": ""}, "website_id"),
        ({"server_key": None}, "server_key"),
        ({"default_source_url": "shop.example.com"}, "default_source_url"),
        ({"visitor_type": "member"}, "visitor_type"),
        ({"debug": "maybe"}, "debug"),
        ({"default_user_agent": "a\r\nX-Evil: 1"}, "default_user_agent"),
        ({"source_url": "https://x"}, "source_url"),
    ],
)
def test_option_errors(options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as info:
        make(**options)
    assert info.value.key == key


def test_missing_money_is_a_render_error() -> None:
    event = events.purchase()
    del event["order"]["currency"]
    with pytest.raises(RenderError, match="currency"):
        make().render([event])
    event = events.purchase()
    del event["order"]["items"][0]["price"]
    with pytest.raises(RenderError, match="price"):
        make().render([event])


def test_classify_production() -> None:
    dest = make()
    assert dest.classify(204, {}, b"").verdict is Verdict.DELIVERED
    assert dest.classify(200, {}, b"").verdict is Verdict.DELIVERED
    outcome = dest.classify(401, {}, b'{"error":"Unauthorized"}')
    assert outcome.verdict is Verdict.DEAD and "server_key" in outcome.reason
    assert dest.classify(400, {}, b"bad").verdict is Verdict.DEAD
    assert dest.classify(429, {}, b"").verdict is Verdict.RETRY
    assert dest.classify(502, {}, b"").verdict is Verdict.RETRY


def test_classify_debug() -> None:
    dest = make(debug=True)
    ok = dest.classify(200, {}, b'{"result":"accepted"}')
    assert ok.verdict is Verdict.DELIVERED and "validated" in ok.reason
    long_error = orjson.dumps({"result": "rejected", "errors": ["x" * 2000, "user_properties.visitor_type"]})
    for status in (200, 400, 422):
        failed = dest.classify(status, {}, long_error)
        assert failed.verdict is Verdict.DEAD
        assert long_error.decode() in failed.reason  # kept in full, not cut to an excerpt
    assert dest.classify(204, {}, b"").verdict is Verdict.DEAD  # debug must answer 200 accepted
    assert dest.classify(503, {}, b"").verdict is Verdict.RETRY
    assert dest.classify(429, {}, b"").verdict is Verdict.RETRY


async def test_fake_accepts_rendered_requests() -> None:
    fake = ElevarFake(SITE, KEY)
    async with serve(fake.app) as base:
        dest = make(url=base + PATH)
        for event in (events.purchase(), events.pos_purchase()):
            answer, outcome = await deliver(dest, [event])
            assert answer.status == 204, answer.body
            assert outcome.verdict is Verdict.DELIVERED
        debug = make(url=base + PATH, debug=True)
        answer, outcome = await deliver(debug, [events.purchase()])
        assert answer.status == 200 and answer.json() == {"result": "accepted"}
        assert outcome.verdict is Verdict.DELIVERED
    assert len(fake.received) == 3 and not fake.rejected
    assert fake.received[0]["query"]["source_url"] == "https://shop.example.com/checkout/success?order=1005"
    assert fake.received[1]["query"]["source_url"] == "https://shop.example.com/"
    assert fake.received[2]["query"]["debug"] == "1"
    assert fake.received[0]["headers"]["user-agent"] == events.CHROME_UA


async def test_fake_rejects_broken_requests() -> None:
    fake = ElevarFake(SITE, KEY)
    async with serve(fake.app) as base:
        wrong_key = make(url=base + PATH, server_key="old")
        answer, outcome = await deliver(wrong_key, [events.purchase()])
        assert answer.status == 401 and outcome.verdict is Verdict.DEAD
        good = make(url=base + PATH, debug=True).render([events.purchase()])
        document = body(good)
        document["ecommerce"]["purchase"]["actionField"]["revenue"] = 54.98  # a number, not the doc's string
        del document["user_properties"]["visitor_type"]
        broken = HttpRequest(good.method, good.url, good.headers, orjson.dumps(document))
        answer = await send(broken)
        assert answer.status == 400
        outcome = make(debug=True).classify(answer.status, answer.headers, answer.body)
        assert outcome.verdict is Verdict.DEAD and "visitor_type" in outcome.reason and "revenue" in outcome.reason
        no_source = HttpRequest(good.method, base + PATH + "?debug=1", good.headers, good.body)
        assert (await send(no_source)).status == 400
    assert len(fake.rejected) == 3 and not fake.received


def test_a_shoppers_user_agent_with_a_line_break_keeps_its_text_without_the_break() -> None:
    """The shared header rule (control characters removed from browser-derived headers) applies to Elevar too:
    the shopper's own agent is kept, not swapped for the default."""
    event = {**events.purchase(), "context": {"user_agent": "Mozilla/5.0\r\nX-Evil: 1", "ip": "203.0.113.9\n"}}
    request = make().build([event])
    assert request.headers["user-agent"] == "Mozilla/5.0X-Evil: 1"
    assert request.headers["x-forwarded-for"] == "203.0.113.9"
