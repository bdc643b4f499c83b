"""RevenueCat: webhooks carry NO signature. The dashboard lets you set an `Authorization` header value that
RevenueCat sends verbatim with every webhook; the bridge requires it: the source's `secrets` are the accepted
header values (e.g. `Bearer <random>`; two while rotating). It proves the sender knows the value but does not
protect the body.

The header is compared in constant time over SHA-256 digests and never stored. Body:
`{"api_version": "1.0", "event": {…}}`. Dedup key: `event.id` (RevenueCat delivers at least once and says to
dedupe on it); type: `event.type` (`INITIAL_PURCHASE`, `RENEWAL`, `CANCELLATION`, …); document: the whole body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import InboundEvent, Provider, SourceSettings, any_digest_matches, load_json, require_string


class RevenueCatProvider(Provider):
    type = "revenuecat"

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self._accepted = [hashlib.sha256(secret.encode()).digest() for secret in self.secrets]

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        value = headers.get("authorization")
        if not value:
            raise SignatureError("missing Authorization header")
        received = hashlib.sha256(value.encode("latin-1")).digest()
        if not any_digest_matches(self._accepted, [received]):
            raise SignatureError("Authorization header does not match a configured value")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        document = load_json(body)
        event = document.get("event") if isinstance(document, dict) else None
        if not isinstance(event, dict):
            raise PayloadError("a RevenueCat webhook must be a JSON object with an event object")
        return [
            InboundEvent(
                event_id=require_string(event.get("id"), "event.id"),
                event_type=require_string(event.get("type"), "event.type"),
                document=document,
            )
        ]


PROVIDER = RevenueCatProvider
