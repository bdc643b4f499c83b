"""Mollie next-gen webhooks (beta): `X-Mollie-Signature: hex(HMAC-SHA256(shared secret, raw body))`, an
optional `sha256=` prefix is accepted. The body is an event object; dedup key: its `id`; type: its `type`
(`payment-link.paid`, …). No timestamp.

Classic Mollie webhooks (an unsigned form POST `id=tr_…` per status change, the state to be fetched from
the API) are NOT accepted: they cannot be authenticated, carry no event id to deduplicate status changes on,
and hold nothing to map without an API call. Point a next-gen webhook subscription at the bridge instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.providers.base import (
    InboundEvent,
    Provider,
    check_body_hmac,
    require_header,
    single_event,
)


class MollieProvider(Provider):
    type = "mollie"
    stored_headers = ("x-mollie-signature",)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = require_header(headers, "x-mollie-signature").removeprefix("sha256=")
        check_body_hmac(received, self.secrets, body, header="X-Mollie-Signature")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        return single_event(body, what="Mollie next-gen")


PROVIDER = MollieProvider
