"""Lemon Squeezy: `X-Signature: hex(HMAC-SHA256(signing secret, raw body))`, no timestamp. The event name is
in the `X-Event-Name` header and in `meta.event_name` of the body. Only the body is signed, so the event name
is taken from `meta.event_name` and the header is ignored: a captured `order_created` replayed with
`X-Event-Name: subscription_cancelled` is still an `order_created` (with the same dedup key, so a duplicate).

Lemon Squeezy bodies carry no event id, so the dedup key is built from what identifies one state of one
object: `f"{event_name}:{data.type}/{data.id}@{data.attributes.updated_at}"`. A retry sends the same body (same
key); two updates of one subscription differ in `updated_at`. Without `updated_at` the SHA-256 of the body
is used instead (`sha256:<hex>`). Lemon Squeezy gives up after 3 retries within ~2.5 minutes.
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
)


class LemonSqueezyProvider(Provider):
    type = "lemonsqueezy"
    stored_headers = ("x-signature", "x-event-name")

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        check_body_hmac(require_header(headers, "x-signature"), self.secrets, body, header="X-Signature")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("a Lemon Squeezy webhook must be a JSON object")
        meta = document.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        event_name = meta.get("event_name")
        if not isinstance(event_name, str) or not event_name:
            raise PayloadError("missing meta.event_name (the signed event name; X-Event-Name is not signed)")
        data = document.get("data")
        if not isinstance(data, dict):
            raise PayloadError("a Lemon Squeezy webhook has no data object")
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            attributes = {}
        updated_at = attributes.get("updated_at")
        if isinstance(updated_at, str) and updated_at and data.get("id") is not None:
            event_id = f"{event_name}:{data.get('type')}/{data.get('id')}@{updated_at}"
        else:
            event_id = f"sha256:{hashlib.sha256(body).hexdigest()}"
        return [InboundEvent(event_id=event_id, event_type=event_name, document=document)]


PROVIDER = LemonSqueezyProvider
