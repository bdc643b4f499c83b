"""Demo sources of the shop platforms: Shopify and WooCommerce. Both sign the raw body (HMAC-SHA256, base64)
and send what happened and the delivery id in unsigned headers, which come from each sample's
`<case>.headers.json`."""

from __future__ import annotations

from collections.abc import Callable

from bridge.demo_sources.base import DemoSource, headers_of, hmac_source, own_ids, samples_of


def shopify() -> DemoSource:
    samples = samples_of("shopify")
    headers = {case: headers_of("shopify", case) for case, _ in samples}
    ids, changed = own_ids([headers[case].get("X-Shopify-Webhook-Id", case) for case, _ in samples])
    for (case, _), webhook_id in zip(samples, ids, strict=True):
        headers[case]["X-Shopify-Webhook-Id"] = webhook_id
    notes = ["two samples share an X-Shopify-Webhook-Id: the later one gets its own"] if changed else []
    first: dict[bytes, str] = {}
    for case, body in samples:
        if body in first:  # the body-digest dedup answers it `duplicate`, whatever its topic says
            notes.append(f"{case} is the same bytes as {first[body]}: a duplicate")
        first.setdefault(body, case)
    return hmac_source(
        "shopify",
        "X-Shopify-Hmac-Sha256",
        "base64",
        samples=samples,
        extra=lambda case, body: headers[case],
        note="; ".join(notes),
    )


def woocommerce() -> DemoSource:
    return hmac_source(
        "woocommerce", "X-WC-Webhook-Signature", "base64", extra=lambda case, body: headers_of("woocommerce", case)
    )


SOURCES: dict[str, Callable[[], DemoSource]] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
}
