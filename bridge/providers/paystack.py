"""Paystack: `x-paystack-signature: hex(HMAC-SHA512(secret API key, raw body))`, no timestamp.

The key is the integration's secret API key (`sk_live_…` / `sk_test_…`), as UTF-8. Paystack's own Node snippet
hashes `JSON.stringify(req.body)` (a re-serialisation); the raw bytes are what is signed and what is checked
here. The body is one event `{"event": "charge.success", "data": {…}}` with no event id, and one object can
legitimately produce several events of one type (`invoice.update`), so the dedup key is
`<event>:sha256:<first 32 hex of the body's SHA-256>`: Paystack's retries (the same body) collapse, distinct
events never do. Type: `event`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import PayloadError
from bridge.providers.base import InboundEvent, Provider, load_json, require_string
from bridge.providers.forms import check_digest, digest_header

HEADER = "x-paystack-signature"


class PaystackProvider(Provider):
    type = "paystack"
    stored_headers = (HEADER,)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = digest_header(headers, HEADER, encoding="hex", length=128)
        check_digest(received, self.secrets, lambda key: hmac.new(key, body, hashlib.sha512).hexdigest(), header=HEADER)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            raise PayloadError("a Paystack event must be a JSON object with an event name and a data object")
        name = require_string(event.get("event"), "event")
        return [InboundEvent(f"{name}:sha256:{hashlib.sha256(body).hexdigest()[:32]}", name, event)]


PROVIDER = PaystackProvider
