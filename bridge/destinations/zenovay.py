"""Zenovay server-side tracking (seed: zenovay-server-side-tracking.txt).

`POST https://api.zenovay.com/e/{trackingCode}` (config `url` is that full URL), public, no auth. Every event
is a custom event: `event_type: custom`, `event_name`, `properties`, plus the browser fields the ingest path
requires: `session_id` (≥ 8 chars; derived as a stable hash of the order / subscription / customer when the
event has none), a full `url` (the event's page URL, else the configured `default_url`), `device_type`,
`browser`, `os` and `user_agent`.

Zenovay drops bot-like agents (curl, python, wget, java, go-http, aiohttp, httpx, bot/crawler/spider, …) while
still answering success, so the user agent is the shopper's when present and not bot-like, else the configured
`default_user_agent` (checked at construction), and the HTTP `User-Agent` header carries the same value.
Limits per IP: 60 requests per 10 s and 5000 per hour. A 400 lists the missing fields: permanent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

from bridge import __version__
from bridge.destinations import _common as c
from bridge.destinations.base import (
    Destination,
    DestinationSettings,
    HttpRequest,
    OptionError,
    Outcome,
    RateLimit,
)
from bridge.errors import RenderError

DEFAULT_USER_AGENT = f"Mozilla/5.0 (X11; Linux x86_64) BridgeServer/{__version__}"
#: the doc's isBot() patterns plus common HTTP libraries and headless/preview agents
BOT_PATTERN = re.compile(
    r"bot|crawl|spider|scrap|slurp|curl|wget|python|java/|go-http|aiohttp|httpx|okhttp|libwww|"
    r"node-fetch|axios|undici|http-client|httpclient|headless|phantomjs|yandex|facebookexternalhit|"
    r"postman|insomnia|^bridge/",
    re.IGNORECASE,
)
_PROPERTY_PATHS = {
    "order_id": "order.id",
    "order_number": "order.number",
    "coupon": "order.coupon",
    "subscription_id": "subscription.id",
    "plan": "subscription.plan",
    "interval": "subscription.interval",
    "cancel_reason": "subscription.cancel_reason",
    "utm_source": "context.utm_source",
    "utm_medium": "context.utm_medium",
    "utm_campaign": "context.utm_campaign",
}


def is_bot_like(user_agent: str | None) -> bool:
    return not user_agent or not user_agent.strip() or bool(BOT_PATTERN.search(user_agent))


# first match wins: Edge and Opera agents also say Chrome and Safari; Android agents also say Linux
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("CriOS/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def _stable_id(prefix: str, seed: str) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:16]


def describe_agent(user_agent: str) -> tuple[str, str, str] | None:
    """(device_type, browser, os) read from a browser user agent, or None if it is not recognisable."""
    ua = user_agent
    if "iPad" in ua or "Tablet" in ua:
        device = "tablet"
    elif "Mobi" in ua or "iPhone" in ua or "Android" in ua:
        device = "mobile"
    else:
        device = "desktop"
    browser = next((name for token, name in _BROWSERS if token in ua), None)
    system = next((name for token, name in _SYSTEMS if token in ua), None)
    if browser is None or system is None:
        return None
    return device, browser, system


class ZenovayDestination(Destination):
    type = "zenovay"
    options: ClassVar[Mapping[str, str]] = {
        "default_url": "page URL for events without context.page_url, e.g. https://shop.example.com/checkout/success;"
        " required",
        "default_user_agent": f"user agent for events without a usable shopper agent (default {DEFAULT_USER_AGENT!r});"
        " must not look like a bot",
        "device_type": "device_type for server events (default server)",
        "browser": "browser for server events (default server)",
        "os": "os for server events (default Linux)",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "purchase",
        "refund": "refund",
        "subscription_started": "subscription_started",
        "subscription_renewed": "subscription_renewed",
        "subscription_canceled": "subscription_canceled",
        "trial_started": "trial_started",
        "payment_failed": "payment_failed",
    }
    default_rate_limits = (RateLimit(60, 10.0), RateLimit(5000, 3600.0))

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.url = c.check_http_url(settings.url, "url")
        code = urlsplit(self.url).path.rstrip("/").rpartition("/e/")[2]
        if "/e/" not in urlsplit(self.url).path or not code or "/" in code:
            raise OptionError("url", f"url must be the tracking endpoint …/e/<trackingCode>, got {self.url!r}")
        self.default_url = c.check_http_url(c.option_text(options, "default_url", required=True), "default_url")
        self.default_user_agent = c.option_text(options, "default_user_agent", default=DEFAULT_USER_AGENT)
        if is_bot_like(self.default_user_agent):
            raise OptionError(
                "default_user_agent",
                f"default_user_agent {self.default_user_agent!r} looks like a bot; Zenovay would drop every event",
            )
        if "\r" in self.default_user_agent or "\n" in self.default_user_agent:
            raise OptionError("default_user_agent", "default_user_agent must be a single line")
        self.device_type = c.option_text(options, "device_type", default="server")
        self.browser = c.option_text(options, "browser", default="server")
        self.os = c.option_text(options, "os", default="Linux")

    def __repr__(self) -> str:
        return f"ZenovayDestination(name={self.name!r}, url={self.url!r})"

    def user_agent(self, event: Mapping[str, Any]) -> tuple[str, tuple[str, str, str]]:
        """The agent to send and its (device_type, browser, os)."""
        shopper = c.text(event, "context.user_agent")
        if shopper and not is_bot_like(shopper) and "\r" not in shopper and "\n" not in shopper:
            described = describe_agent(shopper)
            if described is not None:
                return shopper, described
        return self.default_user_agent, (self.device_type, self.browser, self.os)

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        if len(events) != 1:
            raise RenderError(f"Zenovay takes one event per request, got {len(events)}")
        event = events[0]
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        ident = c.event_id(event)
        agent, (device_type, browser, system) = self.user_agent(event)
        page_url = c.text(event, "context.page_url")
        referrer = c.text(event, "context.referrer")
        value, cur = c.amount_and_currency(event)
        properties: dict[str, Any] = {"event_id": ident, "value": value, "currency": cur}
        properties.update({key: c.text(event, path) for key, path in _PROPERTY_PATHS.items()})
        extra = c.get(event, "properties")
        if isinstance(extra, Mapping):
            for key, raw in extra.items():
                if isinstance(raw, str | bool | int | Decimal) and key not in properties:
                    properties[key] = raw
        payload = {
            "event_type": "custom",
            "event_name": name,
            "url": page_url if page_url and c.is_http_url(page_url) else self.default_url,
            "referrer": referrer if referrer and c.is_http_url(referrer) else None,
            "session_id": self._session_id(event, ident),
            "visitor_id": self._visitor_id(event),
            "device_type": device_type,
            "browser": browser,
            "os": system,
            "user_agent": agent,
            "properties": properties,
        }
        headers = {"Content-Type": "application/json", "User-Agent": agent}
        return HttpRequest(
            "POST", self.url, c.merge_headers(self.settings.headers, headers), c.json_bytes(c.compact(payload))
        )

    @staticmethod
    def _session_id(event: Mapping[str, Any], ident: str) -> str:
        session = c.text(event, "context.session_id")
        if session and len(session) >= 8:
            return session
        for path in ("order.id", "subscription.id", "customer.id"):
            seed = c.text(event, path)
            if seed:
                return _stable_id("srv-", f"{path}:{seed}")
        return _stable_id("srv-", f"id:{session or ident}")

    @staticmethod
    def _visitor_id(event: Mapping[str, Any]) -> str | None:
        visitor = c.text(event, "context.visitor_id")
        if visitor and len(visitor) >= 8:
            return visitor
        customer = c.text(event, "customer.id")
        if customer:
            return _stable_id("cus-", customer)
        email = c.text(event, "customer.email")
        return _stable_id("cus-", email.lower()) if email else None

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: required fields missing or invalid",
                404: "not found: check the tracking code in the url",
            },
            transient={429: "rate limited (60 per 10 s, 5000 per hour per IP)"},
            limit=4096,  # a 400 lists every missing field: keep the list whole
        )


DESTINATION = ZenovayDestination
