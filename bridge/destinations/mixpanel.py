"""Mixpanel Ingestion API `/import` (server-side; never `/track`, which is for browsers and the last 5 days only).

`POST {url}/import?strict=1` (`region: eu` → api-eu.mixpanel.com, `in` → api-in.mixpanel.com), Basic auth with
the project's API secret (or a service account `username:secret` plus `?project_id=`), JSON array of
`{event, properties: {time, distinct_id, $insert_id, token, ip, …}}`, ≤ 2,000 events and ≤ 10 MB.

`time` in milliseconds; `$insert_id` a UUID of the dedup key (36 characters of `[0-9a-f-]`, as Mixpanel demands:
ids with `:` are refused); `distinct_id` the customer id, or the empty string ("not a user") for an event
without one or sent anonymously; `ip` the customer's IP, else "0" so Mixpanel does not place every customer at
the bridge's server. Consent (`consent:` option, signal `analytics`): respect (default) sends a denied event
with no customer id or IP; require sends only with consent granted.

`strict=1` makes Mixpanel validate every event; a 400 with `failed_records` is a partial success (the other
events were imported): those events end `dead` with Mixpanel's message, the rest `delivered`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from bridge import privacy
from bridge.destinations import _common as c
from bridge.destinations import _dedup, _packing
from bridge.destinations.base import (
    USER_AGENT,
    Destination,
    DestinationSettings,
    HttpRequest,
    OptionError,
    Outcome,
    Verdict,
)
from bridge.errors import RenderError

HOSTS = {"us": "https://api.mixpanel.com", "eu": "https://api-eu.mixpanel.com", "in": "https://api-in.mixpanel.com"}
MAX_EVENTS = 2000
MAX_BODY_BYTES = 10_000_000
MAX_EVENT_BYTES = 1_000_000
_REVENUE_EVENTS = ("purchase", "subscription_renewed")


class MixpanelDestination(Destination):
    type = "mixpanel"
    options: ClassVar[Mapping[str, str]] = {
        "project_token": "the project token (Project settings → Access keys); required",
        "api_secret": "the project's API secret, or a service account's secret (with service_account); required, "
        "from ${ENV}",
        "service_account": "service account username (Organization settings → Service accounts); needs project_id",
        "project_id": "the numeric project id (with service_account)",
        "region": "us (default), eu or in; ignored when url is set",
        "consent": "respect (default) | require | ignore: how analytics consent gates personal data",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "Purchase",
        "refund": "Refund",
    }
    sends_custom_names = True
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self._token = c.option_text(options, "project_token", required=True)
        secret = c.option_text(options, "api_secret", required=True)
        account = c.option_text(options, "service_account")
        self.project_id = c.option_text(options, "project_id")
        if account and not self.project_id.isdigit():
            raise OptionError("project_id", "a service account needs the numeric project_id")
        region = c.option_choice(options, "region", HOSTS, "us")
        base = c.check_http_url(settings.url.rstrip("/") if settings.url else HOSTS[region], "url")
        query = {"strict": "1", **({"project_id": self.project_id} if self.project_id else {})}
        self.url = f"{base}/import?{urlencode(query)}"
        basic = base64.b64encode(f"{account}:{secret}".encode() if account else f"{secret}:".encode()).decode()
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        self._headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:  # never show the secret
        return f"MixpanelDestination(name={self.name!r}, url={self.url!r})"

    def destination_event_name(self, canonical_name: str) -> str | None:
        name = self.names.get(canonical_name)
        return name if name is not None else _packing.title(canonical_name)

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL) is not privacy.Share.NONE

    def mixpanel_event(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        share = privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL)
        if share is privacy.Share.NONE:
            raise RenderError("not sent: the analytics consent this destination requires is not granted")
        moment = _packing.event_time(event, now)
        shown = event if share is privacy.Share.ALL else privacy.anonymised(event)
        value, cur = c.amount_and_currency(event)
        ip = c.text(shown, "context.ip")
        properties: dict[str, Any] = {
            "time": int(moment * 1000),
            "distinct_id": c.text(shown, "customer.external_id") or c.text(shown, "customer.id") or "",
            "$insert_id": _dedup.key_uuid(event),
            "token": self._token,
            "ip": privacy.ip_address(ip) if ip else "0",
            "amount": value,
            "revenue": value if canonical in _REVENUE_EVENTS else None,
            "currency": cur,
            "order_id": c.text(event, "order.id"),
            "coupon": c.text(event, "order.coupon"),
            "subscription_id": c.text(event, "subscription.id"),
            "plan": c.text(event, "subscription.plan"),
            "interval": c.text(event, "subscription.interval"),
            "cancel_reason": c.text(event, "subscription.cancel_reason"),
            "item_count": len(c.items(event)) or None,
            "$current_url": c.text(shown, "context.page_url"),
            "utm_source": c.text(event, "context.utm_source"),
            "utm_medium": c.text(event, "context.utm_medium"),
            "utm_campaign": c.text(event, "context.utm_campaign"),
            "event_id": _dedup.event_id(event),
            "source_provider": c.text(event, "source.provider"),
        }
        properties["ip"] = properties["ip"] or "0"
        rendered = {key: value for key, value in properties.items() if value is not None}
        return {"event": name, "properties": rendered}

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        now = self.clock.now()
        parts = _packing.pack(
            events,
            lambda event: c.json_bytes(self.mixpanel_event(event, now)),
            platform="Mixpanel",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES,
            overhead=2,
            max_event_bytes=MAX_EVENT_BYTES,
        )
        body = b"[" + b",".join(parts) + b"]"
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        answer = c.json_object(body)
        failed = answer.get("failed_records") if answer else None
        if status == 400 and isinstance(failed, list) and failed:
            return partial(status, answer or {}, failed)
        if 200 <= status < 300:
            imported = answer.get("num_records_imported") if answer else None
            return Outcome(
                Verdict.DELIVERED, f"HTTP {status}" + (f" ({imported} imported)" if imported is not None else "")
            )
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: Mixpanel refused the batch (never retried, as Mixpanel asks)",
                401: "unauthorized: check api_secret (and service_account / project_id)",
                403: "forbidden: the credential may not import into this project",
                413: "payload too large: Mixpanel takes 2,000 events and 10 MB per request",
            },
            transient={429: "rate limited (Mixpanel: back off from 2 s to 60 s)"},
        )


def partial(status: int, answer: Mapping[str, Any], failed: list[Any]) -> Outcome:
    """A 400 that imported the valid events: those are delivered, the failed records dead with their message."""
    per_event: dict[int, Outcome] = {}
    for record in failed:
        if not isinstance(record, Mapping) or not isinstance(record.get("index"), int):
            continue
        message = f"{record.get('field') or 'event'}: {str(record.get('message') or '')[:200]}"
        per_event[record["index"]] = Outcome(Verdict.DEAD, f"HTTP {status} Mixpanel refused this event: {message}")
    if not per_event:
        return Outcome(Verdict.DEAD, f"HTTP {status}: {str(answer.get('error') or '')[:300]}")
    imported = answer.get("num_records_imported")
    return Outcome(Verdict.DELIVERED, f"HTTP {status} partial: {imported} imported", per_event=per_event)


DESTINATION = MixpanelDestination
