"""Amplitude HTTP V2 API.

`POST {url}/2/httpapi` (`region: eu` → api.eu.amplitude.com; `endpoint: batch` → `/batch`, the Batch Event
Upload API), JSON `{"api_key", "events": [...], "options"?}`: the API key travels in the body. ≤ 10 events per
request (Amplitude's recommendation for Starter plans) and < 1 MB.

Per event: `event_type`, `time` in **milliseconds**, `insert_id` = a UUID of the dedup key (Amplitude ignores a
repeat on the same device_id within 7 days), `user_id` the customer id (shorter than Amplitude's default 5
characters: `options.min_id_length` says so), `device_id` the visitor id or one derived from the dedup key, and
revenue as Amplitude documents it: `revenue` (negative for refunds), `revenueType`, `currency`. Consent
(`consent:` option, signal `analytics`): respect (default) sends a denied event with no user_id or IP (a
per-event device_id); require sends only with consent granted.

Answers: 400 names the invalid events by index (`events_with_invalid_fields`, `events_with_missing_fields`,
`silenced_events`): those end `dead`, the others are retried (Amplitude took none of the request). 429 (a user
or device over 30 events/s) is retried after 30 s; 500/502/504 are retried (the insert_id keeps a resend from
counting twice).
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
    RateLimit,
    Verdict,
)
from bridge.errors import RenderError

HOSTS = {"us": "https://api2.amplitude.com", "eu": "https://api.eu.amplitude.com"}
ENDPOINTS = {"httpapi": "/2/httpapi", "batch": "/batch"}
MAX_EVENTS = 10
MAX_BODY_BYTES = 1_000_000 - 1  # "< 1 MB"
MIN_ID_LENGTH = 5
THROTTLE_SECONDS = 30.0
#: canonical name → (revenueType, sign of the revenue)
_REVENUE = {
    "purchase": ("Purchase", 1),
    "subscription_started": ("Subscription", 1),
    "subscription_renewed": ("Renewal", 1),
    "refund": ("Refund", -1),
}


class AmplitudeDestination(Destination):
    type = "amplitude"
    options: ClassVar[Mapping[str, str]] = {
        "api_key": "the project's API key (Settings → Projects → <project> → General); required, from ${ENV}",
        "region": "us (default) or eu; ignored when url is set",
        "endpoint": "httpapi (default, /2/httpapi) or batch (/batch)",
        "consent": "respect (default) | require | ignore: how analytics consent gates personal data",
    }
    event_names: ClassVar[Mapping[str, str]] = {}
    sends_custom_names = True
    #: Starter plans: ≤ 100 batches/s and ≤ 1,000 events/s (10 events per batch)
    default_rate_limits = (RateLimit(100, 1.0),)
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self._api_key = c.option_text(options, "api_key", required=True)
        region = c.option_choice(options, "region", HOSTS, "us")
        endpoint = c.option_choice(options, "endpoint", ENDPOINTS, "httpapi")
        base = c.check_http_url(settings.url.rstrip("/") if settings.url else HOSTS[region], "url")
        self.url = base + ENDPOINTS[endpoint]
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        self._headers = {"Content-Type": "application/json", "Accept": "*/*", "User-Agent": USER_AGENT}

    def __repr__(self) -> str:  # never show the key
        return f"AmplitudeDestination(name={self.name!r}, url={self.url!r})"

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL) is not privacy.Share.NONE

    def amplitude_event(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        share = privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL)
        if share is privacy.Share.NONE:
            raise RenderError("not sent: the analytics consent this destination requires is not granted")
        moment = _packing.event_time(event, now)
        shown = event if share is privacy.Share.ALL else privacy.anonymised(event)
        value, cur = c.amount_and_currency(event)
        revenue_type, sign = _REVENUE.get(canonical, (None, 1))
        ip = c.text(shown, "context.ip")
        properties = {
            "order_id": c.text(event, "order.id"),
            "value": value,
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
            "event_id": _dedup.event_id(event),
            "source_provider": c.text(event, "source.provider"),
        }
        payload: dict[str, Any] = {
            "event_type": name,
            "user_id": c.text(shown, "customer.external_id") or c.text(shown, "customer.id"),
            "device_id": c.text(shown, "context.visitor_id") or _dedup.key_uuid(event),
            "time": int(moment * 1000),
            "insert_id": _dedup.key_uuid(event),
            "revenue": (value * sign) if (revenue_type and value is not None) else None,
            "revenueType": revenue_type if (revenue_type and value is not None) else None,
            "currency": cur if value is not None else None,
            "ip": privacy.ip_address(ip) if ip else None,
            "event_properties": properties,
        }
        if value is not None and cur is None:
            raise RenderError("Amplitude needs a currency with revenue (order.currency / subscription.currency)")
        rendered: dict[str, Any] = c.compact(payload)
        return rendered

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        now = self.clock.now()
        rendered: list[dict[str, Any]] = []

        def encode(event: Mapping[str, Any]) -> bytes:
            item = self.amplitude_event(event, now)
            rendered.append(item)
            return c.json_bytes(item)

        head = b'{"api_key":' + c.json_bytes(self._api_key) + b',"events":['
        parts = _packing.pack(
            events,
            encode,
            platform="Amplitude",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES,
            overhead=len(head) + 40,  # ],"options":{"min_id_length":N}}
        )
        ids = [len(item["user_id"]) for item in rendered[: len(parts)] if "user_id" in item]
        tail = b"]}"
        if ids and min(ids) < MIN_ID_LENGTH:
            tail = b'],"options":{"min_id_length":' + str(min(ids)).encode() + b"}}"
        body = head + b",".join(parts) + tail
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        answer = c.json_object(body) or {}
        if 200 <= status < 300:
            ingested = answer.get("events_ingested")
            return Outcome(
                Verdict.DELIVERED, f"HTTP {status}" + (f" ({ingested} ingested)" if ingested is not None else "")
            )
        if status == 400:
            return invalid_events(answer, body)
        if status == 429:
            counts = {
                key: len(answer[key])
                for key in ("throttled_users", "throttled_devices")
                if isinstance(answer.get(key), Mapping)
            }
            detail = ", ".join(f"{n} {key.removeprefix('throttled_')}" for key, n in counts.items())
            return Outcome(
                Verdict.RETRY,
                "HTTP 429 throttled: more than 30 events/s for one user or device" + (f" ({detail})" if detail else ""),
                retry_after=THROTTLE_SECONDS,
            )
        return c.classify_with(
            status,
            body,
            permanent={
                403: "forbidden (Amplitude's firewall refused the request)",
                413: "payload too large: Amplitude takes < 1 MB and < 2,000 events per request",
            },
            transient={
                500: "server error: the events may have been accepted; resent with the same insert_id",
                502: "bad gateway: the events may have been accepted; resent with the same insert_id",
                503: "service unavailable",
                504: "gateway timeout: the events may have been accepted; resent with the same insert_id",
            },
        )


def invalid_events(answer: Mapping[str, Any], body: bytes) -> Outcome:
    """A 400: the events it names by index are dead; Amplitude took none of the request, so the rest retry."""
    per_event: dict[int, Outcome] = {}
    for key in ("events_with_invalid_fields", "events_with_missing_fields"):
        fields = answer.get(key)
        if not isinstance(fields, Mapping):
            continue
        for field, indices in fields.items():
            for index in indices if isinstance(indices, list) else []:
                if isinstance(index, int) and index not in per_event:
                    per_event[index] = Outcome(Verdict.DEAD, f"HTTP 400 Amplitude refused this event: {key} {field}")
    silenced = answer.get("silenced_events")
    for index in silenced if isinstance(silenced, list) else []:
        if isinstance(index, int):
            per_event.setdefault(index, Outcome(Verdict.DEAD, "HTTP 400 Amplitude refused this event: silenced device"))
    if not per_event:
        return c.with_body(Outcome(Verdict.DEAD, "HTTP 400 bad request"), body)
    return Outcome(
        Verdict.RETRY, f"HTTP 400: {len(per_event)} event(s) refused, the others resent", per_event=per_event
    )


DESTINATION = AmplitudeDestination
