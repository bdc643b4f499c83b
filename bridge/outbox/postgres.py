"""The PostgreSQL outbox, for several bridge replicas sharing one store.

Same tables and semantics as the SQLite outbox. Differences:
- no process lock and no reset of in-flight rows at open: other replicas hold live leases; an expired lease is
  simply claimable again;
- claims use `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint rows;
- no group commit: PostgreSQL commits concurrent transactions together by itself; each write is one transaction;
- migrations take a transaction-scoped advisory lock, so replicas starting together don't race;
- dedup: the key tables' primary keys with `ON CONFLICT DO NOTHING` decide what is new (the single SQLite writer
  reads and decides in Python; bridge/outbox/dedup.py holds the rules both follow).
- lanes are leased rows (`lanes`), so each destination's sending and its rate limiter live in one replica at a
  time, and claims of one destination take turns (an advisory lock), which keeps per-key ordering exact;
- replicas wake each other with LISTEN/NOTIFY (bridge/outbox/postgres_notify.py): work committed here wakes the
  replica sending for its destination at once instead of at its next poll.
Transactions that hit a deadlock or serialization failure are retried a few times before giving up.

Bounded waits: taking a pooled connection waits at most `acquire_timeout` seconds and every statement at most
`statement_timeout` (the server's statement_timeout; the client gives up a second later), and one whole operation
(acquire + every statement of its transaction) at most the larger of the two plus a second, so a locked table, an
exhausted pool or a frozen server is answered with OutboxUnavailable (503, the provider retries) within that bound
instead of a hang or the sum of the waits. Migrations are exempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
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
    NewRequest,
)
from bridge.outbox.postgres_fleet import PostgresFleet, record_disables
from bridge.outbox.postgres_ingest import SeenBody, Vanished, duplicates, ingest
from bridge.outbox.postgres_inspect import PostgresInspection
from bridge.outbox.postgres_notify import Announcer, Listener
from bridge.outbox.postgres_schema import MIGRATIONS, migrate

T = TypeVar("T")

_TRANSIENT = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
#: what a database that is down, restarting or frozen raises; InternalClientError is asyncpg's own state error on a
#: connection the server dropped mid-protocol ("cannot switch to state …"), seen while PostgreSQL restarts
_DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
_ATTEMPTS = 4


def _text(value: str | None) -> str | None:
    return r.clean_text(value, strip_nul=True)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume the outcome of an operation given up on (its error was already answered as unavailable)."""
    if not task.cancelled():
        task.exception()


class PostgresOutbox(PostgresFleet, PostgresInspection):
    """The outbox in PostgreSQL; see the module docstring. The contract is bridge.outbox.base.Outbox (its lanes,
    wake-ups and skip: bridge/outbox/postgres_fleet.py)."""

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
        #: seconds one whole operation may take, acquire included (None: unbounded, when statements are)
        self.deadline = max(acquire_timeout, statement_timeout) + 1.0 if statement_timeout > 0 else None
        self._pool: Any = None
        #: names this process in the NOTIFYs it sends, so it ignores its own
        self.instance = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.announcer = Announcer(self.instance, self._acquire)
        self.listener: Listener | None = None

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
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        await self.announcer.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=30)
            except _DB_ERRORS:
                pool.terminate()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _acquire(self) -> Any:
        return self._require_pool().acquire(timeout=self.acquire_timeout)

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise OutboxUnavailable("the PostgreSQL outbox is not open")
        return self._pool

    async def _write(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(conn)` in one transaction; retry deadlocks; errors become OutboxUnavailable."""
        pool = self._require_pool()
        for attempt in range(_ATTEMPTS):
            try:
                return await self._bounded(self._transaction(pool, work))
            except (*_TRANSIENT, Vanished) as exc:
                if attempt == _ATTEMPTS - 1:
                    raise OutboxUnavailable(f"outbox write kept conflicting, nothing was stored: {exc}") from exc
            except _DB_ERRORS as exc:
                raise OutboxUnavailable(f"outbox write failed, nothing was stored: {exc}") from exc
        raise AssertionError("unreachable")

    async def _transaction(self, pool: Any, work: Callable[[Any], Awaitable[T]]) -> T:
        async with pool.acquire(timeout=self.acquire_timeout) as conn, conn.transaction():
            return await work(conn)

    async def _bounded(self, operation: Awaitable[T]) -> T:
        """`operation` within `deadline`. Run as a task of its own: a frozen server keeps even the rollback and
        the connection's release waiting, and that cleanup must not hold up the caller's 503 (it goes on in the
        background after the task is cancelled)."""
        task = asyncio.ensure_future(operation)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.deadline)
        except TimeoutError:
            task.cancel()
            task.add_done_callback(_retrieve)
            raise TimeoutError(f"the database did not answer within {self.deadline:g}s") from None
        except asyncio.CancelledError:
            task.cancel()
            task.add_done_callback(_retrieve)
            raise

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Any]:
        """A connection in a read-only repeatable-read transaction (one snapshot); errors become OutboxError."""
        pool = self._require_pool()
        try:
            async with (
                asyncio.timeout(self.deadline),
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
            results = await self._write(lambda conn: ingest(conn, clean, body))
        except SeenBody:
            return await self._write(lambda conn: duplicates(conn, clean, body))
        if any(result.deliveries_created for result in results):
            self.announcer.work({d.destination for w in clean.webhooks for d in w.deliveries})
        return results

    async def claim(self, destination: str, limit: int, now: float, lease_seconds: float, owner: str) -> list[Delivery]:
        if limit <= 0:
            return []

        async def work(conn: Any) -> list[Delivery]:
            await conn.execute(q.CLAIM_TURN, destination)
            rows = await conn.fetch(q.CLAIM, destination, now, limit, owner, now + lease_seconds)
            if len(rows) < limit:  # what is still due is blocked behind its key: park it (see q.PARK)
                await conn.execute(q.PARK, destination, now, r.PARK_SECONDS, r.FAR, r.PARK_SCAN)
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
            delivered = [flat[i] for i, ok in enumerate(applied) if ok and flat[i].verdict == "delivered"]
            if delivered:  # what was parked behind them is due again
                at = max(r.finished_at(x) for x in delivered)
                await conn.execute(q.UNPARK, at, [x.delivery_id for x in delivered])
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
            await record_disables(conn, flat)
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
