"""Data Activation platform: server-side events (seed: data-activation-server-side-events.txt).

`POST {url}` (the ingestion endpoint given at onboarding) with `Authorization: Bearer <api_key>` and
`Idempotency-Key: <event id>`. Body: `event` (name), `timestamp` (ISO 8601), a customer identifier
(`customer_id`, plus `email_hash` = SHA-256 of the trimmed, lower-cased email when known), `event_id` (our id,
the doc's "idempotency key or event ID" against duplicates from retries) and `properties` (the doc's key
properties per event, money as JSON numbers, then the event's own `properties`).

The payload is validated before sending, as the doc asks: a missing name, timestamp, customer identifier or
key property is a RenderError (permanent), not a 400 later. 401/400 are permanent; 429 and 5xx are retried.
No rate limit is documented, so none is set by default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from bridge.destinations import _common as c
from bridge.destinations.base import (
    USER_AGENT,
    Destination,
    DestinationSettings,
    HttpRequest,
    Outcome,
)
from bridge.errors import RenderError

#: key properties the doc lists per event; each must be present before the event is sent
REQUIRED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "purchase_completed": ("order_id", "order_value", "currency"),
    "subscription_started": ("plan", "start_date"),
    "subscription_canceled": ("cancel_date",),
    "contract_renewed": ("new_end_date",),
    "consent_updated": ("consent_type", "status"),
}


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _order(event: Mapping[str, Any]) -> dict[str, Any]:
    value, cur = c.amount_and_currency(event)
    skus = [c.text(item, "product_id") or c.text(item, "sku") for item in c.items(event)]
    return {
        "order_id": c.text(event, "order.id"),
        "order_number": c.text(event, "order.number"),
        "order_value": value,
        "currency": cur,
        "product_ids": [sku for sku in skus if sku],
        "coupon": c.text(event, "order.coupon"),
    }


def _subscription(event: Mapping[str, Any]) -> dict[str, Any]:
    value, cur = c.amount_and_currency(event)
    return {
        "subscription_id": c.text(event, "subscription.id"),
        "plan": c.text(event, "subscription.plan"),
        "interval": c.text(event, "subscription.interval"),
        "status": c.text(event, "subscription.status"),
        "amount": value,
        "currency": cur,
    }


def _started(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_subscription(event),
        "start_date": c.text(event, "subscription.started_at") or c.text(event, "occurred_at"),
        "trial_end": c.text(event, "subscription.trial_end"),
    }


def _canceled(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_subscription(event),
        "cancel_date": c.text(event, "subscription.canceled_at") or c.text(event, "occurred_at"),
        "reason": c.text(event, "subscription.cancel_reason"),
    }


def _renewed(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_subscription(event),
        "new_end_date": c.text(event, "subscription.contract_end_date")
        or c.text(event, "subscription.current_period_end"),
    }


def _consent(event: Mapping[str, Any]) -> dict[str, Any]:
    known = {
        kind: "granted" if value else "denied"
        for kind in ("marketing", "analytics")
        if isinstance(value := c.get(event, f"consent.{kind}"), bool)
    }
    first = next(iter(known), None)
    return {
        "consent_type": first,
        "status": known[first] if first else None,
        "consents": known,
    }


def _generic(event: Mapping[str, Any]) -> dict[str, Any]:
    if c.get(event, "order") is not None:
        return _order(event)
    return _subscription(event)


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "purchase_completed": _order,
    "subscription_started": _started,
    "subscription_canceled": _canceled,
    "contract_renewed": _renewed,
    "consent_updated": _consent,
}


def _is_iso8601(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


class DataActivationDestination(Destination):
    type = "data_activation"
    options: ClassVar[Mapping[str, str]] = {
        "api_key": "API credentials from onboarding, sent as `Authorization: Bearer`; required (from ${ENV})",
        "email_hash": "also send email_hash (SHA-256 of the normalised email) as an identifier; default true",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "purchase_completed",
        "subscription_started": "subscription_started",
        "subscription_canceled": "subscription_canceled",
        "subscription_renewed": "contract_renewed",
        "contract_updated": "contract_renewed",
        "consent_updated": "consent_updated",
    }

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        c.check_unknown_options(settings.options, self.options, self.type)
        self.url = c.check_http_url(settings.url, "url")
        self._api_key = c.option_text(settings.options, "api_key", required=True)
        self.send_email_hash = c.option_bool(settings.options, "email_hash", True)

    def __repr__(self) -> str:
        return f"DataActivationDestination(name={self.name!r}, url={self.url!r})"

    def payload(self, event: Mapping[str, Any]) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        ident = c.event_id(event)
        timestamp = c.text(event, "occurred_at")
        if not timestamp or not _is_iso8601(timestamp):
            raise RenderError(f"timestamp: {timestamp!r} is not an ISO 8601 time with a zone")
        email = c.text(event, "customer.email")
        customer_id = c.text(event, "customer.id")
        hashed = email_hash(email) if email and self.send_email_hash else None
        if not customer_id and not hashed:
            raise RenderError("a customer identifier is required (customer.id or customer.email)")
        properties: dict[str, Any] = c.compact(_BUILDERS.get(name, _generic)(event))
        missing = [key for key in REQUIRED_PROPERTIES.get(name, ()) if key not in properties]
        if missing:
            raise RenderError(f"{name} needs properties {', '.join(missing)}; the event has no value for them")
        extra = c.get(event, "properties")
        if isinstance(extra, Mapping):
            properties.update({key: value for key, value in extra.items() if key not in properties})
        document = {
            "event": name,
            "timestamp": timestamp,
            "customer_id": customer_id,
            "email_hash": hashed,
            "event_id": ident,
            "properties": properties,
        }
        rendered: dict[str, Any] = c.compact(document)
        return rendered

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        if len(events) != 1:
            raise RenderError(f"data_activation takes one event per request, got {len(events)}")
        document = self.payload(events[0])
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": document["event_id"],
            "User-Agent": USER_AGENT,
        }
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, headers), c.json_bytes(document))

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: malformed payload (check required fields and format)",
                401: "unauthorized: invalid or missing credentials (check the api_key option)",
                403: "forbidden: the credentials may not send events",
            },
            transient={429: "rate limited"},
        )


DESTINATION = DataActivationDestination
