"""Disabled destinations in the outbox contract, against every implementation: an attempt that says the
destination is gone disables it in the same transaction and leaves the delivery pending; a disabled destination's
deliveries are neither claimed nor reported due, whatever time it is; new deliveries are still stored; enable
makes them claimable again; the state is shared by every outbox on the store and survives reopening."""

from __future__ import annotations

import dataclasses

from bridge.outbox.base import Disabled
from tests.outbox.conftest import Store
from tests.outbox.support import LEASE, T0, by_id, delivery, ingest, result, webhook

GONE = "410 Gone from https://hooks.example/in"
#: longer than the whole default retry schedule (~32 h)
WEEK = 7 * 86400.0


async def test_a_gone_answer_disables_the_destination_and_holds_its_deliveries(store: Store) -> None:
    outbox = await store.open()
    for i in range(3):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}")))
    [first] = await outbox.claim("conv", 1, T0, LEASE, "a:1")
    gone = dataclasses.replace(
        result(first, "a:1", "retry", T0, status_code=410, error="HTTP 410", response_excerpt="gone"), disables=GONE
    )
    assert await outbox.complete([gone]) == [True]

    row = await by_id(outbox, first.id)
    assert (row["status"], row["attempt_count"], row["last_status_code"]) == ("pending", 1, 410)
    [attempt] = row["attempts"]
    assert (attempt["status_code"], attempt["response_excerpt"], attempt["verdict"]) == (410, "gone", "retry")
    assert await outbox.disabled() == {"conv": Disabled(T0 + 0.01, GONE, "destination")}

    # held, whatever time it is: nothing claimed, nothing due; the healthy destination goes on
    assert await outbox.claim("conv", 10, T0 + WEEK, LEASE, "a:2") == []
    assert await outbox.next_due_at("conv") is None
    assert len(await outbox.claim("zen", 10, T0 + 1, LEASE, "a:3")) == 3
    # new work for it is stored (pending), and held too
    await ingest(outbox, webhook("evt_new", delivery("conv", "o_new")))
    assert await outbox.claim("conv", 10, T0 + WEEK, LEASE, "a:4") == []

    # another outbox on the same store sees it: a replica (PostgreSQL) or the next run (SQLite: one process a file)
    if store.kind == "sqlite":
        await outbox.close()
        store.opened.remove(outbox)
    other = await store.open()
    assert set(await other.disabled()) == {"conv"}
    assert await other.claim("conv", 10, T0 + WEEK, LEASE, "b:1") == []

    before = await other.enable("conv")
    assert before is not None and before.by == "destination" and before.reason == GONE
    outbox = other if store.kind == "sqlite" else outbox
    assert await outbox.disabled() == {}
    assert await outbox.enable("conv") is None  # enabled already
    assert await outbox.next_due_at("conv") is not None
    claimed = await outbox.claim("conv", 10, T0 + WEEK, LEASE, "a:5")
    assert sorted(d.event_id for d in claimed) == ["o0", "o1", "o2", "o_new"]
    assert {d.attempts for d in claimed if d.id == first.id} == {1}  # the 410 counts as an attempt, nothing more


async def test_ops_disable_keeps_the_first_reason_and_outlives_reopening(store: Store) -> None:
    outbox = await store.open()
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
    assert await outbox.disable("conv", Disabled(T0, "maintenance window", "ops")) is True
    assert await outbox.disable("conv", Disabled(T0 + 5, "again", "ops")) is False
    # a gone answer for a destination disabled already keeps the first reason
    await outbox.enable("conv")
    await outbox.disable("conv", Disabled(T0 + 6, "maintenance window", "ops"))
    await outbox.close()

    reopened = await store.open()
    assert await reopened.disabled() == {"conv": Disabled(T0 + 6, "maintenance window", "ops")}
    assert await reopened.claim("conv", 10, T0 + WEEK, LEASE, "a:1") == []
    # lanes still work beside the state: holding and releasing the lane leaves it disabled
    assert await reopened.hold_lanes(["conv"], "a", T0, 30) == ["conv"]
    await reopened.release_lanes(["conv"], "a")
    assert set(await reopened.disabled()) == {"conv"}
    assert (await reopened.enable("conv")) == Disabled(T0 + 6, "maintenance window", "ops")
    assert len(await reopened.claim("conv", 10, T0 + 7, LEASE, "a:2")) == 1
