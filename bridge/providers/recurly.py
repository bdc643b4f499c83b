"""Recurly (JSON webhook endpoints): `recurly-signature: <unix MILLISECONDS>,<hex>[,<hex>…]`, HMAC-SHA256 over
`f"{ts_ms}.{body}"` keyed with the endpoint's secret. Valid when any listed signature matches any configured
secret. Default tolerance 300 s in both directions (Recurly's Ruby client checks the absolute difference).
The header is one strict list (`params.split_list`: no padding, no empty element) whose first element is the
millisecond timestamp, a plain integer: the Ruby client signs over that text but checks `to_i` of it, so
anything but canonical digits is refused.
XML webhook endpoints are unsigned and not supported.

JSON webhooks are thin: `{id, object_type, site_id, event_type, event_time, <object identifiers>}`; the
full resource has to be fetched from Recurly's API. Event type: `f"{object_type}.{event_type}"`
(`account.created`). Dedup key: `f"{type}:{id}@{event_time}"`, stable across Recurly's retries and distinct
for two events about the same object.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    Provider,
    any_digest_matches,
    check_timestamp,
    load_json,
    require_header,
    require_string,
)
from bridge.providers.params import MILLISECONDS_DIGITS, integer, split_list


class RecurlyProvider(Provider):
    type = "recurly"
    default_tolerance = 300.0
    stored_headers = ("recurly-signature",)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = require_header(headers, "recurly-signature")
        timestamp, *received = split_list(header, header="recurly-signature", separator=",")
        milliseconds = integer(timestamp, "recurly-signature timestamp", max_digits=MILLISECONDS_DIGITS)
        if not received:
            raise SignatureError("recurly-signature carries no signature")
        message = f"{timestamp}.".encode() + body
        expected = [hmac.new(s.encode(), message, hashlib.sha256).hexdigest() for s in self.secrets]
        if not any_digest_matches(expected, received):
            raise SignatureError("no recurly-signature signature matches a configured secret")
        check_timestamp(milliseconds / 1000, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a Recurly webhook must be a JSON object")
        object_type = require_string(event.get("object_type"), "object_type")
        event_type = f"{object_type}.{require_string(event.get('event_type'), 'event_type')}"
        event_id = require_string(event.get("id"), "id")
        event_time = event.get("event_time")
        key = f"{event_type}:{event_id}@{event_time}" if isinstance(event_time, str) else f"{event_type}:{event_id}"
        return [InboundEvent(event_id=key, event_type=event_type, document=event)]


PROVIDER = RecurlyProvider
