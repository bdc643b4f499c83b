"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]`, HMAC-SHA256 over `f"{t}.{body}"` keyed with the
whole `whsec_…` secret. Valid when any `v1` matches any configured secret (Stripe sends several while a secret
is rolled); other schemes (`v0`) are ignored. The HMAC comparison is the Stripe SDK's own
(`stripe.WebhookSignature.verify_header`, ~6 µs; not `Webhook.construct_event`, which also builds objects).

The header is parsed once and strictly (`params.parse_params`): exactly one `t`, no padding, no empty or
case-variant keys, `t` a plain integer. That one `t` is both the one signed over and the one checked against
the window (300 s in both directions, the injected clock), so a header such as `v1=<sig>, t=<now>,t=<old>`
(which stripe-python reads as `t=<old>`, a lenient reader as `t=<now>`) is refused instead of letting an old
captured request through. Only a header that passed this parse reaches the SDK, so both read the same `t`.
Dedup key: the event id `evt_…`.
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
from bridge.providers.params import SECONDS_DIGITS, integer, parse_params

HEADER = "Stripe-Signature"


def parse_signature_header(header: str) -> tuple[str, int, list[str]]:
    """(t as signed, t as seconds, [v1, …]) from a Stripe-Signature value; SignatureError when ambiguous."""
    params = parse_params(header, header=HEADER, separator=",", single=frozenset({"t"}), repeated=frozenset({"v1"}))
    if "t" not in params:
        raise SignatureError("Stripe-Signature header has no t= timestamp")
    signatures = params.get("v1", [])
    if not signatures:
        raise SignatureError("Stripe-Signature header has no v1= signature")
    timestamp = params["t"][0]
    return timestamp, integer(timestamp, "Stripe-Signature t=", max_digits=SECONDS_DIGITS), signatures


class StripeProvider(Provider):
    type = "stripe"
    default_tolerance = 300.0
    stored_headers = ("stripe-signature",)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = require_header(headers, "stripe-signature")
        _, timestamp, _ = parse_signature_header(header)  # refuses every shape the SDK could read another way
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
