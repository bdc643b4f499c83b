"""GoCardless: `Webhook-Signature: hex(HMAC-SHA256(endpoint secret, raw body))`, no timestamp.

One request is a BATCH: `{"events": [...], "meta": {"webhook_id": …}}`. Every event becomes its own
InboundEvent (dedup key: the event `id` `EV…`; type: `f"{resource_type}.{action}"`, e.g.
`subscriptions.created`; document: the event object). GoCardless events are thin: `links` carries the ids of
the resources, amounts and customer details have to be fetched from the API. GoCardless asks for HTTP 498
on a bad signature; the bridge answers 401 like for every provider (both are retried by GoCardless).
"""

from __future__ import annotations

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


class GoCardlessProvider(Provider):
    type = "gocardless"
    stored_headers = ("webhook-signature", "origin")

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        check_body_hmac(require_header(headers, "webhook-signature"), self.secrets, body, header="Webhook-Signature")

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
