"""Segment HTTP Tracking API (batch).

`POST {url}/v1/batch`, `Authorization: Basic base64(write_key:)`, JSON `{"batch": [track, …], "sentAt"}`.
Segment answers 200 and drops what it does not like, so its documented limits are kept here: ≤ 32 KB per
message, ≤ 500 KB per request (475,000 bytes, leaving room as Segment's own library does), `userId` or
`anonymousId` on every message, `messageId` ≤ 100 characters (the dedup key, see `_dedup`), ISO 8601
`timestamp` = when the event happened and `sentAt` = when we send (Segment corrects `timestamp` by the
difference between `sentAt` and its own clock).

Messages follow Segment's e-commerce spec: purchase → `Order Completed` {order_id, total, revenue, tax,
shipping, discount, coupon, currency, products[]}, refund → `Order Refunded`, consent_updated → `Segment Consent
Preference Updated` with `context.consent.categoryPreferences`; other canonical names under a Title Case name.
Traits (email, phone, names, address) travel in `context.traits`, plaintext: Segment has no hashing contract.
Consent (`consent:` option, signal `analytics`): respect (default) sends a denied event anonymously (no
userId, traits, IP or user agent; a per-event anonymousId); require sends only with consent granted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bridge import privacy
from bridge.destinations import _common as c
from bridge.destinations import _dedup, _packing
from bridge.destinations.base import (
    USER_AGENT,
    Destination,
    DestinationSettings,
    HttpRequest,
    Outcome,
    RateLimit,
    Verdict,
)
from bridge.errors import RenderError

DEFAULT_URL = "https://api.segment.io"
MAX_EVENTS = 2500
MAX_BODY_BYTES = 475_000  # documented 500 KB; analytics-python stops at 475,000 to leave room for sentAt
MAX_EVENT_BYTES = 32_000  # "32 KB per event"
_HEAD = b'{"batch":['
#: ',"sentAt":"2026-01-01T00:00:00.000Z"}' and the closing bracket
_TAIL_BYTES = 40


class SegmentDestination(Destination):
    type = "segment"
    options: ClassVar[Mapping[str, str]] = {
        "write_key": "the HTTP API source's write key (Connections → Sources → <source> → Settings → API Keys); "
        "required, from ${ENV}",
        "consent": "respect (default) | require | ignore: how analytics consent gates personal data",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "Order Completed",
        "refund": "Order Refunded",
        "subscription_started": "Subscription Started",
        "subscription_renewed": "Subscription Renewed",
        "subscription_updated": "Subscription Updated",
        "subscription_canceled": "Subscription Canceled",
        "trial_started": "Trial Started",
        "payment_failed": "Payment Failed",
        "contract_updated": "Contract Updated",
        "consent_updated": "Segment Consent Preference Updated",
    }
    sends_custom_names = True
    #: "≤ 1,000 requests per second per workspace"
    default_rate_limits = (RateLimit(1000, 1.0),)
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self._write_key = c.option_text(options, "write_key", required=True)
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        self.url = c.check_http_url(settings.url.rstrip("/") if settings.url else DEFAULT_URL, "url") + "/v1/batch"
        basic = base64.b64encode(f"{self._write_key}:".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:  # never show the key
        return f"SegmentDestination(name={self.name!r}, url={self.url!r})"

    def destination_event_name(self, canonical_name: str) -> str | None:
        name = self.names.get(canonical_name)
        return name if name is not None else _packing.title(canonical_name)

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL) is not privacy.Share.NONE

    def message(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        share = privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL)
        if share is privacy.Share.NONE:
            raise RenderError("not sent: the analytics consent this destination requires is not granted")
        moment = _packing.event_time(event, now)
        shown = event if share is privacy.Share.ALL else privacy.anonymised(event)
        user_id = c.text(shown, "customer.external_id") or c.text(shown, "customer.id")
        anonymous_id = c.text(shown, "context.visitor_id") or (None if user_id else _dedup.key_uuid(event))
        value, cur = c.amount_and_currency(event)
        properties: dict[str, Any] = {
            "order_id": c.text(event, "order.id"),
            "total": value if c.get(event, "order.total") is not None else None,
            "revenue": value if canonical == "purchase" else None,
            "value": value if c.get(event, "order.total") is None else None,
            "subtotal": c.money(c.get(event, "order.subtotal"), "order.subtotal"),
            "tax": c.money(c.get(event, "order.tax"), "order.tax"),
            "shipping": c.money(c.get(event, "order.shipping"), "order.shipping"),
            "discount": c.money(c.get(event, "order.discount"), "order.discount"),
            "coupon": c.text(event, "order.coupon"),
            "currency": cur,
            "products": [
                {
                    "product_id": c.text(item, "product_id"),
                    "variant_id": c.text(item, "variant_id"),
                    "sku": c.text(item, "sku"),
                    "name": c.text(item, "name"),
                    "brand": c.text(item, "brand"),
                    "category": c.text(item, "category"),
                    "variant": c.text(item, "variant"),
                    "price": c.money(item.get("price"), f"order.items[{index}].price"),
                    "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else None,
                }
                for index, item in enumerate(c.items(event))
            ],
            "subscription_id": c.text(event, "subscription.id"),
            "plan": c.text(event, "subscription.plan"),
            "interval": c.text(event, "subscription.interval"),
            "status": c.text(event, "subscription.status"),
            "cancel_reason": c.text(event, "subscription.cancel_reason"),
        }
        extra = event.get("properties")
        if isinstance(extra, Mapping) and share is privacy.Share.ALL:  # free-form: may hold personal data
            for key, item in extra.items():
                properties.setdefault(str(key), item)
        address = {
            "street": c.text(shown, "customer.address.line1"),
            "city": c.text(shown, "customer.address.city"),
            "state": c.text(shown, "customer.address.region_code") or c.text(shown, "customer.address.region"),
            "postal_code": c.text(shown, "customer.address.postal_code"),
            "country": c.text(shown, "customer.address.country_code"),
        }
        context: dict[str, Any] = {
            "ip": c.text(shown, "context.ip"),
            "userAgent": c.text(shown, "context.user_agent"),
            "page": {"url": c.text(event, "context.page_url"), "referrer": c.text(event, "context.referrer")},
            "campaign": {
                "source": c.text(event, "context.utm_source"),
                "medium": c.text(event, "context.utm_medium"),
                "name": c.text(event, "context.utm_campaign"),
                "term": c.text(event, "context.utm_term"),
                "content": c.text(event, "context.utm_content"),
            },
            "traits": {
                "email": c.text(shown, "customer.email"),
                "phone": c.text(shown, "customer.phone"),
                "first_name": c.text(shown, "customer.first_name"),
                "last_name": c.text(shown, "customer.last_name"),
                "address": address,
            },
        }
        if share is privacy.Share.ANONYMOUS:
            context["page"] = {}
        consent = event.get("consent")
        if isinstance(consent, Mapping):
            categories = {key: value for key, value in consent.items() if isinstance(value, bool)}
            if categories:
                context["consent"] = {"categoryPreferences": categories}
        message = {
            "type": "track",
            "event": name,
            "messageId": _dedup.message_id(event),
            "timestamp": _packing.iso_ms(moment),
            "userId": user_id,
            "anonymousId": anonymous_id,
            "properties": properties,
            "context": context,
        }
        rendered: dict[str, Any] = c.compact(message)
        return rendered

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        now = self.clock.now()
        parts = _packing.pack(
            events,
            lambda event: c.json_bytes(self.message(event, now)),
            platform="Segment",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES,
            overhead=len(_HEAD) + _TAIL_BYTES,
            max_event_bytes=MAX_EVENT_BYTES,
        )
        body = _HEAD + b",".join(parts) + b'],"sentAt":' + c.json_bytes(_packing.iso_ms(now)) + b"}"
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if 200 <= status < 300:
            answer = c.json_object(body)
            if answer is not None and answer.get("success") is False:
                return Outcome(Verdict.DEAD, f"HTTP {status} but success=false: {c.body_text(body)}")
            return Outcome(Verdict.DELIVERED, f"HTTP {status}")
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: invalid JSON or a payload over Segment's size limits",
                401: "unauthorized: check write_key",
                403: "forbidden: check write_key",
                404: "not found: check the url (the API host, without /v1/batch)",
                413: "payload too large: Segment takes 500 KB per batch, 32 KB per message",
            },
            transient={429: "rate limited (Segment recommends at most 1,000 requests per second)"},
        )


DESTINATION = SegmentDestination
