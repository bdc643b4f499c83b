"""What ops and replay ask of the SQLite outbox beyond delivering: deliveries and webhooks listed and shown,
retries by id or filter, re-mapping a stored webhook (and its dry run, planned by the rule the write applies), and
purges in bounded transactions. A part of SqliteOutbox (bridge/outbox/sqlite.py); the contract is
bridge/outbox/base.Outbox."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from bridge.errors import OutboxError
from bridge.outbox import dedup
from bridge.outbox import rows as r
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import NewDelivery, PurgeResult, RemapResult
from bridge.outbox.sqlite_connection import chunks
from bridge.outbox.sqlite_ops import fact_keys, fact_states

#: ids of deliveries one purge transaction looks at (it deletes at most BULK_CHUNK of them)
PURGE_WINDOW = 10_000


class SqliteInspection:
    """Listing, showing, retrying, re-mapping and purging; mixed into SqliteOutbox, whose writer (`_submit`) and
    read connection (`_reading`) they use."""

    if TYPE_CHECKING:

        async def _submit(self, kind: str, arg: Any) -> Any: ...

        def _reading(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        @staticmethod
        async def _all(
            conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
        ) -> list[Any]: ...

    async def list_deliveries(
        self,
        *,
        status: str | None = None,
        destination: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        r.check_delivery_status(status)
        r.check_limit(limit)
        filters = [("status", "=", status), ("destination", "=", destination), ("id", "<", cursor)]
        where, params = r.where(filters, numbered=False)
        sql = f"SELECT {q.DELIVERY_SELECT} FROM deliveries WHERE {where} ORDER BY id DESC LIMIT ?"
        async with self._reading() as conn:
            rows = await self._all(conn, sql, [*params, limit + 1])
        return r.page([r.delivery_dict(row) for row in rows], limit)

    async def get_delivery(self, delivery_id: int) -> dict[str, Any] | None:
        async with self._reading() as conn:
            rows = await self._all(conn, q.GET_DELIVERY, [delivery_id])
            if not rows:
                return None
            attempts = await self._all(conn, q.GET_ATTEMPTS, [delivery_id])
        row = rows[0]
        return r.full_delivery(row[:-1], row[-1], attempts)

    async def retry(
        self,
        now: float,
        *,
        ids: Sequence[int] | None = None,
        status: str | None = "dead",
        destination: str | None = None,
    ) -> int:
        statuses = r.retry_statuses(ids, status)
        if ids is not None:
            total = 0
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), r.BULK_CHUNK):
                chunk = unique[start : start + r.BULK_CHUNK]
                total += int(await self._submit("retry_ids", (now, chunk, statuses)))
            return total
        total = 0
        while True:  # chunked, so a bulk retry of a large dead-letter queue never stalls ingest
            n = int(await self._submit("retry_filter", (now, statuses, destination, r.BULK_CHUNK)))
            total += n
            if n < r.BULK_CHUNK:
                return total

    async def get_webhook(self, webhook_id: int) -> dict[str, Any] | None:
        async with self._reading() as conn:
            rows = await self._all(conn, q.GET_WEBHOOK, [webhook_id])
            if not rows:
                return None
            deliveries = await self._all(conn, q.WEBHOOK_DELIVERIES, [webhook_id])
        row = rows[0]
        return r.full_webhook(row[:-3], row[-3], row[-2], row[-1], deliveries)

    # -- additions beyond base.Outbox (ops and replay) ----------------------------------------------------------

    async def list_webhooks(
        self,
        *,
        source: str | None = None,
        event_type: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Webhooks newest first (id descending) after `cursor`, without bodies; received_at in [since, until)."""
        r.check_webhook_status(status)
        r.check_limit(limit)
        filters = [
            ("source", "=", source),
            ("event_type", "=", event_type),
            ("status", "=", status),
            ("received_at", ">=", since),
            ("received_at", "<", until),
            ("id", "<", cursor),
        ]
        where, params = r.where(filters, numbered=False)
        sql = f"SELECT {q.WEBHOOK_SUMMARY_SELECT} FROM webhooks WHERE {where} ORDER BY id DESC LIMIT ?"
        async with self._reading() as conn:
            rows = await self._all(conn, sql, [*params, limit + 1])
        return r.page([r.webhook_summary(row) for row in rows], limit)

    async def update_webhook_mapping(
        self,
        webhook_id: int,
        status: str,
        error: str | None,
        events: bytes,
        deliveries: Sequence[NewDelivery],
        *,
        now: float,
        force: bool = False,
        dry_run: bool = False,
    ) -> RemapResult:
        """See Outbox.update_webhook_mapping."""
        r.check_webhook_status(status)
        clean = [r.clean_delivery(d) for d in deliveries]
        if dry_run:
            return await self._plan_remap(webhook_id, clean, force=force)
        arg = (webhook_id, status, error, events, clean, now, force)
        result: RemapResult = await self._submit("remap", arg)
        return result

    async def _plan_remap(self, webhook_id: int, deliveries: list[NewDelivery], *, force: bool) -> RemapResult:
        """The replay's decisions, read from a snapshot, by the rule the write applies (dedup.remap_actions)."""
        async with self._reading() as conn:
            found = await self._all(conn, q.WEBHOOK_SOURCE, [webhook_id])
            if not found:
                raise OutboxError(f"webhook {webhook_id} does not exist")
            keys = fact_keys(str(found[0][0]), deliveries)
            rows: list[Any] = []
            for chunk in chunks(keys, 1000):
                flat = [value for key in chunk for value in key]
                rows += await self._all(conn, q.find_delivery_keys(len(chunk)), flat)
        states = fact_states(rows)
        actions = dedup.remap_actions(deliveries, {k: state for k, (_, state) in states.items()}, force=force)
        counts = dedup.count_actions(actions)
        return RemapResult(actions, counts["created"], counts["skipped"], counts["reset"])

    async def purge(self, before: float, statuses: Sequence[str] = ("delivered",)) -> PurgeResult:
        """See Outbox.purge. Works in chunks of BULK_CHUNK rows per transaction."""
        chosen = r.check_purge_statuses(statuses)
        deleted = 0
        after_id = 0
        last_id = int(await self._submit("max_delivery_id", None)) if chosen else 0
        while chosen and after_id < last_id:
            # one id window per transaction: with few rows to purge, one chunk would otherwise read the whole table
            # in one transaction (half a second at a million rows) while every ingest waits behind it
            arg = (after_id, PURGE_WINDOW, before, chosen, r.BULK_CHUNK)
            n, after_id = await self._submit("purge_deliveries", arg)
            deleted += n
        webhooks = 0
        while True:
            n = int(await self._submit("purge_webhooks", (before, r.BULK_CHUNK)))
            webhooks += n
            if n < r.BULK_CHUNK:
                break
        return PurgeResult(deleted, webhooks)

    async def purge_keys(self, before: float) -> int:
        """See Outbox.purge_keys. Walks the old keys in chunks of BULK_CHUNK per transaction."""
        deleted = 0
        for table, width in (("webhook_keys", 3), ("delivery_keys", 4)):
            cursor: tuple[Any, ...] = (float("-inf"), *[""] * width)
            while True:
                examined, gone, cursor = await self._submit("purge_keys", (table, before, cursor, r.BULK_CHUNK))
                deleted += gone
                if examined < r.BULK_CHUNK:
                    break
        return deleted
