"""Shopify: `X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(app client secret, raw body))`, no timestamp.

The body is the bare resource (an order, a refund, a customer); what happened is in the `X-Shopify-Topic`
header (`orders/create`, `refunds/create`, ...) and the dedup key is `X-Shopify-Webhook-Id`, which stays the
same across Shopify's retries. Events API deliveries use the same headers without the `X-` prefix; both are
read (never mixed). Several secrets may be configured: Shopify can take up to an hour to switch to a rotated
client secret.

The topic and the webhook id are NOT covered by the signature (Shopify signs the body only, and the body
carries neither): a captured body replayed under another topic or webhook id verifies. A replay of the same
bytes is caught by the outbox's body-digest dedup; the mapping should not trust the topic for anything the
body can tell (an order's financial_status, a refund's transactions).
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import InboundEvent, Provider, check_body_hmac, load_json
from bridge.providers.params import one_family

_FAMILIES = ("x-shopify-", "shopify-")
_NAMES = ("hmac-sha256", "topic", "webhook-id")


def shopify_header(headers: Mapping[str, str], name: str) -> str:
    """`X-Shopify-<name>` (Admin API webhooks) or `Shopify-<name>` (Events API), stripped; "" when absent. The
    signature, topic and webhook id always come from the same family; a request with both families and other
    values is refused (SignatureError)."""
    return headers.get(one_family(headers, _FAMILIES, _NAMES, "Shopify") + name, "").strip()


class ShopifyProvider(Provider):
    type = "shopify"
    stored_headers = (
        "x-shopify-hmac-sha256",
        "x-shopify-topic",
        "x-shopify-webhook-id",
        "x-shopify-shop-domain",
        "x-shopify-api-version",
        "x-shopify-triggered-at",
        "shopify-hmac-sha256",
        "shopify-topic",
        "shopify-webhook-id",
        "shopify-shop-domain",
        "shopify-api-version",
        "shopify-triggered-at",
    )

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = shopify_header(headers, "hmac-sha256")
        if not received:
            raise SignatureError("missing X-Shopify-Hmac-Sha256 header")
        check_body_hmac(received, self.secrets, body, header="X-Shopify-Hmac-Sha256", encoding="base64")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        topic = shopify_header(headers, "topic")
        if not topic:
            raise PayloadError("missing X-Shopify-Topic header")
        webhook_id = shopify_header(headers, "webhook-id")
        if not webhook_id:
            raise PayloadError("missing X-Shopify-Webhook-Id header")
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("a Shopify webhook body must be a JSON object")
        return [InboundEvent(event_id=webhook_id, event_type=topic, document=document)]


PROVIDER = ShopifyProvider
