"""The PostgreSQL outbox, for several bridge replicas sharing one store.

Same tables and semantics as the SQLite outbox. Differences:
- no process lock and no reset of in-flight rows at open: other replicas hold live leases; an expired lease is
  simply claimable again;
- claims use `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint rows;
- no group commit: PostgreSQL commits concurrent transactions together by itself; each write is one transaction;
- migrations take a transaction-scoped advisory lock, so replicas starting together don't race;
- dedup: the key tables' primary keys with `ON CONFLICT DO NOTHING` decide what is new (the single SQLite writer
  reads and decides in Python; bridge/outbox/dedup.py holds the rules both follow).
Transactions that hit a deadlock or serialization failure are retried a few times before giving up.

Bounded waits: taking a pooled connection waits at most `acquire_timeout` seconds and every statement at most
`statement_timeout` (the server's statement_timeout; the client gives up a second later), so a locked table or an
exhausted pool is answered with OutboxUnavailable (503, the provider retries) instead of a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from bridge.errors import OutboxError, OutboxUnavailable
from bridge.outbox import dedup
from bridge.outbox import postgres_queries as q
from bridge.outbox import rows as r
from bridge.outbox.base import (
    AttemptResult,
    Delivery,
    IngestResult,
    NewDelivery,
    NewRequest,
    NewWebhook,
    PurgeResult,
    RemapResult,
)
from bridge.outbox.postgres_schema import MIGRATIONS, migrate

T = TypeVar("T")

_TRANSIENT = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_ATTEMPTS = 4


def _text(value: str | None) -> str | None:
    return r.clean_text(value, strip_nul=True)


class _Vanished(Exception):
    """A row we conflicted with was deleted before we could read it: run the transaction again."""


class _SeenBody(Exception):
    """The request's body key is stored already: roll back what the transaction claimed, it is a duplicate."""


class PostgresOutbox:
    """The outbox in PostgreSQL; see the module docstring. The contract is bridge.outbox.base.Outbox."""

    _migrations = MIGRATIONS

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 5.0,
        statement_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        #: seconds to wait for a pooled connection (and to connect a new one)
        self.acquire_timeout = acquire_timeout
        #: seconds one statement may run, lock waits included (0: no limit)
        self.statement_timeout = statement_timeout
        self._pool: Any = None

    def __repr__(self) -> str:
        return "PostgresOutbox(...)"  # the DSN may hold a password

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise OutboxError("the PostgreSQL outbox is already open")
        statement_ms = max(0, round(self.statement_timeout * 1000))
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self.acquire_timeout,
                command_timeout=self.statement_timeout + 1.0 if statement_ms else None,
                server_settings={"statement_timeout": str(statement_ms)},
            )
        except (*_DB_ERRORS, ValueError) as exc:
            raise OutboxUnavailable(f"cannot connect to the PostgreSQL outbox: {exc}") from exc
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                await migrate(conn, self._migrations)
        except _DB_ERRORS as exc:
            await pool.close()
            raise OutboxError(f"PostgreSQL outbox schema migration failed and was rolled back: {exc}") from exc
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=30)
            except _DB_ERRORS:
                pool.terminate()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise OutboxUnavailable("the PostgreSQL outbox is not open")
        return self._pool

    async def _write(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(conn)` in one transaction; retry deadlocks; errors become OutboxUnavailable."""
        pool = self._require_pool()
        for attempt in range(_ATTEMPTS):
            try:
                async with pool.acquire(timeout=self.acquire_timeout) as conn, conn.transaction():
                    return await work(conn)
            except (*_TRANSIENT, _Vanished) as exc:
                if attempt == _ATTEMPTS - 1:
                    raise OutboxUnavailable(f"outbox write kept conflicting, nothing was stored: {exc}") from exc
            except _DB_ERRORS as exc:
                raise OutboxUnavailable(f"outbox write failed, nothing was stored: {exc}") from exc
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Any]:
        """A connection in a read-only repeatable-read transaction (one snapshot); errors become OutboxError."""
        pool = self._require_pool()
        try:
            async with (
                pool.acquire(timeout=self.acquire_timeout) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield conn
        except _DB_ERRORS as exc:
            raise OutboxError(f"outbox read failed: {exc}") from exc

    # -- the Outbox contract --------------------------------------------------------------------------------

    async def ping(self) -> None:
        async with self._reading() as conn:
            await conn.fetchval("SELECT 1")

    async def ingest(self, request: NewRequest) -> list[IngestResult]:
        r.check_request(request)
        clean = r.clean_request(request, strip_nul=True)
        body = dedup.body_key(request.body)
        try:
            return await self._write(lambda conn: self._ingest(conn, clean, body))
        except _SeenBody:
            return await self._write(lambda conn: self._duplicates(conn, clean, body))

    async def _ingest(self, conn: Any, request: NewRequest, body: str) -> list[IngestResult]:
        """One request in the current transaction; raises _SeenBody (rolling it back) if the body is known."""
        webhooks = request.webhooks
        candidates = [d for webhook in webhooks for d in webhook.deliveries]
        webhook_ids, delivery_ids, request_id = await conn.fetchrow(q.NEXT_IDS, len(webhooks), len(candidates))
        first: dict[str, int] = {}  # provider event id -> the id planned for its first occurrence
        for webhook, webhook_id in zip(webhooks, webhook_ids, strict=True):
            first.setdefault(webhook.provider_event_id, int(webhook_id))
        body_is_new, claimed = await conn.fetchrow(
            q.CLAIM_WEBHOOK_KEYS,
            request.source,
            body,
            first[webhooks[0].provider_event_id],
            list(first),
            list(first.values()),
            request.received_at,
        )
        if not body_is_new:
            raise _SeenBody
        new = set(claimed)
        known: dict[str, int] = {}
        if len(new) < len(first):
            others = [key for key in first if key not in new]
            rows = await conn.fetch(q.FIND_WEBHOOK_KEYS, request.source, dedup.EVENT, others)
            known = {row[0]: int(row[1]) for row in rows}
            if len(known) + len(new) < len(first):
                raise _Vanished(f"webhook keys of {request.source}")
        if webhooks[0].provider_event_id not in new:
            await conn.execute(q.SET_BODY_KEY, request.source, body, known[webhooks[0].provider_event_id])
        fresh_at = {
            index
            for index, (webhook, webhook_id) in enumerate(zip(webhooks, webhook_ids, strict=True))
            if webhook.provider_event_id in new and first[webhook.provider_event_id] == webhook_id
        }
        fresh = [(webhooks[index], int(webhook_ids[index])) for index in sorted(fresh_at)]
        if fresh:
            await conn.execute(
                q.INSERT_REQUEST,
                request_id,
                request.source,
                request.received_at,
                request.headers,
                request.body,
                request.provider,
                [webhook_id for _, webhook_id in fresh],
                [w.provider_event_id for w, _ in fresh],
                [w.event_type for w, _ in fresh],
                [w.status for w, _ in fresh],
                [w.error for w, _ in fresh],
                [w.events for w, _ in fresh],
            )
        created = await self._insert_deliveries(conn, request, fresh, delivery_ids)
        results = []
        for index, (webhook, webhook_id) in enumerate(zip(webhooks, webhook_ids, strict=True)):
            if index in fresh_at:
                results.append(IngestResult(int(webhook_id), False, created.get(int(webhook_id), 0)))
            else:
                existing = known.get(webhook.provider_event_id, first[webhook.provider_event_id])
                results.append(IngestResult(existing, True, 0))
        return results

    @staticmethod
    async def _insert_deliveries(
        conn: Any, request: NewRequest, fresh: list[tuple[NewWebhook, int]], ids: Sequence[int]
    ) -> dict[int, int]:
        """The deliveries of the new webhooks whose facts are new for the source; {webhook id: created}."""
        planned: dict[dedup.Fact, tuple[int, int, NewDelivery]] = {}
        spare = iter(ids)
        for webhook, webhook_id in fresh:
            for delivery in webhook.deliveries:
                if dedup.fact(delivery) not in planned:
                    planned[dedup.fact(delivery)] = (int(next(spare)), webhook_id, delivery)
        if not planned:
            return {}
        rows = list(planned.values())
        inserted = await conn.fetch(q.INSERT_DELIVERIES, request.source, request.received_at, *_delivery_arrays(rows))
        created: dict[int, int] = {}
        for row in inserted:
            created[int(row[0])] = created.get(int(row[0]), 0) + 1
        return created

    @staticmethod
    async def _duplicates(conn: Any, request: NewRequest, body: str) -> list[IngestResult]:
        """A request whose body is stored: each event answers with its stored webhook (or the body's)."""
        ids = list(dict.fromkeys(w.provider_event_id for w in request.webhooks))
        events = {row[0]: int(row[1]) for row in await conn.fetch(q.FIND_WEBHOOK_KEYS, request.source, "event", ids)}
        [found] = await conn.fetch(q.FIND_WEBHOOK_KEYS, request.source, dedup.BODY, [body]) or [None]
        if found is None:
            raise _Vanished(f"body key of {request.source}")
        return [IngestResult(events.get(w.provider_event_id, int(found[1])), True, 0) for w in request.webhooks]

    async def claim(self, destination: str, limit: int, now: float, lease_seconds: float, owner: str) -> list[Delivery]:
        if limit <= 0:
            return []

        async def work(conn: Any) -> list[Delivery]:
            rows = await conn.fetch(q.CLAIM, destination, now, limit, owner, now + lease_seconds)
            return r.sort_claimed(rows)

        return await self._write(work)

    async def complete(self, results: Sequence[AttemptResult]) -> list[bool]:
        if not results:
            return []
        r.check_results(results)
        flat = list(results)

        async def work(conn: Any) -> list[bool]:
            applied = [False] * len(flat)
            for round_ in r.unique_rounds(flat):
                chosen = [flat[i] for i in round_]
                done = await conn.fetch(
                    q.COMPLETE,
                    [x.delivery_id for x in chosen],
                    [x.owner for x in chosen],
                    [x.verdict for x in chosen],
                    [r.retry_at(x) for x in chosen],
                    [x.status_code for x in chosen],
                    [_text(x.error) for x in chosen],
                    [r.finished_at(x) for x in chosen],
                )
                done_ids = {int(row[0]) for row in done}
                for i in round_:
                    applied[i] = flat[i].delivery_id in done_ids
            await conn.execute(
                q.INSERT_ATTEMPTS,
                [x.delivery_id for x in flat],
                [x.started_at for x in flat],
                [x.status_code for x in flat],
                [x.latency_ms for x in flat],
                [_text(x.error) for x in flat],
                [_text(x.response_excerpt) for x in flat],
                [x.verdict for x in flat],
                [_text(x.owner) for x in flat],
                applied,
            )
            await conn.execute(
                q.RECORD_ACTIVITY,
                [x.delivery_id for x in flat],
                [x.verdict for x in flat],
                [r.finished_at(x) for x in flat],
            )
            return applied

        return await self._write(work)

    async def release(self, delivery_ids: Sequence[int], owner: str) -> int:
        if not delivery_ids:
            return 0

        async def work(conn: Any) -> int:
            return len(await conn.fetch(q.RELEASE, list(delivery_ids), owner))

        return await self._write(work)

    async def next_due_at(self, destination: str | None = None) -> float | None:
        async with self._reading() as conn:
            if destination is None:
                value = await conn.fetchval(q.NEXT_DUE_ALL)
            else:
                value = await conn.fetchval(q.NEXT_DUE_ONE, destination)
        return r.as_float(value)

    async def stats(self, now: float) -> dict[str, Any]:
        async with self._reading() as conn:
            counts = await conn.fetch(q.STATS_COUNTS)
            oldest = await conn.fetch(q.STATS_OLDEST)
            activity = await conn.fetch(q.STATS_ACTIVITY)
            webhooks = await conn.fetch(q.STATS_WEBHOOKS)
        return r.build_stats(now, counts, oldest, activity, webhooks)

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

            return await self._write(by_ids) if unique else 0
        sql = q.retry_filter(destination is not None)
        extra = [destination] if destination is not None else []

        async def chunk(conn: Any) -> int:
            return len(await conn.fetch(sql, now, statuses, r.BULK_CHUNK, *extra))

        total = 0
        while True:  # chunked, so a bulk retry holds few row locks at a time
            n = await self._write(chunk)
            total += n
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
                states = await self._fact_states(conn, source, clean)
            return _remap_result(clean, {k: state for k, (_, state) in states.items()}, force=force)

        async def work(conn: Any) -> RemapResult:
            source = await conn.fetchval(q.REMAP_WEBHOOK, status, _text(error), events, webhook_id)
            if source is None:
                raise OutboxError(f"webhook {webhook_id} does not exist")  # rolls the transaction back
            unique = dedup.unique_facts(clean)
            ids = await conn.fetchval(q.NEXT_DELIVERY_IDS, len(unique))
            planned = [(int(i), webhook_id, d) for i, d in zip(ids, unique, strict=True)]
            inserted = await conn.fetch(q.INSERT_DELIVERIES, source, now, *_delivery_arrays(planned)) if planned else []
            created = {(row[1], row[2], row[3]) for row in inserted}
            stored = await self._fact_states(conn, source, [d for d in unique if dedup.fact(d) not in created])
            locked = {}
            if stored:
                rows = await conn.fetch(q.LOCK_DELIVERIES, [delivery_id for delivery_id, _ in stored.values()])
                locked = {int(row[0]): str(row[1]) for row in rows}
            states: dict[dedup.Fact, dedup.KeyState] = {key: None for key in created}
            for d in unique:
                key = dedup.fact(d)
                if key not in created:
                    delivery_id, _ = stored.get(key, (0, "purged"))
                    states[key] = locked.get(delivery_id, "purged")
            result = _remap_result(clean, states, force=force)
            resets = [
                (stored[dedup.fact(d)][0], d.payload)
                for d, action in zip(clean, result.actions, strict=True)
                if action == "reset"
            ]
            if resets:
                await conn.execute(q.RESET_DELIVERIES, [i for i, _ in resets], [p for _, p in resets], now)
            return result

        return await self._write(work)

    @staticmethod
    async def _fact_states(
        conn: Any, source: str, deliveries: Sequence[NewDelivery]
    ) -> dict[dedup.Fact, tuple[int, dedup.KeyState]]:
        """{fact: (delivery id, key state)} for the facts of `deliveries` whose key is stored."""
        if not deliveries:
            return {}
        rows = await conn.fetch(
            q.FIND_DELIVERY_KEYS,
            source,
            [d.destination for d in deliveries],
            [d.event_name for d in deliveries],
            [d.event_id for d in deliveries],
        )
        return {(row[0], row[1], row[2]): (int(row[3]), dedup.key_state(row[3], row[4])) for row in rows}

    async def purge(self, before: float, statuses: Sequence[str] = ("delivered",)) -> PurgeResult:
        """See Outbox.purge."""
        chosen = list(r.check_purge_statuses(statuses))

        after_id = 0

        async def deliveries_chunk(conn: Any) -> tuple[int, int]:
            ids = [int(row[0]) for row in await conn.fetch(q.PURGEABLE, chosen, before, r.BULK_CHUNK, after_id)]
            if ids:
                await conn.execute(q.PURGE_ATTEMPTS, ids)
                await conn.execute(q.PURGE_DELIVERIES, ids)
            return len(ids), max(ids, default=after_id)

        async def webhooks_chunk(conn: Any) -> int:
            deleted = await conn.fetch(q.PURGE_WEBHOOKS, before, r.BULK_CHUNK)
            requests = list({int(row[0]) for row in deleted})
            if requests:
                await conn.execute(q.PURGE_REQUESTS, requests)
            return len(deleted)

        deleted = 0
        while chosen:
            n, after_id = await self._write(deliveries_chunk)
            deleted += n
            if n < r.BULK_CHUNK:
                break
        webhooks = 0
        while True:
            n = await self._write(webhooks_chunk)
            webhooks += n
            if n < r.BULK_CHUNK:
                break
        return PurgeResult(deleted, webhooks)

    async def purge_keys(self, before: float) -> int:
        """See Outbox.purge_keys."""
        deleted = 0
        for examine, delete, width in (
            (q.OLD_WEBHOOK_KEYS, q.DELETE_WEBHOOK_KEYS, 3),
            (q.OLD_DELIVERY_KEYS, q.DELETE_DELIVERY_KEYS, 4),
        ):
            cursor: tuple[Any, ...] = (float("-inf"), *[""] * width)

            async def chunk(conn: Any) -> tuple[int, int, tuple[Any, ...]]:
                rows = await conn.fetch(examine, before, *cursor, r.BULK_CHUNK)  # noqa: B023 (awaited at once)
                gone = [tuple(row[1:-1]) for row in rows if not row[-1]]
                if gone:
                    await conn.execute(delete, *[list(column) for column in zip(*gone, strict=True)])  # noqa: B023
                return len(rows), len(gone), (tuple(rows[-1][:-1]) if rows else cursor)  # noqa: B023

            while True:
                examined, gone, cursor = await self._write(chunk)
                deleted += gone
                if examined < r.BULK_CHUNK:
                    break
        return deleted


def _delivery_arrays(planned: Sequence[tuple[int, int, NewDelivery]]) -> list[list[Any]]:
    """INSERT_DELIVERIES' arrays ($3..$8) for (delivery id, webhook id, delivery) rows."""
    return [
        [delivery_id for delivery_id, _, _ in planned],
        [webhook_id for _, webhook_id, _ in planned],
        [d.destination for _, _, d in planned],
        [d.event_name for _, _, d in planned],
        [d.event_id for _, _, d in planned],
        [d.payload for _, _, d in planned],
    ]


def _remap_result(
    deliveries: Sequence[NewDelivery], states: dict[dedup.Fact, dedup.KeyState], *, force: bool
) -> RemapResult:
    actions = dedup.remap_actions(deliveries, states, force=force)
    counts = dedup.count_actions(actions)
    return RemapResult(actions, counts["created"], counts["skipped"], counts["reset"])
