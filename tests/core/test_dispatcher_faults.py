"""Nothing that goes wrong with one event or one batch may stop a destination: a header the HTTP client refuses,
a bug in a destination module, a store that cannot record a result, a task that ends, a timeout longer than
the lease. Each case goes through the real app (signed webhooks over HTTP, a real SQLite file) and a real
endpoint on 127.0.0.1, and ends with a later event still being delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.config import DispatcherSettings
from bridge.destinations.base import Destination, Outcome
from bridge.destinations.http import HttpDestination
from bridge.dispatcher import Dispatcher, new_session
from bridge.sinks.elevar import PATH as ELEVAR_PATH
from bridge.sinks.elevar import ElevarFake
from bridge.sinks.server import serve
from tests.core.dispatch_helpers import (
    SHOPIFY_SOURCE,
    by_event_id,
    delivery_detail,
    post_shopify,
    recorder,
    shopify_order,
)
from tests.core.test_delivery import eventually
from tests.harness import Bridge, running_bridge, stripe_case

START = 1_900_000_000.0


def dispatcher_of(bridge: Bridge) -> Dispatcher:
    assert bridge.state.dispatcher is not None
    return bridge.state.dispatcher


async def status_of(bridge: Bridge, destination: str, event_id: str, status: str) -> dict[str, Any] | None:
    row = (await by_event_id(bridge, destination)).get(event_id)
    if row is None or row["status"] != status:
        return None
    return await delivery_detail(bridge, row["id"])


# -- a header value HTTP forbids ----------------------------------------------------------------------------


async def test_control_characters_in_a_shoppers_user_agent_are_removed_and_the_lane_goes_on(tmp_path: Path) -> None:
    """Elevar forwards the shopper's user agent and IP from Shopify's `client_details`; aiohttp refuses control
    characters in headers. One such order used to kill the lane's worker and leave every later order in_flight."""
    clock = ManualClock(START)
    fake = ElevarFake("site-1", "elevar-key")
    async with serve(fake.app) as url:
        destinations = {
            "elevar": {
                "type": "elevar",
                "url": f"{url}{ELEVAR_PATH}",
                "website_id": "site-1",
                "server_key": "elevar-key",
                "default_source_url": "https://shop.example.com/",
                "concurrency": 1,
            }
        }
        async with running_bridge(
            tmp_path, destinations=destinations, clock=clock, extra={"sources": SHOPIFY_SOURCE}
        ) as bridge:
            hostile = shopify_order(
                5001, user_agent="Mozilla/5.0\x01 (X11;\x7f Linux)\x1b[31m", browser_ip="203.0.113.9\x00"
            )
            assert (await post_shopify(bridge, hostile, clock.now(), "wh-5001")).status_code == 200
            sentinel = shopify_order(5002, user_agent="Mozilla/5.0 (Macintosh)", browser_ip="198.51.100.4")
            assert (await post_shopify(bridge, sentinel, clock.now(), "wh-5002")).status_code == 200

            await eventually(lambda: status_of(bridge, "elevar", "5002", "delivered"))
            first = await eventually(lambda: status_of(bridge, "elevar", "5001", "delivered"))
            assert [a["status_code"] for a in first["attempts"]] == [204]
            agents = {r["json"]["event_id"]: r["headers"] for r in fake.received}
            assert agents["5001"]["user-agent"] == "Mozilla/5.0 (X11; Linux)[31m"
            assert agents["5001"]["x-forwarded-for"] == "203.0.113.9"
            assert agents["5002"]["user-agent"] == "Mozilla/5.0 (Macintosh)"
            assert fake.rejected == []


async def test_a_control_character_in_an_idempotency_key_is_dead_naming_the_header(tmp_path: Path) -> None:
    """The http destination sends the event id as Idempotency-Key. An id is not altered to fit: the delivery goes
    dead saying which header, and the lane delivers the next event."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            document = json.loads(stripe_case("payment_intent.succeeded"))
            document["id"] = "evt_control_character_test"
            document["data"]["object"]["id"] = "pi_\x01forged"
            body = json.dumps(document).encode()
            assert (await bridge.post_stripe(body, timestamp=clock.now())).status_code == 200
            sentinel = stripe_case("charge.refunded")
            assert (await bridge.post_stripe(sentinel, timestamp=clock.now())).status_code == 200

            rows = await eventually(lambda: _settled(bridge, "hook", 2))
            dead = next(r for r in rows if r["status"] == "dead")
            assert dead["event_id"] == "pi_\x01forged"
            detail = await delivery_detail(bridge, dead["id"])
            [attempt] = detail["attempts"]
            assert attempt["status_code"] is None
            assert "header Idempotency-Key" in attempt["error"] and "control character (0x01" in attempt["error"]
            assert "forged" not in attempt["error"]  # the value itself is never quoted (it may be a secret)
            assert [r["status"] for r in rows if r["id"] != dead["id"]] == ["delivered"]
            assert len(sink.requests) == 1 and sink.requests[0]["json"]["name"] == "refund"


async def _settled(bridge: Bridge, destination: str, count: int) -> list[dict[str, Any]] | None:
    rows = await bridge.deliveries(destination=destination)
    done = [r for r in rows if r["status"] in ("delivered", "dead")]
    return rows if len(done) == count else None


# -- bugs in a destination module, tasks that end -------------------------------------------------------------


class Brittle(HttpDestination):
    """An http destination with bugs on demand: reading `max_batch` raises in the task whose name starts with
    `crash_in` (the first `crashes` times); `classify` raises the first `classify_fails` times."""

    crash_in = ""
    crashes = 0
    classify_fails = 0

    @property  # type: ignore[override]
    def max_batch(self) -> int:
        task = asyncio.current_task()
        if self.crashes and task is not None and task.get_name().startswith(self.crash_in):
            self.crashes -= 1
            raise RuntimeError("a bug in the destination module")
        return 1

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if self.classify_fails:
            self.classify_fails -= 1
            raise KeyError("a bug in classify")
        return super().classify(status, headers, body)


@asynccontextmanager
async def own_dispatcher(
    bridge: Bridge, destinations: Mapping[str, Destination], clock: ManualClock, settings: DispatcherSettings
) -> AsyncIterator[Dispatcher]:
    """A dispatcher built by the test (own destinations or settings) serving the app's outbox, installed in the
    app's state so ingest wakes it and /ops and /readyz report it."""
    async with new_session() as session:
        dispatcher = Dispatcher(bridge.state.outbox, destinations, session, clock, settings)  # type: ignore[arg-type]
        bridge.state.dispatcher = dispatcher
        await dispatcher.start()
        try:
            yield dispatcher
        finally:
            await dispatcher.stop()
            bridge.state.dispatcher = None


@pytest.mark.parametrize("crash_in", ["dispatcher-claim", "dispatcher-hook-0"])
async def test_a_claim_loop_or_worker_that_dies_is_started_again_and_counted(tmp_path: Path, crash_in: str) -> None:
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, dispatch=False) as bridge:
            hook = Brittle(bridge.settings.destinations["hook"])
            hook.crash_in, hook.crashes = crash_in, 2
            async with own_dispatcher(bridge, {"hook": hook}, clock, bridge.settings.dispatcher) as dispatcher:
                assert (
                    await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
                ).status_code == 200
                await eventually(lambda: _settled(bridge, "hook", 1))
                assert len(sink.requests) == 1
                outbox = (await bridge.ops("GET", "/ops/outbox")).json()
                if crash_in == "dispatcher-claim":
                    assert dispatcher.claim_restarts == 2
                    assert outbox["dispatcher"]["claim_restarts"] == 2
                else:
                    assert outbox["destinations"]["hook"]["restarts"] == 2
                assert outbox["destinations"]["hook"]["delivered"] == 1


async def test_an_exception_in_classify_is_a_retry_with_its_reason(tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, dispatch=False) as bridge:
            hook = Brittle(bridge.settings.destinations["hook"])
            hook.classify_fails = 1
            async with own_dispatcher(bridge, {"hook": hook}, clock, bridge.settings.dispatcher) as dispatcher:
                assert (
                    await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
                ).status_code == 200
                row = await eventually(lambda: _pending_with_attempts(bridge, "hook", 1))
                [attempt] = row["attempts"]
                assert attempt["error"] == "request failed: KeyError: 'a bug in classify'"
                assert row["next_attempt_at"] == clock.now() + 10  # the schedule's first step: a retry like any other
                assert dispatcher.lane_stats()["hook"].internal_errors == 1
                clock.advance(10)
                dispatcher.wake()
                row = await eventually(lambda: _settled(bridge, "hook", 1))
                assert row[0]["status"] == "delivered" and len(sink.requests) == 2


async def _pending_with_attempts(bridge: Bridge, destination: str, count: int) -> dict[str, Any] | None:
    rows = await bridge.deliveries(destination=destination, status="pending")
    if not rows:
        return None
    detail = await delivery_detail(bridge, rows[0]["id"])
    return detail if len(detail["attempts"]) == count else None


# -- a store that cannot record, a lease shorter than the request -----------------------------------------


async def test_a_result_that_cannot_be_recorded_is_logged_and_sent_again_after_its_lease(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the SQLite write lock while the answer comes back, so recording the attempt fails
    (after the 5 s busy timeout). The lease then runs out and the delivery is taken and sent again."""
    clock = ManualClock(START)
    caplog.set_level(logging.ERROR, logger="bridge.dispatcher")
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            dispatcher = dispatcher_of(bridge)
            sink.hold = True
            assert (
                await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
            ).status_code == 200
            await eventually(lambda: len(sink.requests) == 1)
            lock = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
            try:
                lock.execute("BEGIN IMMEDIATE")
                sink.release(0)
                await eventually(lambda: dispatcher.lane_stats()["hook"].unrecorded == 1, timeout=30)
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            [failed] = [r for r in caplog.records if r.getMessage().startswith("recording attempts failed")]
            assert failed.destination == "hook" and len(failed.delivery_ids) == 1  # type: ignore[attr-defined]
            [row] = await bridge.deliveries(destination="hook")
            assert row["status"] == "in_flight" and row["attempts"] == 0
            sink.release_all()
            clock.advance(31)  # the harness's lease is 30 s
            dispatcher.wake()
            await eventually(lambda: _settled(bridge, "hook", 1), timeout=20)
            assert len(sink.requests) == 2


async def test_results_that_come_back_while_a_recording_waits_are_all_recorded_after_it(tmp_path: Path) -> None:
    """Results that come back while a recording is under way are recorded after it: the first answer's recording
    waits on another connection's write lock while three more answers come back; when the lock goes, all four are
    recorded, each with its one attempt, and nothing is left counted as recording (whether recordings are made
    one per batch or batched)."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 4}}
        async with running_bridge(
            tmp_path, destinations=destinations, clock=clock, extra={"sources": SHOPIFY_SOURCE}
        ) as bridge:
            dispatcher = dispatcher_of(bridge)
            lane = dispatcher.lanes["hook"]
            sink.hold = True
            for order in range(6001, 6005):
                assert (await post_shopify(bridge, shopify_order(order), clock.now(), f"wh-{order}")).status_code == 200
            await eventually(lambda: len(sink.requests) == 4)
            lock = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
            try:
                lock.execute("BEGIN IMMEDIATE")
                sink.release(0)
                await eventually(lambda: lane.recording == 1)
                for index in (1, 2, 3):
                    sink.release(index)
                await eventually(lambda: lane.recording == 4)
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            rows = await eventually(lambda: _settled(bridge, "hook", 4))
            assert {r["status"] for r in rows} == {"delivered"} and len(sink.requests) == 4
            for row in rows:
                assert len((await delivery_detail(bridge, row["id"]))["attempts"]) == 1
            assert lane.recording == 0 and dispatcher.lane_stats()["hook"].unrecorded == 0


async def test_requests_out_without_recorded_attempts_are_bounded_by_the_lane(tmp_path: Path) -> None:
    """While the outbox cannot record, a lane sends at most four requests per worker whose attempts are not recorded
    (`Lane.max_outstanding`): so a process killed then has at most that many out unrecorded, and the next holder
    of the lane counts that many as sent (bridge/fleet.py). Once recording resumes, the rest goes out."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 2}}
        async with running_bridge(
            tmp_path, destinations=destinations, clock=clock, extra={"sources": SHOPIFY_SOURCE}
        ) as bridge:
            lane = dispatcher_of(bridge).lanes["hook"]
            assert lane.max_outstanding == 8
            sink.hold = True
            for order in range(7001, 7013):
                assert (await post_shopify(bridge, shopify_order(order), clock.now(), f"wh-{order}")).status_code == 200
            await eventually(lambda: len(sink.requests) == 2 and len(lane.queue) == 10)  # all twelve claimed
            lock = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
            try:
                lock.execute("BEGIN IMMEDIATE")
                sink.hold = False
                sink.release_all()
                # every answer is back, no recording can commit: the workers stop at the bound
                await eventually(lambda: lane.outstanding == 8 and lane.sending == 0)
                assert len(sink.requests) == 8 and len(lane.queue) == 4
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            rows = await eventually(lambda: _settled(bridge, "hook", 12))
            assert {r["status"] for r in rows} == {"delivered"} and len(sink.requests) == 12
            assert lane.outstanding == 0 and lane.recording == 0


async def test_a_timeout_longer_than_the_lease_still_gets_attempts(tmp_path: Path) -> None:
    """Config should refuse it, but if such a config runs, its deliveries must be attempted: they used to be
    claimed and dropped unsent forever, because every lease would run out mid-request."""
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock, dispatch=False) as bridge:
            slow = HttpDestination(dataclasses.replace(bridge.settings.destinations["hook"], timeout_seconds=10))
            settings = DispatcherSettings(lease_seconds=5, retry=bridge.settings.dispatcher.retry)
            async with own_dispatcher(bridge, {"hook": slow}, clock, settings) as dispatcher:
                assert dispatcher.lanes["hook"].lease_seconds == 30  # three request timeouts
                assert (
                    await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
                ).status_code == 200
                rows = await eventually(lambda: _settled(bridge, "hook", 1))
                assert rows[0]["status"] == "delivered" and len(sink.requests) == 1


# -- a lane that stops moving is reported -------------------------------------------------------------------


async def test_a_lane_with_due_work_and_no_attempt_for_longer_than_its_lease_is_stalled(tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with recorder() as (sink, url):
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "concurrency": 1}}
        async with running_bridge(tmp_path, destinations=destinations, clock=clock) as bridge:
            assert (await bridge.client.get("/readyz")).json() == {"status": "ready", "role": "all"}
            sink.hold = True
            assert (
                await bridge.post_stripe(stripe_case("payment_intent.succeeded"), timestamp=clock.now())
            ).status_code == 200
            await eventually(lambda: len(sink.requests) == 1)

            clock.advance(30)  # exactly the lease: not yet
            lane = (await bridge.ops("GET", "/ops/outbox")).json()["destinations"]["hook"]
            assert lane["stalled"] is False and lane["paused_until"] is None and lane["idle_seconds"] == 30
            assert (await bridge.client.get("/readyz")).status_code == 200

            clock.advance(1)
            lane = (await bridge.ops("GET", "/ops/outbox")).json()["destinations"]["hook"]
            assert lane["stalled"] is True and lane["due_since"] == START and lane["last_attempt_at"] is None
            ready = await bridge.client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "stalled", "role": "all", "stalled": ["hook"]}
            assert 'bridge_lane_stalled{destination="hook"} 1.0' in (await bridge.ops("GET", "/metrics")).text
            page = (await bridge.ops("GET", "/ops/")).text
            assert "stalled" in page.split("hook", 1)[1]  # the overview row says so

            sink.release_all()
            await eventually(lambda: _settled(bridge, "hook", 1))
            lane = (await bridge.ops("GET", "/ops/outbox")).json()["destinations"]["hook"]
            assert lane["stalled"] is False and lane["last_attempt_at"] == clock.now()
            assert (await bridge.client.get("/readyz")).json() == {"status": "ready", "role": "all"}
            assert 'bridge_lane_stalled{destination="hook"} 0.0' in (await bridge.ops("GET", "/metrics")).text
