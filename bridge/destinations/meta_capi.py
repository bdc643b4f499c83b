"""Meta (Facebook) Conversions API.

`POST {url}/{api_version}/{pixel_id}/events`, `Authorization: Bearer <access_token>` (the token never goes in the
URL), JSON `{"data": [event, …], "test_event_code"?}` with ≤ 1,000 events. Meta rejects the whole request when
one event is invalid, so every event is checked here first and a bad one is sent on its own (and ends `dead`
with its reason) instead of sinking the batch.

Per event: `event_name` (table below), `event_time` in Unix **seconds**, at most 7 days old (62 for
`physical_store`; older → `dead`, Meta would refuse the whole request), `event_id` = the canonical id (Meta
dedups it with the pixel's eventID per event name), `action_source`, `user_data` normalised and hashed by Meta's
rules (bridge.privacy.META: em ph fn ln ct st zp country external_id hashed; client_ip_address
client_user_agent fbp fbc never), `custom_data` with `value` a JSON number and an ISO `currency` (required for
Purchase).

Consent (`consent:` option, signal `ad_user_data`): respect (default) leaves every
person identifier out when denied (the user agent alone stays); an event left with no customer information
parameter at all (a refund webhook without customer data) is not routed to Meta, which would refuse it;
require sends only with consent granted; ignore always sends everything. `ad_personalization` denied sets
`opt_out: true` (attribution only) unless the policy is ignore.
"""

from __future__ import annotations

import re
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
    OptionError,
    Outcome,
    Verdict,
)
from bridge.errors import RenderError

DEFAULT_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
MAX_EVENTS = 1000
#: Meta documents no byte limit for /events; 1 MB keeps a full batch of ordinary events in one request (n/v)
MAX_BODY_BYTES = 1_000_000
MAX_AGE_SECONDS = 7 * 86400
MAX_AGE_PHYSICAL_STORE = 62 * 86400
ACTION_SOURCES = (
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
)
#: canonical events that happen without the customer acting (Meta's own example: a subscription renewal)
_SYSTEM_GENERATED = {"subscription_renewed", "payment_failed"}
#: Graph API error codes: throttling / temporary (retry) and permanent ones (RudderStack's table, Meta docs)
_RETRY_CODES = {
    1: "unknown error",
    2: "service temporarily unavailable",
    4: "application request limit reached",
    17: "user request limit reached",
    341: "application limit reached",
    368: "temporarily blocked",
    613: "rate limit exceeded",
    5000: "unknown error",
    80003: "custom audience rate limit",
}
_DEAD_CODES = {
    100: "invalid parameter",
    190: "access token invalid or expired",
    200: "permission missing",
    10: "permission denied",
    803: "unknown pixel",
}


class MetaCapiDestination(Destination):
    type = "meta_capi"
    options: ClassVar[Mapping[str, str]] = {
        "pixel_id": "the dataset / pixel id (Events Manager → Data sources); required",
        "access_token": "Conversions API access token (Events Manager → Settings); required, from ${ENV}",
        "api_version": f"Graph API version (default {DEFAULT_API_VERSION})",
        "test_event_code": "send as test events (Events Manager → Test events); they still count",
        "action_source": "auto (default: website with a user agent and page URL, else system_generated for "
        "renewals, else other) or one of " + ", ".join(ACTION_SOURCES),
        "event_source_url": "page URL for website events that carry none (e.g. the thank-you page)",
        "limited_data_use": "true: data_processing_options [LDU] with country/state geolocated by Meta",
        "consent": "respect (default) | require | ignore: how ad_user_data consent gates user data",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "Purchase",
        "subscription_started": "Subscribe",
        "trial_started": "StartTrial",
        "refund": "Refund",
        "subscription_renewed": "SubscriptionRenewed",
        "subscription_canceled": "SubscriptionCanceled",
    }
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.pixel_id = c.option_text(options, "pixel_id", required=True)
        if not self.pixel_id.isdigit():
            raise OptionError("pixel_id", f"pixel_id is a number, got {self.pixel_id!r}")
        self._token = c.option_text(options, "access_token", required=True)
        self.api_version = c.option_text(options, "api_version", default=DEFAULT_API_VERSION)
        if not re.fullmatch(r"v\d+\.\d+", self.api_version):
            raise OptionError("api_version", f"api_version looks like v25.0, got {self.api_version!r}")
        self.test_event_code = c.option_text(options, "test_event_code") or None
        self.action_source = c.option_choice(options, "action_source", ("auto", *ACTION_SOURCES), "auto")
        self.default_source_url = c.option_text(options, "event_source_url") or None
        if self.default_source_url:
            c.check_http_url(self.default_source_url, "event_source_url")
        self.limited_data_use = c.option_bool(options, "limited_data_use")
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        base = c.check_http_url(settings.url.rstrip("/") if settings.url else DEFAULT_URL, "url")
        if "access_token=" in base:
            raise OptionError("url", "do not put the access token in the URL; use the access_token option")
        self.url = f"{base}/{self.api_version}/{self.pixel_id}/events"
        self._headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:  # never show the token
        return f"MetaCapiDestination(name={self.name!r}, pixel_id={self.pixel_id!r}, url={self.url!r})"

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        share = privacy.sharing(event, self.consent, privacy.AD_SIGNAL)
        if share is privacy.Share.NONE:
            return False
        # Meta takes no event without a customer information parameter: not routed rather than a dead letter
        return bool(self.user_data(event, people=share is privacy.Share.ALL))

    def user_data(self, event: Mapping[str, Any], *, people: bool) -> dict[str, Any]:
        fields: dict[str, Any] = privacy.apply(privacy.META, event, people=people)
        if people:
            if "fbc" not in fields:
                fbclid = c.text(event, "context.fbclid")
                clean = privacy.click_id(fbclid) if fbclid else None
                if clean:  # Meta: build fbc from the fbclid, with the time it was seen
                    fields["fbc"] = f"fb.1.{int(_packing.occurred_at(event) * 1000)}.{clean}"
            subscription = c.text(event, "subscription.id")
            if subscription:
                fields["subscription_id"] = subscription
        for key in ("em", "ph", "external_id"):
            if key in fields:
                fields[key] = [fields[key]]
        return fields

    def _action_source(self, event: Mapping[str, Any], user_data: Mapping[str, Any], url: str | None) -> str:
        if self.action_source != "auto":
            return self.action_source
        if "client_user_agent" in user_data and url:
            return "website"
        if c.event_name(event) in _SYSTEM_GENERATED:
            return "system_generated"
        return "other"

    def meta_event(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        share = privacy.sharing(event, self.consent, privacy.AD_SIGNAL)
        if share is privacy.Share.NONE:
            raise RenderError("not sent: the ad_user_data consent this destination requires is not granted")
        user_data = self.user_data(event, people=share is privacy.Share.ALL)
        if not user_data:
            raise RenderError("Meta needs at least one customer information parameter (email, phone, ip, …)")
        url = c.text(event, "context.page_url") or self.default_source_url
        action_source = self._action_source(event, user_data, url)
        if action_source == "website" and ("client_user_agent" not in user_data or not url):
            raise RenderError("website events need the user agent and the page URL (context.user_agent, page_url)")
        max_age = MAX_AGE_PHYSICAL_STORE if action_source == "physical_store" else MAX_AGE_SECONDS
        moment = _packing.event_time(event, now, max_age=max_age, platform="Meta")
        value, cur = c.amount_and_currency(event)
        if name == "Purchase" and (value is None or cur is None):
            raise RenderError("a Meta Purchase needs value and currency (order.total and order.currency)")
        if value is not None and cur is None:
            raise RenderError("value without a currency (order.currency / subscription.currency)")
        contents = [
            {
                "id": c.text(item, "sku") or c.text(item, "product_id") or c.text(item, "variant_id"),
                "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else None,
                "item_price": c.money(item.get("price"), f"order.items[{index}].price"),
            }
            for index, item in enumerate(c.items(event))
        ]
        contents = [entry for entry in contents if entry["id"]]
        custom_data = {
            "currency": cur,
            "value": value,
            "order_id": c.text(event, "order.id") or (None if name != "Purchase" else _dedup.event_id(event)),
            "contents": contents,
            "content_type": "product" if contents else None,
            "num_items": sum(q if isinstance(q := e["quantity"], int) else 1 for e in contents) if contents else None,
        }
        payload: dict[str, Any] = {
            "event_name": name,
            "event_time": int(moment),
            "event_id": _dedup.event_id(event),
            "action_source": action_source,
            "event_source_url": url if action_source == "website" else None,
            "user_data": user_data,
            "custom_data": custom_data,
            "data_processing_options": ["LDU"] if self.limited_data_use else [],
        }
        if self.limited_data_use:
            payload["data_processing_options_country"] = 0
            payload["data_processing_options_state"] = 0
        if self.consent != "ignore" and privacy.consent_state(event, "ad_personalization") == "denied":
            payload["opt_out"] = True
        rendered: dict[str, Any] = c.compact(payload)
        rendered["data_processing_options"] = payload["data_processing_options"]  # [] is meaningful: no LDU
        return rendered

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        now = self.clock.now()
        tail = (
            b"]" + (b',"test_event_code":' + c.json_bytes(self.test_event_code) if self.test_event_code else b"") + b"}"
        )
        head = b'{"data":['
        parts = _packing.pack(
            events,
            lambda event: c.json_bytes(self.meta_event(event, now)),
            platform="Meta",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES,
            overhead=len(head) + len(tail),
        )
        body = head + b",".join(parts) + tail
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        answer = c.json_object(body)
        error = answer.get("error") if answer else None
        if isinstance(error, Mapping):
            return classify_error(status, error)
        if 200 <= status < 300:
            received = answer.get("events_received") if answer else None
            trace = answer.get("fbtrace_id") if answer else None
            detail = f" ({received} events received, fbtrace_id {trace})" if received is not None else ""
            return Outcome(Verdict.DELIVERED, f"HTTP {status}{detail}")
        return c.classify_with(
            status,
            body,
            permanent={401: "unauthorized: check access_token", 403: "forbidden: check access_token's permissions"},
            transient={},
        )


def classify_error(status: int, error: Mapping[str, Any]) -> Outcome:
    """A Graph API `error` object (also inside a 2xx answer) by what it means."""
    code = error.get("code")
    subcode = error.get("error_subcode")
    message = str(error.get("error_user_msg") or error.get("message") or "")[:300]
    detail = (
        f"Meta error {code}"
        + (f"/{subcode}" if subcode else "")
        + f": {message}"
        + (f" (fbtrace_id {error.get('fbtrace_id')})" if error.get("fbtrace_id") else "")
    )
    if error.get("is_transient") is True or code in _RETRY_CODES:
        meaning = _RETRY_CODES.get(code, "transient") if isinstance(code, int) else "transient"
        return Outcome(Verdict.RETRY, f"HTTP {status} {meaning}: {detail}")
    if isinstance(code, int) and code in _DEAD_CODES:
        return Outcome(Verdict.DEAD, f"HTTP {status} {_DEAD_CODES[code]}: {detail}")
    if status >= 500 or status == 429:
        return Outcome(Verdict.RETRY, f"HTTP {status}: {detail}")
    return Outcome(Verdict.DEAD, f"HTTP {status}: {detail}")


DESTINATION = MetaCapiDestination
