"""A lane's new holder seeds its windows from what the outbox remembers, including the requests an earlier holder
could only presume sent (found in flight after a crash, or leased by a replica that died): those are noted in the
outbox when they are first counted, so a chain of quick restarts or take-overs never forgets them while the
destination still counts them (docs/reliability.md, finding 6)."""

from __future__ import annotations

from pathlib import Path

from bridge.clock import ManualClock
from bridge.destinations.base import DestinationSettings, RateLimit
from bridge.destinations.http import HttpDestination
from bridge.fleet import LaneKeeper
from bridge.lanes import Lane
from bridge.outbox.sqlite import SqliteOutbox
from bridge.ratelimit import RateLimiter
from tests.outbox.conftest import Store
from tests.outbox.support import T0, AnyOutbox, delivery, ingest, webhook

LIMIT = RateLimit(3, 10.0)  # three requests in any 10 s
LEASE = 60.0
TTL = 30.0


def zen_lane() -> Lane:
    destination = HttpDestination(DestinationSettings(name="zen", type="http", url="http://h/zen", concurrency=4))
    return Lane(destination, RateLimiter([LIMIT]), LEASE)


async def take(outbox: AnyOutbox, owner: str, at: float) -> Lane:
    """A dispatcher `owner` starting at `at`: it takes the lane and seeds it, as on a restart or take-over."""
    lane = zen_lane()
    keeper = LaneKeeper(outbox, {"zen": lane}, owner, ManualClock(at), TTL)
    assert await keeper.hold() == ["zen"]
    return lane


async def test_a_chain_of_restarts_counts_what_a_crashed_process_may_have_sent(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    crashed = SqliteOutbox(db)
    await crashed.open()
    for i in range(3):
        await ingest(crashed, webhook(f"evt_{i}", delivery("zen", f"o{i}")))
    assert await crashed.hold_lanes(["zen"], "z", T0, TTL) == ["zen"]
    await crashed.claim("zen", 3, T0, LEASE, "z:1")  # three requests go out; the process dies before recording
    await crashed.close()  # as far as the file is concerned, the same as a SIGKILL

    first = SqliteOutbox(db)
    await first.open()
    assert first.recovered_in_flight == 3  # put back to pending: the deliveries no longer say they were sent
    lane = await take(first, "a", T0 + 2)
    assert lane.limiter.delay(T0 + 2) == 10.0  # the three count as answered when it started: the window is full
    await first.close()  # and it dies too, before it sent anything

    second = SqliteOutbox(db)
    await second.open()
    try:
        assert second.recovered_in_flight == 0
        lane = await take(second, "b", T0 + 4)
        # the destination still counts the crashed process's three requests: nothing may go before T0 + 12
        assert lane.limiter.delay(T0 + 4) == 8.0
        assert lane.limiter.delay(T0 + 12) == 0.0
    finally:
        await second.close()


async def test_a_lease_noted_by_one_holder_is_counted_once_and_after_it_is_gone(store: Store) -> None:
    outbox = await store.open()
    for i in range(3):
        await ingest(outbox, webhook(f"evt_{i}", delivery("zen", f"o{i}")))
    await outbox.claim("zen", 2, T0, LEASE, "dead:1")  # a replica that died with two requests out
    lane = await take(outbox, "a", T0 + 1)
    assert lane.limiter.delay(T0 + 1) == 0.0  # two of three: one more may go

    await outbox.release_lanes(["zen"], "a")
    # the next holder finds the same two leases still held by the dead replica: noted once, counted once
    history = await outbox.lane_history("zen", "b", T0)
    assert history.unrecorded == [] and history.presumed == [T0 + 1, T0 + 1]
    lane = await take(outbox, "b", T0 + 3)
    assert len(lane.limiter.windows[0].log) == 2

    # the leases ran out and another replica took the deliveries back: the notes still count them
    again = await outbox.claim("zen", 3, T0 + LEASE + 1, LEASE, "c:1")
    assert len(again) == 3
    assert (await outbox.lane_history("zen", "d", T0)).presumed == [T0 + 1, T0 + 1]
    # notes are forgotten once they are older than asked for
    await outbox.note_unrecorded("zen", [], T0 + 2)
    assert (await outbox.lane_history("zen", "d", T0)).presumed == []
