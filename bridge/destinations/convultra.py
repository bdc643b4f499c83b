"""Convultra Server API (seed: convultra-server-api.txt).

One event: `POST {url}` (config `url` is the full `.../v1/track` endpoint); several: `POST {url}/batch` with
`{"events": [...]}` (≤ 100 events, ≤ 1 MB). `Authorization: Bearer <api_key>`; never `?api_key=` (query
strings end up in access logs). `properties.value` is a JSON number written from the decimal string with its
exact digits. Dedup: `properties.order_id` is Convultra's transaction id (24 h dedup on purchases); our stable
canonical id goes in `properties.event_id` (for events without an order it is also the order_id).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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

_BATCH_PREFIX = b'{"events":['
_BATCH_SUFFIX = b"]}"
MAX_BODY_BYTES = 1_000_000  # "Max request size: 1 MB"


def e164(phone: str | None) -> str | None:
    """`phone` in E.164 (`+` and 7–15 digits) or None when it cannot be written so without guessing a country."""
    if not phone:
        return None
    cleaned = re.sub(r"[\s().\-/]", "", phone)
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    return cleaned if re.fullmatch(r"\+[1-9][0-9]{6,14}", cleaned) else None


class ConvultraDestination(Destination):
    type = "convultra"
    options: ClassVar[Mapping[str, str]] = {
        "api_key": "Server API key, sent as `Authorization: Bearer`; required (from ${ENV})",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "purchase",
        "refund": "refund",
        "subscription_started": "subscription",
        "subscription_renewed": "subscription_renewed",
        "subscription_canceled": "subscription_canceled",
        "trial_started": "signup",
    }
    default_rate_limits = (RateLimit(1000, 60.0),)
    max_batch = 100
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        c.check_unknown_options(settings.options, self.options, self.type)
        self._api_key = c.option_text(settings.options, "api_key", required=True)
        self.url = c.check_http_url(settings.url.rstrip("/"), "url")
        if "api_key=" in self.url:
            raise OptionError("url", "do not put the API key in the URL; use the api_key option (Bearer header)")
        self.batch_url = self.url + "/batch"
        self._headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:  # never show the key
        return f"ConvultraDestination(name={self.name!r}, url={self.url!r})"

    # -- rendering -------------------------------------------------------------------------------------

    def payload(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The Convultra event object for one canonical event (also the element of a batch)."""
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        ident = c.event_id(event)
        value, cur = c.amount_and_currency(event)
        order_id = c.text(event, "order.id") or ident
        email = c.text(event, "customer.email")
        payload = {
            "event_type": name,
            "timestamp": c.text(event, "occurred_at"),
            "session_id": c.text(event, "context.session_id"),
            "user_id": c.text(event, "customer.id"),
            "properties": {
                "order_id": order_id,
                "event_id": ident,
                "value": value,
                "currency": cur,
                "items": [self._item(item, index) for index, item in enumerate(c.items(event))],
                "coupon": c.text(event, "order.coupon"),
                "subscription_id": c.text(event, "subscription.id"),
                "plan": c.text(event, "subscription.plan"),
            },
            "user_data": {
                "email": email.lower() if email else None,
                "phone": e164(c.text(event, "customer.phone")),
                "first_name": c.text(event, "customer.first_name"),
                "last_name": c.text(event, "customer.last_name"),
                "city": c.text(event, "customer.address.city"),
                "state": c.text(event, "customer.address.region_code") or c.text(event, "customer.address.region"),
                "postal_code": c.text(event, "customer.address.postal_code"),
                "country": c.text(event, "customer.address.country_code"),
            },
            "context": {
                key: c.text(event, f"context.{key}")
                for key in ("ip", "user_agent", "page_url", "referrer", "gclid", "fbclid", "msclkid")
            },
        }
        rendered: dict[str, Any] = c.compact(payload)
        return rendered

    @staticmethod
    def _item(item: Mapping[str, Any], index: int) -> dict[str, Any]:
        return {
            "id": c.text(item, "sku") or c.text(item, "product_id") or c.text(item, "variant_id"),
            "product_id": c.text(item, "product_id"),
            "variant_id": c.text(item, "variant_id"),
            "name": c.text(item, "name"),
            "brand": c.text(item, "brand"),
            "category": c.text(item, "category"),
            "variant": c.text(item, "variant"),
            "price": c.money(item.get("price"), f"order.items[{index}].price"),
            "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else None,
        }

    def encoded(self, event: Mapping[str, Any]) -> bytes:
        """One event's JSON as it appears in a request body."""
        return c.json_bytes(self.payload(event))

    def partition(self, events: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
        """Split `events` (in order) into groups that each fit one request: ≤ max_batch events and a body of
        ≤ max_body_bytes. An event too large on its own gets a group of its own (its render raises)."""
        groups: list[list[Mapping[str, Any]]] = []
        current: list[Mapping[str, Any]] = []
        size = len(_BATCH_PREFIX) + len(_BATCH_SUFFIX)
        for event in events:
            try:
                length = len(self.encoded(event))
            except RenderError:
                length = 0  # goes out in a group and fails there, with its reason
            extra = length + (1 if current else 0)
            if current and (len(current) >= self.max_batch or size + extra > MAX_BODY_BYTES):
                groups.append(current)
                current, size, extra = [], len(_BATCH_PREFIX) + len(_BATCH_SUFFIX), length
            current.append(event)
            size += extra
        if current:
            groups.append(current)
        return groups

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        if not events:
            raise RenderError("nothing to render")
        if len(events) == 1:
            body = self.encoded(events[0])
            if len(body) > MAX_BODY_BYTES:
                raise RenderError(f"event is {len(body)} bytes; Convultra takes at most {MAX_BODY_BYTES}")
            return HttpRequest("POST", self.url, self._request_headers(), body)
        parts = [self.encoded(event) for event in events]
        size = len(_BATCH_PREFIX) + len(_BATCH_SUFFIX)
        fits = 0
        for index, part in enumerate(parts):
            size += len(part) + (1 if index else 0)
            if size <= MAX_BODY_BYTES and index < self.max_batch:
                fits = index + 1
            else:
                break
        if fits < len(parts):
            why = (
                f"{len(parts)} events; a Convultra batch takes at most {self.max_batch}"
                if len(parts) > self.max_batch and size <= MAX_BODY_BYTES
                else f"batch body is over Convultra's {MAX_BODY_BYTES} byte limit"
            )
            raise c.BatchTooLarge(f"{why} (the first {fits} fit)", max(fits, 1))
        body = _BATCH_PREFIX + b",".join(parts) + _BATCH_SUFFIX
        return HttpRequest("POST", self.batch_url, self._request_headers(), body)

    def _request_headers(self) -> dict[str, str]:
        return c.merge_headers(self.settings.headers, self._headers)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if 200 <= status < 300:
            answer = c.json_object(body)
            if answer is not None and answer.get("success") is False:
                return Outcome(Verdict.DEAD, f"HTTP {status} but success=false: {answer.get('error')!s}")
            tracked = answer.get("event_id") if answer else None
            return Outcome(Verdict.DELIVERED, f"HTTP {status}" + (f" (event_id {tracked})" if tracked else ""))
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: the event was rejected as malformed (see the error)",
                401: "unauthorized: the api_key option is missing, wrong or revoked",
                403: "forbidden: the api_key may not send to this endpoint",
                404: "not found: check the destination url (…/v1/track)",
                413: "payload too large: the batch is over Convultra's 1 MB limit",
                422: "unprocessable event",
            },
            transient={429: "rate limited (1000 req/min)"},
        )


DESTINATION = ConvultraDestination
