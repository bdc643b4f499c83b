from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.destinations import destination_class
from bridge.destinations.base import USER_AGENT, HttpRequest, OptionError, RateLimit, Verdict
from bridge.destinations.zenovay import DEFAULT_USER_AGENT, ZenovayDestination, describe_agent, is_bot_like
from bridge.errors import RenderError
from bridge.sinks.server import serve
from bridge.sinks.zenovay import ZenovayFake
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send, settings

CODE = "ZV-TRACK-123"
URL = f"https://api.zenovay.example/e/{CODE}"
SUCCESS = "https://shop.example.com/checkout/success"


def make(url: str = URL, **options: Any) -> ZenovayDestination:
    return ZenovayDestination(settings("zenovay", url, options={"default_url": SUCCESS, **options}))


def test_registered_by_type() -> None:
    assert destination_class("zenovay") is ZenovayDestination


def test_purchase_golden_with_shopper_agent() -> None:
    request = make().render([events.purchase()])
    assert request.method == "POST" and request.url == URL
    assert request.headers == {"Content-Type": "application/json", "User-Agent": events.CHROME_UA}
    assert "Authorization" not in request.headers
    assert b'"value":54.98,' in request.body
    assert body(request) == {
        "event_type": "custom",
        "event_name": "purchase",
        "url": "https://shop.example.com/checkout/success?order=1005",
        "referrer": "https://www.google.com/",
        "session_id": "sess_abc123456",
        "visitor_id": "anon-7f3e9a21",
        "device_type": "desktop",
        "browser": "Chrome",
        "os": "Windows",
        "user_agent": events.CHROME_UA,
        "properties": {
            "event_id": "ord_4835925655784",
            "value": 54.98,
            "currency": "USD",
            "order_id": "ord_4835925655784",
            "order_number": "#1005",
            "coupon": "SPRING10",
            "utm_source": "google",
            "utm_campaign": "spring",
            "gift": True,
        },
    }


def test_server_event_gets_defaults_and_a_stable_session() -> None:
    dest = make()
    first = body(dest.render([events.subscription_started()]))
    assert first["url"] == SUCCESS
    assert (first["device_type"], first["browser"], first["os"]) == ("server", "server", "Linux")
    assert first["user_agent"] == DEFAULT_USER_AGENT
    assert first["session_id"].startswith("srv-") and len(first["session_id"]) >= 8
    assert first["visitor_id"].startswith("cus-")
    assert first["properties"]["value"] == 19.0 and first["properties"]["plan"] == "pro_monthly"
    again = body(dest.render([events.subscription_started()]))
    assert again["session_id"] == first["session_id"]  # stable across retries and restarts
    other = events.subscription_started()
    other["subscription"]["id"] = "sub_other"
    assert body(dest.render([other]))["session_id"] != first["session_id"]
    short = events.purchase()
    short["context"]["session_id"] = "abc"
    assert len(body(dest.render([short]))["session_id"]) >= 8


@pytest.mark.parametrize(
    "agent",
    [
        "curl/8.4.0",
        "python-requests/2.31",
        "Wget/1.21",
        "Java/17.0.2",
        "Go-http-client/1.1",
        "Python/3.12 aiohttp/3.9",
        "python-httpx/0.27",
        "Mozilla/5.0 (compatible; Googlebot/2.1)",
        "AhrefsCrawler",
        "Mozilla/5.0 (Linux) HeadlessChrome/120",
        USER_AGENT,
        "",
    ],
)
def test_bot_like_shopper_agent_is_replaced(agent: str) -> None:
    assert is_bot_like(agent)
    event = events.purchase()
    event["context"]["user_agent"] = agent
    request = make(default_user_agent="Mozilla/5.0 (X11; Linux x86_64) ShopServer/2.0").render([event])
    assert request.headers["User-Agent"] == "Mozilla/5.0 (X11; Linux x86_64) ShopServer/2.0"
    assert body(request)["user_agent"] == request.headers["User-Agent"]
    assert body(request)["browser"] == "server"


def test_describe_agent() -> None:
    assert describe_agent(events.IPHONE_UA) == ("mobile", "Safari", "iOS")
    assert describe_agent(events.CHROME_UA) == ("desktop", "Chrome", "Windows")
    assert describe_agent("SomeApp/1.0") is None
    event = events.purchase()
    event["context"]["user_agent"] = "SomeApp/1.0"  # not bot-like but unreadable: server defaults
    assert body(make().render([event]))["user_agent"] == DEFAULT_USER_AGENT


@pytest.mark.parametrize(
    ("options", "url", "key"),
    [
        ({"default_url": ""}, URL, "default_url"),
        ({"default_url": "/checkout/success"}, URL, "default_url"),
        ({"default_user_agent": "curl/8.0"}, URL, "default_user_agent"),
        ({"default_user_agent": "MyShop-bot"}, URL, "default_user_agent"),
        ({"os": ["Linux"]}, URL, "os"),
        ({"api_key": "x"}, URL, "api_key"),
        ({}, "https://api.zenovay.example/e/", "url"),
        ({}, "https://api.zenovay.example/track", "url"),
        ({}, "api.zenovay.example/e/abc", "url"),
    ],
)
def test_option_errors(options: dict[str, Any], url: str, key: str) -> None:
    with pytest.raises(OptionError) as info:
        make(url=url, **options)
    assert info.value.key == key


def test_names_limits_and_routing() -> None:
    dest = make()
    assert dest.rate_limits == (RateLimit(60, 10.0), RateLimit(5000, 3600.0))
    assert dest.routes("purchase") and dest.routes("subscription_canceled")
    assert not dest.routes("consent_updated")
    with pytest.raises(RenderError):
        dest.render([events.consent_updated()])


def test_classify() -> None:
    dest = make()
    assert dest.classify(200, {}, b"{}").verdict is Verdict.DELIVERED
    missing = orjson.dumps({"error": "Missing required fields", "missing": ["session_id", "url", "device_type"] * 40})
    outcome = dest.classify(400, {}, missing)
    assert outcome.verdict is Verdict.DEAD and missing.decode() in outcome.reason
    assert dest.classify(404, {}, b"").verdict is Verdict.DEAD
    assert dest.classify(429, {"Retry-After": "5"}, b"").verdict is Verdict.RETRY
    assert dest.classify(500, {}, b"").verdict is Verdict.RETRY


async def test_fake_accepts_rendered_requests() -> None:
    fake = ZenovayFake(CODE)
    async with serve(fake.app) as base:
        dest = make(url=f"{base}/e/{CODE}")
        for event in (events.purchase(), events.refund(), events.subscription_started(), events.pos_purchase()):
            answer, outcome = await deliver(dest, [event])
            assert answer.status == 200, answer.body
            assert outcome.verdict is Verdict.DELIVERED
    assert len(fake.received) == 4 and not fake.rejected and not fake.dropped_as_bot
    assert fake.received[0]["headers"]["user-agent"] == events.CHROME_UA


async def test_fake_drops_bots_and_rejects_missing_fields() -> None:
    fake = ZenovayFake(CODE)
    async with serve(fake.app) as base:
        good = make(url=f"{base}/e/{CODE}").render([events.purchase()])
        bot_header = HttpRequest("POST", good.url, {**good.headers, "User-Agent": "python-httpx/0.27"}, good.body)
        answer = await send(bot_header)
        assert answer.status == 200  # looks fine to the sender ...
        document = body(good)
        document["user_agent"] = "curl/8.4.0"
        answer = await send(HttpRequest("POST", good.url, good.headers, orjson.dumps(document)))
        assert answer.status == 200
        assert len(fake.dropped_as_bot) == 2 and not fake.received  # ... but nothing was counted
        document = body(good)
        del document["session_id"], document["os"]
        answer = await send(HttpRequest("POST", good.url, good.headers, orjson.dumps(document)))
        assert answer.status == 400 and answer.json()["missing"] == ["session_id", "os"]
        outcome = make().classify(answer.status, answer.headers, answer.body)
        assert outcome.verdict is Verdict.DEAD and "session_id" in outcome.reason
        document = {**body(good), "session_id": "short", "url": "/checkout"}
        assert (await send(HttpRequest("POST", good.url, good.headers, orjson.dumps(document)))).status == 400
        assert (await send(HttpRequest("POST", f"{base}/e/WRONG", good.headers, good.body))).status == 404
    assert len(fake.rejected) == 3


async def test_fake_burst_limit() -> None:
    now = [0.0]
    fake = ZenovayFake(CODE, clock=lambda: now[0])
    async with serve(fake.app) as base:
        dest = make(url=f"{base}/e/{CODE}")
        for _ in range(60):
            now[0] += 0.1
            assert (await deliver(dest, [events.purchase()]))[0].status == 200
        answer, outcome = await deliver(dest, [events.purchase()])
        assert answer.status == 429 and outcome.verdict is Verdict.RETRY
        assert answer.json()["error"]["code"] == "rate_limit_exceeded"
        now[0] += 10.0
        assert (await deliver(dest, [events.purchase()]))[0].status == 200


def test_configured_headers_cannot_bring_back_a_bot_agent() -> None:
    dest = ZenovayDestination(
        settings("zenovay", URL, headers={"user-agent": "python-requests/2.31"}, options={"default_url": SUCCESS})
    )
    headers = dest.render([events.pos_purchase()]).headers
    assert headers == {"Content-Type": "application/json", "User-Agent": DEFAULT_USER_AGENT}
