"""Every provider through POST /webhooks/{source} of the real app: signed -> accepted, again -> duplicate,
unsigned -> 401; plus the acknowledgement and batch behaviours the ingest path has to carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.providers.base import SourceSettings
from bridge.providers.paypal import PayPalProvider
from tests.harness import running_bridge
from tests.providers.cases import CASE_IDS, CASES, NOW, Case, fixture
from tests.providers.signing import paypal_test_fetcher, sign


def _source(case: Case) -> dict[str, Any]:
    entry: dict[str, Any] = {"provider": case.type, **case.options}
    if case.type == "chargebee":
        entry["password"] = case.secret
    elif case.type == "paypal":
        entry["webhook_id"] = case.secret
    elif case.type in ("apple_app_store", "google_play"):
        pass  # no secret: the provider is built with its test trust (see _providers)
    else:
        entry["secrets"] = [case.secret]
    if case.tolerance is not None:
        entry["tolerance_seconds"] = case.tolerance
    return entry


def _providers(case: Case) -> dict[str, Any] | None:
    if case.type in ("apple_app_store", "google_play"):  # trust the test PKI / test keys of the case's secret
        return {"src": case.build()}
    if case.type != "paypal":
        return None
    settings = SourceSettings("src", "paypal", (), case.tolerance, options={"webhook_id": case.secret})
    return {"src": PayPalProvider(settings, fetch_cert=paypal_test_fetcher)}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_signed_webhook_is_accepted_once(tmp_path: Path, case: Case) -> None:
    body, headers = case.request(now=NOW)
    extra = {"sources": {"src": _source(case)}}
    clock = ManualClock(NOW)
    async with running_bridge(
        tmp_path, destinations={}, dispatch=False, clock=clock, extra=extra, providers=_providers(case)
    ) as b:
        first = await b.client.post("/webhooks/src", content=body, headers=headers)
        assert first.status_code == 200, first.text
        again = await b.client.post("/webhooks/src", content=body, headers=headers)
        assert again.status_code == 200, again.text
        if case.type == "adyen":
            assert first.content == again.content == b"[accepted]"
        else:
            assert first.json()["status"] in ("accepted", "ignored", "mapping_failed")  # stored in every case
            assert again.json()["status"] == "duplicate"
        stripped_body, stripped = case.without_signature(body, headers)
        refused = await b.client.post("/webhooks/src", content=stripped_body, headers=stripped)
        assert refused.status_code == 401


async def test_gocardless_batch_stores_one_webhook_per_event(tmp_path: Path) -> None:
    body = fixture("gocardless/subscriptions.created+mandates.created.json")
    headers = sign("gocardless", body, secret="gc-secret", now=NOW)
    extra = {"sources": {"gc": {"provider": "gocardless", "secrets": ["gc-secret"]}}}
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra) as b:
        response = await b.client.post("/webhooks/gc", content=body, headers=headers)
        assert response.status_code == 200
        assert response.json()["status"] in ("accepted", "ignored")
        assert len(response.json()["webhook_ids"]) == 2


async def test_woocommerce_ping_is_answered_200_and_not_stored(tmp_path: Path) -> None:
    extra = {"sources": {"woo": {"provider": "woocommerce", "secrets": ["wc"]}}}
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra) as b:
        response = await b.client.post(
            "/webhooks/woo", content=b"webhook_id=7", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 200
        assert response.json()["webhook_ids"] == []


async def test_lemonsqueezy_event_name_comes_from_the_signed_body(tmp_path: Path) -> None:
    """Only the body is signed: genuine order_created bytes replayed under `X-Event-Name: subscription_cancelled`
    stay an order_created (a purchase), never a subscription_canceled."""
    case = next(c for c in CASES if c.id == "lemonsqueezy")
    body, headers = case.request(now=NOW)
    assert headers["x-event-name"] == "order_created"
    destinations = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}
    extra = {"sources": {"src": _source(case)}}
    async with running_bridge(
        tmp_path, destinations=destinations, dispatch=False, clock=ManualClock(NOW), extra=extra
    ) as bridge:
        relabelled = await bridge.client.post(
            "/webhooks/src", content=body, headers={**headers, "x-event-name": "subscription_cancelled"}
        )
        assert relabelled.status_code == 200, relabelled.text
        [webhook_id] = relabelled.json()["webhook_ids"]
        row = (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).json()
        assert row["event_type"] == "order_created"
        genuine = await bridge.client.post("/webhooks/src", content=body, headers=headers)
        assert genuine.json()["status"] == "duplicate"
        assert {d["event_name"] for d in await bridge.deliveries()} == {"purchase"}
