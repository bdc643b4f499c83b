"""Servoki server events (seed: servoki-server-events.txt).

`POST https://servoki.com/api/events/server` (config `url` overrides it), `Authorization: Bearer servoki_…`.
Body: `site` (domain or numeric site code), `event_type`, `vid`, `value` (JSON number, summed as revenue:
refunds are sent negative so revenue nets out), `currency` (3-letter ISO, checked before sending), `event_id`
(our stable id: Servoki counts repeats as one, so retries are safe), `occurred_at`, `props` (flat grouping
properties), `consent` (from consent.marketing: required to forward to ad platforms). 202 = accepted; 401 (key)
and 404 (unknown site) are permanent; 600 requests/minute per IP.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from bridge.destinations import _common as c
from bridge.destinations.base import (
    USER_AGENT,
    Destination,
    DestinationSettings,
    HttpRequest,
    OptionError,
    Outcome,
    RateLimit,
    Verdict,
)
from bridge.errors import RenderError

DEFAULT_URL = "https://servoki.com/api/events/server"
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.IGNORECASE)
_PROP_KEYS = {
    "order_id": "order.id",
    "order_number": "order.number",
    "coupon": "order.coupon",
    "channel": "order.channel",
    "subscription_id": "subscription.id",
    "plan": "subscription.plan",
    "interval": "subscription.interval",
    "status": "subscription.status",
    "cancel_reason": "subscription.cancel_reason",
    "utm_source": "context.utm_source",
    "utm_medium": "context.utm_medium",
    "utm_campaign": "context.utm_campaign",
}
_NEGATIVE = frozenset({"refund"})


class ServokiDestination(Destination):
    type = "servoki"
    options: ClassVar[Mapping[str, str]] = {
        "api_key": "API key (servoki_…), sent as Bearer; required (from ${ENV})",
        "site": "your site's domain (shop.example.com) or numeric site code; required",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "purchase",
        "refund": "refund",
        "subscription_started": "subscription_started",
        "subscription_renewed": "subscription_renewed",
        "subscription_updated": "subscription_updated",
        "subscription_canceled": "subscription_canceled",
        "trial_started": "trial_started",
        "payment_failed": "payment_failed",
    }
    default_rate_limits = (RateLimit(600, 60.0),)
    requires_url = False  # defaults to the public endpoint

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.url = c.check_http_url(settings.url or DEFAULT_URL, "url")
        self._api_key = c.option_text(options, "api_key", required=True)
        self.site = c.option_text(options, "site", required=True)
        if not (self.site.isdigit() or _DOMAIN.fullmatch(self.site)):
            raise OptionError(
                "site", f"site must be a domain (shop.example.com) or a numeric site code, got {self.site!r}"
            )
        self._headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:
        return f"ServokiDestination(name={self.name!r}, site={self.site!r})"

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        if len(events) != 1:
            raise RenderError(f"Servoki takes one event per request, got {len(events)}")
        event = events[0]
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        value, cur = c.amount_and_currency(event)
        if value is not None and canonical in _NEGATIVE:
            value = -abs(value)
        if value is not None and cur is None:
            raise RenderError("value without a currency: the event has no order/subscription currency")
        props: dict[str, Any] = {key: c.text(event, path) for key, path in _PROP_KEYS.items()}
        extra = c.get(event, "properties")
        if isinstance(extra, Mapping):
            for key, raw in extra.items():
                if isinstance(raw, str | bool | int | Decimal) and key not in props:
                    props[key] = raw
        consent = c.get(event, "consent.marketing")
        payload = {
            "site": self.site,
            "event_type": name,
            "vid": c.text(event, "context.visitor_id"),
            "value": value,
            "currency": cur,
            "event_id": c.event_id(event),
            "occurred_at": c.text(event, "occurred_at"),
            "props": props,
            "consent": consent if isinstance(consent, bool) else None,
        }
        return HttpRequest(
            "POST", self.url, c.merge_headers(self.settings.headers, self._headers), c.json_bytes(c.compact(payload))
        )

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if status == 202:
            return Outcome(Verdict.DELIVERED, "HTTP 202 accepted")
        return c.classify_with(
            status,
            body,
            permanent={
                400: "invalid body (missing event_type, bad currency, …)",
                401: "unauthorized: the api_key option is missing or invalid",
                403: "forbidden: the api_key may not send for this site",
                404: f"unknown site {self.site!r}: check the site option (domain or numeric site code)",
            },
            transient={429: "rate limited (600 requests/minute per IP)"},
        )


DESTINATION = ServokiDestination
