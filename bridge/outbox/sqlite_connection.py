"""The SQLite outbox's write connection: a stdlib sqlite3 connection owned by one dedicated thread, and the helpers
that run (multi-row) statements on it from inside that thread."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import OutboxError, OutboxLocked

T = TypeVar("T")

#: name prefix of the writer thread (shows in py-spy, faulthandler dumps, `threading.enumerate()`)
THREAD_NAME = "bridge-outbox-writer"


def take_process_lock(path: Path, lock_path: Path) -> int:
    """An exclusive, non-blocking flock on `lock_path` holding our pid; its descriptor (closing it releases the
    lock). OutboxLocked, naming the holder's pid, if another process has it: one process per SQLite file."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutboxError(f"cannot create the outbox lock file {str(lock_path)!r}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OutboxLocked(
            f"the SQLite outbox {str(path)!r} is in use by another process (pid {holder}, lock file "
            f"{str(lock_path)!r}); SQLite supports one bridge process, use PostgreSQL for several"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] if items else []


def fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
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
        return await self.run(fetchall, self.conn, sql, params)

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


class Statements:
    """Statement helpers over the write connection; only ever called in the writer thread, inside a transaction."""

    def __init__(self, db: sqlite3.Connection, variable_limit: int) -> None:
        self.db = db
        self._vars = max(variable_limit, 100)

    def sql(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return fetchall(self.db, sql, params)

    def rows_per_statement(self, params_per_row: int) -> int:
        return max(1, min(1000, self._vars // params_per_row))

    def many(self, build: Callable[[int], str], rows: Sequence[Sequence[Any]], params_per_row: int) -> list[Any]:
        """Run a multi-row statement over `rows` in as few chunks as the variable limit allows."""
        out: list[Any] = []
        for chunk in chunks(rows, self.rows_per_statement(params_per_row)):
            flat = [value for row in chunk for value in row]
            out.extend(self.sql(build(len(chunk)), flat))
        return out
