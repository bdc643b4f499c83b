"""The Outbox contract, run against every implementation: whole requests (batches) in one call and one
transaction, and the dedup keys (per source, body hash, kept beyond purges) that bridge/outbox/dedup.py states."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from bridge.errors import OutboxUnavailable
from bridge.outbox import rows
from tests.outbox.conftest import Store
from tests.outbox.support import T0, AnyOutbox, all_deliveries, delivery, event, finish, ingest, request, webhook

DAY = 86400.0

# -- delivery keys are per source ------------------------------------------------------------------------------


async def test_equal_order_ids_from_two_sources_are_two_facts(outbox: AnyOutbox) -> None:
    a = await ingest(outbox, webhook("1005-a", delivery("conv", "1005"), source="store-a"))
    b = await ingest(outbox, webhook("1005-b", delivery("conv", "1005"), source="store-b"))
    assert (a.deliveries_created, b.deliveries_created) == (1, 1)
    rows = await all_deliveries(outbox)
    assert sorted(r["webhook_id"] for r in rows) == sorted([a.webhook_id, b.webhook_id])
    # inside one source, two provider events describing one payment still make one purchase
    again = await ingest(outbox, webhook("pi-b", delivery("conv", "1005"), source="store-b"))
    assert (again.duplicate, again.deliveries_created) == (False, 0)
    assert len(await all_deliveries(outbox)) == 2


# -- body keys -----------------------------------------------------------------------------------------------


async def test_the_same_body_under_another_event_id_is_a_duplicate(outbox: AnyOutbox, store: Store) -> None:
    body = b'{"order": {"id": 1005, "total": "12.50"}}'
    first = await ingest(outbox, webhook("hdr-1", delivery("conv", "1005"), body=body))
    replay = await ingest(outbox, webhook("hdr-2", delivery("conv", "1005-x"), body=body, received_at=T0 + 60))
    assert (replay.duplicate, replay.webhook_id, replay.deliveries_created) == (True, first.webhook_id, 0)
    assert await store.count("webhooks") == 1
    # the replay under the new header id was not remembered: nothing of it was written
    other = await ingest(outbox, webhook("hdr-2", delivery("conv", "1006"), body=b'{"order": {"id": 1006}}'))
    assert not other.duplicate
    # another source may send the same bytes
    elsewhere = await ingest(outbox, webhook("hdr-1", delivery("conv", "1005"), body=body, source="stripe-eu"))
    assert (elsewhere.duplicate, elsewhere.deliveries_created) == (False, 1)


async def test_concurrent_equal_bodies_under_different_ids_store_once(outbox: AnyOutbox, store: Store) -> None:
    body = b'{"same": "bytes"}'
    results = await asyncio.gather(
        *(ingest(outbox, webhook(f"hdr-{i}", delivery("conv", "o1"), body=body)) for i in range(10))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.webhook_id for r in results}) == 1
    assert await store.count("webhooks") == 1
    assert len(await all_deliveries(outbox)) == 1


# -- a request is one call, one transaction, one stored body ----------------------------------------------------


async def test_a_batch_is_stored_whole_with_its_body_once(outbox: AnyOutbox, store: Store) -> None:
    events = [event(f"EV{i}", delivery("conv", f"SB{i}:started", name="subscription_started")) for i in range(300)]
    batch = request(*events, source="gocardless")
    results = await outbox.ingest(batch)
    assert [r.duplicate for r in results] == [False] * 300
    assert [r.deliveries_created for r in results] == [1] * 300
    assert len({r.webhook_id for r in results}) == 300
    assert await store.count("webhook_requests") == 1
    for result in (results[0], results[-1]):
        stored = await outbox.get_webhook(result.webhook_id)
        assert stored is not None
        assert stored["body"] == batch.body  # every event reads the one stored body
        assert stored["source"] == "gocardless"
    # the provider retries the batch: every event a duplicate, answered with its own webhook
    again = await outbox.ingest(request(*events, source="gocardless", received_at=T0 + 60))
    assert [(r.duplicate, r.webhook_id) for r in again] == [(True, r.webhook_id) for r in results]
    assert await store.count("webhook_requests") == 1


async def test_a_batch_with_repeats_inside_and_events_seen_before(outbox: AnyOutbox) -> None:
    seen = await ingest(outbox, webhook("EV1", delivery("conv", "SB1")))
    batch = request(
        event("EV1", delivery("conv", "SB1")),  # stored before (another batch)
        event("EV2", delivery("conv", "SB2"), delivery("zen", "SB2")),
        event("EV2", delivery("conv", "SB2")),  # the same event twice in one batch
        event("EV3", delivery("conv", "SB2")),  # another event about the same fact
        event("EV4", status="ignored"),
    )
    results = await outbox.ingest(batch)
    assert [(r.duplicate, r.deliveries_created) for r in results] == [
        (True, 0),
        (False, 2),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert results[0].webhook_id == seen.webhook_id
    assert results[2].webhook_id == results[1].webhook_id
    assert sorted((d["destination"], d["event_id"]) for d in await all_deliveries(outbox)) == [
        ("conv", "SB1"),
        ("conv", "SB2"),
        ("zen", "SB2"),
    ]
    # a batch whose every event is known (a different grouping of them) stores nothing new
    regrouped = await outbox.ingest(request(event("EV3"), event("EV1")))
    assert [(r.duplicate, r.webhook_id) for r in regrouped] == [(True, results[3].webhook_id), (True, seen.webhook_id)]


async def test_a_batch_that_fails_midway_stores_nothing(outbox: AnyOutbox, store: Store) -> None:
    await store.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON deliveries WHEN NEW.event_id = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.event_id = 'boom' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER refuse BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    batch = request(
        event("EV1", delivery("conv", "o1")),
        event("EV2", delivery("conv", "o2")),
        event("EV3", delivery("conv", "boom")),
    )
    with pytest.raises(OutboxUnavailable):
        await outbox.ingest(batch)
    for table in ("webhook_requests", "webhooks", "webhook_keys", "deliveries", "delivery_keys"):
        assert await store.count(table) == 0, table
    # nothing was remembered either: the provider's retry of the first two events is new
    retry = await outbox.ingest(request(event("EV1", delivery("conv", "o1")), event("EV2", delivery("conv", "o2"))))
    assert [(r.duplicate, r.deliveries_created) for r in retry] == [(False, 1), (False, 1)]


# -- keys outlive purges ----------------------------------------------------------------------------------------


async def test_keys_outlive_purged_rows_until_their_horizon(outbox: AnyOutbox, store: Store) -> None:
    old = await ingest(outbox, webhook("evt_old", delivery("conv", "o1"), received_at=T0))
    kept = await ingest(outbox, webhook("evt_kept", delivery("zen", "o2"), received_at=T0))
    await finish(outbox, "conv", "delivered", T0 + 10)
    await finish(outbox, "zen", "dead", T0 + 10)
    purged = await outbox.purge(T0 + 31 * DAY)
    assert (purged.deliveries, purged.webhooks) == (1, 1)
    assert await outbox.get_webhook(old.webhook_id) is None

    # within the horizon no key goes; the purged event and its fact stay known
    assert await outbox.purge_keys(T0 - 1) == 0
    again = await ingest(outbox, webhook("evt_old", delivery("conv", "o1"), received_at=T0 + 40 * DAY))
    assert (again.duplicate, again.webhook_id) == (True, old.webhook_id)
    via_other = await ingest(outbox, webhook("evt_other", delivery("conv", "o1"), received_at=T0 + 40 * DAY))
    assert (via_other.duplicate, via_other.deliveries_created) == (False, 0)

    # past the horizon the keys of purged rows go (event id, body, fact); keys of rows still stored stay
    keys_before = await store.count("webhook_keys") + await store.count("delivery_keys")
    assert await outbox.purge_keys(T0 + 1) == 3
    assert await store.count("webhook_keys") + await store.count("delivery_keys") == keys_before - 3
    assert (await ingest(outbox, webhook("evt_kept", delivery("zen", "o2")))).duplicate
    fresh = await ingest(outbox, webhook("evt_old", delivery("conv", "o1"), received_at=T0 + 100 * DAY))
    assert (fresh.duplicate, fresh.deliveries_created) == (False, 1)
    assert kept.webhook_id != fresh.webhook_id


async def test_key_purge_walks_past_keys_it_keeps(outbox: AnyOutbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "BULK_CHUNK", 4)  # so the walk takes many chunks
    # many old keys whose rows are kept (pending deliveries) ahead of a few whose rows are gone
    for i in range(30):
        await ingest(outbox, webhook(f"evt_live_{i}", delivery("conv", f"live{i}"), received_at=T0))
    gone = await ingest(outbox, webhook("evt_gone", status="ignored", received_at=T0 + 1))
    await outbox.purge(T0 + 2)
    assert await outbox.get_webhook(gone.webhook_id) is None
    assert await outbox.purge_keys(T0 + 5) == 2  # its event key and its body key
    assert len(await all_deliveries(outbox)) == 30


# -- replay: the plan is the write ------------------------------------------------------------------------------


async def test_replay_plan_uses_the_rule_the_write_uses(outbox: AnyOutbox) -> None:
    # checkout.session.completed made the purchase; payment_intent.succeeded of the same payment made none
    checkout = await ingest(outbox, webhook("evt_checkout", delivery("conv", "pi_1"), delivery("zen", "pi_1")))
    intent = await ingest(outbox, webhook("evt_intent", delivery("conv", "pi_1"), received_at=T0 + 100))
    assert (checkout.deliveries_created, intent.deliveries_created) == (2, 0)
    await finish(outbox, "zen", "delivered", T0 + 5)
    events = orjson.dumps([{"name": "purchase", "id": "pi_1"}])
    remapped = [delivery("conv", "pi_1"), delivery("zen", "pi_1"), delivery("ga4", "pi_1"), delivery("conv", "pi_1")]

    for force in (False, True):
        plan = await outbox.update_webhook_mapping(
            intent.webhook_id, "accepted", None, events, remapped, now=T0 + 10, force=force, dry_run=True
        )
        expected = ["skip (pending)", "reset" if force else "skip (delivered)", "create", "skip (repeated)"]
        assert plan.actions == expected
    done = await outbox.update_webhook_mapping(intent.webhook_id, "accepted", None, events, remapped, now=T0 + 10)
    assert done.actions == ["skip (pending)", "skip (delivered)", "create", "skip (repeated)"]
    assert sorted((d["destination"], d["status"]) for d in await all_deliveries(outbox)) == [
        ("conv", "pending"),
        ("ga4", "pending"),
        ("zen", "delivered"),
    ]
    # a fact purged since is known, not re-created
    await finish(outbox, "ga4", "delivered", T0 + 20)
    await outbox.purge(T0 + 30)
    plan = await outbox.update_webhook_mapping(
        intent.webhook_id, "accepted", None, events, remapped, now=T0 + 40, force=True, dry_run=True
    )
    assert plan.actions == ["skip (pending)", "skip (purged)", "skip (purged)", "skip (repeated)"]
    again = await outbox.update_webhook_mapping(
        intent.webhook_id, "accepted", None, events, remapped, now=T0 + 40, force=True
    )
    assert again == plan
