"""Roles and wake-ups across replicas: two app instances on one PostgreSQL database, one taking webhooks only and
one delivering only. The dispatcher's poll interval is ten minutes and the clock never moves, so a delivery can
only come from the wake-up the ingest replica sends (NOTIFY), not from polling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.clock import ManualClock
from bridge.config import load_settings
from bridge.dispatcher import Dispatcher
from bridge.errors import ConfigError
from bridge.outbox.postgres import PostgresOutbox
from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.harness import Bridge, running_bridge, write_config
from tests.outbox.conftest import fresh_database
from tests.scaleout.support import purchase

START = 1_900_000_000.0
POLL = 600.0


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


def dispatcher_of(bridge: Bridge) -> Dispatcher:
    assert bridge.state.dispatcher is not None
    return bridge.state.dispatcher


@pytest.mark.postgres
async def test_work_stored_by_an_ingest_replica_wakes_the_dispatch_replica(tmp_path: Path, pg_url: str) -> None:
    clock = ManualClock(START)
    extra: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": POLL}}
    async with recorder() as (sink, url), AsyncExitStack() as stack:
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "events": ["purchase"]}}
        sender = await stack.enter_async_context(
            running_bridge(tmp_path / "d", destinations=destinations, clock=clock, extra=extra, role="dispatch")
        )
        taker = await stack.enter_async_context(
            running_bridge(tmp_path / "i", destinations=destinations, clock=clock, extra=extra, role="ingest")
        )
        assert taker.state.dispatcher is None
        dispatcher = dispatcher_of(sender)
        outbox = sender.state.outbox
        assert isinstance(outbox, PostgresOutbox) and outbox.listener is not None
        await eventually(outbox.listener.listening.is_set)
        for i in range(3):
            response = await taker.post_stripe(purchase(i, clock.now()), timestamp=clock.now())
            assert response.status_code == 200
            await eventually(lambda n=i: len(sink.requests) == n + 1, timeout=30)  # long before any poll
        assert dispatcher.polls == 0 and clock.now() == START
        assert outbox.listener.received >= 3

        # the dispatch replica takes no webhooks; each replica's readiness speaks for its role
        refused = await sender.post_stripe(purchase(9, clock.now()), timestamp=clock.now())
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert (await sender.client.get("/readyz")).json() == {"status": "ready", "role": "dispatch"}
        assert (await taker.client.get("/readyz")).json() == {"status": "ready", "role": "ingest"}
        lanes = (await taker.ops("GET", "/ops/outbox")).json()["destinations"]["hook"]
        assert "stalled" not in lanes  # an ingest replica has no lanes to report
        held = (await sender.ops("GET", "/ops/outbox")).json()["destinations"]["hook"]
        assert held["held"] is True and held["stalled"] is False


@pytest.mark.postgres
async def test_without_the_wake_up_the_work_waits_for_the_poll(tmp_path: Path, pg_url: str) -> None:
    """The control: the same two replicas with the wake-ups cut off deliver nothing until the poll."""
    clock = ManualClock(START)
    extra: dict[str, Any] = {"outbox": {"url": pg_url}, "dispatcher": {"poll_seconds": POLL}}
    async with recorder() as (sink, url), AsyncExitStack() as stack:
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "events": ["purchase"]}}
        sender = await stack.enter_async_context(
            running_bridge(tmp_path / "d", destinations=destinations, clock=clock, extra=extra, role="dispatch")
        )
        taker = await stack.enter_async_context(
            running_bridge(tmp_path / "i", destinations=destinations, clock=clock, extra=extra, role="ingest")
        )
        outbox = sender.state.outbox
        assert isinstance(outbox, PostgresOutbox) and outbox.listener is not None
        await eventually(outbox.listener.listening.is_set)
        await outbox.listener.close()
        assert (await taker.post_stripe(purchase(0, clock.now()), timestamp=clock.now())).status_code == 200
        dispatcher = dispatcher_of(sender)
        rounds = dispatcher.claim_rounds
        dispatcher.wake(["other"])  # a round that finds the lane already checked within the poll interval...
        await eventually(lambda: dispatcher.claim_rounds > rounds)
        assert sink.requests == []  # ... does not ask the outbox again
        clock.advance(POLL)
        dispatcher.wake([])  # the poll interval has passed
        await eventually(lambda: len(sink.requests) == 1)


def test_roles_are_checked(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, destinations={}), {})
    with pytest.raises(ValueError, match="role must be one of all, ingest, dispatch"):
        create_app(settings, role="sideways")


def test_the_config_takes_ordering_lane_leases_and_the_poll_interval(tmp_path: Path) -> None:
    destinations = {
        "crm": {"type": "http", "url": "http://127.0.0.1:9/a", "ordering": "by_key"},
        "free": {"type": "http", "url": "http://127.0.0.1:9/b"},
    }
    extra = {"dispatcher": {"lane_lease_seconds": 12, "poll_seconds": 0.5}}
    settings = load_settings(write_config(tmp_path, destinations=destinations, extra=extra), {})
    assert (settings.destinations["crm"].ordering, settings.destinations["free"].ordering) == ("by_key", "none")
    assert (settings.dispatcher.lane_lease_seconds, settings.dispatcher.poll_seconds) == (12, 0.5)
    wrong = {"crm": {**destinations["crm"], "ordering": "by_time"}}
    bad = {"dispatcher": {"lane_lease_seconds": 0, "poll_seconds": -1}}
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path, destinations=wrong, extra=bad), {})
    text = str(info.value)
    assert "ordering must be none or by_key, got 'by_time'" in text
    assert "'lane_lease_seconds' must be a number from 1 to 3600" in text and "'poll_seconds'" in text


@pytest.mark.postgres
async def test_one_of_two_dispatchers_sends_for_a_destination_and_the_other_says_so(
    tmp_path: Path, pg_url: str
) -> None:
    clock = ManualClock(START)
    extra: dict[str, Any] = {"outbox": {"url": pg_url}}
    destinations = {"hook": {"type": "http", "url": "http://127.0.0.1:9/hook", "events": ["purchase"]}}
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            running_bridge(tmp_path / "a", destinations=destinations, clock=clock, extra=extra)
        )
        second = await stack.enter_async_context(
            running_bridge(tmp_path / "b", destinations=destinations, clock=clock, extra=extra)
        )
        held = {
            name: (await bridge.ops("GET", "/ops/outbox")).json()["destinations"]["hook"]["held"]
            for name, bridge in (("first", first), ("second", second))
        }
        assert held == {"first": True, "second": False}  # the first to start took the lane
        page = (await second.ops("GET", "/ops/")).text
        assert "sent by another replica" in page
        assert "sent by another replica" not in (await first.ops("GET", "/ops/")).text
