"""The PostgreSQL outbox's purge, in chunks of BULK_CHUNK rows per transaction (so it never holds many row locks
or stalls ingest): finished deliveries and their attempts, webhooks with nothing left to deliver and their
requests, and, separately, dedup keys past their horizon whose rows are gone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from bridge.outbox import postgres_queries as q
from bridge.outbox import rows
from bridge.outbox.base import PurgeResult

T = TypeVar("T")
#: runs `work(conn)` in one transaction (PostgresOutbox._write)
Write = Callable[[Callable[[Any], Awaitable[T]]], Awaitable[T]]


async def purge_rows(write: Write[Any], before: float, statuses: Sequence[str]) -> PurgeResult:
    """See Outbox.purge."""
    chosen = list(statuses)
    after_id = 0

    async def deliveries_chunk(conn: Any) -> tuple[int, int]:
        ids = [int(row[0]) for row in await conn.fetch(q.PURGEABLE, chosen, before, rows.BULK_CHUNK, after_id)]
        if ids:
            await conn.execute(q.PURGE_ATTEMPTS, ids)
            await conn.execute(q.PURGE_DELIVERIES, ids)
        return len(ids), max(ids, default=after_id)

    async def webhooks_chunk(conn: Any) -> int:
        deleted = await conn.fetch(q.PURGE_WEBHOOKS, before, rows.BULK_CHUNK)
        requests = list({int(row[0]) for row in deleted})
        if requests:
            await conn.execute(q.PURGE_REQUESTS, requests)
        return len(deleted)

    deliveries = 0
    while chosen:
        n, after_id = await write(deliveries_chunk)
        deliveries += n
        if n < rows.BULK_CHUNK:
            break
    webhooks = 0
    while True:
        n = await write(webhooks_chunk)
        webhooks += n
        if n < rows.BULK_CHUNK:
            break
    return PurgeResult(deliveries, webhooks)


async def purge_keys(write: Write[Any], before: float) -> int:
    """See Outbox.purge_keys: walk the keys older than `before` in (seen_at, key) order, a chunk per transaction,
    deleting those whose row is gone (a key is never deleted while the row it names exists)."""
    deleted = 0
    for examine, delete, width in (
        (q.OLD_WEBHOOK_KEYS, q.DELETE_WEBHOOK_KEYS, 3),
        (q.OLD_DELIVERY_KEYS, q.DELETE_DELIVERY_KEYS, 4),
    ):
        cursor: tuple[Any, ...] = (float("-inf"), *[""] * width)
        while True:
            examined, gone, cursor = await write(_key_chunk(examine, delete, before, cursor))
            deleted += gone
            if examined < rows.BULK_CHUNK:
                break
    return deleted


def _key_chunk(
    examine: str, delete: str, before: float, cursor: tuple[Any, ...]
) -> Callable[[Any], Awaitable[tuple[int, int, tuple[Any, ...]]]]:
    """One chunk of the key walk from `cursor`: (keys examined, keys deleted, the next cursor)."""

    async def chunk(conn: Any) -> tuple[int, int, tuple[Any, ...]]:
        found = await conn.fetch(examine, before, *cursor, rows.BULK_CHUNK)
        gone = [tuple(row[1:-1]) for row in found if not row[-1]]
        if gone:
            await conn.execute(delete, *[list(column) for column in zip(*gone, strict=True)])
        return len(found), len(gone), (tuple(found[-1][:-1]) if found else cursor)

    return chunk
