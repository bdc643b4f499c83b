"""The Outbox contract (bridge/outbox/base.py), run against every implementation: ingest, claim, complete."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.outbox.support import LEASE, T0, AnyOutbox, all_deliveries, by_id, delivery, ingest, result, webhook

# -- ingest and dedup ----------------------------------------------------------------------------------------


async def test_ingest_stores_webhook_and_deliveries(outbox: AnyOutbox) -> None:
    got = await ingest(outbox, webhook("evt_1", delivery("conv", "o1"), delivery("zen", "o1")))
    assert not got.duplicate
    assert got.deliveries_created == 2

    stored = await outbox.get_webhook(got.webhook_id)
    assert stored is not None
    assert stored["source"] == "stripe"
    assert stored["provider_event_id"] == "evt_1"
    assert stored["status"] == "accepted"
    assert stored["received_at"] == T0
    assert stored["body"] == orjson.dumps({"id": "evt_1", "type": "checkout.session.completed"})
    assert isinstance(stored["body"], bytes)
    assert stored["headers"] == {"stripe-signature": "t=1,v1=abc"}
    assert [e["destination"] for e in stored["events"]] == ["conv", "zen"]
    assert sorted(d["destination"] for d in stored["deliveries"]) == ["conv", "zen"]
    for row in stored["deliveries"]:
        assert row["status"] == "pending"
        assert row["attempts"] == 0
        assert row["next_attempt_at"] == T0
        assert row["created_at"] == T0
    assert await outbox.get_webhook(got.webhook_id + 1000) is None


async def test_duplicate_webhook_writes_nothing(outbox: AnyOutbox) -> None:
    first = await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
    again = await ingest(outbox, webhook("evt_1", delivery("conv", "o2"), delivery("zen", "o3"), received_at=T0 + 5))
    assert again.duplicate
    assert again.webhook_id == first.webhook_id
    assert again.deliveries_created == 0
    assert [d["event_id"] for d in await all_deliveries(outbox)] == ["o1"]
    # the same provider event id from another source is a different webhook
    other = await ingest(outbox, webhook("evt_1", delivery("conv", "o9"), source="stripe-eu"))
    assert not other.duplicate


async def test_concurrent_duplicates_store_once(outbox: AnyOutbox) -> None:
    results = await asyncio.gather(*(ingest(outbox, webhook("evt_x", delivery("conv", "o1"))) for _ in range(20)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.webhook_id for r in results}) == 1
    assert sum(r.deliveries_created for r in results) == 1
    assert len(await all_deliveries(outbox)) == 1


async def test_one_fact_one_delivery_per_destination(outbox: AnyOutbox) -> None:
    # checkout.session.completed and payment_intent.succeeded describe the same purchase
    a = await ingest(outbox, webhook("evt_a", delivery("conv", "order_1"), delivery("zen", "order_1")))
    b = await ingest(outbox, webhook("evt_b", delivery("conv", "order_1"), delivery("ga4", "order_1")))
    assert (a.deliveries_created, b.deliveries_created) == (2, 1)
    assert not b.duplicate
    rows = await all_deliveries(outbox)
    assert sorted((r["destination"], r["webhook_id"]) for r in rows) == [
        ("conv", a.webhook_id),
        ("ga4", b.webhook_id),
        ("zen", a.webhook_id),
    ]
    # the same fact twice in one webhook, and another event name with the same id
    c = await ingest(
        outbox, webhook("evt_c", delivery("conv", "o2"), delivery("conv", "o2"), delivery("conv", "o2", name="refund"))
    )
    assert c.deliveries_created == 2


async def test_ignored_webhook_without_deliveries(outbox: AnyOutbox) -> None:
    got = await ingest(outbox, webhook("evt_i", status="ignored"))
    assert (got.duplicate, got.deliveries_created) == (False, 0)
    failed = await ingest(outbox, webhook("evt_f", status="mapping_failed", error="KeyError: 'amount'"))
    stored = await outbox.get_webhook(failed.webhook_id)
    assert stored is not None
    assert (stored["status"], stored["error"], stored["deliveries"]) == ("mapping_failed", "KeyError: 'amount'", [])
    stats = await outbox.stats(T0)
    assert stats["webhooks"] == {"accepted": 0, "ignored": 1, "mapping_failed": 1}


async def test_unstorable_text_is_cleaned_not_fatal(outbox: AnyOutbox) -> None:
    got = await ingest(outbox, webhook("evt_\ud800", delivery("conv", "o1\x00"), body=b"{}"))
    [claimed] = await outbox.claim("conv", 1, T0, LEASE, "w1")
    error = "bad \x00 byte and a lone \udc80 surrogate"
    assert await outbox.complete([result(claimed, "w1", "retry", T0, next_attempt_at=T0 + 5, error=error)]) == [True]
    row = await by_id(outbox, claimed.id)
    assert "byte" in row["last_error"]
    assert (await outbox.get_webhook(got.webhook_id)) is not None


async def test_invalid_arguments_are_refused(outbox: AnyOutbox) -> None:
    with pytest.raises(ValueError):
        await outbox.list_deliveries(status="sent")
    with pytest.raises(ValueError):
        await outbox.retry(T0, status="in_flight")
    with pytest.raises(ValueError):
        await outbox.purge(T0, statuses=("pending",))
    with pytest.raises(ValueError):
        await outbox.complete([result(1, "w1", "maybe", T0)])  # type: ignore[arg-type]


# -- claim, leases, fencing ------------------------------------------------------------------------------------


async def test_claim_orders_limits_and_filters_by_destination(outbox: AnyOutbox) -> None:
    for i, at in enumerate([T0 + 3, T0 + 1, T0 + 2, T0 + 50]):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}"), received_at=at))
    first = await outbox.claim("conv", 2, T0 + 10, LEASE, "w1")
    assert [d.event_id for d in first] == ["o1", "o2"]
    for d in first:
        assert (d.destination, d.lease_owner, d.lease_until, d.attempts) == ("conv", "w1", T0 + 10 + LEASE, 0)
        assert d.payload == orjson.dumps({"name": "purchase", "id": d.event_id, "destination": "conv"})
    second = await outbox.claim("conv", 5, T0 + 10, LEASE, "w2")
    assert [d.event_id for d in second] == ["o0"]  # o3 is not due until T0 + 50
    assert await outbox.claim("conv", 5, T0 + 10, LEASE, "w3") == []
    assert await outbox.claim("conv", 0, T0 + 100, LEASE, "w3") == []
    zen = await outbox.claim("zen", 10, T0 + 100, LEASE, "w4")
    assert [d.event_id for d in zen] == ["o1", "o2", "o0", "o3"]


async def test_expired_lease_is_claimed_again(outbox: AnyOutbox) -> None:
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
    [a] = await outbox.claim("conv", 1, T0, LEASE, "w1")
    assert await outbox.claim("conv", 1, T0 + LEASE - 0.001, LEASE, "w2") == []
    [b] = await outbox.claim("conv", 1, T0 + LEASE, LEASE, "w2")
    assert (b.id, b.lease_owner, b.lease_until, b.attempts) == (a.id, "w2", T0 + 2 * LEASE, 0)


async def test_stale_owner_is_fenced_off_but_its_attempt_is_logged(outbox: AnyOutbox) -> None:
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
    [a] = await outbox.claim("conv", 1, T0, LEASE, "w1")
    [b] = await outbox.claim("conv", 1, T0 + LEASE + 1, LEASE, "w2")
    before = await by_id(outbox, a.id)

    late = result(a, "w1", "delivered", T0 + 1, latency_ms=LEASE * 1000 + 5000)
    assert await outbox.complete([late]) == [False]
    after = await by_id(outbox, a.id)
    assert {k: v for k, v in after.items() if k != "attempts"} == {k: v for k, v in before.items() if k != "attempts"}
    assert after["status"] == "in_flight"
    assert after["lease_owner"] == "w2"
    assert after["attempt_count"] == 0
    [logged] = after["attempts"]
    assert (logged["lease_owner"], logged["verdict"], logged["applied"]) == ("w1", "delivered", False)

    assert await outbox.complete([result(b, "w2", "delivered", T0 + LEASE + 2)]) == [True]
    done = await by_id(outbox, a.id)
    assert (done["status"], done["attempt_count"]) == ("delivered", 1)
    assert [x["applied"] for x in done["attempts"]] == [False, True]


async def test_completion_transitions(outbox: AnyOutbox) -> None:
    for i in range(3):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0 + i))
    d0, d1, d2 = await outbox.claim("conv", 3, T0 + 10, LEASE, "w1")
    applied = await outbox.complete(
        [
            result(d0, "w1", "delivered", T0 + 11, status_code=204, latency_ms=500.0),
            result(d1, "w1", "retry", T0 + 11, next_attempt_at=T0 + 70, status_code=503, error="HTTP 503"),
            result(d2, "w1", "dead", T0 + 11, status_code=422, error="HTTP 422: bad email"),
        ]
    )
    assert applied == [True, True, True]

    delivered = await by_id(outbox, d0.id)
    assert delivered["status"] == "delivered"
    assert delivered["delivered_at"] == pytest.approx(T0 + 11.5)
    assert (delivered["attempt_count"], delivered["last_status_code"], delivered["last_error"]) == (1, 204, None)
    assert (delivered["lease_owner"], delivered["lease_until"]) == (None, None)

    retrying = await by_id(outbox, d1.id)
    assert (retrying["status"], retrying["next_attempt_at"], retrying["attempt_count"]) == ("pending", T0 + 70, 1)
    assert (retrying["last_status_code"], retrying["last_error"], retrying["delivered_at"]) == (503, "HTTP 503", None)
    assert await outbox.claim("conv", 5, T0 + 69, LEASE, "w2") == []
    [again] = await outbox.claim("conv", 5, T0 + 70, LEASE, "w2")
    assert (again.id, again.attempts) == (d1.id, 1)

    dead = await by_id(outbox, d2.id)
    assert (dead["status"], dead["last_status_code"], dead["last_error"]) == ("dead", 422, "HTTP 422: bad email")
    assert dead["attempts"][0]["verdict"] == "dead"
    assert dead["attempts"][0]["response_excerpt"] is None

    # a finished delivery can't be completed again
    assert await outbox.complete([result(d0, "w1", "dead", T0 + 12)]) == [False]
    assert (await by_id(outbox, d0.id))["status"] == "delivered"


async def test_the_same_delivery_twice_in_one_complete(outbox: AnyOutbox) -> None:
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
    [d] = await outbox.claim("conv", 1, T0, LEASE, "w1")
    applied = await outbox.complete(
        [result(d, "w1", "retry", T0 + 1, next_attempt_at=T0 + 9), result(d, "w1", "dead", T0 + 2)]
    )
    assert applied == [True, False]
    row = await by_id(outbox, d.id)
    assert (row["status"], row["attempt_count"], len(row["attempts"])) == ("pending", 1, 2)


async def test_concurrent_completes_are_each_answered(outbox: AnyOutbox) -> None:
    for i in range(10):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}")))
    claimed = await outbox.claim("conv", 10, T0, LEASE, "w1")
    owners = ["w1", "nobody"] * 5
    answers = await asyncio.gather(
        *(outbox.complete([result(d, owner, "delivered", T0 + 1)]) for d, owner in zip(claimed, owners, strict=True))
    )
    assert answers == [[True], [False]] * 5


async def test_release_gives_leases_back_without_counting_an_attempt(outbox: AnyOutbox) -> None:
    for i in range(3):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0 + i))
    claimed = await outbox.claim("conv", 3, T0 + 5, LEASE, "w1")
    ids = [d.id for d in claimed]
    assert await outbox.release(ids[:2], "someone-else") == 0
    assert await outbox.release([], "w1") == 0
    assert await outbox.release(ids[:2], "w1") == 2
    assert await outbox.release(ids[:2], "w1") == 0
    again = await outbox.claim("conv", 5, T0 + 5, LEASE, "w2")
    assert [d.id for d in again] == ids[:2]
    assert all(d.attempts == 0 for d in again)
    row = await by_id(outbox, ids[0])
    assert row["attempts"] == []


async def test_next_due_at(outbox: AnyOutbox) -> None:
    assert await outbox.next_due_at() is None
    assert await outbox.next_due_at("conv") is None
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1"), received_at=T0 + 20))
    await ingest(outbox, webhook("evt_2", delivery("zen", "o1"), delivery("ga4", "o1"), received_at=T0 + 10))
    assert await outbox.next_due_at() == T0 + 10
    assert await outbox.next_due_at("conv") == T0 + 20
    assert await outbox.next_due_at("nope") is None

    await outbox.claim("zen", 1, T0 + 10, LEASE, "w1")
    await outbox.claim("ga4", 1, T0 + 10, 5.0, "w1")
    # zen only has an in-flight delivery: due when its lease runs out
    assert await outbox.next_due_at("zen") == T0 + 10 + LEASE
    assert await outbox.next_due_at() == T0 + 15
