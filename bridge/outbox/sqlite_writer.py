"""The SQLite outbox's single writer: group commit in a dedicated writer thread, one thread hop per transaction.

Every write is an `Op` with a future. The writer thread (a single-thread executor, `WriteConnection`) owns a stdlib
`sqlite3` write connection and is the only thread that ever touches it. It runs `BatchWriter._serve`: take up to
`max_batch` queued ops, run them as one synchronous transaction (`BEGIN IMMEDIATE`, every op, `COMMIT`, or
`ROLLBACK` on any failure), post one callback to the event loop that resolves the batch's futures, and go straight on
to the next batch. So concurrent callers share one fsync, nobody hears "stored" before COMMIT returned, futures are
only ever touched on the event loop, and the writer never waits for a busy event loop between transactions. On the
loop side, ops submitted during one pass of the event loop are handed to the thread together (`_flush`), so they
commit together. Consecutive ops of the same kind (ingest, complete) become one multi-row statement each. If anything
in a transaction fails, it is rolled back and every op of the batch fails with OutboxUnavailable: nothing is
half-written, the caller answers 503 so the provider retries, and the writer goes on.

Why not aiosqlite for writes: every aiosqlite call is its own round trip through the event loop (its result comes
back via `call_soon_threadsafe`), and aiosqlite has no public way to run several statements as one call in its
thread. Under HTTP load each wake-up waits behind the request handlers already queued, so the five or so calls per
batch cost more than the transaction itself. Measurements in docs/adr/0001-outbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import OutboxError, OutboxUnavailable
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import AttemptResult, Delivery, IngestResult, NewDelivery, NewWebhook
from bridge.outbox.rows import clean_text, finished_at, retry_at, sort_claimed, unique_deliveries, unique_rounds

log = logging.getLogger("bridge.outbox")

T = TypeVar("T")

#: name prefix of the writer thread (shows in py-spy, faulthandler dumps, `threading.enumerate()`)
THREAD_NAME = "bridge-outbox-writer"

#: kinds whose consecutive ops are merged into one multi-row statement
_MERGED = frozenset({"ingest", "complete"})


@dataclass(slots=True)
class Op:
    kind: str
    arg: Any
    future: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """An op that was refused without writing anything; its caller gets `error`, the rest of the batch commits."""

    error: Exception


def _fail(ops: list[Op], cause: BaseException) -> None:
    for op in ops:
        if not op.future.done():
            error = OutboxUnavailable(f"outbox write failed, nothing was stored: {str(cause) or type(cause).__name__}")
            error.__cause__ = cause
            op.future.set_exception(error)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] if items else []


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


class WriteConnection:
    """A stdlib sqlite3 connection (autocommit mode: BEGIN/COMMIT are explicit) and the one thread that uses it.

    `conn` may be used only inside functions passed to `submit`/`run`, which execute in that thread, one after the
    other. While a BatchWriter serves (from `start` to `stop`) it occupies the thread, so anything submitted here
    meanwhile runs only after it stops; use `BatchWriter.call` then. `execute_fetchall` mirrors aiosqlite's, so the
    open-time helpers of sqlite_schema (pragmas and their checks, migrations) run unchanged on this very connection."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self.conn = conn
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, **kwargs: Any) -> WriteConnection:
        """Connect in a new writer thread; raises sqlite3.Error as sqlite3.connect does."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        connect = functools.partial(sqlite3.connect, path, isolation_level=None, check_same_thread=False, **kwargs)
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(*args)` for the writer thread; the future completes on the event loop once it has run."""
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.submit(fn, *args)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return await self.run(_fetchall, self.conn, sql, params)

    async def close(self) -> None:
        """Close the connection in its thread (after anything still queued there), then end the thread."""
        if self._closed:
            return
        closing = self.submit(self.conn.close)
        self._closed = True
        cancelled = False
        try:
            await asyncio.shield(closing)  # cancelled or not, the close stays queued behind the thread's work
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            # normally the thread is idle now and this joins it at once; if we were cancelled, do not block the
            # loop: the thread finishes its queue (closing the connection last) and exits by itself
            self._executor.shutdown(wait=not cancelled)


class BatchWriter:
    """Group commit in the writer thread; see the module docstring.

    Event loop side: `submit` appends an op to `_pending`; once per pass of the event loop `_flush` hands all of
    them to the thread as one chunk. Writer thread side: `_serve` runs batches and posts `_settle` back. Futures and
    the counters are touched only on the event loop; `_lock` makes handing over a chunk and the thread's final drain
    exclusive, so no op is ever stranded in the queue of a thread that has stopped."""

    #: seconds the idle writer thread waits for work before checking that its event loop still exists
    idle_poll = 1.0

    def __init__(self, conn: WriteConnection, *, group_window_ms: float, max_batch: int, variable_limit: int) -> None:
        self._conn = conn
        #: the sqlite3 connection, for the synchronous methods below only (they run in the writer thread)
        self._db = conn.conn
        self._window = max(0.0, group_window_ms) / 1000.0
        self._max_batch = max(1, max_batch)
        self._vars = max(variable_limit, 100)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Op] = []
        self._flush_scheduled = False
        #: chunks of ops for the thread; None tells it to finish everything before it and stop
        self._inbox: queue.SimpleQueue[list[Op] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._alive = False
        self._finished: asyncio.Future[None] | None = None
        self._closing = False
        #: committed transactions, ops in them, and transactions that failed and were rolled back
        self.commits = 0
        self.ops = 0
        self.failed_batches = 0

    @property
    def running(self) -> bool:
        return self._alive and not self._closing and self._finished is not None and not self._finished.done()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._alive = True
        self._finished = self._conn.submit(self._serve)  # occupies the writer thread until stop()

    async def stop(self) -> None:
        """Finish every op submitted so far, then end `_serve` (the connection stays open, the thread free)."""
        finished = self._finished
        if finished is None:
            return
        self._closing = True
        self._flush()
        with self._lock:
            if self._alive:
                self._inbox.put(None)
        await asyncio.wait([finished])  # posted by the thread after its last _settle, so every future is resolved
        if not finished.cancelled() and finished.exception() is not None:
            log.error("the outbox writer had crashed", exc_info=finished.exception())

    async def submit(self, kind: str, arg: Any) -> Any:
        loop = self._loop
        if loop is None or not self.running:
            raise OutboxUnavailable("the outbox is closed")
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Op(kind, arg, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in the writer thread, inside a write transaction of its own batch."""
        result: T = await self.submit("call", fn)
        return result

    # -- event loop side ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand everything submitted since the last flush to the thread as one chunk."""
        self._flush_scheduled = False
        ops, self._pending = self._pending, []
        if not ops:
            return
        with self._lock:
            if self._alive:
                self._inbox.put(ops)
                return
        _fail(ops, OutboxUnavailable("the outbox writer stopped"))

    def _settle(self, batch: list[Op], outcome: list[Any] | Exception) -> None:
        """Resolve a batch's futures after its transaction ended (committed, or rolled back: `outcome` is the error)."""
        if isinstance(outcome, Exception):
            self.failed_batches += 1
            log.warning("outbox write of %d op(s) failed and was rolled back: %s", len(batch), outcome)
            _fail(batch, outcome)
            return
        self.commits += 1
        self.ops += len(batch)
        for op, result in zip(batch, outcome, strict=True):
            if op.future.done():  # the caller gave up meanwhile (its write happened all the same)
                continue
            if isinstance(result, Rejected):
                op.future.set_exception(result.error)
            else:
                op.future.set_result(result)

    # -- writer thread side -----------------------------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Have `fn(*args)` called on the event loop: the writer's one hop per batch."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(fn, *args)

    def _wait_for_chunk(self) -> list[Op] | None:
        while True:
            try:
                return self._inbox.get(timeout=self.idle_poll)
            except queue.Empty:
                if self._loop is None or self._loop.is_closed():
                    return None  # the loop was closed without stop(): nobody can submit or be told anything

    def _serve(self) -> None:
        """The writer thread's loop: batches of up to max_batch ops, one transaction each, until stopped."""
        backlog: deque[Op] = deque()
        batch: list[Op] = []
        stopping = False
        try:
            while backlog or not stopping:
                if not backlog:
                    chunk = self._wait_for_chunk()
                    if chunk is None:
                        break
                    backlog.extend(chunk)
                    if self._window and len(backlog) < self._max_batch:
                        time.sleep(self._window)
                while not stopping and len(backlog) < self._max_batch:
                    try:
                        chunk = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if chunk is None:
                        stopping = True
                    else:
                        backlog.extend(chunk)
                batch = [backlog.popleft() for _ in range(min(self._max_batch, len(backlog)))]
                try:
                    outcome: list[Any] | Exception = self._transaction([(op.kind, op.arg) for op in batch])
                except Exception as exc:  # anything at all: it was rolled back; fail the batch, keep serving
                    outcome = exc
                self._post(self._settle, batch, outcome)
                batch = []
        finally:
            # normally nothing is left; after a crash, never leave a caller waiting
            with self._lock:
                self._alive = False
                leftover = [*batch, *backlog]
                while not self._inbox.empty():
                    leftover.extend(self._inbox.get_nowait() or ())
            if leftover:
                self._post(_fail, leftover, OutboxUnavailable("the outbox writer stopped"))

    def _transaction(self, work: list[tuple[str, Any]]) -> list[Any]:
        """BEGIN IMMEDIATE, every op, COMMIT; on any failure ROLLBACK and raise."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            results: list[Any] = []
            for kind, group in groupby(work, key=itemgetter(0)):
                args = [arg for _, arg in group]
                if kind in _MERGED:
                    results.extend(self._apply_merged(kind, args))
                else:
                    results.extend(self._apply_one(kind, arg) for arg in args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # also heals a transaction that an earlier failure left open
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return results

    def _sql(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return _fetchall(self._db, sql, params)

    def _rows_per_statement(self, params_per_row: int) -> int:
        return max(1, min(1000, self._vars // params_per_row))

    def _many(self, build: Callable[[int], str], rows: Sequence[Sequence[Any]], params_per_row: int) -> list[Any]:
        """Run a multi-row statement over `rows` in as few chunks as the variable limit allows."""
        out: list[Any] = []
        for chunk in _chunks(rows, self._rows_per_statement(params_per_row)):
            flat = [value for row in chunk for value in row]
            out.extend(self._sql(build(len(chunk)), flat))
        return out

    # -- operations -----------------------------------------------------------------------------------------

    def _apply_merged(self, kind: str, args: list[Any]) -> list[Any]:
        if kind == "ingest":
            return list(self._ingest(args))
        if kind == "complete":
            return self._complete(args)
        raise AssertionError(kind)

    def _apply_one(self, kind: str, arg: Any) -> Any:
        handler: Callable[[Any], Any] = getattr(self, f"_op_{kind}")
        return handler(arg)

    def _op_claim(self, arg: tuple[str, int, float, float, str]) -> list[Delivery]:
        destination, limit, now, lease_seconds, owner = arg
        params = {"destination": destination, "limit": limit, "now": now}
        params.update(lease_until=now + lease_seconds, owner=owner)
        return sort_claimed(self._sql(q.CLAIM, params))

    def _op_release(self, arg: tuple[list[int], str]) -> int:
        ids, owner = arg
        released = 0
        for chunk in _chunks(ids, self._rows_per_statement(1) - 1):
            released += len(self._sql(q.release(len(chunk)), [*chunk, owner]))
        return released

    def _op_retry_ids(self, arg: tuple[float, list[int], tuple[str, ...]]) -> int:
        now, ids, statuses = arg
        retried = 0
        for chunk in _chunks(ids, self._rows_per_statement(1) - 8):
            params: dict[str, Any] = {"now": now}
            params.update({f"id{i}": value for i, value in enumerate(chunk)})
            params.update({f"status{i}": value for i, value in enumerate(statuses)})
            retried += len(self._sql(q.retry_ids(len(chunk), len(statuses)), params))
        return retried

    def _op_retry_filter(self, arg: tuple[float, tuple[str, ...], str | None, int]) -> int:
        now, statuses, destination, limit = arg
        params: dict[str, Any] = {"now": now, "limit": limit}
        params.update({f"status{i}": value for i, value in enumerate(statuses)})
        if destination is not None:
            params["destination"] = destination
        return len(self._sql(q.retry_filter(len(statuses), destination is not None), params))

    def _op_call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return fn(self._db)

    def _op_remap(self, arg: tuple[Any, ...]) -> dict[str, int] | Rejected:
        return self._remap(*arg)

    def _op_purge_deliveries(self, arg: tuple[int, float, tuple[str, ...], int]) -> tuple[int, int]:
        after_id, before, statuses, limit = arg
        params = [after_id, *statuses, before, limit]
        self._sql(q.purge_attempts(len(statuses)), params)
        ids = [int(row[0]) for row in self._sql(q.purge_deliveries(len(statuses)), params)]
        return len(ids), max(ids, default=after_id)

    def _op_purge_webhooks(self, arg: tuple[float, int]) -> int:
        before, limit = arg
        return len(self._sql(q.PURGE_WEBHOOKS, [before, limit]))

    def _ingest(self, webhooks: list[NewWebhook]) -> list[IngestResult]:
        keys: list[tuple[str, str]] = []
        rows: list[tuple[Any, ...]] = []
        for w in webhooks:
            source, event_id = clean_text(w.source) or "", clean_text(w.provider_event_id) or ""
            keys.append((source, event_id))
            rows.append(
                (source, clean_text(w.provider), event_id, clean_text(w.event_type), w.received_at, w.status)
                + (clean_text(w.error), w.headers, w.body, w.events)
            )
        inserted = {(s, p): int(i) for i, s, p in self._many(q.insert_webhooks, rows, q.WEBHOOK_PARAMS)}
        # the first op with a key got the insert; later ones in this batch, and keys already stored, are duplicates
        existing: dict[tuple[str, str], int] = {}
        missing = list(dict.fromkeys(key for key in keys if key not in inserted))
        if missing:
            found = self._many(q.find_webhooks, missing, q.KEY_PARAMS)
            existing = {(s, p): int(i) for i, s, p in found}
        owner: dict[tuple[str, str], int] = {}  # key -> index of the op that inserted it
        delivery_rows: list[tuple[Any, ...]] = []
        for index, (key, w) in enumerate(zip(keys, webhooks, strict=True)):
            if key in inserted and key not in owner:
                owner[key] = index
                for d in w.deliveries:
                    delivery_rows.append(
                        (inserted[key], clean_text(d.destination), clean_text(d.event_name), clean_text(d.event_id))
                        + (d.payload, w.received_at, w.received_at, w.received_at)
                    )
        created: dict[int, int] = {}
        for row in self._many(q.insert_deliveries, delivery_rows, q.DELIVERY_PARAMS):
            created[int(row[0])] = created.get(int(row[0]), 0) + 1
        results: list[IngestResult] = []
        for index, key in enumerate(keys):
            if owner.get(key) == index:
                results.append(IngestResult(inserted[key], False, created.get(inserted[key], 0)))
            else:
                webhook_id = inserted.get(key, existing.get(key))
                if webhook_id is None:  # cannot happen: the conflict that skipped the insert is a stored row
                    raise OutboxError(f"webhook {key} conflicted but was not found")
                results.append(IngestResult(webhook_id, True, 0))
        return results

    def _complete(self, batches: list[Sequence[AttemptResult]]) -> list[list[bool]]:
        flat = [result for results in batches for result in results]
        applied = [False] * len(flat)
        for round_ in unique_rounds(flat):
            rows = [
                (
                    flat[i].delivery_id,
                    flat[i].owner,
                    flat[i].verdict,
                    retry_at(flat[i]),
                    flat[i].status_code,
                    clean_text(flat[i].error),
                    finished_at(flat[i]),
                )
                for i in round_
            ]
            done = {int(row[0]) for row in self._many(q.complete, rows, q.COMPLETE_PARAMS)}
            for i in round_:
                applied[i] = flat[i].delivery_id in done
        attempt_rows = [
            (r.delivery_id, r.started_at, r.status_code, r.latency_ms, clean_text(r.error))
            + (clean_text(r.response_excerpt), r.verdict, r.owner, int(ok))
            for r, ok in zip(flat, applied, strict=True)
        ]
        self._many(q.insert_attempts, attempt_rows, q.ATTEMPT_PARAMS)
        activity = [(r.delivery_id, r.verdict, finished_at(r)) for r in flat]
        self._many(q.record_activity, activity, q.ACTIVITY_PARAMS)
        out: list[list[bool]] = []
        start = 0
        for results in batches:
            out.append(applied[start : start + len(results)])
            start += len(results)
        return out

    def _remap(
        self,
        webhook_id: int,
        status: str,
        error: str | None,
        events: bytes,
        deliveries: Sequence[NewDelivery],
        now: float,
        force: bool,
    ) -> dict[str, int] | Rejected:
        found = self._sql(q.REMAP_WEBHOOK, [status, clean_text(error), events, webhook_id])
        if not found:
            return Rejected(OutboxError(f"webhook {webhook_id} does not exist"))
        unique = unique_deliveries(deliveries)
        rows = [
            (webhook_id, clean_text(d.destination), clean_text(d.event_name), clean_text(d.event_id))
            + (d.payload, now, now, now)
            for d in unique
        ]
        inserted = {tuple(row[1:]) for row in self._many(q.insert_deliveries, rows, q.DELIVERY_PARAMS)}
        reset = 0
        if force:
            others = [
                (clean_text(d.destination), clean_text(d.event_name), clean_text(d.event_id), d.payload) for d in unique
            ]
            others = [row for row in others if row[:3] not in inserted]
            for chunk in _chunks(others, self._rows_per_statement(q.RESET_PARAMS)):
                flat = [value for row in chunk for value in row]
                reset += len(self._sql(q.reset_deliveries(len(chunk)), [*flat, now, now]))
        return {"created": len(inserted), "skipped": len(deliveries) - len(inserted) - reset, "reset": reset}
