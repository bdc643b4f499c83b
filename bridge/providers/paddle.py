"""Paddle Billing: `Paddle-Signature: ts=<unix s>;h1=<hex>[;h1=<hex>…]`, HMAC-SHA256 over `f"{ts}:{body}"` (a
COLON, not Stripe's dot) keyed with the whole `pdl_ntfset_…` secret string. Valid when any `h1` matches any
configured secret (Paddle sends several `h1` while a secret is rotated). The header is parsed once, strictly
(`params.parse_params`); the one `ts` it yields is signed over and checked against the window.

Tolerance: Paddle's SDKs reject a `ts` older than 5 s. We default to 300 s in both directions, like Stripe and
Standard Webhooks here: a replay inside the window is already caught by the `event_id` dedup, while a 5 s
window turns a few seconds of clock drift into a 401 for every delivery. `tolerance_seconds: 5` restores the
SDK behaviour on NTP-synced hosts. Dedup key: `event_id` (stable across retries and replays; every delivery
attempt gets a new `notification_id`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    Provider,
    any_digest_matches,
    check_timestamp,
    load_json,
    require_header,
    require_string,
)
from bridge.providers.params import SECONDS_DIGITS, integer, parse_params


def parse_signature_header(header: str) -> tuple[str, int, list[str]]:
    """(ts as signed, ts as seconds, [h1, …]) from `ts=…;h1=…;h1=…`, parsed strictly (`params.parse_params`):
    exactly one `ts`, a plain integer; at least one `h1`; no other key (Paddle's SDK raises on them), no padding."""
    params = parse_params(
        header,
        header="Paddle-Signature",
        separator=";",
        single=frozenset({"ts"}),
        repeated=frozenset({"h1"}),
        unknown="refuse",
    )
    if "ts" not in params:
        raise SignatureError("Paddle-Signature header has no ts=")
    timestamp = params["ts"][0]
    seconds = integer(timestamp, "Paddle-Signature ts=", max_digits=SECONDS_DIGITS)
    signatures = params.get("h1", [])
    if not signatures:
        raise SignatureError("Paddle-Signature header has no h1=")
    return timestamp, seconds, signatures


class PaddleProvider(Provider):
    type = "paddle"
    default_tolerance = 300.0
    stored_headers = ("paddle-signature",)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        timestamp, seconds, received = parse_signature_header(require_header(headers, "paddle-signature"))
        message = f"{timestamp}:".encode() + body
        expected = [hmac.new(s.encode(), message, hashlib.sha256).hexdigest() for s in self.secrets]
        if not any_digest_matches(expected, received):
            raise SignatureError("no Paddle-Signature h1 matches a configured secret")
        check_timestamp(seconds, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a Paddle notification must be a JSON object")
        return [
            InboundEvent(
                event_id=require_string(event.get("event_id"), "event_id"),
                event_type=require_string(event.get("event_type"), "event_type"),
                document=event,
            )
        ]


PROVIDER = PaddleProvider
