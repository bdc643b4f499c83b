"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, HMAC-SHA256 over `f"{t}.{body}"` keyed with the whole
`whsec_…` secret. The signature check is `stripe.WebhookSignature.verify_header` (the SDK's own, ~6 µs; not
`Webhook.construct_event`, which also builds StripeObjects at ~430 µs); the timestamp window is checked here
against the injected clock, in both directions. Dedup key: the event id `evt_…`.
"""

from __future__ import annotations

from collections.abc import Mapping

import stripe

from bridge.errors import SignatureError
from bridge.providers.base import (
    InboundEvent,
    Provider,
    check_timestamp,
    require_header,
    single_event,
)


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise SignatureError("Stripe-Signature header has no valid t= timestamp")


class StripeProvider(Provider):
    type = "stripe"
    default_tolerance = 300.0
    stored_headers = ("stripe-signature",)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = require_header(headers, "stripe-signature")
        timestamp = _timestamp(header)
        for secret in self.secrets:
            try:
                stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
            except stripe.SignatureVerificationError:
                continue
            except (UnicodeDecodeError, ValueError):
                raise SignatureError("body is not UTF-8 text") from None
            check_timestamp(timestamp, now, self.tolerance)
            return
        raise SignatureError("no Stripe-Signature v1 signature matches a configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        return single_event(body, what="Stripe")


PROVIDER = StripeProvider
