"""Checkout.com: `Cko-Signature: hex(HMAC-SHA256(signature key, raw body))`, no timestamp. The webhook can also
carry a static authorization key in the `Authorization` header; configure it as the option `authorization`
to have it checked too (constant time; the header is never stored).

Dedup key: the event `id` (`evt_…`); type: `type` (`payment_captured`, `payment_refunded`, …).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    check_body_hmac,
    require_header,
    single_event,
)


class CheckoutComProvider(Provider):
    type = "checkout_com"
    options = {
        "authorization": "the static Authorization header key configured on the webhook (optional; checked when set)",
    }
    stored_headers = ("cko-signature",)

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        authorization = settings.options.get("authorization")
        if authorization is not None and (not isinstance(authorization, str) or not authorization):
            raise OptionError("authorization", "authorization must be a non-empty string")
        self._authorization = hashlib.sha256(authorization.encode()).digest() if authorization else None

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        check_body_hmac(require_header(headers, "cko-signature"), self.secrets, body, header="Cko-Signature")
        if self._authorization is not None:
            given = hashlib.sha256(require_header(headers, "authorization").encode()).digest()
            if not hmac.compare_digest(given, self._authorization):
                raise SignatureError("Authorization header does not match the configured key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        return single_event(body, what="Checkout.com")


PROVIDER = CheckoutComProvider
