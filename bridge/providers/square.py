"""Square: `x-square-hmacsha256-signature: base64(HMAC-SHA256(signature key, notification_url + raw body))`.

The signed content starts with the notification URL exactly as registered on the webhook subscription
(scheme, host, path, query, trailing slash). Behind a proxy or load balancer the request URL we see differs,
so the URL is never taken from the request: the source must configure it as the option `notification_url`.
No timestamp; dedup key: `event_id`; type: `type` (`payment.updated`, `refund.created`, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    check_body_hmac,
    require_header,
    single_event,
)
from bridge.urls import shown


class SquareProvider(Provider):
    type = "square"
    options = {
        "notification_url": "the public URL registered on the Square webhook subscription, byte for byte (required)",
    }
    stored_headers = ("x-square-hmacsha256-signature", "square-environment")

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        url = settings.options.get("notification_url")
        if not isinstance(url, str) or not url:
            raise OptionError("notification_url", "notification_url is required: the URL registered with Square")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise OptionError(
                "notification_url", f"notification_url must be an absolute http(s) URL, got {shown(url)!r}"
            )
        self.notification_url = url.encode()

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = require_header(headers, "x-square-hmacsha256-signature")
        header = "x-square-hmacsha256-signature (check the signature key and notification_url)"
        check_body_hmac(received, self.secrets, self.notification_url + body, header=header, encoding="base64")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        return single_event(body, what="Square", id_key="event_id")


PROVIDER = SquareProvider
