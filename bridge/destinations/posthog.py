"""PostHog capture API (batch).

`POST {url}/batch/` (US cloud `https://us.i.posthog.com`, `region: eu` → `https://eu.i.posthog.com`, or a
self-hosted URL), JSON `{"api_key", "historical_migration", "batch": [{event, uuid, timestamp, properties}]}`:
the project API key travels in the body. PostHog answers 200 for events it then drops (no name, no
distinct_id, an invalid uuid), so each event here has a name, a non-empty `distinct_id` and a `uuid` derived
from the dedup key (PostHog deduplicates on uuid + event + timestamp + distinct_id, so every retry or replay
of an event collapses into one). Times are ISO 8601; there is no age limit.

Properties: `revenue` (purchases and renewals) and `currency`, the order and subscription fields, `$ip` when the
event carries the customer's IP, else `$geoip_disable` (PostHog would otherwise place the customer at the
bridge's server), and `$set` person properties (email, name, phone). Consent (`consent:` option, signal
`analytics`): respect (default) sends a denied event anonymously — a per-event distinct_id,
`$process_person_profile: false`, no person properties, IP or user agent; require sends only with consent
granted. A 200 answer that reports `quota_limited` means PostHog dropped the events: `dead`, with that reason.
"""

from __future__ import annotations

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
    Verdict,
)
from bridge.errors import RenderError

HOSTS = {"us": "https://us.i.posthog.com", "eu": "https://eu.i.posthog.com"}
#: PostHog documents no per-request event count; its own Python library sends 100 per request
MAX_EVENTS = 100
#: documented: body < 20 MB; posthog-python keeps batches under 5 MiB and events under 900 KiB
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_EVENT_BYTES = 900 * 1024
_REVENUE_EVENTS = ("purchase", "subscription_renewed")


class PostHogDestination(Destination):
    type = "posthog"
    options: ClassVar[Mapping[str, str]] = {
        "api_key": "the project API key (phc_…, Project settings → Project API key); required, from ${ENV}",
        "region": "us (default) or eu; ignored when url is set (self-hosted)",
        "historical_migration": "true for back-fills (PostHog's historical pipeline); default false",
        "consent": "respect (default) | require | ignore: how analytics consent gates personal data",
    }
    event_names: ClassVar[Mapping[str, str]] = {}
    sends_custom_names = True
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self._api_key = c.option_text(options, "api_key", required=True)
        region = c.option_choice(options, "region", HOSTS, "us")
        self.url = c.check_http_url(settings.url.rstrip("/") if settings.url else HOSTS[region], "url") + "/batch/"
        self.historical = c.option_bool(options, "historical_migration")
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}

    def __repr__(self) -> str:  # never show the key
        return f"PostHogDestination(name={self.name!r}, url={self.url!r})"

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL) is not privacy.Share.NONE

    def capture(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        share = privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL)
        if share is privacy.Share.NONE:
            raise RenderError("not sent: the analytics consent this destination requires is not granted")
        moment = _packing.event_time(event, now)
        uuid = _dedup.key_uuid(event)
        shown = event if share is privacy.Share.ALL else privacy.anonymised(event)
        person = c.text(shown, "customer.external_id") or c.text(shown, "customer.id")
        distinct_id = person or c.text(shown, "context.visitor_id") or uuid
        value, cur = c.amount_and_currency(event)
        properties: dict[str, Any] = {
            "distinct_id": distinct_id,
            "revenue": value if canonical in _REVENUE_EVENTS else None,
            "value": value,
            "currency": cur,
            "order_id": c.text(event, "order.id"),
            "coupon": c.text(event, "order.coupon"),
            "subscription_id": c.text(event, "subscription.id"),
            "plan": c.text(event, "subscription.plan"),
            "interval": c.text(event, "subscription.interval"),
            "cancel_reason": c.text(event, "subscription.cancel_reason"),
            "items": [
                {
                    "sku": c.text(item, "sku"),
                    "product_id": c.text(item, "product_id"),
                    "name": c.text(item, "name"),
                    "price": c.money(item.get("price"), f"order.items[{index}].price"),
                    "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else None,
                }
                for index, item in enumerate(c.items(event))
            ],
            "$current_url": c.text(shown, "context.page_url"),
            "$referrer": c.text(shown, "context.referrer"),
            "$ip": c.text(shown, "context.ip"),
            "$useragent": c.text(shown, "context.user_agent"),
            "utm_source": c.text(event, "context.utm_source"),
            "utm_medium": c.text(event, "context.utm_medium"),
            "utm_campaign": c.text(event, "context.utm_campaign"),
            "event_id": _dedup.event_id(event),
            "source_provider": c.text(event, "source.provider"),
        }
        if share is privacy.Share.ALL:
            extra = event.get("properties")
            if isinstance(extra, Mapping):
                for key, item in extra.items():
                    properties.setdefault(str(key), item)
            first, last = c.text(event, "customer.first_name"), c.text(event, "customer.last_name")
            properties["$set"] = {
                "email": c.text(event, "customer.email"),
                "phone": c.text(event, "customer.phone"),
                "name": " ".join(part for part in (first, last) if part) or None,
            }
        if not person:
            properties["$process_person_profile"] = False
        if properties.get("$ip") is None:
            properties["$geoip_disable"] = True
        rendered: dict[str, Any] = c.compact(
            {"event": name, "uuid": uuid, "timestamp": _packing.iso_ms(moment), "properties": properties}
        )
        return rendered

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        now = self.clock.now()
        head = (
            b'{"api_key":'
            + c.json_bytes(self._api_key)
            + b',"historical_migration":'
            + (b"true" if self.historical else b"false")
            + b',"batch":['
        )
        parts = _packing.pack(
            events,
            lambda event: c.json_bytes(self.capture(event, now)),
            platform="PostHog",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES,
            overhead=len(head) + 2,
            max_event_bytes=MAX_EVENT_BYTES,
        )
        body = head + b",".join(parts) + b"]}"
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if 200 <= status < 300:
            answer = c.json_object(body)
            if answer is not None and answer.get("quota_limited"):
                return Outcome(
                    Verdict.DEAD,
                    f"HTTP {status} but PostHog dropped the events: the project is over its billing quota "
                    f"(quota_limited: {answer.get('quota_limited')})",
                )
            return Outcome(Verdict.DELIVERED, f"HTTP {status}")
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: PostHog could not parse the batch",
                401: "unauthorized: check api_key (the project API key, phc_…)",
                413: "payload too large",
            },
            transient={
                429: "rate limited or over the billing limit",
                503: "PostHog's ingestion is temporarily unavailable",
            },
        )


DESTINATION = PostHogDestination
