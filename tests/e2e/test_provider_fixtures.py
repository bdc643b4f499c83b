"""Every provider's real fixtures through POST /webhooks/{source}, signed the way that provider signs: the stored
canonical events equal the golden files and one delivery per (event, routed destination) is created."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.events import format_time
from bridge.mapping.golden import GOLDEN_RECEIVED_AT, case_body, case_names
from bridge.providers import provider_types
from tests.harness import FIXTURES, running_bridge
from tests.providers.cases import CASES, Case
from tests.providers.signing import lower, signed_request
from tests.providers.test_http import _providers, _source

#: one signing setup (secret, options) per provider type, from the signature-vector cases
SETUPS: dict[str, Case] = {}
for _case in CASES:
    SETUPS.setdefault(_case.type, _case)

#: headers whose values the signer must reuse rather than invent (they are covered by, or sent with, the signature)
TOPIC_HEADERS = ("x-shopify-topic", "x-wc-webhook-topic", "x-event-name")
ID_HEADERS = ("webhook-id", "x-shopify-webhook-id", "x-razorpay-event-id", "x-wc-webhook-delivery-id")

GOLDEN = [
    (provider, case)
    for provider in provider_types()
    if provider in SETUPS and (FIXTURES / provider).is_dir()
    for case in case_names(FIXTURES / provider)
    if (FIXTURES / provider / f"{case}.expected.json").exists()
]


def test_every_provider_with_fixtures_is_covered() -> None:
    with_fixtures = {p.name for p in FIXTURES.iterdir() if p.is_dir() and case_names(p)}
    assert with_fixtures <= {provider for provider, _ in GOLDEN}


@pytest.mark.parametrize(("provider", "case"), GOLDEN, ids=[f"{p}/{c}" for p, c in GOLDEN])
async def test_real_fixture_signed_and_posted_gives_the_golden_events(tmp_path: Path, provider: str, case: str) -> None:
    setup = SETUPS[provider]
    directory = FIXTURES / provider
    raw = case_body(directory, case)
    case_headers_path = directory / f"{case}.headers.json"
    case_headers: dict[str, Any] = json.loads(case_headers_path.read_text()) if case_headers_path.exists() else {}
    options_path = directory / "_options.json"
    options = json.loads(options_path.read_text()) if options_path.exists() else {}
    now = _signed_time(lower(case_headers)) or time.time()
    given = lower(case_headers)
    body, signed = signed_request(
        provider,
        raw,
        secret=setup.secret,
        now=now,
        options={**setup.signing_options(setup.secret), **options},
        event_type=next((given[h] for h in TOPIC_HEADERS if h in given), None),
        event_id=next((given[h] for h in ID_HEADERS if h in given), None),
    )
    headers = {**lower(case_headers), **lower(signed)}  # the case's own headers (topic, ids), our fresh signature
    source = _source(setup)
    source.update({k: v for k, v in options.items() if k != "webhook_id" or provider != "paypal"})
    destinations = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}
    async with running_bridge(
        tmp_path,
        destinations=destinations,
        dispatch=False,
        extra={"sources": {"src": source}},
        providers=_providers(setup),
        clock=ManualClock(now),
    ) as bridge:
        response = await bridge.client.post("/webhooks/src", content=body, headers=headers)
        assert response.status_code == 200, response.text
        expected = json.loads((directory / f"{case}.expected.json").read_text())
        stored: list[dict[str, Any]] = []
        for webhook_id in response.json()["webhook_ids"] if provider != "adyen" else await _all_ids(bridge):
            row = (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).json()
            stored += row["events"]
        # the golden files were made with source name = provider type (here "src"), and with the case's own
        # delivery ids; a fresh signature comes with fresh delivery-id headers for some providers
        for event in [*(expected or []), *stored]:
            event["source"]["name"] = "src"
            assert event["source"].pop("webhook_id")
        for event in expected or []:  # golden cases are received at a fixed time; this request at `now`
            if event.get("properties", {}).get("occurred_at_source") == "received":
                assert event["occurred_at"] == format_time(GOLDEN_RECEIVED_AT)
                event["occurred_at"] = format_time(now)
        assert stored == (expected or [])
        deliveries = await bridge.deliveries()
        assert sorted((d["event_name"], d["event_id"]) for d in deliveries) == sorted(
            {(e["name"], e["id"]) for e in stored}
        )


def _signed_time(headers: dict[str, str]) -> float | None:
    """The time a case's own signature header carries, where the golden events read it (Mercado Pago's ts):
    the case is signed again at that time so its canonical events stay the golden ones."""
    if "x-signature" in headers:
        from bridge.providers.mercadopago import parse_signature, signed_seconds

        return float(signed_seconds(parse_signature(headers["x-signature"])[0]))
    return None


async def _all_ids(bridge: Any) -> list[int]:
    rows = (await bridge.ops("GET", "/ops/webhooks", params={"limit": 100})).json()["webhooks"]
    return sorted(row["id"] for row in rows)
