"""Recharge: `X-Recharge-Hmac-Sha256: hex(SHA-256(API client secret + raw body))`, no timestamp.

Recharge publishes no signature vector and the bridge's sources hold no official Recharge page or payload: the
scheme is Recharge's legacy webhook validation as described in its webhooks overview and implemented alike by
independent integrations. It is a plain SHA-256 of the secret followed by the body, NOT an HMAC. Recharge's newer
timestamped `X-Recharge-Webhook-Signature` scheme is not implemented (no text of it could be confirmed).

The body wraps one resource by its kind (`{"subscription": {…}}`, `{"charge": {…}}`); what happened is in the
`X-Recharge-Topic` header (`subscription/created`, `charge/paid`, …), which the signature does NOT cover. So
the mapping decides from the signed body (the resource's status) and uses the topic only to pick rules; a
replay with another topic cannot make a cancelled subscription look started. Dedup key:
`<topic>:sha256:<first 32 hex of the body's SHA-256>` (Recharge's retries resend the same body).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from bridge.errors import PayloadError
from bridge.providers.base import InboundEvent, Provider, load_json
from bridge.providers.forms import check_digest, digest_header

HEADER = "x-recharge-hmac-sha256"
TOPIC = "x-recharge-topic"


class RechargeProvider(Provider):
    type = "recharge"
    stored_headers = (HEADER, TOPIC)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = digest_header(headers, HEADER, encoding="hex", length=64)
        check_digest(received, self.secrets, lambda key: hashlib.sha256(key + body).hexdigest(), header=HEADER)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        topic = headers.get(TOPIC, "")
        if not topic or len(topic) > 100 or not topic.isascii() or not topic.isprintable() or " " in topic:
            raise PayloadError("missing or malformed X-Recharge-Topic header")
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("a Recharge webhook body must be a JSON object")
        return [InboundEvent(f"{topic}:sha256:{hashlib.sha256(body).hexdigest()[:32]}", topic, document)]


PROVIDER = RechargeProvider
