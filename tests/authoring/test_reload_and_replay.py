"""Mapping authoring through the running service: hot reload and replay, over HTTP, on a real SQLite outbox."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import httpx

from bridge.app import create_app
from bridge.config import load_settings
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve
from tests.core.test_delivery import API_KEY, eventually
from tests.harness import MAPPINGS, Bridge, running_bridge, stripe_case, write_config
from tests.sentinel import send_sentinel, settled, without_sentinel

BROKEN_TOTAL = "minor_to_major(data.object.amount_received, data.object.currency, 'stripe')"
PI_TOTAL_LINE = f'        order.total: "{BROKEN_TOTAL}"\n'  # in the payment_intent.succeeded rule


def copy_mappings(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def convultra(url: str) -> dict[str, Any]:
    return {"convultra": {"type": "convultra", "url": f"{url}/v1/track", "api_key": API_KEY, "events": ["purchase"]}}


async def purchases(fake: ConvultraFake) -> list[dict[str, Any]]:
    out = []
    for request in fake.received:
        body = request["json"]
        out += body["events"] if "events" in body else [body]
    return out


async def test_broken_edit_is_rejected_and_a_good_edit_is_used(tmp_path: Path) -> None:
    mappings = copy_mappings(tmp_path)
    stripe_yaml = mappings / "stripe.yaml"
    assert BROKEN_TOTAL in stripe_yaml.read_text()
    fake = ConvultraFake(API_KEY)
    async with serve(fake.app) as url:
        async with running_bridge(tmp_path, destinations=convultra(url), extra={"mappings": str(mappings)}) as bridge:
            before = (await bridge.ops("GET", "/ops/mappings")).json()
            reloader = bridge.state.reloader
            assert reloader is not None

            # 1. a typo: the edit is refused, the old mapping keeps serving
            original = stripe_yaml.read_text()
            edit(stripe_yaml, BROKEN_TOTAL, "minor_to_major(data.object.amount_received, data.object.currency")
            status = reloader.reload()
            assert not status.ok and "stripe.yaml" in status.errors[0]
            assert (await bridge.ops("GET", "/ops/mappings")).json()["version"] == before["version"]
            assert (await bridge.post_stripe(stripe_case("payment_intent.succeeded"))).status_code == 200
            [first] = await eventually(lambda: purchases(fake))
            assert str(first["properties"]["value"]) == "10.99"

            # 2. a good edit (a new field), picked up by the file watcher without a restart
            stripe_yaml.write_text(original)
            edit(stripe_yaml, PI_TOTAL_LINE, PI_TOTAL_LINE + "        order.coupon: \"'SPRING'\"\n")
            await eventually(lambda: _version_changed(bridge, before["version"]), timeout=10)
            mapping_status = (await bridge.ops("GET", "/ops/mappings")).json()
            assert mapping_status["last_reload"]["ok"] is True
            body = stripe_case("payment_intent.succeeded").replace(b"pi_1PgafyB7WZ01zgkWSjxsAJo3", b"pi_second")
            body = body.replace(b'"evt_golden_payment_intent_succeeded"', b'"evt_second"')
            assert (await bridge.post_stripe(body)).status_code == 200
            stored = await eventually(lambda: _delivery_event(bridge, "pi_second"))
            assert stored["order"]["coupon"] == "SPRING"


async def test_sighup_reloads(tmp_path: Path) -> None:
    """Only the signal can reload here: the file watcher is off (reload_interval=None)."""
    mappings = copy_mappings(tmp_path)
    settings = load_settings(write_config(tmp_path, destinations={}, extra={"mappings": str(mappings)}), {})
    app = create_app(settings, dispatch=False, reload_interval=None)
    async with app.router.lifespan_context(app):
        bridge = Bridge(app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b"), settings)
        async with bridge.client:
            version = (await bridge.ops("GET", "/ops/mappings")).json()["version"]
            edit(mappings / "stripe.yaml", PI_TOTAL_LINE, PI_TOTAL_LINE + "        order.channel: \"'web'\"\n")
            os.kill(os.getpid(), signal.SIGHUP)
            await eventually(lambda: _version_changed(bridge, version))
            assert (await bridge.ops("GET", "/ops/mappings")).json()["last_reload"]["ok"] is True


async def test_replay_fixes_a_mapping_failed_webhook_and_delivers_it_once(tmp_path: Path) -> None:
    mappings = copy_mappings(tmp_path)
    stripe_yaml = mappings / "stripe.yaml"
    original = stripe_yaml.read_text()
    # a mapping bug that only shows at run time: text where money is expected
    edit(stripe_yaml, BROKEN_TOTAL, "data.object.id")
    fake = ConvultraFake(API_KEY)
    async with serve(fake.app) as url:
        async with running_bridge(tmp_path, destinations=convultra(url), extra={"mappings": str(mappings)}) as bridge:
            response = await bridge.post_stripe(stripe_case("payment_intent.succeeded"))
            assert response.json()["status"] == "mapping_failed"
            [webhook_id] = response.json()["webhook_ids"]

            # dry run with the bug still there: nothing changes
            dry = (await bridge.ops("POST", f"/ops/webhooks/{webhook_id}/replay", json={"dry_run": True})).json()
            assert dry["status_after"] == "mapping_failed" and "result" not in dry

            stripe_yaml.write_text(original)  # the fix
            assert bridge.state.reloader is not None and bridge.state.reloader.reload().ok

            dry = (await bridge.ops("POST", f"/ops/webhooks/{webhook_id}/replay?dry_run=1")).json()
            assert dry["status_before"] == "mapping_failed" and dry["status_after"] == "accepted"
            assert dry["events"]["added"] == [["purchase", "pi_1PgafyB7WZ01zgkWSjxsAJo3"]]
            assert [d["action"] for d in dry["deliveries"]] == ["create"]
            assert (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).json()["status"] == "mapping_failed"
            assert await bridge.deliveries() == []

            done = (await bridge.ops("POST", f"/ops/webhooks/{webhook_id}/replay")).json()
            assert done["result"] == {"created": 1, "skipped": 0, "reset": 0}
            await eventually(lambda: len(fake.received) == 1)

            # replaying again (and in bulk) never sends it twice...
            again = (await bridge.ops("POST", "/ops/webhooks/replay", json={"source": "stripe"})).json()
            assert again["deliveries"] == {"skip": 1}
            sentinel = await send_sentinel(bridge, [fake])  # posted after the replay: once it is in, all is in
            await settled(bridge)
            assert len(fake.received) == 2 and len(without_sentinel(fake.received, sentinel)) == 1
            # ...unless forced
            forced = (await bridge.ops("POST", f"/ops/webhooks/{webhook_id}/replay", json={"force": True})).json()
            assert forced["result"]["reset"] == 1
            await eventually(lambda: len(fake.received) == 3)
            assert (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).json()["status"] == "accepted"


async def _version_changed(bridge: Bridge, version: str) -> bool:
    return bool((await bridge.ops("GET", "/ops/mappings")).json()["version"] != version)


async def _delivery_event(bridge: Bridge, event_id: str) -> dict[str, Any] | None:
    for row in await bridge.deliveries():
        if row["event_id"] == event_id:
            detail: dict[str, Any] = (await bridge.ops("GET", f"/ops/deliveries/{row['id']}")).json()
            return detail["event"]  # type: ignore[no-any-return]
    return None
