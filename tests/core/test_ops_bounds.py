"""Every number the ops API takes from a query, a path or a JSON body is range-checked before use: out of range
is a 4xx, never a 5xx (SQLite refuses integers past 64 bits with an OverflowError)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Bridge, running_bridge, stripe_case

HUGE = "99999999999999999999999"


def bridge_at(tmp_path: Path) -> AbstractAsyncContextManager[Bridge]:
    return running_bridge(
        tmp_path, destinations={"capture": {"type": "http", "url": "http://127.0.0.1:9/x"}}, dispatch=False
    )


async def seeded(bridge: Bridge) -> int:
    response = await bridge.post_stripe(stripe_case("checkout.session.completed"))
    assert response.status_code == 200, response.text
    [webhook_id] = response.json()["webhook_ids"]
    return int(webhook_id)


@pytest.mark.parametrize(
    ("method", "path", "params", "status"),
    [
        ("GET", "/ops/deliveries", {"cursor": HUGE}, 400),
        ("GET", "/ops/deliveries", {"cursor": "-1"}, 400),
        ("GET", "/ops/deliveries", {"cursor": "１２"}, 400),  # non-ASCII digits int() would take
        ("GET", "/ops/deliveries", {"limit": HUGE}, 400),
        ("GET", "/ops/deliveries", {"limit": "9" * 5000}, 400),  # past int()'s 4300-digit limit
        ("GET", "/ops/webhooks", {"cursor": HUGE}, 400),
        ("GET", "/ops/webhooks", {"since": "nan"}, 400),
        ("GET", "/ops/webhooks", {"since": "inf"}, 400),
        ("GET", "/ops/webhooks", {"until": "1e400"}, 400),
        ("GET", "/ops/webhooks", {"until": "-5"}, 400),
        ("GET", f"/ops/deliveries/{HUGE}", {}, 404),
        ("GET", f"/ops/deliveries/{'9' * 5000}", {}, 404),
        ("GET", f"/ops/webhooks/{HUGE}", {}, 404),
        ("POST", f"/ops/deliveries/{HUGE}/retry", {}, 404),
        ("POST", f"/ops/webhooks/{HUGE}/replay", {}, 404),
        ("POST", "/ops/outbox/purge", {"older_than_days": "nan"}, 400),
        ("POST", "/ops/outbox/purge", {"older_than_days": "inf"}, 400),
        ("POST", "/ops/outbox/purge", {"older_than_days": "1e400"}, 400),
        # the status page takes the same numbers
        ("GET", "/ops/ui/deliveries", {"cursor": HUGE}, 400),
        ("GET", "/ops/ui/deliveries", {"cursor": "١٢"}, 400),
        ("GET", "/ops/ui/deliveries", {"since": "nan"}, 400),
        ("GET", "/ops/ui/webhooks", {"cursor": HUGE}, 400),
        ("GET", "/ops/ui/webhooks", {"until": "1e400"}, 400),
        ("GET", f"/ops/ui/webhooks/{HUGE}", {}, 404),
        ("GET", "/ops/ui/webhooks/12345", {}, 404),
    ],
)
async def test_out_of_range_numbers_in_queries_and_paths_are_4xx(
    tmp_path: Path, method: str, path: str, params: dict[str, str], status: int
) -> None:
    async with bridge_at(tmp_path) as bridge:
        await seeded(bridge)
        response = await bridge.ops(method, path, params=params)
        assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"ids": [int(HUGE)]},
        {"ids": [-1]},
        {"ids": [True]},
        {"ids": [1.5]},
        {"source": "stripe", "limit": int(HUGE)},
        {"source": "stripe", "limit": -3},
        {"source": "stripe", "since": 1e300},
        {"source": "stripe", "until": True},
    ],
)
async def test_out_of_range_numbers_in_json_bodies_are_400(tmp_path: Path, body: dict[str, Any]) -> None:
    async with bridge_at(tmp_path) as bridge:
        await seeded(bridge)
        response = await bridge.ops("POST", "/ops/webhooks/replay", json={**body, "dry_run": True})
        assert response.status_code == 400, response.text


async def test_out_of_range_ids_in_the_status_page_retry_form_are_400(tmp_path: Path) -> None:
    async with bridge_at(tmp_path) as bridge:
        await seeded(bridge)
        response = await bridge.ops("POST", "/ops/ui/deliveries/retry", data={"ids": [HUGE]})
        assert response.status_code == 400, response.text


async def test_numbers_in_range_still_work(tmp_path: Path) -> None:
    async with bridge_at(tmp_path) as bridge:
        webhook_id = await seeded(bridge)
        [delivery] = await bridge.deliveries(cursor=str(2**63 - 1))
        assert (await bridge.ops("GET", f"/ops/deliveries/{delivery['id']}")).status_code == 200
        assert (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).status_code == 200
        listed = await bridge.ops("GET", "/ops/webhooks", params={"since": "0", "until": "253402300799"})
        assert [w["id"] for w in listed.json()["webhooks"]] == [webhook_id]
        replay = await bridge.ops("POST", "/ops/webhooks/replay", json={"ids": [webhook_id], "dry_run": True})
        assert replay.status_code == 200 and replay.json()["replayed"] == 1
        purge = await bridge.ops("POST", "/ops/outbox/purge", json={"older_than_days": 36500})
        assert purge.status_code == 200
