"""Adyen.

Standard notifications (`{"live": …, "notificationItems": [{"NotificationRequestItem": {…}}, …]}`): the HMAC
is INSIDE each item, `additionalData.hmacSignature = base64(HMAC-SHA256(hex-decoded key, signing string))`
with the signing string `pspReference:originalReference:merchantAccountCode:merchantReference:amount.value:
amount.currency:eventCode:success` (missing fields empty, no escaping). Every item of a batch must verify,
with any configured key (keep the old key while a new one propagates). The HMAC covers only those eight
fields, not the rest of the item (`additionalData`, `eventDate`, `paymentMethod`, `reason`, …): that is Adyen's
scheme. `signed_fields` names the eight; `bridge check` warns about a mapping reading any other field.
Banking / management webhooks carry `HmacSignature: base64(HMAC-SHA256(key, raw body))` instead; when that
header is present the raw body is verified.

Secrets are Adyen's 64-character hex HMAC keys. Optional HTTP Basic auth (options `username`/`password`, as
set on the Adyen webhook) is checked as well when configured. Adyen expects the body `[accepted]`: see
`acknowledge`. Each item is its own event: dedup key `f"{pspReference}:{eventCode}:{success}"` (a refused
AUTHORISATION and a later successful one stay distinct), type `eventCode`, document the
NotificationRequestItem. Banking webhooks: type `type`, dedup key the body's SHA-256 (they carry no id).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    Ack,
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    any_digest_matches,
    load_json,
    require_string,
)
from bridge.providers.chargebee import basic_credentials, read_credentials

_SIGNED_FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise SignatureError(f"{what} has an unsupported type for the HMAC signing string")


def signing_string(item: Mapping[str, Any]) -> str:
    """Adyen's HMAC signing string of one NotificationRequestItem."""
    amount = item.get("amount")
    if not isinstance(amount, dict):
        amount = {}
    parts = [_text(item.get(name), name) for name in _SIGNED_FIELDS]
    parts += [_text(amount.get("value"), "amount.value"), _text(amount.get("currency"), "amount.currency")]
    parts += [_text(item.get("eventCode"), "eventCode"), _text(item.get("success"), "success")]
    return ":".join(parts)


def notification_items(document: Any) -> list[dict[str, Any]]:
    """The NotificationRequestItems of a standard notification body; ValueError if it is not one."""
    entries = document.get("notificationItems") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("no notificationItems")
    items = []
    for index, entry in enumerate(entries):
        item = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise ValueError(f"notificationItems[{index}] has no NotificationRequestItem")
        items.append(item)
    return items


class AdyenProvider(Provider):
    type = "adyen"
    options = {
        "username": "HTTP Basic username set on the Adyen webhook (optional; checked when set)",
        "password": "HTTP Basic password set on the Adyen webhook, or a list while rotating (with username)",
    }
    stored_headers = ("hmacsignature",)
    #: what the HMAC of a standard notification item covers; mappings should read nothing else (banking
    #: webhooks sign their whole body, but the shipped mapping maps standard notifications only)
    signed_fields = (*_SIGNED_FIELDS, "amount.value", "amount.currency", "eventCode", "success")

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        keys = []
        for secret in self.secrets:
            try:
                keys.append(bytes.fromhex(secret.strip()))
            except ValueError:
                raise OptionError("secrets", "an Adyen HMAC key is a hex string (64 hex characters)") from None
        self._keys = keys
        self._credentials = read_credentials(settings.options, required=False)

    def _sign(self, message: bytes) -> list[bytes]:
        return [base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()) for key in self._keys]

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        if self._credentials:
            received = hashlib.sha256(basic_credentials(headers)).digest()
            if not any_digest_matches(self._credentials, [received]):
                raise SignatureError("HTTP Basic credentials do not match")
        header = headers.get("hmacsignature", "").strip()
        if header:
            if not any_digest_matches(self._sign(body), [header]):
                raise SignatureError("HmacSignature header does not match a configured key")
            return
        try:
            items = notification_items(orjson.loads(body))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise SignatureError(f"not an Adyen notification with signed items ({exc})") from None
        for index, item in enumerate(items):
            additional = item.get("additionalData")
            signature = additional.get("hmacSignature") if isinstance(additional, dict) else None
            if not isinstance(signature, str) or not signature.strip():
                raise SignatureError(f"notificationItems[{index}] has no additionalData.hmacSignature")
            if not any_digest_matches(self._sign(signing_string(item).encode()), [signature.strip()]):
                raise SignatureError(f"notificationItems[{index}] hmacSignature does not match a configured key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        document = load_json(body)
        if headers.get("hmacsignature", "").strip():
            if not isinstance(document, dict):
                raise PayloadError("an Adyen webhook must be a JSON object")
            event_type = require_string(document.get("type"), "type")
            return [InboundEvent(f"sha256:{hashlib.sha256(body).hexdigest()}", event_type, document)]
        try:
            items = notification_items(document)
        except ValueError as exc:
            raise PayloadError(f"not an Adyen notification: {exc}") from None
        inbound = []
        for index, item in enumerate(items):
            psp = require_string(item.get("pspReference"), f"notificationItems[{index}].pspReference")
            code = require_string(item.get("eventCode"), f"notificationItems[{index}].eventCode")
            success = item.get("success")
            success_text = ("true" if success else "false") if isinstance(success, bool) else str(success)
            inbound.append(InboundEvent(f"{psp}:{code}:{success_text}", code, item))
        return inbound

    def acknowledge(self, status: str, webhook_ids: list[int]) -> Ack:
        """Adyen's classic integrations require the literal body `[accepted]`."""
        return Ack(200, b"[accepted]", "text/plain")


PROVIDER = AdyenProvider
