"""Lanes in the outbox contract, against every implementation: one holder per destination at a time, handed over
when its lease runs out or it lets go; the history a new holder seeds its rate limiter from; the 429 state a
holder leaves for the next one."""

from __future__ import annotations

from bridge.outbox.base import LaneState
from bridge.outbox.sqlite import SqliteOutbox
from tests.outbox.support import LEASE, T0, AnyOutbox, delivery, ingest, result, webhook

TTL = 30.0


async def test_a_lane_has_one_holder_until_its_lease_runs_out_or_it_lets_go(outbox: AnyOutbox) -> None:
    assert sorted(await outbox.hold_lanes(["zen", "conv"], "a", T0, TTL)) == ["conv", "zen"]
    assert await outbox.hold_lanes(["conv", "zen"], "b", T0 + 1, TTL) == []  # held by a
    assert sorted(await outbox.hold_lanes(["conv", "zen", "srv"], "a", T0 + 10, TTL)) == ["conv", "srv", "zen"]
    assert await outbox.hold_lanes(["conv"], "b", T0 + 10 + TTL - 1, TTL) == []  # a renewed at T0 + 10
    assert await outbox.hold_lanes(["conv"], "b", T0 + 10 + TTL, TTL) == ["conv"]  # a's lease ran out
    assert await outbox.hold_lanes(["conv"], "a", T0 + 10 + TTL + 1, TTL) == []  # and b has it now
    await outbox.release_lanes(["zen", "srv", "conv"], "a")  # only what a holds is released
    assert await outbox.hold_lanes(["conv"], "a", T0 + 10 + TTL + 2, TTL) == []
    assert sorted(await outbox.hold_lanes(["zen", "srv"], "b", T0 + 10 + TTL + 2, TTL)) == ["srv", "zen"]
    assert await outbox.hold_lanes([], "b", T0, TTL) == []


async def test_history_has_one_entry_per_request_answered_in_the_window(outbox: AnyOutbox) -> None:
    for i in range(5):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}")))
    claimed = await outbox.claim("conv", 5, T0, LEASE, "a:1")
    batch, single, settled = claimed[:3], claimed[3], claimed[4]
    await outbox.complete(
        # one batch request carrying three deliveries, answered after 250 ms
        [result(d, "a:1", "delivered", T0 + 10, latency_ms=250.0) for d in batch]
        # one request of its own, a 429
        + [result(single, "a:1", "retry", T0 + 20, status_code=429, next_attempt_at=T0 + 90, latency_ms=40.0)]
        # settled without a request (it could not be rendered): no latency
        + [result(settled, "a:1", "dead", T0 + 30, status_code=None, latency_ms=None)]
    )
    [zen] = await outbox.claim("zen", 1, T0, LEASE, "a:2")
    await outbox.complete([result(zen, "a:2", "delivered", T0 + 5)])
    history = await outbox.lane_history("conv", "a", T0)
    assert history.sends == [(T0 + 10, T0 + 10.25), (T0 + 20, T0 + 20.04)]
    assert history.unrecorded == []
    assert history.state == LaneState()
    assert (await outbox.lane_history("conv", "a", T0 + 15)).sends == [(T0 + 20, T0 + 20.04)]
    assert (await outbox.lane_history("zen", "a", T0)).sends == [(T0 + 5, T0 + 5.01)]


async def test_history_counts_deliveries_leased_by_others_as_possibly_sent(outbox: AnyOutbox) -> None:
    for i in range(4):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}")))
    await outbox.claim("conv", 2, T0, LEASE, "dead-replica:7")
    await outbox.claim("conv", 1, T0 + 1, LEASE, "me:3")
    history = await outbox.lane_history("conv", "me", T0)
    assert [until for _, until in history.unrecorded] == [T0 + LEASE, T0 + LEASE]  # the other owner's two; ours is ours
    assert len((await outbox.lane_history("conv", "dead-replica", T0)).unrecorded) == 1


async def test_the_lane_state_is_kept_for_the_next_holder(outbox: AnyOutbox) -> None:
    state = LaneState(paused_until=T0 + 120, factor=0.5, throttled_at=T0, cooldown=4.0)
    assert not await outbox.save_lane_state("conv", "a", state)  # nobody may write a lane it does not hold
    assert await outbox.hold_lanes(["conv"], "a", T0, TTL) == ["conv"]
    assert await outbox.save_lane_state("conv", "a", state)
    assert not await outbox.save_lane_state("conv", "b", LaneState())
    assert (await outbox.lane_history("conv", "b", T0)).state == state
    assert (await outbox.lane_history("zen", "b", T0)).state == LaneState()


async def test_beats_count_the_live_dispatchers_and_are_not_lanes(outbox: AnyOutbox) -> None:
    if isinstance(outbox, SqliteOutbox):  # one process per file: it is the only dispatcher
        assert await outbox.beat("a", T0, TTL) == await outbox.beat("b", T0, TTL) == 1
        return
    assert await outbox.beat("a", T0, TTL) == 1
    assert await outbox.beat("b", T0 + 1, TTL) == 2
    assert await outbox.beat("c", T0 + 2, TTL) == 3
    assert await outbox.beat("a", T0 + 10, TTL) == 3  # a renews
    await outbox.beat("c", T0 + 12, 0.0)  # c leaves
    assert await outbox.beat("a", T0 + 13, TTL) == 2
    assert await outbox.beat("a", T0 + 1 + TTL, TTL) == 1  # b's beat ran out
    assert await outbox.disabled() == {}
    assert await outbox.hold_lanes(["conv"], "b", T0 + 1 + TTL, TTL) == ["conv"]  # lanes are not beats
