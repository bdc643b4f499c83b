"""`bridge demo --source <provider>`: each provider's sample webhooks, signed the way that provider signs them,
for the demo in `bridge/demo.py`.

A `DemoSource` (`base.py`) is what the demo needs for one provider: its `sources:` entry with freshly
generated secrets, the sample bodies shipped with the package (the golden-case bodies of `fixtures/<provider>/`,
with their `<case>.headers.json`), how its sender signs a body and how a forger would (wrong key), and for the
providers verified against keys fetched from the provider (Apple, Google, PayPal) the provider object built
around keys generated for the run. One module per family builds them: `app_stores`, `billing`, `payments`,
`commerce`.

`DEMO_SOURCES` is the registry (provider -> family module); the CLI's `--source` choices come from it. The
family modules are imported only when a demo runs, so building the CLI's parser stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bridge.demo_sources.base import DemoSource, Signer

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEMO_PROVIDERS",
    "DEMO_SOURCES",
    "DemoSource",
    "Signer",
    "demo_source",
    "post_samples",
    "report_unrenderable",
]

#: every provider with a demo source -> the module (under bridge.demo_sources) that builds it
DEMO_SOURCES: dict[str, str] = {
    "adyen": "payments",
    "apple_app_store": "app_stores",
    "braintree": "billing",
    "checkout_com": "payments",
    "fastspring": "billing",
    "gocardless": "billing",
    "google_play": "app_stores",
    "lemonsqueezy": "billing",
    "maxio": "billing",
    "mercadopago": "payments",
    "paddle": "billing",
    "paypal": "payments",
    "paystack": "payments",
    "razorpay": "payments",
    "recharge": "billing",
    "recurly": "billing",
    "revenuecat": "app_stores",
    "shopify": "commerce",
    "square": "payments",
    "standard_webhooks": "billing",
    "woocommerce": "commerce",
}
DEMO_PROVIDERS = tuple(DEMO_SOURCES)


def demo_source(provider: str) -> DemoSource:
    """The demo setup of `provider`, with secrets and keys generated now (KeyError for one without a demo)."""
    family = importlib.import_module(f"bridge.demo_sources.{DEMO_SOURCES[provider]}")
    make = family.SOURCES[provider]
    source: DemoSource = make()
    return source


def _status(response: httpx.Response) -> str:
    """What the bridge answered: the JSON `status` (or `error`), else the text (Adyen's `[accepted]`)."""
    if not response.content:
        return ""
    if response.headers.get("content-type", "").startswith("application/json"):
        document = response.json()
        return str(document.get("status", document.get("error", ""))) if isinstance(document, dict) else ""
    return response.text[:40]


async def post_samples(client: httpx.AsyncClient, demo: DemoSource, now: float) -> None:
    """Post every sample signed, then one forged request; print one line each."""
    path = f"/webhooks/{demo.provider}"
    if demo.note:
        print(f"   ({demo.note})")
    for case, raw in demo.samples:
        body, headers = demo.sign(case, raw, now)
        response = await client.post(path, content=body, headers=headers)
        print(f"   {case[:50]:<50} {response.status_code} {_status(response)}")
    body, headers = demo.forge(*demo.samples[0], now)
    forged = await client.post(path, content=body, headers=headers)
    print(f"   {'(forged signature)':<50} {forged.status_code} refused, nothing stored\n")


async def report_unrenderable(client: httpx.AsyncClient, ops: dict[str, str]) -> int:
    """Print the dead deliveries a destination could not render (the provider does not send a field the
    destination requires, e.g. a price Google Play never sends); return how many. Other dead deliveries are
    not counted: they fail the demo."""
    response = await client.get("/ops/deliveries", params={"status": "dead", "limit": 500}, headers=ops)
    rows = [row for row in response.json()["deliveries"] if str(row.get("last_error", "")).startswith("cannot render")]
    if rows:
        print(
            "\n4. Events a destination cannot take from this provider (its payloads lack what the destination needs):"
        )
    for row in rows:
        print(f"   {row['destination']:<12} {row['event_name']} {row['event_id']}: {row['last_error']}")
    return len(rows)
