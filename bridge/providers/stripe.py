"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]`, HMAC-SHA256 over `f"{t}.{body}"` keyed with the
whole `whsec_…` secret. Valid when any `v1` matches any configured secret (Stripe sends several while a secret
is rolled); other schemes (`v0`) are ignored.

The header is parsed once and strictly (`params.parse_params`): exactly one `t`, no padding, no empty or
case-variant keys, `t` a plain integer. That one `t` is both the one signed over and the one checked against
the window (300 s in both directions, the injected clock), so a header such as `v1=<sig>, t=<now>,t=<old>`
(which stripe-python reads as `t=<old>`, a lenient reader as `t=<now>`) is refused instead of letting an old
captured request through. Dedup key: the event id `evt_…`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import SignatureError
from bridge.providers.base import (
    InboundEvent,
    Provider,
    any_digest_matches,
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
        signed_t, timestamp, received = parse_signature_header(require_header(headers, "stripe-signature"))
        message = f"{signed_t}.".encode() + body
        expected = [hmac.new(s.encode(), message, hashlib.sha256).hexdigest() for s in self.secrets]
        if not any_digest_matches(expected, received):
            raise SignatureError("no Stripe-Signature v1 signature matches a configured secret")
        check_timestamp(timestamp, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        return single_event(body, what="Stripe")


PROVIDER = StripeProvider
