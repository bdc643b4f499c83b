"""FastSpring: `X-FS-Signature: base64(HMAC-SHA256(the webhook's HMAC SHA256 secret, raw body))`, no timestamp.

The secret is the optional "HMAC SHA256 Secret" of the webhook in FastSpring's app (Developer Tools →
Webhooks); the bridge requires it. One POST is a BATCH `{"events": [{id, type, live, processed, created,
data}, …]}`: the signature covers the whole body, then every event becomes its own InboundEvent (dedup key:
the event `id`, the same on FastSpring's retries; type: `type`, e.g. `order.completed`; document: the event).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import PayloadError
from bridge.providers.base import InboundEvent, Provider, load_json, require_string
from bridge.providers.forms import check_digest, digest_header

HEADER = "x-fs-signature"


class FastSpringProvider(Provider):
    type = "fastspring"
    stored_headers = (HEADER,)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = digest_header(headers, HEADER, encoding="base64", length=44)
        check_digest(
            received,
            self.secrets,
            lambda key: base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode(),
            header=HEADER,
        )

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        batch = load_json(body)
        events = batch.get("events") if isinstance(batch, dict) else None
        if not isinstance(events, list):
            raise PayloadError("a FastSpring webhook must be a JSON object with an events list")
        inbound = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise PayloadError(f"events[{index}] is not an object")
            inbound.append(
                InboundEvent(
                    event_id=require_string(event.get("id"), f"events[{index}].id"),
                    event_type=require_string(event.get("type"), f"events[{index}].type"),
                    document=event,
                )
            )
        return inbound


PROVIDER = FastSpringProvider
