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

Bounded waits: every op may wait at most `wait_limit` seconds (the outbox's busy timeout) from its submission for
the database's write lock, in total. While another process holds the lock, a batch waits out the busy timeout and
the ops queued behind it would wait again in their own batch; so ops past their deadline are failed before their
batch starts, and a batch's busy timeout is shortened to what its oldest op has left. A webhook then gets its 503
within about `wait_limit`, however many batches queued up behind the lock.

Where things are: this module is the group-commit machinery only; the connection and its thread are in
sqlite_connection.py, what each op does in sqlite_ops.py (ingest in sqlite_ingest.py).

Why not aiosqlite for writes: every aiosqlite call is its own round trip through the event loop (its result comes
back via `call_soon_threadsafe`), and aiosqlite has no public way to run several statements as one call in its
thread. Under HTTP load each wake-up waits behind the request handlers already queued, so the five or so calls per
batch cost more than the transaction itself. Measurements in docs/adr/0001-outbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any, TypeVar

from bridge.errors import OutboxUnavailable
from bridge.outbox.sqlite_connection import WriteConnection
from bridge.outbox.sqlite_ops import MERGED, Rejected, WriteOps

log = logging.getLogger("bridge.outbox")

T = TypeVar("T")


@dataclass(slots=True)
class Op:
    kind: str
    arg: Any
    future: asyncio.Future[Any]
    #: time.monotonic() after which the op is failed instead of started
    deadline: float


def _fail(ops: list[Op], cause: BaseException) -> None:
    for op in ops:
        if not op.future.done():
            error = OutboxUnavailable(f"outbox write failed, nothing was stored: {str(cause) or type(cause).__name__}")
            error.__cause__ = cause
            op.future.set_exception(error)


class BatchWriter:
    """Group commit in the writer thread; see the module docstring.

    Event loop side: `submit` appends an op to `_pending`; once per pass of the event loop `_flush` hands all of
    them to the thread as one chunk. Writer thread side: `_serve` runs batches and posts `_settle` back. Futures and
    the counters are touched only on the event loop; `_lock` makes handing over a chunk and the thread's final drain
    exclusive, so no op is ever stranded in the queue of a thread that has stopped."""

    #: seconds the idle writer thread waits for work before checking that its event loop still exists
    idle_poll = 1.0

    def __init__(
        self,
        conn: WriteConnection,
        *,
        group_window_ms: float,
        max_batch: int,
        variable_limit: int,
        wait_limit: float = 5.0,
        on_commit: Callable[[], None] | None = None,
        before_batch: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._conn = conn
        #: called in the writer thread after each COMMIT (the checkpointer's cue), and before each transaction
        #: with the connection (where the checkpointer empties a WAL past its bound)
        self._on_commit = on_commit
        self._before_batch = before_batch
        #: the sqlite3 connection, for the writer thread only
        self._db = conn.conn
        self._ops = WriteOps(conn.conn, variable_limit)
        self._window = max(0.0, group_window_ms) / 1000.0
        self._max_batch = max(1, max_batch)
        self._wait_limit = max(0.0, wait_limit)
        #: the busy timeout the write connection has now (ms); the thread shortens it for a batch with little time left
        self._busy_ms = round(self._wait_limit * 1000)
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
        self._pending.append(Op(kind, arg, future, time.monotonic() + self._wait_limit))
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
                batch = self._startable([backlog.popleft() for _ in range(min(self._max_batch, len(backlog)))])
                if not batch:
                    continue
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

    def _startable(self, batch: list[Op]) -> list[Op]:
        """The ops of `batch` still within their deadline (the others are failed now), with the connection's busy
        timeout set to what the oldest of them has left."""
        now = time.monotonic()
        late = [op for op in batch if op.deadline <= now]
        if late:
            batch = [op for op in batch if op.deadline > now]
            reason = f"waited more than {self._wait_limit:g}s for the database's write lock"
            self._post(_fail, late, OutboxUnavailable(reason))
        if batch:
            left_ms = round((min(op.deadline for op in batch) - now) * 1000)
            full_ms = round(self._wait_limit * 1000)
            busy_ms = full_ms if left_ms >= full_ms - 250 else max(1, left_ms)  # don't reset it for every batch
            if busy_ms != self._busy_ms:
                with contextlib.suppress(sqlite3.Error):  # a pragma that cannot be set leaves the last one
                    self._db.execute(f"PRAGMA busy_timeout={busy_ms}")
                    self._busy_ms = busy_ms
        return batch

    def _transaction(self, work: list[tuple[str, Any]]) -> list[Any]:
        """BEGIN IMMEDIATE, every op, COMMIT; on any failure ROLLBACK and raise."""
        db = self._db
        if self._before_batch is not None:
            self._before_batch(db)
        try:
            db.execute("BEGIN IMMEDIATE")
            results: list[Any] = []
            for kind, group in groupby(work, key=itemgetter(0)):
                args = [arg for _, arg in group]
                if kind in MERGED:
                    results.extend(self._ops.run_merged(kind, args))
                else:
                    results.extend(self._ops.run_one(kind, arg) for arg in args)
            db.execute("COMMIT")
            if self._on_commit is not None:
                self._on_commit()
        except BaseException:
            if db.in_transaction:  # also heals a transaction that an earlier failure left open
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return results
