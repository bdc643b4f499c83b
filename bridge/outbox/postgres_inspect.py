"""What ops and replay ask of the PostgreSQL outbox beyond delivering: deliveries and webhooks listed and shown,
retries by id or filter, re-mapping a stored webhook, and purges. A part of PostgresOutbox
(bridge/outbox/postgres.py); the contract is bridge/outbox/base.Outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.errors import OutboxError
from bridge.outbox import postgres_queries as q
from bridge.outbox import rows as r
from bridge.outbox.base import NewDelivery, PurgeResult, RemapResult
from bridge.outbox.postgres_notify import ALL, Announcer
from bridge.outbox.postgres_purge import purge_keys, purge_rows
from bridge.outbox.postgres_remap import fact_states, remap, remap_result

T = TypeVar("T")


class PostgresInspection:
    """Listing, showing, retrying, re-mapping and purging; mixed into PostgresOutbox, whose transactions
    (`_write`, `_reading`) they use."""

    announcer: Announcer

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Any], Awaitable[T]]) -> T: ...

        def _reading(self) -> AbstractAsyncContextManager[Any]: ...

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
        where, params = r.where(filters, numbered=True)
        params.append(limit + 1)
        sql = f"SELECT {q.DELIVERY_SELECT} FROM deliveries WHERE {where} ORDER BY id DESC LIMIT ${len(params)}"
        async with self._reading() as conn:
            rows = await conn.fetch(sql, *params)
        return r.page([r.delivery_dict(tuple(row)) for row in rows], limit)

    async def get_delivery(self, delivery_id: int) -> dict[str, Any] | None:
        async with self._reading() as conn:
            row = await conn.fetchrow(q.GET_DELIVERY, delivery_id)
            if row is None:
                return None
            attempts = await conn.fetch(q.GET_ATTEMPTS, delivery_id)
        values = tuple(row)
        return r.full_delivery(values[:-1], values[-1], [tuple(a) for a in attempts])

    async def retry(
        self,
        now: float,
        *,
        ids: Sequence[int] | None = None,
        status: str | None = "dead",
        destination: str | None = None,
    ) -> int:
        statuses = list(r.retry_statuses(ids, status))
        if ids is not None:
            unique = list(dict.fromkeys(ids))

            async def by_ids(conn: Any) -> int:
                return len(await conn.fetch(q.RETRY_IDS, now, unique, statuses))

            retried = await self._write(by_ids) if unique else 0
            if retried:
                self.announcer.work([ALL])
            return retried
        sql = q.retry_filter(destination is not None)
        extra = [destination] if destination is not None else []

        async def chunk(conn: Any) -> int:
            return len(await conn.fetch(sql, now, statuses, r.BULK_CHUNK, *extra))

        total = 0
        while True:  # chunked, so a bulk retry holds few row locks at a time
            n = await self._write(chunk)
            total += n
            if total:
                self.announcer.work([destination] if destination is not None else [ALL])
            if n < r.BULK_CHUNK:
                return total

    async def get_webhook(self, webhook_id: int) -> dict[str, Any] | None:
        async with self._reading() as conn:
            row = await conn.fetchrow(q.GET_WEBHOOK, webhook_id)
            if row is None:
                return None
            deliveries = await conn.fetch(q.WEBHOOK_DELIVERIES, webhook_id)
        values = tuple(row)
        return r.full_webhook(values[:-3], values[-3], values[-2], values[-1], [tuple(d) for d in deliveries])

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
        where, params = r.where(
            [
                ("source", "=", source),
                ("event_type", "=", event_type),
                ("status", "=", status),
                ("received_at", ">=", since),
                ("received_at", "<", until),
                ("id", "<", cursor),
            ],
            numbered=True,
        )
        params.append(limit + 1)
        sql = f"SELECT {q.WEBHOOK_SUMMARY_SELECT} FROM webhooks WHERE {where} ORDER BY id DESC LIMIT ${len(params)}"
        async with self._reading() as conn:
            rows = await conn.fetch(sql, *params)
        return r.page([r.webhook_summary(tuple(row)) for row in rows], limit)

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
        clean = [r.clean_delivery(d, strip_nul=True) for d in deliveries]
        if dry_run:
            async with self._reading() as conn:
                source = await conn.fetchval(q.WEBHOOK_SOURCE, webhook_id)
                if source is None:
                    raise OutboxError(f"webhook {webhook_id} does not exist")
                states = await fact_states(conn, source, clean)
            return remap_result(clean, {k: state for k, (_, state) in states.items()}, force=force)
        result = await self._write(
            lambda conn: remap(conn, webhook_id, status, error, events, clean, now=now, force=force)
        )
        if result.created or result.reset:
            self.announcer.work({d.destination for d in clean})
        return result

    async def purge(self, before: float, statuses: Sequence[str] = ("delivered",)) -> PurgeResult:
        """See Outbox.purge."""
        return await purge_rows(self._write, before, r.check_purge_statuses(statuses))

    async def purge_keys(self, before: float) -> int:
        """See Outbox.purge_keys."""
        return await purge_keys(self._write, before)
