"""`stats` equals a count of the rows after every kind of write (run on every implementation; SQLite keeps its
counts in tables its triggers maintain, PostgreSQL counts), a database of the previous schema gets its counts
backfilled, and SQLite's stats read no deliveries table scan."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import asyncpg

from bridge.outbox import sqlite_schema
from bridge.outbox.sqlite import SqliteOutbox
from tests.outbox.conftest import Store
from tests.outbox.support import LEASE, T0, AnyOutbox, delivery, finish, ingest, result, webhook


async def counted(store: Store) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """({destination: {status: n}}, {webhook status: n}) counted straight from the tables."""
    deliveries = "SELECT destination, status, count(*) FROM deliveries GROUP BY destination, status"
    webhooks = "SELECT status, count(*) FROM webhooks GROUP BY status"
    if store.path is not None:
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            rows, hooks = conn.execute(deliveries).fetchall(), conn.execute(webhooks).fetchall()
    else:
        conn = await asyncpg.connect(store.dsn)
        try:
            rows, hooks = await conn.fetch(deliveries), await conn.fetch(webhooks)
        finally:
            await conn.close()
    by_destination: dict[str, dict[str, int]] = {}
    for destination, status, n in rows:
        by_destination.setdefault(destination, {})[status] = int(n)
    return by_destination, {status: int(n) for status, n in hooks}


async def check(store: Store, outbox: AnyOutbox, now: float) -> dict[str, Any]:
    stats = await outbox.stats(now)
    deliveries, webhooks = await counted(store)
    assert set(deliveries) <= set(stats["destinations"])  # also those with activity and no rows left (all 0)
    for destination, counts in stats["destinations"].items():
        for status in ("pending", "in_flight", "delivered", "dead"):
            want = deliveries.get(destination, {}).get(status, 0)
            assert counts[status] == want, (destination, status, stats)
    assert {k: v for k, v in stats["webhooks"].items() if v} == webhooks
    return stats


async def test_stats_follow_every_write(store: Store) -> None:
    outbox = await store.open()
    for i in range(6):
        await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}"), received_at=T0))
    await ingest(outbox, webhook("evt_ignored", status="ignored", received_at=T0 + 150))  # outlives the purge
    await ingest(outbox, webhook("evt_0", delivery("conv", "o0")))  # a duplicate changes nothing
    await check(store, outbox, T0)

    await finish(outbox, "conv", "delivered", T0 + 1, n=3)
    await finish(outbox, "conv", "dead", T0 + 1, n=1)
    await finish(outbox, "zen", "retry", T0 + 1, n=2)
    flying = await outbox.claim("zen", 2, T0 + 1, LEASE, "w1")
    stats = await check(store, outbox, T0 + 10)
    assert stats["destinations"]["zen"]["in_flight"] == 2
    assert stats["destinations"]["zen"]["oldest_pending_age_seconds"] == 10.0

    await outbox.release([flying[0].id], "w1")
    await outbox.complete([result(flying[1], "w1", "delivered", T0 + 2)])
    await outbox.retry(T0 + 3, status="dead")
    await check(store, outbox, T0 + 10)

    await finish(outbox, "conv", "delivered", T0 + 4, n=3)
    purged = await outbox.purge(T0 + 100)  # every delivered conv row and the webhooks left without deliveries
    assert purged.deliveries > 0
    stats = await check(store, outbox, T0 + 200)
    assert "delivered" not in {s for s, n in stats["destinations"].get("conv", {}).items() if n}

    webhook_id = (await outbox.list_webhooks(status="ignored"))[0][0]["id"]
    await outbox.update_webhook_mapping(
        webhook_id, "accepted", None, b"[]", [delivery("conv", "replayed")], now=T0 + 300
    )  # a replay: the webhook's status changes, a delivery is created
    await check(store, outbox, T0 + 300)

    await outbox.close()
    outbox = await store.open()  # reopened: nothing recounted, nothing lost
    await check(store, outbox, T0 + 300)


class SqliteV3(SqliteOutbox):
    _migrations = sqlite_schema.MIGRATIONS[:3]  # before the kept counts


async def test_counts_of_an_older_database_are_backfilled(tmp_path: Any) -> None:
    path = tmp_path / "outbox.db"
    store = Store("sqlite", lambda: SqliteOutbox(path), path=path)
    old = SqliteV3(path)
    await old.open()
    for i in range(5):
        await ingest(old, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0))
    await old.close()
    # settled as the code of that version did (today's claim asks about columns a version-3 file lacks)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        settled = "UPDATE deliveries SET status = 'delivered', attempts = 1, delivered_at = ? WHERE id IN (1, 2)"
        conn.execute(settled, [T0 + 1])
        conn.execute("UPDATE deliveries SET status = 'dead', attempts = 1 WHERE id = 3")
    outbox = await store.open()
    try:
        stats = await check(store, outbox, T0 + 5)
        conv = stats["destinations"]["conv"]
        assert (conv["pending"], conv["delivered"], conv["dead"]) == (2, 2, 1)
        await ingest(outbox, webhook("evt_new", delivery("conv", "o_new"), received_at=T0 + 5))
        assert (await check(store, outbox, T0 + 5))["destinations"]["conv"]["pending"] == 3
    finally:
        await outbox.close()
