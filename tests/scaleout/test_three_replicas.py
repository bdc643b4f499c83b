"""Three `bridge serve` processes on one PostgreSQL database behave as one bridge. Webhooks are posted round-robin;
the replica sending for Zenovay is SIGKILLed mid-run. Then: every acknowledged webhook reached every destination
it routes to; the only duplicates are deliveries the killed replica had in flight; Zenovay's strict sink (60
requests per 10 s, answering 429 past it) never saw the limit exceeded by the three together; and each
subscription's events reached the `ordering: by_key` destination in the order they occurred, though the first
attempt of every start failed and was retried.

Real processes, a real database (created fresh on 127.0.0.1:5432 and dropped), real sinks on 127.0.0.1. Time is
the wall clock: the counts are kept small (90 Zenovay requests: a full window and a half)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.sinks.server import free_port, serve
from bridge.sinks.zenovay import ZenovayFake
from tests.harness import OPS_TOKEN, stripe_headers
from tests.outbox.conftest import fresh_database
from tests.scaleout.procs import Replica, write_config
from tests.scaleout.support import most_in_window, purchase, subscription

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PURCHASES = 90
SUBSCRIPTIONS = 6
KILL_AFTER = 45  # purchases posted before the Zenovay sender is killed
T = 1_720_000_000
ORDER = ["subscription_started", "subscription_updated", "subscription_canceled"]


class OrderedSink:
    """The `by_key` destination: records every request; the first attempt of each subscription start fails (503),
    so its retry interleaves with the events after it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._failed: set[str] = set()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        event = await request.json()
        key = request.headers.get("idempotency-key", "")
        status = 200
        if event["name"] == "subscription_started" and key not in self._failed:
            self._failed.add(key)
            status = 503
        self.requests.append({"key": key, "event": event, "status": status})
        return JSONResponse({"ok": status == 200}, status_code=status)

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] == 200]


def zenovay_ids(fake: ZenovayFake) -> list[str]:
    return [r["json"]["properties"]["event_id"] for r in fake.received]


async def owner_pid(dsn: str, destination: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        owner = await conn.fetchval("SELECT owner FROM lanes WHERE destination = $1", destination)
    finally:
        await conn.close()
    if owner is None:
        return None
    host, pid, _ = owner.split(":", 2)
    assert host == socket.gethostname()
    return int(pid)


async def in_flight_of(dsn: str, pid: int) -> set[tuple[str, str]]:
    """(destination, event id) of the deliveries leased by the process `pid` (its work in flight)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT destination, event_id FROM deliveries WHERE status = 'in_flight' AND lease_owner LIKE $1",
            f"{socket.gethostname()}:{pid}:%",
        )
    finally:
        await conn.close()
    return {(row[0], row[1]) for row in rows}


async def test_three_replicas_one_bridge(tmp_path: Path) -> None:
    zenovay = ZenovayFake("zcode123")
    crm = OrderedSink()
    async with AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(fresh_database())
        zen_url = await stack.enter_async_context(serve(zenovay.app))
        crm_url = await stack.enter_async_context(serve(crm.app))
        config = write_config(
            tmp_path / "bridge.yaml",
            dsn,
            {
                "zenovay": {
                    "type": "zenovay",
                    "url": f"{zen_url}/e/zcode123",
                    "default_url": "https://shop.example.com/checkout/success",
                    "events": ["purchase"],
                    "concurrency": 16,
                    "timeout_seconds": 1,
                },
                "crm": {
                    "type": "http",
                    "url": f"{crm_url}/hook",
                    "ordering": "by_key",
                    "events": ["*"],
                    "concurrency": 8,
                    "timeout_seconds": 1,
                },
            },
            dispatcher={
                "lease_seconds": 5,
                "lane_lease_seconds": 3,
                "poll_seconds": 1,
                "retry": {"schedule": [0.5, 1, 1, 2, 2, 2, 2], "jitter": 0},
            },
        )
        replicas = [Replica(config, free_port(), tmp_path / f"replica{i}.log") for i in range(3)]
        stack.callback(lambda: [r.stop() for r in replicas])
        for replica in replicas:
            replica.start()  # together: their migrations race on the fresh database
        await asyncio.gather(*(replica.ready() for replica in replicas))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (sender := await owner_pid(dsn, "zenovay")) is None:
            assert loop.time() < deadline, "nobody took the Zenovay lane"
            await asyncio.sleep(0.1)
        victim = next(r for r in replicas if r.pid == sender)

        bodies: list[tuple[str, bytes]] = []
        for n in range(SUBSCRIPTIONS):  # each subscription's events in order, each to another replica
            for step, kind in enumerate(("created", "updated", "deleted")):
                bodies.append((f"sub_{n}", subscription(kind, f"sub_scale_{n}", T + 10 * step, f"evt_s{n}_{step}")))
        bodies += [(f"pi_scale_{i}", purchase(i, time.time())) for i in range(PURCHASES)]

        acknowledged: set[str] = set()
        possibly_twice: set[tuple[str, str]] = set()
        live = list(replicas)
        async with httpx.AsyncClient(timeout=10) as client:
            for index, (name, body) in enumerate(bodies):
                if index == SUBSCRIPTIONS * 3 + KILL_AFTER:
                    victim.kill()
                    live.remove(victim)
                    possibly_twice = await in_flight_of(dsn, victim.pid)
                target = live[index % len(live)]
                url = f"{target.base}/webhooks/stripe"
                response = await client.post(url, content=body, headers=stripe_headers(body))
                assert response.status_code == 200, (target.port, response.status_code, response.text)
                acknowledged.add(name)

        purchases = {name for name in acknowledged if name.startswith("pi_")}
        assert len(purchases) == PURCHASES and len(acknowledged) == PURCHASES + SUBSCRIPTIONS

        def subscription_names(sub: str) -> list[str]:
            return [r["event"]["name"] for r in crm.accepted() if r["event"].get("subscription", {}).get("id") == sub]

        def all_arrived() -> bool:
            crm_purchases = {r["event"]["id"] for r in crm.accepted() if r["event"]["name"] == "purchase"}
            subs_done = all(
                set(subscription_names(f"sub_scale_{n}")) == set(ORDER) for n in range(SUBSCRIPTIONS)
            )
            return purchases <= set(zenovay_ids(zenovay)) and purchases <= crm_purchases and subs_done

        deadline = loop.time() + 60
        while not all_arrived():
            if loop.time() > deadline:
                async with httpx.AsyncClient(headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as client:
                    status = (await client.get(f"{live[0].base}/ops/outbox")).text
                raise AssertionError(
                    f"not everything arrived: zenovay {len(set(zenovay_ids(zenovay)))}/{PURCHASES}, "
                    f"crm {len(crm.accepted())}; {status}"
                )
            await asyncio.sleep(0.2)

        # duplicates: only deliveries the killed replica had leased
        zen_twice = {("zenovay", key) for key, n in Counter(zenovay_ids(zenovay)).items() if n > 1}
        crm_twice = {("crm", key) for key, n in Counter(r["key"] for r in crm.accepted()).items() if n > 1}
        assert zen_twice | crm_twice <= possibly_twice, (zen_twice | crm_twice) - possibly_twice

        # one limit for the fleet: Zenovay's strict sink refused nothing and counted at most 60 in any 10 s
        assert zenovay.rejected == [], [(r["status"], r["why"]) for r in zenovay.rejected[:3]]
        arrivals = [r["at"] for r in zenovay.received]
        assert most_in_window(arrivals, 10.0) <= 60
        assert max(arrivals) - min(arrivals) >= 10  # 90 requests really spanned more than one window

        # ordered keys: each subscription's events in the order they occurred (a resend of the killed
        # replica's in-flight event may repeat it, never move it)
        for n in range(SUBSCRIPTIONS):
            names = subscription_names(f"sub_scale_{n}")
            collapsed = [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]
            assert collapsed == ORDER, (n, names)
