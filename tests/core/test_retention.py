"""Retention without amnesia, through the running app: the periodic purge (clock injected) deletes delivered rows
after `retention.delivered_days`, yet the same signed webhook replayed afterwards is still a duplicate and nothing
is delivered again; keys go only after `retention.dedup_days`. `bridge outbox purge` applies the same rule."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.cli import main
from bridge.clock import ManualClock
from bridge.config import parse_settings
from bridge.errors import ConfigError
from bridge.maintenance import Maintenance
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve
from tests.harness import FIXTURES, MAPPINGS, Bridge, running_bridge
from tests.providers.signing import sign

API_KEY = "cv_server_key_for_retention_tests"
SHOPIFY_SECRET = "shpss_retention_test_secret"
DAY = 86400.0
ORDER = (FIXTURES / "shopify" / "orders-create.json").read_bytes()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def order(order_id: int) -> bytes:
    document = orjson.loads(ORDER)
    document["id"] = order_id
    return orjson.dumps(document)


@asynccontextmanager
async def shop(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[Bridge, ConvultraFake]]:
    fake = ConvultraFake(API_KEY)
    async with serve(fake.app) as url:
        destinations = {"convultra": {"type": "convultra", "url": f"{url}/v1/track", "api_key": API_KEY}}
        extra = {
            "sources": {"shop": {"provider": "shopify", "secrets": [SHOPIFY_SECRET]}},
            "retention": {"delivered_days": 30, "dedup_days": 90},
        }
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, extra=extra) as bridge:
            yield bridge, fake


async def post(bridge: Bridge, body: bytes, webhook_id: str) -> Any:
    headers = sign("shopify", body, secret=SHOPIFY_SECRET, now=0, event_id=webhook_id)
    response = await bridge.client.post("/webhooks/shop", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def delivered(bridge: Bridge, fake: ConvultraFake, count: int) -> None:
    """Wait until the fake has `count` requests and every delivery is recorded as delivered."""
    await eventually(lambda: len(fake.received) == count)

    async def all_recorded() -> bool:
        return all(d["status"] == "delivered" for d in await bridge.deliveries())

    await eventually(all_recorded)


def maintenance(bridge: Bridge) -> Maintenance:
    task: Maintenance = bridge.app.state.maintenance
    return task


async def test_the_automatic_purge_never_lets_a_replayed_webhook_in(tmp_path: Path) -> None:
    clock = ManualClock()
    async with shop(tmp_path, clock) as (bridge, fake):
        first = await post(bridge, ORDER, "wh-1")
        assert first["status"] == "accepted"
        [webhook_id] = first["webhook_ids"]
        await delivered(bridge, fake, 1)

        clock.advance(31 * DAY)
        report = await maintenance(bridge).run_now()
        assert (report.at, report.deliveries, report.webhooks, report.keys) == (clock.now(), 1, 1, 0)
        assert (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).status_code == 404
        assert await bridge.deliveries() == []

        # the captured request replayed as is, and under a new webhook id: duplicates, nothing stored or sent
        for replayed_id in ("wh-1", "wh-replayed"):
            assert await post(bridge, ORDER, replayed_id) == {"status": "duplicate", "webhook_ids": [webhook_id]}
        sentinel = await post(bridge, order(450789470), "wh-2")  # posted after: once it arrives, so would they
        assert sentinel["status"] == "accepted"
        await delivered(bridge, fake, 2)
        assert [r["json"]["properties"]["order_id"] for r in fake.received] == ["450789469", "450789470"]
        assert len(await bridge.deliveries()) == 1

        # past the dedup horizon the purged webhook's keys (event id, body, delivered fact) go too
        clock.advance(60 * DAY)
        report = await maintenance(bridge).run_now()
        assert (report.deliveries, report.webhooks, report.keys) == (1, 1, 3)
        assert (await post(bridge, ORDER, "wh-1"))["status"] == "accepted"


async def test_bridge_outbox_purge_applies_the_same_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = ManualClock()
    async with shop(tmp_path, clock) as (bridge, fake):
        first = await post(bridge, ORDER, "wh-1")
        await delivered(bridge, fake, 1)
        clock.advance(29 * DAY)
        async with serve(bridge.app, lifespan="off") as url:
            common = ["--config", str(tmp_path / "bridge.yaml"), "--url", url]
            assert await asyncio.to_thread(main, ["outbox", "purge", *common]) == 0
            assert json.loads(capsys.readouterr().out) == {
                "deleted_deliveries": 0,
                "deleted_webhooks": 0,
                "deleted_keys": 0,
            }
            clock.advance(2 * DAY)
            assert await asyncio.to_thread(main, ["outbox", "purge", *common]) == 0
            assert json.loads(capsys.readouterr().out) == {
                "deleted_deliveries": 1,
                "deleted_webhooks": 1,
                "deleted_keys": 0,
            }
        assert await post(bridge, ORDER, "wh-1") == {"status": "duplicate", "webhook_ids": first["webhook_ids"]}
        refused = await bridge.ops("POST", "/ops/outbox/purge", json={"older_than_days": 0.5})
        assert refused.status_code == 400


# -- the config -----------------------------------------------------------------------------------------------


def settings(text: str) -> Any:
    base = f"outbox: {{url: 'sqlite:///o.db'}}\nmappings: {MAPPINGS}\n"
    return parse_settings(base + text, "bridge.yaml", {}, base_dir=Path("/tmp"))


def test_retention_and_outbox_timeouts_are_read_and_checked() -> None:
    default = settings("")
    assert (default.retention.delivered_days, default.retention.dedup_days) == (30.0, 90.0)
    assert (default.outbox_timeouts.acquire_seconds, default.outbox_timeouts.statement_seconds) == (5.0, 5.0)
    given = settings("retention: {delivered_days: 0, dedup_days: 365}\n")
    assert (given.retention.delivered_days, given.retention.dedup_days) == (0.0, 365.0)
    timed = parse_settings(
        f"outbox: {{url: 'sqlite:///o.db', acquire_timeout_seconds: 2, statement_timeout_seconds: 3}}\n"
        f"mappings: {MAPPINGS}\n",
        "bridge.yaml",
        {},
        base_dir=Path("/tmp"),
    )
    assert (timed.outbox_timeouts.acquire_seconds, timed.outbox_timeouts.statement_seconds) == (2.0, 3.0)

    with pytest.raises(ConfigError, match=r"bridge.yaml:4:\d+: dedup_days 7 is shorter .*hint: use at least 30"):
        settings("retention:\n  dedup_days: 7\n")
    with pytest.raises(ConfigError, match="unknown key 'delivered_day' in retention.*did you mean 'delivered_days'"):
        settings("retention: {delivered_day: 3}\n")
    with pytest.raises(ConfigError, match="'acquire_timeout_seconds' must be a number"):
        parse_settings(
            f"outbox: {{url: 'sqlite:///o.db', acquire_timeout_seconds: 0}}\nmappings: {MAPPINGS}\n",
            "bridge.yaml",
            {},
            base_dir=Path("/tmp"),
        )
