"""Maxio Advanced Billing (formerly Chargify): `X-Chargify-Webhook-Signature-Hmac-Sha-256: hex(HMAC-SHA256(site
shared key, raw body))`, no timestamp.

The body is `application/x-www-form-urlencoded` with Rails-style keys (`id=…&event=payment_success&
payload[subscription][id]=…`); the raw form bytes are signed. Maxio publishes no signature vector: the scheme
is from Maxio's SDK model (`signature_hmac_sha_256`) and its documented webhook bodies. The legacy
`X-Chargify-Webhook-Signature` (MD5 of key + body) is not accepted.

The document is the form as nested objects (`payload.subscription.id`); every value is text, as sent. A name
Maxio repeats (arrays of objects such as `public_signup_pages`) keeps all its values as a list. `id` and
`event` must each be sent once. Dedup key: `id` (the webhook id, unchanged on Maxio's retries and replays);
type: `event` (`signup_success`, `renewal_success`, `payment_success`, …).

Maxio's payloads name no currency (a site bills in one): the option `currency` (the site's ISO code) is added
to the document as `_currency` for the mapping; without it the shipped mapping leaves amounts out.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import PayloadError
from bridge.providers.base import InboundEvent, OptionError, Provider, SourceSettings, require_string
from bridge.providers.forms import check_digest, digest_header, form_fields, nested_form

HEADER = "x-chargify-webhook-signature-hmac-sha-256"


class MaxioProvider(Provider):
    type = "maxio"
    stored_headers = (HEADER,)
    options = {"currency": "the site's currency (ISO 4217, e.g. USD): Maxio's payloads name none (optional)"}

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        currency = settings.options.get("currency")
        if currency is not None and not (
            isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isalpha()
        ):
            raise OptionError("currency", f"currency must be a 3-letter ISO 4217 code, got {currency!r}")
        self.currency = currency.upper() if isinstance(currency, str) else None

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = digest_header(headers, HEADER, encoding="hex", length=64)
        check_digest(received, self.secrets, lambda key: hmac.new(key, body, hashlib.sha256).hexdigest(), header=HEADER)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        fields = form_fields(body, repeatable=True)
        for name in ("id", "event"):
            if sum(1 for key, _ in fields if key == name) != 1:
                raise PayloadError(f"a Maxio webhook must carry the form field {name!r} exactly once")
        document = nested_form(fields)
        if self.currency is not None:
            document["_currency"] = self.currency
        return [
            InboundEvent(
                event_id=require_string(document.get("id"), "id"),
                event_type=require_string(document.get("event"), "event"),
                document=document,
            )
        ]


PROVIDER = MaxioProvider
