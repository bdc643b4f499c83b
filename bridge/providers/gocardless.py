"""GoCardless: `Webhook-Signature: hex(HMAC-SHA256(endpoint secret, raw body))`, no timestamp.

One request is a BATCH: `{"events": [...], "meta": {"webhook_id": …}}`. Every event becomes its own
InboundEvent (dedup key: the event `id` `EV…`; type: `f"{resource_type}.{action}"`, e.g.
`subscriptions.created`; document: the event object). GoCardless events are thin: `links` carries the ids of
the resources, amounts and customer details have to be fetched from the API. GoCardless asks for HTTP 498
on a bad signature; the bridge answers 401 like for every provider (both are retried by GoCardless).
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


class GoCardlessProvider(Provider):
    type = "gocardless"
    stored_headers = ("webhook-signature", "origin")

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = require_header(headers, "webhook-signature").lower()
        expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in self.secrets]
        if not any_digest_matches(expected, [received]):
            raise SignatureError("Webhook-Signature does not match a configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        batch = load_json(body)
        events = batch.get("events") if isinstance(batch, dict) else None
        if not isinstance(events, list):
            raise PayloadError("a GoCardless webhook must be a JSON object with an events list")
        inbound = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise PayloadError(f"events[{index}] is not an object")
            resource_type = require_string(event.get("resource_type"), f"events[{index}].resource_type")
            action = require_string(event.get("action"), f"events[{index}].action")
            inbound.append(
                InboundEvent(
                    event_id=require_string(event.get("id"), f"events[{index}].id"),
                    event_type=f"{resource_type}.{action}",
                    document=event,
                )
            )
        return inbound


PROVIDER = GoCardlessProvider
