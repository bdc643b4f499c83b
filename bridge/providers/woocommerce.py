"""WooCommerce: `X-WC-Webhook-Signature: base64(HMAC-SHA256(secret, raw body))`, no timestamp. WooCommerce
keys the HMAC with `wp_specialchars_decode(secret, ENT_QUOTES)`, so HTML entities in the configured secret
(`&amp;`, `&#039;`, …) are decoded here the same way before use.

Event type: the `X-WC-Webhook-Topic` header (`order.created`, `order.updated`, …). Dedup key:
`f"{X-WC-Webhook-Delivery-ID}:{sha256(body)[:16]}"`: WooCommerce derives the delivery id from the webhook id
and the current SECOND, so two deliveries of one webhook within a second share it; the body digest keeps
them apart. WooCommerce never retries a failed delivery and disables the webhook after more than 5
consecutive failures. Topic and delivery id are headers WooCommerce does not sign (only the body is): a
captured body replayed under other header values is caught by the source's raw-body dedup.

The creation ping: when a webhook is saved as active, WooCommerce POSTs the unsigned form body
`webhook_id=<n>` and reports anything but HTTP 200 to the admin. With the option `accept_ping` (default
true) exactly that body without a signature header is answered 200 and yields no event (nothing stored).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    check_body_hmac,
    load_json,
)

_PING = re.compile(rb"webhook_id=\d{1,20}")

# wp_specialchars_decode($text, ENT_QUOTES) of WordPress core: normalise zero-padded numeric entities, then
# replace every known entity in one pass (PHP strtr).
_ENTITY_PADDING = (
    (re.compile(r"&#0*39;"), "&#039;"),
    (re.compile(r"&#x0*27;", re.IGNORECASE), "&#x27;"),
    (re.compile(r"&#0*34;"), "&#034;"),
    (re.compile(r"&#x0*22;", re.IGNORECASE), "&#x22;"),
    (re.compile(r"&#0*60;"), "&#060;"),
    (re.compile(r"&#0*62;"), "&#062;"),
    (re.compile(r"&#0*38;"), "&#038;"),
    (re.compile(r"&#x0*26;", re.IGNORECASE), "&#x26;"),
)
_ENTITIES = {
    "&#039;": "'",
    "&#x27;": "'",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
}
_ENTITY = re.compile("|".join(re.escape(k) for k in sorted(_ENTITIES, key=len, reverse=True)))


def wp_specialchars_decode(text: str) -> str:
    """WordPress's `wp_specialchars_decode($text, ENT_QUOTES)`."""
    if "&" not in text:
        return text
    for pattern, replacement in _ENTITY_PADDING:
        text = pattern.sub(replacement, text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(0)], text)


class WooCommerceProvider(Provider):
    type = "woocommerce"
    options = {
        "accept_ping": "answer WooCommerce's unsigned creation ping (body webhook_id=<n>) with 200 (default true)",
    }
    stored_headers = (
        "x-wc-webhook-signature",
        "x-wc-webhook-source",
        "x-wc-webhook-topic",
        "x-wc-webhook-resource",
        "x-wc-webhook-event",
        "x-wc-webhook-id",
        "x-wc-webhook-delivery-id",
    )

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        accept_ping = settings.options.get("accept_ping", True)
        if not isinstance(accept_ping, bool):
            raise OptionError("accept_ping", "accept_ping must be true or false")
        self.accept_ping = accept_ping
        self._keys = [wp_specialchars_decode(s).encode() for s in self.secrets]

    def _is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return self.accept_ping and not headers.get("x-wc-webhook-signature") and _PING.fullmatch(body) is not None

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        if self._is_ping(body, headers):
            return
        received = headers.get("x-wc-webhook-signature", "").strip()
        if not received:
            raise SignatureError("missing x-wc-webhook-signature header")
        check_body_hmac(received, self._keys, body, header="X-WC-Webhook-Signature", encoding="base64")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        if self._is_ping(body, headers):
            return []
        topic = headers.get("x-wc-webhook-topic", "").strip()
        if not topic:
            raise PayloadError("missing X-WC-Webhook-Topic header")
        delivery_id = headers.get("x-wc-webhook-delivery-id", "").strip()
        if not delivery_id:
            raise PayloadError("missing X-WC-Webhook-Delivery-ID header")
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("a WooCommerce webhook body must be a JSON object")
        event_id = f"{delivery_id}:{hashlib.sha256(body).hexdigest()[:16]}"
        return [InboundEvent(event_id=event_id, event_type=topic, document=document)]


PROVIDER = WooCommerceProvider
