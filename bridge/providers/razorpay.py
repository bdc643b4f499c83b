"""Razorpay: `X-Razorpay-Signature: hex(HMAC-SHA256(webhook secret, raw body))`, no timestamp.

Dedup key: the `x-razorpay-event-id` header (the same on every retry of one event); when a sender omits it,
the SHA-256 of the body (`sha256:<hex>`). Type: the body's `event` (`payment.captured`, `order.paid`, …).
The event id header is not signed (the body carries no event id): a captured body replayed under a new
`x-razorpay-event-id` is caught by the source's raw-body dedup, not by the signature.
After a secret change Razorpay keeps signing retries of older events with the OLD secret, so keep both
configured until those retries are over (Razorpay retries for 24 h).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from bridge.errors import PayloadError
from bridge.providers.base import (
    InboundEvent,
    Provider,
    check_body_hmac,
    load_json,
    require_header,
    require_string,
)


class RazorpayProvider(Provider):
    type = "razorpay"
    stored_headers = ("x-razorpay-signature", "x-razorpay-event-id")

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = require_header(headers, "x-razorpay-signature")
        check_body_hmac(received, self.secrets, body, header="X-Razorpay-Signature")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a Razorpay event must be a JSON object")
        event_id = headers.get("x-razorpay-event-id", "").strip() or f"sha256:{hashlib.sha256(body).hexdigest()}"
        return [InboundEvent(event_id, require_string(event.get("event"), "event"), event)]


PROVIDER = RazorpayProvider
