"""The status page in a real browser: the bridge under uvicorn on 127.0.0.1, Chromium through Playwright.

Set BRIDGE_SCREENSHOT=path to keep a screenshot of the overview (scripts/ops-screenshot makes
docs/ops-page.png this way).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.app import create_app
from bridge.config import load_settings
from bridge.sinks.server import serve
from tests.harness import OPS_TOKEN, stripe_case, stripe_headers, write_config
from tests.ops.browser import chromium
from tests.ops.support import SwitchSink, until

pytestmark = pytest.mark.timeout(180)

SAMPLES = ["checkout.session.completed", "charge.refunded", "customer.subscription.created", "invoice.paid"]


@asynccontextmanager
async def bridge_with_a_dead_letter(tmp_path: Path) -> AsyncIterator[tuple[str, httpx.AsyncClient, SwitchSink]]:
    """The bridge under uvicorn with two destinations: `warehouse` (accepts everything) and `collector`
    (refuses with 400 until the test flips it, so its deliveries go dead). Stripe samples are posted and
    settled before the block starts."""
    failing, healthy = SwitchSink(400), SwitchSink(200)
    async with AsyncExitStack() as stack:
        failing_url = await stack.enter_async_context(serve(failing.app))
        healthy_url = await stack.enter_async_context(serve(healthy.app))
        config = write_config(
            tmp_path,
            destinations={
                "collector": {"type": "http", "url": f"{failing_url}/collect", "events": ["purchase"]},
                "warehouse": {"type": "http", "url": f"{healthy_url}/collect", "events": ["*"]},
            },
        )
        base = await stack.enter_async_context(serve(create_app(load_settings(config, {}))))
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {OPS_TOKEN}"}, timeout=10)
        )
        for case in SAMPLES:
            body = stripe_case(case)
            assert (await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))).is_success
        forged = stripe_case("invoice.paid")
        await client.post("/webhooks/stripe", content=forged, headers=stripe_headers(forged, secret="whsec_other"))

        async def settled() -> bool:
            stats = (await client.get("/ops/outbox")).json()["destinations"]
            return all(d["pending"] + d["in_flight"] == 0 for d in stats.values()) and stats["collector"]["dead"] > 0

        await until(settled, what="every delivery to settle")
        yield base, client, failing


async def overview_cells(page: Any) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = {}
    for row in await page.locator("#destinations tbody tr[data-destination]").all():
        name = await row.get_attribute("data-destination")
        rows[name] = {}
        for column in ("pending", "in_flight", "delivered", "dead"):
            rows[name][column] = int(await row.locator(f'td[data-col="{column}"]').inner_text())
    return rows


async def test_log_in_retry_a_dead_letter_and_replay_in_a_browser(tmp_path: Path) -> None:
    async with bridge_with_a_dead_letter(tmp_path) as (base, api, failing), chromium() as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})

        # without a session the page is the login form and nothing else
        await page.goto(f"{base}/ops/")
        assert await page.locator("#destinations").count() == 0
        assert "collector" not in await page.content()
        await page.fill("#token", OPS_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#destinations")

        # the overview's rows are /ops/outbox's numbers
        expected = (await api.get("/ops/outbox")).json()["destinations"]
        shown = await overview_cells(page)
        assert set(shown) == set(expected)
        for name, cells in shown.items():
            assert cells == {k: expected[name][k] for k in cells}, name
        assert shown["collector"]["dead"] == 1 and shown["warehouse"]["delivered"] >= 4
        assert "signature 1" in await page.locator("#webhooks-by-source").inner_text()
        if os.environ.get("BRIDGE_SCREENSHOT"):
            await page.screenshot(path=os.environ["BRIDGE_SCREENSHOT"], full_page=True)

        # dead letters: Retry the dead delivery once the destination is fixed, and see it delivered
        await page.click("text=Dead letters & failures")
        dead_row = page.locator('#deliveries tr[data-status="dead"]')
        assert await dead_row.count() == 1
        delivery_id = await dead_row.get_attribute("data-delivery")
        assert "400" in await dead_row.locator("table.attempts").inner_text()
        failing.status = 200
        await dead_row.locator("button", has_text="Retry").click()
        await page.wait_for_selector(".notice")
        assert "1 of 1 retried" in await page.locator(".notice").inner_text()

        async def delivered() -> bool:
            row = (await api.get(f"/ops/deliveries/{delivery_id}")).json()
            return bool(row["status"] == "delivered")

        await until(delivered, what="the retried delivery to be delivered")
        await page.goto(f"{base}/ops/ui/deliveries?destination=collector")
        row = page.locator(f'#deliveries tr[data-delivery="{delivery_id}"]')
        assert await row.get_attribute("data-status") == "delivered"
        assert len(failing.accepted) == 1

        # a webhook: masked body, then Replay shows the dry-run diff before anything is written
        await row.locator("a", has_text="webhook").click()
        await page.wait_for_selector("#raw-body")
        assert "•••" in await page.locator("#raw-body").inner_text()
        await page.click("#replay-form button[type=submit]")
        await page.wait_for_selector("#replay-report")
        assert "Replay dry run" in await page.locator("h1").inner_text()
        assert "skip (delivered)" in await page.locator("#replay-deliveries").inner_text()
        assert await page.locator("#confirm-replay button").is_visible()
        await page.click("#confirm-replay button")
        await page.wait_for_selector("#replay-result")
        assert "0 created" in await page.locator("#replay-result").inner_text()
