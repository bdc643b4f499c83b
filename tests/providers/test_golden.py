"""Golden mapping cases of the non-Stripe providers: fixtures/<provider>/<case>.json -> <case>.expected.json.

Providers that need no options run through `bridge.mapping.golden.run_golden_cases`. Square and PayPal need an
option to be constructed at all (notification_url, webhook_id), which the runner does not pass, so their cases
go through the same `evaluate_case` with a configured provider. Regenerate with
`BRIDGE_UPDATE_GOLDEN=1 pytest tests/providers/test_golden.py`, then review every changed file by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bridge.mapping.compile import check_mappings, load_mappings
from bridge.mapping.golden import case_names, evaluate_case, render, run_golden_cases
from tests.providers.cases import FIXTURES, ROOT, build

MAPPINGS = ROOT / "mappings"
UPDATE = os.environ.get("BRIDGE_UPDATE_GOLDEN") == "1"
PLAIN = ["adyen", "checkout_com", "gocardless", "lemonsqueezy", "paddle", "razorpay", "recurly", "shopify"]
PLAIN += ["standard_webhooks", "woocommerce"]
CONFIGURED = {
    "square": {"notification_url": "https://bridge.example/webhooks/square"},
    "paypal": {"webhook_id": "4JH86294D6297924G"},
}
MINE = [*PLAIN, *CONFIGURED, "chargebee", "mollie", "generic_hmac"]


def test_mapping_files_compile() -> None:
    errors = [str(e) for e in check_mappings(MAPPINGS) if Path(e.file or "").stem in MINE]
    assert errors == []
    names = set(load_mappings(MAPPINGS).names)
    assert set(MINE) <= names


@pytest.mark.parametrize("provider", PLAIN)
def test_golden_cases(provider: str) -> None:
    assert case_names(FIXTURES / provider), f"no golden cases for {provider}"
    report = run_golden_cases(FIXTURES, load_mappings(MAPPINGS), update=UPDATE, only=provider)
    assert report.ok, report.summary()
    assert report.passed or report.updated


@pytest.mark.parametrize("provider", list(CONFIGURED))
def test_golden_cases_of_providers_with_required_options(provider: str) -> None:
    mapping = load_mappings(MAPPINGS).get(provider)
    assert mapping is not None
    parser = build(provider, ("unused",), CONFIGURED[provider])
    directory = FIXTURES / provider
    cases = case_names(directory)
    assert cases
    for case in cases:
        headers_path = directory / f"{case}.headers.json"
        headers = json.loads(headers_path.read_text()) if headers_path.exists() else {}
        headers = {k.lower(): v for k, v in headers.items()}
        actual = evaluate_case((directory / f"{case}.json").read_bytes(), headers, provider, parser.parse, mapping)
        expected_path = directory / f"{case}.expected.json"
        if UPDATE:
            expected_path.write_text(render(actual), encoding="utf-8")
        assert json.loads(expected_path.read_text(encoding="utf-8")) == actual, case


def test_shopify_bodies_are_the_unwrapped_rest_fixtures() -> None:
    """fixtures/shopify/*.json are the inner objects of Shopify's REST fixtures, kept beside them as
    fixtures/shopify/_rest.*.json (byte-exact copies; see PROVIDERS-SOURCES.md)."""
    order = json.loads((FIXTURES / "shopify/_rest.order.json").read_text())["order"]
    refund = json.loads((FIXTURES / "shopify/_rest.refund.json").read_text())["refund"]
    assert json.loads((FIXTURES / "shopify/orders-create.json").read_text()) == order
    assert json.loads((FIXTURES / "shopify/orders-paid.json").read_text()) == order
    assert json.loads((FIXTURES / "shopify/refunds-create.json").read_text()) == refund
