"""Per-key ordering end to end: real signed Stripe subscription webhooks through the app into a destination with
`ordering: by_key`; a dead event holds only its own subscription back until ops skip it (status page, JSON API,
CLI)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.sinks.server import serve
from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.harness import OPS_TOKEN, Bridge, running_bridge
from tests.scaleout.support import subscription

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
T = 1_720_000_000


def ordered_hook(url: str) -> dict[str, Any]:
    return {"type": "http", "url": f"{url}/hook", "ordering": "by_key", "concurrency": 4, "events": ["*"]}


def arrived(requests: list[dict[str, Any]], sub_id: str) -> list[str]:
    return [r["json"]["name"] for r in requests if r.get("status") == 200 and r["json"]["subscription"]["id"] == sub_id]


async def test_a_dead_event_blocks_only_its_subscription_until_it_is_skipped(tmp_path: Path) -> None:
    async with recorder() as (sink, url):
        sink.script(400)  # the first request (sub_A's start) is refused for good
        async with running_bridge(tmp_path, destinations={"crm": ordered_hook(url)}) as bridge:
            assert (await bridge.post_stripe(subscription("created", "sub_A", T, "evt_a1"))).status_code == 200
            await eventually(lambda: len(sink.requests) == 1)
            # sub_A's cancel and update arrive (cancel first, though it happened last); sub_B starts meanwhile
            for body in (
                subscription("deleted", "sub_A", T + 20, "evt_a3"),
                subscription("updated", "sub_A", T + 10, "evt_a2"),
                subscription("created", "sub_B", T + 5, "evt_b1"),
            ):
                assert (await bridge.post_stripe(body)).status_code == 200
            await eventually(lambda: arrived(sink.requests, "sub_B") == ["subscription_started"])

            rows = {(d["event_name"], d["status"]) for d in await bridge.deliveries()}
            assert ("subscription_started", "dead") in rows
            assert {("subscription_updated", "pending"), ("subscription_canceled", "pending")} <= rows
            assert arrived(sink.requests, "sub_A") == []
            [dead] = await bridge.deliveries(status="dead")
            assert dead["ordering_key"] == "stripe:sub_A"

            csrf = await login(bridge)
            page = await bridge.client.get("/ops/ui/deliveries?status=dead")
            assert 'action="/ops/ui/deliveries/skip"' in page.text and ">Skip</button>" in page.text
            done = await bridge.client.post(
                "/ops/ui/deliveries/skip", data={"id": str(dead["id"]), "csrf": csrf, "back": "/ops/ui/deliveries"}
            )
            assert done.status_code == 303 and "skipped" in done.headers["location"]
            await eventually(
                lambda: arrived(sink.requests, "sub_A") == ["subscription_updated", "subscription_canceled"]
            )
            skipped = (await bridge.ops("GET", f"/ops/deliveries/{dead['id']}")).json()
            assert skipped["status"] == "dead" and skipped["skipped_at"] is not None
            page = await bridge.client.get("/ops/ui/deliveries?status=dead")
            assert "skipped " in page.text and ">Skip</button>" not in page.text


async def test_skip_from_the_json_api_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with recorder() as (sink, url):
        sink.script(400)
        async with running_bridge(tmp_path, destinations={"crm": ordered_hook(url)}) as bridge:
            assert (await bridge.post_stripe(subscription("created", "sub_C", T, "evt_c1"))).status_code == 200
            assert (await bridge.post_stripe(subscription("deleted", "sub_C", T + 9, "evt_c2"))).status_code == 200
            [dead] = await eventually(lambda: bridge.deliveries(status="dead"))
            assert (await bridge.ops("POST", "/ops/deliveries/999999/skip")).status_code == 404
            assert (await bridge.ops("POST", f"/ops/deliveries/{dead['id']}/skip")).json() == {"skipped": 1}
            await eventually(lambda: arrived(sink.requests, "sub_C") == ["subscription_canceled"])
            [delivered] = await bridge.deliveries(status="delivered")
            refused = await bridge.ops("POST", f"/ops/deliveries/{delivered['id']}/skip")
            assert refused.status_code == 409 and "only dead or pending" in refused.json()["error"]

            async with serve(bridge.app, lifespan="off") as base:
                common = ["--config", str(tmp_path / "bridge.yaml"), "--url", base]
                assert await asyncio.to_thread(main, ["outbox", "skip", str(dead["id"]), *common]) == 0
                assert json.loads(capsys.readouterr().out) == {"skipped": 0}  # skipped already
                assert await asyncio.to_thread(main, ["outbox", "skip", str(delivered["id"]), *common]) == 1
                assert "409" in capsys.readouterr().err
                assert await asyncio.to_thread(main, ["outbox", "skip", *common]) == 2


async def login(bridge: Bridge) -> str:
    response = await bridge.client.post("/ops/login", data={"token": OPS_TOKEN, "next": "/ops/"})
    assert response.status_code == 303, response.text
    match = CSRF.search((await bridge.client.get("/ops/")).text)
    assert match is not None
    return match.group(1)
