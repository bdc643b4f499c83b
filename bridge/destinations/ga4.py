"""Google Analytics 4 Measurement Protocol (web data streams).

`POST {url}/mp/collect?measurement_id=G-…&api_secret=…` (`debug: true`: `/debug/mp/collect`, which validates and
records nothing), JSON `{client_id, user_id?, timestamp_micros, user_data?, consent?, events: [{name,
timestamp_micros, params}]}`. GA4 answers 2xx to almost anything, so everything it documents is checked here
before sending: event names (≤ 40 characters, letters/digits/underscore, not reserved), ≤ 25 scalar params,
text ≤ 100 characters, value a number with an ISO currency, ≤ 25 events and < 130 kB per request, events at
most 72 h old (older → `dead` with that reason, GA4 would drop them silently). One request carries one
client_id/user_id/user_data/consent, so a batch holds only events of one identity.

Ids: `transaction_id` (purchase, refund and whatever config names `purchase`/`refund`) is the order id, by which
GA4 dedups purchases. Consent: the `consent` block carries `ad_user_data`/`ad_personalization` whenever known;
`user_data` (hashed by Google's rules, bridge.privacy.GA4) is sent only with a user_id and when the
`ad_user_data` policy allows; the `analytics` signal decides whether the event goes and with which identity.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

import orjson

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

HOSTS = {"global": "https://www.google-analytics.com", "eu": "https://region1.google-analytics.com"}
MAX_EVENTS = 25
MAX_BODY_BYTES = 130_000 - 1  # "POST body < 130 kB"
MAX_AGE_SECONDS = 72 * 3600
MAX_PARAMS = 25
MAX_TEXT = 100
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
RESERVED_EVENTS = frozenset(
    {
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "adunit_exposure",
        "app_clear_data",
        "app_install",
        "app_update",
        "app_remove",
        "error",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "os_update",
        "screen_view",
        "session_start",
        "user_engagement",
    }
)
RESERVED_PREFIXES = ("_", "google_", "ga_", "firebase_", "gtag.", "notification_")
_TRANSACTIONS = ("purchase", "refund")
_BODY_OVERHEAD = 1024  # request-level fields around the events (client_id, user_data, consent), generously


def check_event_name(name: str) -> str | None:
    """Why `name` cannot be a GA4 event name, or None."""
    if not NAME.fullmatch(name):
        return "GA4 event names are 1-40 letters, digits and underscores, starting with a letter"
    if name in RESERVED_EVENTS or name.startswith(RESERVED_PREFIXES):
        return f"{name!r} is reserved by GA4"
    return None


def derived_client_id(seed: str) -> str:
    """A stable client id in GA's `<digits>.<digits>` form for an event that carries none (server-side
    events), derived from `seed`: recorded by GA4, never joined to a browser session."""
    digest = hashlib.sha256(seed.encode()).digest()
    return f"{int.from_bytes(digest[:4], 'big')}.{int.from_bytes(digest[4:8], 'big')}"


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return value


class Ga4Destination(Destination):
    type = "ga4"
    options: ClassVar[Mapping[str, str]] = {
        "measurement_id": "the web data stream's measurement id (G-…); required",
        "api_secret": "Measurement Protocol API secret of that stream (Admin → Data streams); required, from ${ENV}",
        "region": "global (default) or eu (region1.google-analytics.com); ignored when url is set",
        "debug": "true: send to /debug/mp/collect (validated, not recorded); default false",
        "consent": "respect (default) | require | ignore: how consent gates user data (see docs)",
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
        "contract_updated": "contract_updated",
    }
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.measurement_id = c.option_text(options, "measurement_id", required=True)
        if not re.fullmatch(r"G-[A-Z0-9]{4,20}", self.measurement_id):
            raise OptionError("measurement_id", f"measurement_id must look like G-XXXXXXX, got {self.measurement_id!r}")
        self._api_secret = c.option_text(options, "api_secret", required=True)
        region = c.option_choice(options, "region", HOSTS, "global")
        self.base_url = c.check_http_url(settings.url.rstrip("/") if settings.url else HOSTS[region], "url")
        self.debug = c.option_bool(options, "debug")
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        for canonical, name in self.names.items():
            problem = check_event_name(name)
            if problem:
                raise OptionError("event_names", f"event_names.{canonical}: {problem}")
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}

    def __repr__(self) -> str:  # never show the secret
        return f"Ga4Destination(name={self.name!r}, measurement_id={self.measurement_id!r}, url={self.base_url!r})"

    def collect_url(self, *, debug: bool | None = None) -> str:
        path = "/debug/mp/collect" if (self.debug if debug is None else debug) else "/mp/collect"
        query = urlencode({"measurement_id": self.measurement_id, "api_secret": self._api_secret})
        return f"{self.base_url}{path}?{query}"

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL) is not privacy.Share.NONE

    def identity(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The request-level fields for this event: client_id, user_id, user_data, consent."""
        analytics = privacy.sharing(event, self.consent, privacy.ANALYTICS_SIGNAL)
        if analytics is privacy.Share.NONE:
            raise RenderError("not sent: the analytics consent this destination requires is not granted")
        out: dict[str, Any] = {}
        if analytics is privacy.Share.ALL:
            given = c.text(event, "context.client_id")
            client_id = privacy.ga_client_id(given) if given else None
            user_id = c.text(event, "customer.external_id") or c.text(event, "customer.id")
            out["client_id"] = client_id or derived_client_id(
                f"customer:{user_id}" if user_id else _dedup.dedup_key(event)
            )
            if user_id:
                out["user_id"] = user_id[:256]
                ads = privacy.sharing(event, self.consent, privacy.AD_SIGNAL)
                if ads is privacy.Share.ALL:
                    user_data = self._user_data(event)
                    if user_data:
                        out["user_data"] = user_data
        else:  # analytics denied: counted, not attributable to anyone
            out["client_id"] = derived_client_id(_dedup.dedup_key(event))
        consent = {
            signal: state.upper()
            for signal in ("ad_user_data", "ad_personalization")
            if (state := privacy.consent_state(event, signal)) != "unknown"
        }
        if consent:
            out["consent"] = consent
        return out

    @staticmethod
    def _user_data(event: Mapping[str, Any]) -> dict[str, Any]:
        fields = privacy.apply(privacy.GA4, event)
        user_data: dict[str, Any] = {}
        for key in ("sha256_email_address", "sha256_phone_number"):
            if key in fields:
                user_data[key] = [fields[key]]
        address = {key.split(".", 1)[1]: value for key, value in fields.items() if key.startswith("address.")}
        if address:
            user_data["address"] = [address]
        return user_data

    def ga4_event(self, event: Mapping[str, Any], moment: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        value, cur = c.amount_and_currency(event)
        if value is not None and cur is None:
            raise RenderError("GA4 needs a currency with a value (order.currency / subscription.currency)")
        params: dict[str, Any] = {}
        if name in _TRANSACTIONS:
            params["transaction_id"] = _dedup.transaction_id(event)
        params.update(
            value=value,
            currency=cur,
            tax=c.money(c.get(event, "order.tax"), "order.tax"),
            shipping=c.money(c.get(event, "order.shipping"), "order.shipping"),
            coupon=c.text(event, "order.coupon"),
            subscription_id=c.text(event, "subscription.id"),
            subscription_plan=c.text(event, "subscription.plan"),
            subscription_interval=c.text(event, "subscription.interval"),
            event_id=_dedup.event_id(event),
        )
        params = {key: _scalar(v) for key, v in params.items() if v is not None and v != ""}
        items = [self._item(item, index) for index, item in enumerate(c.items(event))]
        items = [item for item in items if item]
        if items:  # a refund without items is a full refund for GA4; with them, a partial one
            params["items"] = items
        if len(params) > MAX_PARAMS:
            raise RenderError(f"{len(params)} params; GA4 takes at most {MAX_PARAMS} per event")
        return {"name": name, "timestamp_micros": int(moment * 1_000_000), "params": params}

    @staticmethod
    def _item(item: Mapping[str, Any], index: int) -> dict[str, Any]:
        entry = {
            "item_id": c.text(item, "sku") or c.text(item, "product_id") or c.text(item, "variant_id"),
            "item_name": c.text(item, "name"),
            "item_brand": c.text(item, "brand"),
            "item_category": c.text(item, "category"),
            "item_variant": c.text(item, "variant"),
            "price": c.money(item.get("price"), f"order.items[{index}].price"),
            "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else None,
        }
        out = {key: _scalar(value) for key, value in entry.items() if value is not None}
        return out if ("item_id" in out or "item_name" in out) else {}

    def _part(self, event: Mapping[str, Any]) -> bytes:
        moment = _packing.event_time(event, self.clock.now(), max_age=MAX_AGE_SECONDS, platform="GA4")
        return c.json_bytes(self.ga4_event(event, moment))

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        parts = _packing.pack(
            events,
            self._part,
            platform="GA4",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES - _BODY_OVERHEAD,
            overhead=0,
            group=lambda event: orjson.dumps(self.identity(event), option=orjson.OPT_SORT_KEYS),
        )
        identity = self.identity(events[0])
        first_time = orjson.loads(parts[0])["timestamp_micros"]
        document: dict[str, Any] = {**identity, "timestamp_micros": first_time}
        if self.debug:
            document["validation_behavior"] = "ENFORCE_RECOMMENDATIONS"
        head = c.json_bytes(document)[:-1]
        body = head + b',"events":[' + b",".join(parts) + b"]}"
        if len(body) > MAX_BODY_BYTES:
            raise RenderError(f"the request would be {len(body)} bytes; GA4 takes less than 130 kB")
        return HttpRequest("POST", self.collect_url(), c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if 200 <= status < 300:
            answer = c.json_object(body)
            messages = answer.get("validationMessages") if answer else None
            if isinstance(messages, list) and messages:
                return Outcome(
                    Verdict.DEAD, f"HTTP {status} but GA4 validation failed: {describe_validation(messages)}"
                )
            return Outcome(Verdict.DELIVERED, f"HTTP {status}")
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: GA4 refused the request as malformed",
                403: "forbidden: check measurement_id and api_secret",
                404: "not found: check the url (the base URL, without /mp/collect)",
                413: "payload too large: GA4 takes less than 130 kB",
            },
            transient={},
        )


def describe_validation(messages: list[Any]) -> str:
    """GA4 debug `validationMessages` as one line: `fieldPath: description (validationCode)`; …"""
    out = []
    for message in messages[:5]:
        if isinstance(message, Mapping):
            out.append(
                f"{message.get('fieldPath') or '(request)'}: {message.get('description')} "
                f"({message.get('validationCode')})"
            )
    more = f"; and {len(messages) - 5} more" if len(messages) > 5 else ""
    return "; ".join(out) + more


DESTINATION = Ga4Destination
