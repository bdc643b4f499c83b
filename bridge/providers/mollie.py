"""Mollie next-gen webhooks (beta): `X-Mollie-Signature: hex(HMAC-SHA256(shared secret, raw body))`, an
optional `sha256=` prefix is accepted. The body is an event object; dedup key: its `id`; type: its `type`
(`payment-link.paid`, …). No timestamp.

Classic Mollie webhooks (an unsigned form POST `id=tr_…` per status change, the state to be fetched from
the API) are NOT accepted: they cannot be authenticated, carry no event id to deduplicate status changes on,
and hold nothing to map without an API call. Point a next-gen webhook subscription at the bridge instead.
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
    load_json,
    require_header,
    require_string,
)


class MollieProvider(Provider):
    type = "mollie"
    stored_headers = ("x-mollie-signature",)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = require_header(headers, "x-mollie-signature").lower().removeprefix("sha256=")
        expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in self.secrets]
        if not any_digest_matches(expected, [received]):
            raise SignatureError("X-Mollie-Signature does not match a configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a Mollie next-gen webhook must be a JSON event object")
        return [
            InboundEvent(
                event_id=require_string(event.get("id"), "event id"),
                event_type=require_string(event.get("type"), "event type"),
                document=event,
            )
        ]


PROVIDER = MollieProvider
