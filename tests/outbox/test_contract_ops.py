"""The Outbox contract, run against every implementation: ops queries, retry, replay, purge, reopening."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.errors import OutboxError
from bridge.outbox.base import PurgeResult
from tests.outbox.conftest import Store
from tests.outbox.support import LEASE, T0, AnyOutbox, all_deliveries, by_id, delivery, finish, ingest, result, webhook

# -- ops -------------------------------------------------------------------------------------------------------


async def test_retry_by_ids(outbox: AnyOutbox) -> None:
    for i in range(5):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0 + i))
    [dead] = await finish(outbox, "conv", "dead", T0 + 10)
    [delivered] = await finish(outbox, "conv", "delivered", T0 + 10)
    [later] = await finish(outbox, "conv", "retry", T0 + 10)
    [flying] = [d.id for d in await outbox.claim("conv", 1, T0 + 10, LEASE, "w9")]
    rows = await all_deliveries(outbox)
    [due] = [r["id"] for r in rows if r["status"] == "pending" and r["id"] != later]

    now = T0 + 100
    assert await outbox.retry(now, ids=[dead, delivered, later, flying, due, 999_999]) == 2
    assert (await by_id(outbox, dead))["status"] == "pending"
    assert (await by_id(outbox, dead))["next_attempt_at"] == now
    assert (await by_id(outbox, dead))["attempt_count"] == 1
    assert (await by_id(outbox, later))["next_attempt_at"] == now
    assert (await by_id(outbox, delivered))["status"] == "delivered"
    assert (await by_id(outbox, flying))["status"] == "in_flight"
    assert (await by_id(outbox, due))["next_attempt_at"] == T0 + 4  # already due: keeps its place

    assert await outbox.retry(now, ids=[delivered], status="delivered") == 1
    redo = await by_id(outbox, delivered)
    assert (redo["status"], redo["next_attempt_at"], redo["delivered_at"]) == ("pending", now, None)
    assert await outbox.retry(now, ids=[]) == 0


async def test_retry_by_filter(outbox: AnyOutbox) -> None:
    for i in range(3):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}")))
    await finish(outbox, "conv", "dead", T0, n=2)
    await finish(outbox, "zen", "dead", T0, n=1)
    await finish(outbox, "zen", "delivered", T0, n=1)

    assert await outbox.retry(T0 + 100, destination="conv") == 2
    assert [r["destination"] for r in await all_deliveries(outbox, status="dead")] == ["zen"]
    assert await outbox.retry(T0 + 100) == 1
    assert await all_deliveries(outbox, status="dead") == []
    assert await outbox.retry(T0 + 100, status="delivered", destination="zen") == 1
    assert await all_deliveries(outbox, status="delivered") == []
    due = await outbox.claim("conv", 10, T0 + 100, LEASE, "w1")
    assert len(due) == 3


async def test_stats(outbox: AnyOutbox) -> None:
    empty = await outbox.stats(T0)
    assert empty == {"destinations": {}, "webhooks": {"accepted": 0, "ignored": 0, "mapping_failed": 0}}
    for i in range(4):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0 + i))
    await ingest(outbox, webhook("evt_z", delivery("zen", "z"), received_at=T0 + 1))
    await ingest(outbox, webhook("evt_ign", status="ignored"))
    await finish(outbox, "conv", "delivered", T0 + 10)
    await finish(outbox, "conv", "dead", T0 + 20)
    await outbox.claim("conv", 1, T0 + 30, LEASE, "w1")

    stats = await outbox.stats(T0 + 100)
    assert stats["webhooks"] == {"accepted": 5, "ignored": 1, "mapping_failed": 0}
    conv = stats["destinations"]["conv"]
    assert {k: conv[k] for k in ("pending", "in_flight", "delivered", "dead")} == {
        "pending": 1,
        "in_flight": 1,
        "delivered": 1,
        "dead": 1,
    }
    assert conv["oldest_pending_age_seconds"] == pytest.approx(97.0)
    assert conv["last_success_at"] == pytest.approx(T0 + 10.01)
    assert conv["last_failure_at"] == pytest.approx(T0 + 20.01)
    zen = stats["destinations"]["zen"]
    assert (zen["pending"], zen["oldest_pending_age_seconds"], zen["last_success_at"]) == (1, 99.0, None)
    assert list(stats["destinations"]) == ["conv", "zen"]


async def test_list_deliveries_pages_newest_first(outbox: AnyOutbox) -> None:
    for i in range(5):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}")))
    seen: list[int] = []
    cursor: int | None = None
    pages = 0
    while True:
        rows, cursor = await outbox.list_deliveries(destination="conv", limit=2, cursor=cursor)
        pages += 1
        seen.extend(r["id"] for r in rows)
        assert all(r["destination"] == "conv" and "payload" not in r for r in rows)
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    everything, end = await outbox.list_deliveries(limit=10)
    assert (len(everything), end) == (10, None)
    exact, end = await outbox.list_deliveries(limit=5, destination="zen")
    assert (len(exact), end) == (5, None)
    row = everything[0]
    assert set(row) == {
        "id",
        "webhook_id",
        "destination",
        "event_name",
        "event_id",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "lease_owner",
        "created_at",
        "updated_at",
        "delivered_at",
        "last_status_code",
        "last_error",
        "ordering_key",
        "skipped_at",
    }
    assert orjson.loads(orjson.dumps(everything)) == everything  # JSON-friendly
    assert await outbox.list_deliveries(status="dead") == ([], None)


async def test_get_delivery_with_attempts(outbox: AnyOutbox) -> None:
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1", payload=b'{"id": "o1", "total": "12.50"}')))
    [d] = await outbox.claim("conv", 1, T0, LEASE, "w1")
    await outbox.complete(
        [result(d, "w1", "retry", T0 + 1, next_attempt_at=T0 + 5, status_code=500, response_excerpt="oops")]
    )
    [d] = await outbox.claim("conv", 1, T0 + 5, LEASE, "w2")
    await outbox.complete([result(d, "w2", "delivered", T0 + 6, status_code=200, latency_ms=42.0)])
    got = await by_id(outbox, d.id)
    assert got["event"] == {"id": "o1", "total": "12.50"}
    assert got["attempt_count"] == 2
    first, second = got["attempts"]
    assert (first["started_at"], first["status_code"], first["response_excerpt"], first["verdict"]) == (
        T0 + 1,
        500,
        "oops",
        "retry",
    )
    assert (second["started_at"], second["latency_ms"], second["lease_owner"], second["applied"]) == (
        T0 + 6,
        42.0,
        "w2",
        True,
    )
    assert await outbox.get_delivery(d.id + 100) is None


async def test_list_webhooks(outbox: AnyOutbox) -> None:
    for i in range(6):
        await ingest(
            outbox,
            webhook(
                f"evt_{i}",
                source="stripe" if i % 2 else "shop",
                event_type="a" if i < 3 else "b",
                status="accepted" if i != 4 else "mapping_failed",
                received_at=T0 + i,
            ),
        )
    rows, cursor = await outbox.list_webhooks(limit=4)
    assert [r["provider_event_id"] for r in rows] == ["evt_5", "evt_4", "evt_3", "evt_2"]
    assert "body" not in rows[0]
    rest, end = await outbox.list_webhooks(limit=4, cursor=cursor)
    assert ([r["provider_event_id"] for r in rest], end) == (["evt_1", "evt_0"], None)

    async def ids(**filters: Any) -> list[str]:
        found, _ = await outbox.list_webhooks(**filters)
        return [r["provider_event_id"] for r in found]

    assert await ids(source="shop") == ["evt_4", "evt_2", "evt_0"]
    assert await ids(event_type="a", source="stripe") == ["evt_1"]
    assert await ids(status="mapping_failed") == ["evt_4"]
    assert await ids(since=T0 + 2, until=T0 + 4) == ["evt_3", "evt_2"]


# -- replay ----------------------------------------------------------------------------------------------------


async def test_update_webhook_mapping(outbox: AnyOutbox) -> None:
    got = await ingest(outbox, webhook("evt_1", status="mapping_failed", error="KeyError"))
    other = await ingest(outbox, webhook("evt_2", delivery("conv", "o1"), delivery("zen", "o1")))
    [done] = await finish(outbox, "conv", "delivered", T0 + 1)
    new = [delivery("conv", "o1", payload=b'{"v": 2}'), delivery("zen", "o1"), delivery("ga4", "o1")]
    events = orjson.dumps([{"name": "purchase", "id": "o1"}])

    planned = await outbox.update_webhook_mapping(
        got.webhook_id, "accepted", None, events, new, now=T0 + 50, dry_run=True
    )
    assert (await outbox.get_webhook(got.webhook_id) or {})["status"] == "mapping_failed"  # the dry run wrote nothing
    counts = await outbox.update_webhook_mapping(got.webhook_id, "accepted", None, events, new, now=T0 + 50)
    assert counts.counts() == {"created": 1, "skipped": 2, "reset": 0}
    assert counts.actions == ["skip (delivered)", "skip (pending)", "create"]
    assert planned == counts
    stored = await outbox.get_webhook(got.webhook_id)
    assert stored is not None
    assert (stored["status"], stored["error"], stored["events"]) == (
        "accepted",
        None,
        [{"name": "purchase", "id": "o1"}],
    )
    [ga4] = stored["deliveries"]
    assert (ga4["destination"], ga4["status"], ga4["next_attempt_at"], ga4["created_at"]) == (
        "ga4",
        "pending",
        T0 + 50,
        T0 + 50,
    )
    assert (await by_id(outbox, done))["status"] == "delivered"

    forced = await outbox.update_webhook_mapping(got.webhook_id, "accepted", None, events, new, now=T0 + 60, force=True)
    assert forced.counts() == {"created": 0, "skipped": 2, "reset": 1}  # zen is still pending, ga4 pending
    assert forced.actions == ["reset", "skip (pending)", "skip (pending)"]
    redone = await by_id(outbox, done)
    assert (redone["status"], redone["next_attempt_at"], redone["event"]) == ("pending", T0 + 60, {"v": 2})
    assert redone["webhook_id"] == other.webhook_id
    assert redone["attempt_count"] == 1

    for dry_run in (False, True):
        with pytest.raises(OutboxError):
            await outbox.update_webhook_mapping(999_999, "accepted", None, b"[]", [], now=T0, dry_run=dry_run)


async def test_purge(outbox: AnyOutbox) -> None:
    old = await ingest(outbox, webhook("evt_old", delivery("conv", "o1"), delivery("zen", "o1"), received_at=T0))
    gone = await ingest(outbox, webhook("evt_gone", delivery("conv", "o2"), received_at=T0 + 1))
    ignored = await ingest(outbox, webhook("evt_ign", status="ignored", received_at=T0 + 2))
    failed = await ingest(outbox, webhook("evt_fail", status="mapping_failed", error="KeyError", received_at=T0 + 3))
    recent = await ingest(outbox, webhook("evt_new", delivery("conv", "o3"), received_at=T0 + 500))
    delivered = await finish(outbox, "conv", "delivered", T0 + 10, n=2)  # o1, o2
    [dead] = await finish(outbox, "zen", "dead", T0 + 10)
    await finish(outbox, "conv", "delivered", T0 + 600)  # o3, finished after the cut-off

    assert await outbox.purge(T0 + 100) == PurgeResult(deliveries=2, webhooks=2)
    for delivery_id in delivered:
        assert await outbox.get_delivery(delivery_id) is None
    assert (await by_id(outbox, dead))["status"] == "dead"
    assert await outbox.get_webhook(old.webhook_id) is not None  # still has its dead delivery
    assert await outbox.get_webhook(gone.webhook_id) is None
    assert await outbox.get_webhook(ignored.webhook_id) is None
    assert await outbox.get_webhook(failed.webhook_id) is not None  # a replay can still recover it
    assert await outbox.get_webhook(recent.webhook_id) is not None

    assert await outbox.purge(T0 + 100, statuses=("delivered", "dead")) == PurgeResult(deliveries=1, webhooks=1)
    assert await outbox.get_webhook(old.webhook_id) is None
    assert [r["event_id"] for r in await all_deliveries(outbox)] == ["o3"]
    # the dedup keys outlive the rows: a late provider retry, or the same body replayed, is still a duplicate,
    # and the purged facts are not delivered again through another event
    again = await ingest(outbox, webhook("evt_gone", delivery("conv", "o2"), received_at=T0 + 700))
    assert (again.duplicate, again.webhook_id, again.deliveries_created) == (True, gone.webhook_id, 0)
    other = await ingest(outbox, webhook("evt_other", delivery("conv", "o2"), delivery("zen", "o1")))
    assert (other.duplicate, other.deliveries_created) == (False, 0)
    assert [r["event_id"] for r in await all_deliveries(outbox)] == ["o3"]


async def test_reopening_keeps_data_and_migrations_are_idempotent(store: Store) -> None:
    first = await store.open()
    got = await ingest(first, webhook("evt_1", delivery("conv", "o1")))
    await first.close()
    second = await store.open()
    assert (await ingest(second, webhook("evt_1"))).duplicate
    assert (await second.get_webhook(got.webhook_id)) is not None
    await second.close()
    third = await store.open()
    await third.ping()


async def test_closed_outbox_refuses_work(store: Store) -> None:
    outbox = await store.open()
    await outbox.ping()
    await outbox.close()
    with pytest.raises(OutboxError):
        await outbox.ping()
    with pytest.raises(OutboxError):
        await ingest(outbox, webhook("evt_1"))
    await outbox.close()  # twice is fine
