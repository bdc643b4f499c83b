"""The embedded SQLite outbox (the default).

- One process only: `open` takes an exclusive `fcntl.flock` on `<db path>.lock` (non-blocking); a second opener
  gets OutboxLocked. Because of that lock, rows still `in_flight` at open belong to a dead process, so `open` puts
  them back to `pending` (no attempt counted; their next_attempt_at is unchanged, so they are due at once).
- Durability: WAL with `synchronous=FULL` on the writer, checked after it is set (T3): a webhook is acknowledged
  only after its commit reached the disk.
- Writes are group-committed by one writer thread that owns a stdlib sqlite3 connection (see sqlite_writer.py):
  each batch is one transaction, one synchronous call in that thread, and one hop back to the event loop. Reads use
  a second, read-only aiosqlite connection, so ops queries and the dispatcher's polling never wait behind the writer.
- Checkpoints run in a thread of their own, off the commit path, and keep the WAL file within a bound
  (sqlite_checkpoint.py).
- Bounded waits: if another process holds the database's write lock, a batch waits at most `busy_timeout`
  seconds for it and then fails with OutboxUnavailable (503, the provider retries); it never hangs.
- Lanes: one process, so every lane is always granted to whoever asks (the lock makes the previous holder gone:
  `open` clears the lanes' owners). What the lanes remember still matters across restarts: `lane_history` gives
  the requests of the current windows and the deliveries `open` found in flight (their requests may have gone
  out unrecorded), so a restart does not reset the rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import aiosqlite

from bridge.errors import OutboxError, OutboxUnavailable
from bridge.outbox import dedup
from bridge.outbox import rows as r
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import (
    AttemptResult,
    Delivery,
    IngestResult,
    NewRequest,
)
from bridge.outbox.sqlite_checkpoint import CHECKPOINT_INTERVAL, WAL_LIMIT_BYTES, Checkpointer
from bridge.outbox.sqlite_connection import WriteConnection, take_process_lock
from bridge.outbox.sqlite_fleet import SqliteFleet
from bridge.outbox.sqlite_inspect import SqliteInspection
from bridge.outbox.sqlite_schema import (
    MIGRATIONS,
    READER_PRAGMAS,
    WRITER_PRAGMAS,
    apply_pragmas,
    migrate,
    register_functions,
)
from bridge.outbox.sqlite_writer import BatchWriter, log


class SqliteOutbox(SqliteFleet, SqliteInspection):
    """The outbox in one SQLite file. See the module docstring; the contract is bridge.outbox.base.Outbox (its
    lanes and skip: bridge/outbox/sqlite_fleet.py)."""

    _writer_pragmas: tuple[str, ...] = WRITER_PRAGMAS
    _migrations = MIGRATIONS

    def __init__(
        self,
        path: str | Path,
        *,
        group_window_ms: float = 0.0,
        max_batch: int = 256,
        busy_timeout: float = 5.0,
        wal_limit_bytes: int = WAL_LIMIT_BYTES,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._group_window_ms = group_window_ms
        self._max_batch = max_batch
        #: seconds a write waits for a write lock held by another connection before the batch fails
        self.busy_timeout = busy_timeout
        self._lock_fd: int | None = None
        self._write: WriteConnection | None = None
        self._read: aiosqlite.Connection | None = None
        self._read_lock = asyncio.Lock()
        #: a read transaction was begun and not seen committed (its reader was cancelled while BEGIN or COMMIT ran)
        self._read_open = False
        self._writer: BatchWriter | None = None
        #: WAL checkpoints, in a thread of their own (sqlite_checkpoint.py); the writer never checkpoints
        self.checkpointer = Checkpointer(
            self.path, interval=checkpoint_interval, limit_bytes=wal_limit_bytes, busy_timeout=busy_timeout
        )
        #: in-flight deliveries put back to pending by the last open (they belonged to a dead process)
        self.recovered_in_flight = 0
        #: their (lease, lease_until) per destination: requests that may have gone out without being recorded
        self._recovered: dict[str, list[tuple[str, float]]] = {}

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path)!r})"

    # -- counters for benchmarks and metrics ----------------------------------------------------------------

    @property
    def stats_commits(self) -> int:
        """Write transactions committed so far."""
        return self._writer.commits if self._writer else 0

    @property
    def stats_ops(self) -> int:
        """Write operations (ingest, claim, complete, ...) in those transactions; ops/commit is the grouping."""
        return self._writer.ops if self._writer else 0

    @property
    def stats_failed_batches(self) -> int:
        return self._writer.failed_batches if self._writer else 0

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            raise OutboxError(f"{self!r} is already open")
        self._take_lock()
        try:
            self._write = await WriteConnection.open(self.path, cached_statements=512)
            # sqlite_schema's helpers only call `execute_fetchall`, which WriteConnection provides (in its thread):
            # the pragmas are set and checked, and migrations run, on the very connection the writer will use
            schema_conn = cast(aiosqlite.Connection, self._write)
            await self._write.run(register_functions, self._write.conn)
            await apply_pragmas(schema_conn, self._pragmas(), writer=True)
            version = await migrate(schema_conn, self._migrations)
            leased = list(await self._write.execute_fetchall(q.IN_FLIGHT))
            recovered = list(await self._write.execute_fetchall(q.RESET_IN_FLIGHT))
            self.recovered_in_flight = len(recovered)
            self._recovered = {}
            for destination, lease, lease_until in leased:
                self._recovered.setdefault(str(destination), []).append((str(lease), float(lease_until)))
            if version >= 3:  # (a test may open a store at an older version)
                await self._write.execute_fetchall(q.RESET_LANES)
            if recovered:
                log.warning("outbox: %d in-flight deliveries of a previous run put back to pending", len(recovered))
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            self._read = await self._connect(uri, uri=True, isolation_level=None)
            await apply_pragmas(self._read, READER_PRAGMAS, writer=False)
            await self.checkpointer.start()
            self._writer = BatchWriter(
                self._write,
                group_window_ms=self._group_window_ms,
                max_batch=self._max_batch,
                variable_limit=_variable_limit(),
                wait_limit=self.busy_timeout,
                on_commit=self.checkpointer.committed,
                before_batch=self.checkpointer.before_batch,
            )
            self._writer.start()
        except sqlite3.Error as exc:
            await self._disconnect()
            raise OutboxError(f"cannot open the SQLite outbox {str(self.path)!r}: {exc}") from exc
        except BaseException:
            await self._disconnect()
            raise

    def _pragmas(self) -> tuple[str, ...]:
        busy = f"PRAGMA busy_timeout={max(0, round(self.busy_timeout * 1000))}"
        pragmas = tuple(busy if p.startswith("PRAGMA busy_timeout") else p for p in self._writer_pragmas)
        # commits never checkpoint: the checkpointer's thread does, and keeps the WAL file within its bound
        return (*pragmas, "PRAGMA wal_autocheckpoint=0", f"PRAGMA journal_size_limit={self.checkpointer.limit_bytes}")

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        await self._disconnect()

    async def _connect(self, target: str | Path, **kwargs: Any) -> aiosqlite.Connection:
        try:
            return await aiosqlite.connect(target, **kwargs)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the SQLite outbox {str(self.path)!r}: {exc}") from exc

    async def _disconnect(self) -> None:
        await self.checkpointer.stop()
        if self._read is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._read.close()
        if self._write is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._write.close()  # in the writer thread, after anything still running there; ends it
        self._read = self._write = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _take_lock(self) -> None:
        self._lock_fd = take_process_lock(self.path, self.lock_path)

    # -- plumbing ------------------------------------------------------------------------------------------

    async def _submit(self, kind: str, arg: Any) -> Any:
        if self._writer is None:
            raise OutboxUnavailable(f"{self!r} is not open")
        return await self._writer.submit(kind, arg)

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The read connection inside one read transaction (a consistent snapshot); errors become OutboxError."""
        if self._read is None:
            raise OutboxUnavailable(f"{self!r} is not open")
        async with self._read_lock:
            conn = self._read
            try:
                if self._read_open:  # a read was cancelled while its BEGIN or COMMIT was out: end what it left
                    # (the connection's thread runs its calls in order, so this comes after that BEGIN)
                    with contextlib.suppress(sqlite3.OperationalError):  # it may not have opened one
                        await conn.execute_fetchall("ROLLBACK")
                    self._read_open = False
                self._read_open = True
                await conn.execute_fetchall("BEGIN")
                try:
                    yield conn
                finally:
                    await conn.execute_fetchall("COMMIT")
                    self._read_open = False
            except (sqlite3.Error, ValueError) as exc:
                raise OutboxError(f"outbox read failed: {exc}") from exc

    @staticmethod
    async def _all(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return list(await conn.execute_fetchall(sql, params))

    # -- the Outbox contract --------------------------------------------------------------------------------

    async def ping(self) -> None:
        if self._writer is None or not self._writer.running:
            raise OutboxUnavailable(f"{self!r} is not open or its writer stopped")
        async with self._reading() as conn:
            await self._all(conn, "SELECT 1")

    async def ingest(self, request: NewRequest) -> list[IngestResult]:
        r.check_request(request)
        clean = r.clean_request(request)
        results: list[IngestResult] = await self._submit("ingest", (clean, dedup.body_key(request.body)))
        return results

    async def claim(self, destination: str, limit: int, now: float, lease_seconds: float, owner: str) -> list[Delivery]:
        if limit <= 0:
            return []
        claimed: list[Delivery] = await self._submit("claim", (destination, limit, now, lease_seconds, owner))
        return claimed

    async def complete(self, results: Sequence[AttemptResult]) -> list[bool]:
        if not results:
            return []
        r.check_results(results)
        applied: list[bool] = await self._submit("complete", list(results))
        return applied

    async def release(self, delivery_ids: Sequence[int], owner: str) -> int:
        if not delivery_ids:
            return 0
        released: int = await self._submit("release", (list(delivery_ids), owner))
        return released

    async def next_due_at(self, destination: str | None = None) -> float | None:
        async with self._reading() as conn:
            if destination is None:
                rows = await self._all(conn, q.NEXT_DUE_ALL)
            else:
                rows = await self._all(conn, q.NEXT_DUE_ONE, {"destination": destination})
        return r.as_float(rows[0][0]) if rows else None

    async def stats(self, now: float) -> dict[str, Any]:
        async with self._reading() as conn:
            counts = await self._all(conn, q.STATS_COUNTS)
            oldest = await self._all(conn, q.STATS_OLDEST)
            activity = await self._all(conn, q.STATS_ACTIVITY)
            webhooks = await self._all(conn, q.STATS_WEBHOOKS)
        return r.build_stats(now, counts, oldest, activity, webhooks)


def _variable_limit() -> int:
    """The most `?` one statement may hold in this SQLite build (chunks multi-row statements under it)."""
    conn = sqlite3.connect(":memory:")
    try:
        return int(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        conn.close()
