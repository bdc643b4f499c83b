"""Per-key ordering in the outbox's claim, against every implementation: only the first open delivery of a key is
claimable (open: pending, in flight, or dead and not skipped), in the order the provider events occurred, and
never while another of its key is leased; keys never hold each other up; `skip` lets a key go on."""

from __future__ import annotations

from bridge.outbox.base import NewDelivery, Ordering
from bridge.outbox.rows import PARK_SECONDS
from tests.outbox.support import LEASE, T0, AnyOutbox, all_deliveries, by_id, delivery, ingest, result, webhook

DEST = "sub"


def ordered(event_id: str, key: str, at: float, seq: int = 0, destination: str = DEST) -> NewDelivery:
    plain = delivery(destination, event_id)
    return NewDelivery(plain.destination, plain.event_name, plain.event_id, plain.payload, Ordering(key, at, seq))


async def add(outbox: AnyOutbox, *deliveries: NewDelivery, received_at: float = T0) -> None:
    for d in deliveries:
        got = await ingest(outbox, webhook(f"evt_{d.destination}_{d.event_id}", d, received_at=received_at))
        assert got.deliveries_created == 1


async def claim_ids(outbox: AnyOutbox, now: float, limit: int = 100, owner: str = "w:1") -> list[str]:
    return [d.event_id for d in await outbox.claim(DEST, limit, now, LEASE, owner)]


async def deliver(outbox: AnyOutbox, now: float, owner: str = "w:1") -> list[str]:
    """Claim what is due and complete it as delivered; the event ids, in claim order."""
    claimed = await outbox.claim(DEST, 100, now, LEASE, owner)
    await outbox.complete([result(d, owner, "delivered", now) for d in claimed])
    return [d.event_id for d in claimed]


async def test_a_key_goes_one_at_a_time_in_the_order_its_events_occurred(outbox: AnyOutbox) -> None:
    # stored in the opposite order to their occurrence: canceled arrives first, started last
    await add(
        outbox,
        ordered("canceled", "s:sub_1", T0 - 10),
        ordered("renewed", "s:sub_1", T0 - 20),
        ordered("started", "s:sub_1", T0 - 30),
    )
    assert await deliver(outbox, T0 + 1) == ["started"]
    assert await deliver(outbox, T0 + 2) == ["renewed"]
    assert await deliver(outbox, T0 + 3) == ["canceled"]
    assert await deliver(outbox, T0 + 4) == []


async def test_the_providers_sequence_orders_events_of_the_same_moment(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("b", "k", T0, seq=7), ordered("a", "k", T0, seq=3), ordered("c", "k", T0, seq=9))
    assert [*await deliver(outbox, T0 + 1), *await deliver(outbox, T0 + 2), *await deliver(outbox, T0 + 3)] == [
        "a",
        "b",
        "c",
    ]


async def test_keys_do_not_hold_each_other_up_and_a_claim_takes_one_per_key(outbox: AnyOutbox) -> None:
    await add(
        outbox,
        ordered("a1", "a", T0 - 3),
        ordered("a2", "a", T0 - 2),
        ordered("b1", "b", T0 - 3),
        ordered("b2", "b", T0 - 1),
        delivery(DEST, "free1"),
        delivery(DEST, "free2"),
    )
    # a batch destination claims many at once: still never two of one key
    first = await claim_ids(outbox, T0 + 1)
    assert sorted(first) == ["a1", "b1", "free1", "free2"]
    assert await claim_ids(outbox, T0 + 1) == []  # a2 and b2 wait for their keys' leased deliveries


async def test_a_retrying_delivery_holds_its_key_until_it_is_delivered(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("first", "k", T0 - 2), ordered("second", "k", T0 - 1), ordered("other", "j", T0))
    [head] = await outbox.claim(DEST, 1, T0 + 1, LEASE, "w:1")
    assert head.event_id == "first"
    await outbox.complete([result(head, "w:1", "retry", T0 + 1, next_attempt_at=T0 + 600, status_code=503)])
    assert await deliver(outbox, T0 + 2) == ["other"]  # "second" stays behind the retrying "first"
    assert await claim_ids(outbox, T0 + 302) == []  # (looked at again after PARK_SECONDS: still blocked)
    assert await outbox.next_due_at(DEST) == T0 + 600  # parked until "first" is due
    assert await deliver(outbox, T0 + 600) == ["first"]
    assert await deliver(outbox, T0 + 601) == ["second"]


async def test_a_dead_delivery_blocks_only_its_key_until_it_is_skipped(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("bad", "k", T0 - 2), ordered("next", "k", T0 - 1), ordered("j1", "j", T0 - 1))
    claimed = await outbox.claim(DEST, 10, T0 + 1, LEASE, "w:1")
    bad = next(d for d in claimed if d.event_id == "bad")
    await outbox.complete(
        [
            result(bad, "w:1", "dead", T0 + 1, status_code=400),
            *(result(d, "w:1", "delivered", T0 + 1) for d in claimed if d is not bad),
        ]
    )
    await add(outbox, ordered("j2", "j", T0))
    assert await deliver(outbox, T0 + 2) == ["j2"]  # key j goes on
    assert await claim_ids(outbox, T0 + 3) == []  # key k waits behind its dead delivery
    assert await outbox.next_due_at(DEST) == T0 + 2 + PARK_SECONDS  # parked by the short claim at T0 + 2

    assert await outbox.skip([bad.id], T0 + 4) == 1
    skipped = await by_id(outbox, bad.id)
    assert (skipped["status"], skipped["skipped_at"], skipped["ordering_key"]) == ("dead", T0 + 4, "k")
    assert await outbox.next_due_at(DEST) == T0 + 4  # "next" is due again, at once
    assert await deliver(outbox, T0 + 5) == ["next"]


async def test_retrying_a_dead_delivery_puts_it_back_first_in_its_key(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("bad", "k", T0 - 2), ordered("next", "k", T0 - 1))
    [bad] = await outbox.claim(DEST, 10, T0 + 1, LEASE, "w:1")
    await outbox.complete([result(bad, "w:1", "dead", T0 + 1, status_code=400)])
    assert await outbox.retry(T0 + 2, ids=[bad.id], status=None) == 1
    assert await deliver(outbox, T0 + 3) == ["bad"]
    assert await deliver(outbox, T0 + 4) == ["next"]


async def test_skip_touches_only_pending_and_dead_deliveries_and_bulk_retry_leaves_skipped_ones(
    outbox: AnyOutbox,
) -> None:
    await add(outbox, ordered("a", "k1", T0), ordered("b", "k2", T0), ordered("c", "k3", T0), ordered("d", "k4", T0))
    claimed = {d.event_id: d for d in await outbox.claim(DEST, 10, T0 + 1, LEASE, "w:1")}
    await outbox.complete(
        [
            result(claimed["a"], "w:1", "delivered", T0 + 1),
            result(claimed["b"], "w:1", "dead", T0 + 1, status_code=400),
            result(claimed["c"], "w:1", "retry", T0 + 1, next_attempt_at=T0 + 100, status_code=500),
        ]
    )
    ids = {name: d.id for name, d in claimed.items()}
    # delivered "a" and in-flight "d" are left alone; dead "b" and pending "c" are given up; twice is once
    assert await outbox.skip(list(ids.values()), T0 + 2) == 2
    assert await outbox.skip(list(ids.values()), T0 + 3) == 0
    states = {name: (await by_id(outbox, i))["status"] for name, i in ids.items()}
    assert states == {"a": "delivered", "b": "dead", "c": "dead", "d": "in_flight"}
    assert await outbox.retry(T0 + 4, status="dead") == 0  # "retry all dead" does not undo a skip
    assert await outbox.retry(T0 + 4, ids=[ids["c"]], status=None) == 1  # naming it does
    row = await by_id(outbox, ids["c"])
    assert (row["status"], row["skipped_at"]) == ("pending", None)


async def test_a_leased_delivery_holds_its_key_even_against_an_earlier_late_arrival(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("renewed", "k", T0 - 10))
    [leased] = await outbox.claim(DEST, 10, T0, LEASE, "w:1")
    await add(outbox, ordered("started", "k", T0 - 20))  # occurred earlier, arrived while "renewed" is out
    assert await claim_ids(outbox, T0 + 1) == []  # one at a time: nothing of k while "renewed" is leased
    await outbox.complete([result(leased, "w:1", "delivered", T0 + 2)])
    assert await deliver(outbox, T0 + 3) == ["started"]


async def test_an_expired_lease_is_claimed_again_before_anything_after_it(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("first", "k", T0 - 2), ordered("second", "k", T0 - 1))
    assert await claim_ids(outbox, T0, owner="crashed:1") == ["first"]
    assert await claim_ids(outbox, T0 + LEASE - 1) == []
    assert await claim_ids(outbox, T0 + LEASE + 1, owner="w:2") == ["first"]  # the owner died: taken again


async def test_ordering_is_per_destination(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("x", "k", T0 - 2), ordered("x", "k", T0 - 2, destination="other"))
    [here] = await outbox.claim(DEST, 10, T0, LEASE, "w:1")
    [there] = await outbox.claim("other", 10, T0, LEASE, "w:1")
    assert (here.event_id, there.event_id) == ("x", "x")


async def test_deliveries_blocked_behind_a_retrying_one_wait_parked_and_come_back_when_it_is_delivered(
    outbox: AnyOutbox,
) -> None:
    """Claims do not walk past a blocked backlog on every round: what is due but blocked behind a retrying (or
    dead) delivery of its key is parked until that one is due (looked at again within PARK_SECONDS at the
    latest), and due again as soon as that one is delivered."""
    await add(outbox, ordered("first", "k", T0 - 2), ordered("second", "k", T0 - 1), ordered("third", "k", T0))
    [first] = await outbox.claim(DEST, 10, T0, LEASE, "w:1")
    await outbox.complete([result(first, "w:1", "retry", T0, next_attempt_at=T0 + 600, status_code=503)])
    by_name = {d["event_id"]: d["id"] for d in await all_deliveries(outbox)}

    async def due(name: str) -> float:
        return float((await by_id(outbox, by_name[name]))["next_attempt_at"])

    assert await claim_ids(outbox, T0 + 1) == []  # a short claim parks what it could not take
    assert (await due("second"), await due("third")) == (T0 + 1 + PARK_SECONDS, T0 + 1 + PARK_SECONDS)
    assert await outbox.next_due_at(DEST) == T0 + 1 + PARK_SECONDS
    assert await claim_ids(outbox, T0 + 1 + PARK_SECONDS) == []
    assert await due("second") == T0 + 600  # parked again, now until "first" is due
    assert await deliver(outbox, T0 + 600) == ["first"]
    assert (await due("second"), await due("third")) == (T0 + 600.01, T0 + 600.01)  # due when "first" was delivered
    assert await deliver(outbox, T0 + 601) == ["second"]
    assert await deliver(outbox, T0 + 602) == ["third"]


async def test_deliveries_parked_behind_a_dead_one_are_due_when_it_is_skipped(outbox: AnyOutbox) -> None:
    await add(outbox, ordered("bad", "k", T0 - 2), ordered("next", "k", T0 - 1))
    [bad] = await outbox.claim(DEST, 10, T0, LEASE, "w:1")
    await outbox.complete([result(bad, "w:1", "dead", T0, status_code=400)])
    assert await claim_ids(outbox, T0 + 1) == []
    assert await outbox.next_due_at(DEST) == T0 + 1 + PARK_SECONDS  # parked behind the dead delivery
    assert await outbox.skip([bad.id], T0 + 50) == 1
    assert await outbox.next_due_at(DEST) == T0 + 50
    assert await deliver(outbox, T0 + 50) == ["next"]
