"""The SQLite outbox's single writer: group commit.

Every write is an `Op` with a future. One task owns the write connection: it takes everything queued (up to
`max_batch` ops), runs it in one `BEGIN IMMEDIATE ... COMMIT` transaction, and only then resolves the futures, so
concurrent callers share one fsync. Consecutive ops of the same kind (ingest, complete) become one multi-row
statement each, which keeps the aiosqlite thread hops per batch to a handful. If anything in the transaction
fails, it is rolled back and every op of the batch fails with OutboxUnavailable: nothing is half-written, and the
caller answers 503 so the provider retries.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import aiosqlite

from bridge.errors import OutboxError, OutboxUnavailable
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import AttemptResult, Delivery, IngestResult, NewDelivery, NewWebhook
from bridge.outbox.rows import clean_text, finished_at, retry_at, sort_claimed, unique_deliveries, unique_rounds

log = logging.getLogger("bridge.outbox")

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


class BatchWriter:
    """Owns the write connection; see the module docstring."""

    def __init__(
        self, conn: aiosqlite.Connection, *, group_window_ms: float, max_batch: int, variable_limit: int
    ) -> None:
        self._conn = conn
        self._window = max(0.0, group_window_ms) / 1000.0
        self._max_batch = max(1, max_batch)
        self._vars = max(variable_limit, 100)
        self._queue: asyncio.Queue[Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: committed transactions, ops in them, and transactions that failed and were rolled back
        self.commits = 0
        self.ops = 0
        self.failed_batches = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bridge-outbox-writer")

    async def stop(self) -> None:
        """Finish every op queued so far, then end the task."""
        task = self._task
        if task is None:
            return
        self._closing = True
        if not task.done():
            self._queue.put_nowait(None)
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("the outbox writer had crashed", exc_info=task.exception())

    async def submit(self, kind: str, arg: Any) -> Any:
        if not self.running:
            raise OutboxUnavailable("the outbox is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Op(kind, arg, future))
        return await future

    # -- the loop ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        stopping = False
        batch: list[Op] = []
        try:
            while not stopping:
                first = await self._queue.get()
                if first is None:
                    break
                batch = [first]
                if self._window and self._queue.qsize() < self._max_batch:
                    await asyncio.sleep(self._window)
                while len(batch) < self._max_batch:
                    try:
                        op = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if op is None:
                        stopping = True
                        break
                    batch.append(op)
                await self._run_batch(batch)
        finally:
            # only reached with ops left over if the task was cancelled: never leave a caller waiting
            leftover = list(batch)
            while not self._queue.empty():
                op = self._queue.get_nowait()
                if op is not None:
                    leftover.append(op)
            _fail(leftover, OutboxUnavailable("the outbox writer stopped"))

    async def _run_batch(self, batch: list[Op]) -> None:
        live = [op for op in batch if not op.future.done()]  # a caller that gave up before we started
        if not live:
            return
        try:
            results = await self._transaction(live)
        except Exception as exc:  # anything at all: roll back, fail the whole batch, keep the writer alive
            await self._rollback()
            self.failed_batches += 1
            log.warning("outbox write of %d op(s) failed and was rolled back: %s", len(live), exc)
            _fail(live, exc)
            return
        except BaseException as exc:  # cancelled mid-batch: nobody may wait forever; closing rolls it back
            _fail(live, exc)
            raise
        self.commits += 1
        self.ops += len(live)
        for op, result in zip(live, results, strict=True):
            if op.future.done():
                continue
            if isinstance(result, Rejected):
                op.future.set_exception(result.error)
            else:
                op.future.set_result(result)

    async def _transaction(self, ops: list[Op]) -> list[Any]:
        await self._sql("BEGIN IMMEDIATE")
        results: list[Any] = []
        for kind, group in groupby(ops, key=lambda op: op.kind):
            same = list(group)
            if kind in _MERGED:
                results.extend(await self._apply_merged(kind, [op.arg for op in same]))
            else:
                for op in same:
                    results.append(await self._apply_one(kind, op.arg))
        await self._sql("COMMIT")
        return results

    async def _rollback(self) -> None:
        try:
            await self._sql("ROLLBACK")
        except (sqlite3.Error, ValueError):
            pass

    async def _sql(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return list(await self._conn.execute_fetchall(sql, params))

    def _rows_per_statement(self, params_per_row: int) -> int:
        return max(1, min(1000, self._vars // params_per_row))

    async def _many(self, build: Callable[[int], str], rows: Sequence[Sequence[Any]], params_per_row: int) -> list[Any]:
        """Run a multi-row statement over `rows` in as few chunks as the variable limit allows."""
        out: list[Any] = []
        for chunk in _chunks(rows, self._rows_per_statement(params_per_row)):
            flat = [value for row in chunk for value in row]
            out.extend(await self._sql(build(len(chunk)), flat))
        return out

    # -- operations -----------------------------------------------------------------------------------------

    async def _apply_merged(self, kind: str, args: list[Any]) -> list[Any]:
        if kind == "ingest":
            return list(await self._ingest(args))
        if kind == "complete":
            return await self._complete(args)
        raise AssertionError(kind)

    async def _apply_one(self, kind: str, arg: Any) -> Any:
        handler: Callable[[Any], Awaitable[Any]] = getattr(self, f"_op_{kind}")
        return await handler(arg)

    async def _op_claim(self, arg: tuple[str, int, float, float, str]) -> list[Delivery]:
        destination, limit, now, lease_seconds, owner = arg
        params = {"destination": destination, "limit": limit, "now": now}
        params.update(lease_until=now + lease_seconds, owner=owner)
        return sort_claimed(await self._sql(q.CLAIM, params))

    async def _op_release(self, arg: tuple[list[int], str]) -> int:
        ids, owner = arg
        released = 0
        for chunk in _chunks(ids, self._rows_per_statement(1) - 1):
            released += len(await self._sql(q.release(len(chunk)), [*chunk, owner]))
        return released

    async def _op_retry_ids(self, arg: tuple[float, list[int], tuple[str, ...]]) -> int:
        now, ids, statuses = arg
        retried = 0
        for chunk in _chunks(ids, self._rows_per_statement(1) - 8):
            params: dict[str, Any] = {"now": now}
            params.update({f"id{i}": value for i, value in enumerate(chunk)})
            params.update({f"status{i}": value for i, value in enumerate(statuses)})
            retried += len(await self._sql(q.retry_ids(len(chunk), len(statuses)), params))
        return retried

    async def _op_retry_filter(self, arg: tuple[float, tuple[str, ...], str | None, int]) -> int:
        now, statuses, destination, limit = arg
        params: dict[str, Any] = {"now": now, "limit": limit}
        params.update({f"status{i}": value for i, value in enumerate(statuses)})
        if destination is not None:
            params["destination"] = destination
        return len(await self._sql(q.retry_filter(len(statuses), destination is not None), params))

    async def _op_remap(self, arg: tuple[Any, ...]) -> dict[str, int] | Rejected:
        return await self._remap(*arg)

    async def _op_purge_deliveries(self, arg: tuple[int, float, tuple[str, ...], int]) -> tuple[int, int]:
        after_id, before, statuses, limit = arg
        params = [after_id, *statuses, before, limit]
        await self._sql(q.purge_attempts(len(statuses)), params)
        ids = [int(row[0]) for row in await self._sql(q.purge_deliveries(len(statuses)), params)]
        return len(ids), max(ids, default=after_id)

    async def _op_purge_webhooks(self, arg: tuple[float, int]) -> int:
        before, limit = arg
        return len(await self._sql(q.PURGE_WEBHOOKS, [before, limit]))

    async def _ingest(self, webhooks: list[NewWebhook]) -> list[IngestResult]:
        keys: list[tuple[str, str]] = []
        rows: list[tuple[Any, ...]] = []
        for w in webhooks:
            source, event_id = clean_text(w.source) or "", clean_text(w.provider_event_id) or ""
            keys.append((source, event_id))
            rows.append(
                (source, clean_text(w.provider), event_id, clean_text(w.event_type), w.received_at, w.status)
                + (clean_text(w.error), w.headers, w.body, w.events)
            )
        inserted = {(s, p): int(i) for i, s, p in await self._many(q.insert_webhooks, rows, q.WEBHOOK_PARAMS)}
        # the first op with a key got the insert; later ones in this batch, and keys already stored, are duplicates
        existing: dict[tuple[str, str], int] = {}
        missing = list(dict.fromkeys(key for key in keys if key not in inserted))
        if missing:
            found = await self._many(q.find_webhooks, missing, q.KEY_PARAMS)
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
        for row in await self._many(q.insert_deliveries, delivery_rows, q.DELIVERY_PARAMS):
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

    async def _complete(self, batches: list[Sequence[AttemptResult]]) -> list[list[bool]]:
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
            done = {int(row[0]) for row in await self._many(q.complete, rows, q.COMPLETE_PARAMS)}
            for i in round_:
                applied[i] = flat[i].delivery_id in done
        attempt_rows = [
            (r.delivery_id, r.started_at, r.status_code, r.latency_ms, clean_text(r.error))
            + (clean_text(r.response_excerpt), r.verdict, r.owner, int(ok))
            for r, ok in zip(flat, applied, strict=True)
        ]
        await self._many(q.insert_attempts, attempt_rows, q.ATTEMPT_PARAMS)
        activity = [(r.delivery_id, r.verdict, finished_at(r)) for r in flat]
        await self._many(q.record_activity, activity, q.ACTIVITY_PARAMS)
        out: list[list[bool]] = []
        start = 0
        for results in batches:
            out.append(applied[start : start + len(results)])
            start += len(results)
        return out

    async def _remap(
        self,
        webhook_id: int,
        status: str,
        error: str | None,
        events: bytes,
        deliveries: Sequence[NewDelivery],
        now: float,
        force: bool,
    ) -> dict[str, int] | Rejected:
        found = await self._sql(q.REMAP_WEBHOOK, [status, clean_text(error), events, webhook_id])
        if not found:
            return Rejected(OutboxError(f"webhook {webhook_id} does not exist"))
        unique = unique_deliveries(deliveries)
        rows = [
            (webhook_id, clean_text(d.destination), clean_text(d.event_name), clean_text(d.event_id))
            + (d.payload, now, now, now)
            for d in unique
        ]
        inserted = {tuple(row[1:]) for row in await self._many(q.insert_deliveries, rows, q.DELIVERY_PARAMS)}
        reset = 0
        if force:
            others = [
                (clean_text(d.destination), clean_text(d.event_name), clean_text(d.event_id), d.payload) for d in unique
            ]
            others = [row for row in others if row[:3] not in inserted]
            for chunk in _chunks(others, self._rows_per_statement(q.RESET_PARAMS)):
                flat = [value for row in chunk for value in row]
                reset += len(await self._sql(q.reset_deliveries(len(chunk)), [*flat, now, now]))
        return {"created": len(inserted), "skipped": len(deliveries) - len(inserted) - reset, "reset": reset}
