"""WAL checkpoints off the commit path, with the WAL kept to a bounded size.

By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000 pages: that commit also copies the
WAL into the database file and fsyncs it, so every request of its group waits for that (the p99 spikes of
bench.ingest). The writer connection therefore runs with `wal_autocheckpoint=0`, and this thread, with a
connection of its own, checkpoints instead:

- every `interval` seconds after the writer committed something, a PASSIVE checkpoint: it copies what it can
  without taking any lock a writer needs, so commits go on meanwhile (the thread releases the GIL inside SQLite);
- when the WAL file has grown past `limit_bytes` (a writer that never pauses keeps appending while a PASSIVE
  checkpoint copies, so the WAL is never found fully copied and never starts over), a TRUNCATE checkpoint: it
  copies the little left since the last PASSIVE one and empties the file. The writer thread runs it itself,
  between two transactions (`before_batch`): run from here it would wait for the write lock, which a busy writer
  takes again the moment it commits, so it could starve and let the WAL grow without bound. Commits wait for it,
  about as long as one of the old inline checkpoints, but only once per `limit_bytes` of WAL. An idle writer
  never calls `before_batch`; then this thread truncates.

`journal_size_limit` trims the WAL file to the same bound whenever SQLite restarts it. Checkpoints never touch
durability: a commit is on disk once its WAL frames are fsynced (synchronous=FULL), before any checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("bridge.outbox")

#: name of the checkpoint thread (py-spy, faulthandler dumps)
THREAD_NAME = "bridge-outbox-checkpoint"
#: default bound on the WAL file
WAL_LIMIT_BYTES = 64 * 1024 * 1024
#: default seconds between passive checkpoints while the writer commits
CHECKPOINT_INTERVAL = 0.25


class Checkpointer:
    """The checkpoint thread of one SQLite outbox file; `committed()` is cheap and tells it there is work."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float = CHECKPOINT_INTERVAL,
        limit_bytes: int = WAL_LIMIT_BYTES,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.wal_path = path.with_name(path.name + "-wal")
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one checkpoint at a time on the connection
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._truncate_wanted = False
        #: checkpoints run so far, by mode, and the ones that failed (logged; the next one tries again)
        self.passive = 0
        self.truncated = 0
        self.failed = 0

    async def start(self) -> None:
        self._conn = await asyncio.to_thread(self._connect)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={max(0, round(self.busy_timeout * 1000))}")
        return conn

    def committed(self) -> None:
        """Called (from the writer thread) after each commit."""
        self._dirty = True

    def want_truncate(self) -> None:
        """Have the writer empty the WAL before its next transaction."""
        self._truncate_wanted = True

    def before_batch(self, conn: sqlite3.Connection) -> None:
        """Called by the writer thread, on its own connection, before each transaction: empties the WAL there once
        it is past its bound (the writer holds no lock then, and nobody else writes). Never raises: a checkpoint
        that fails is tried again before the next transaction, and the transaction goes ahead."""
        if not self._truncate_wanted:
            return
        self._truncate_wanted = False
        try:
            with self._lock:  # after a PASSIVE checkpoint this thread may be running
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            busy = True
            self.failed += 1
            log.warning("outbox: WAL checkpoint failed: %s", exc)
        else:
            self.truncated += 1
        if busy:  # a reader held on to old frames for the whole busy timeout: try again at the next batch
            self._truncate_wanted = True
            log.warning("outbox: the WAL is past its bound and could not be emptied yet; trying again")

    async def checkpoint(self) -> tuple[str, int, int]:
        """One checkpoint now, as the thread would run it: (mode, WAL frames, frames copied)."""
        return await asyncio.to_thread(self._checkpoint)

    async def stop(self) -> None:
        """End the thread (after the checkpoint it may be running) and close its connection."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._conn is not None:
            with self._lock, contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval)
            if self._stopping:
                return
            busy = self._dirty
            if not busy and self._wal_bytes() <= self.limit_bytes:
                continue
            self._dirty = False
            try:
                if busy:
                    self._passive()
                    if self._wal_bytes() > self.limit_bytes:
                        self.want_truncate()  # the writer empties it before its next transaction
                else:
                    self._checkpoint()  # the writer is idle: empty the WAL from here
            except Exception as exc:  # a checkpoint that fails is tried again at the next interval
                self.failed += 1
                self._dirty = True
                log.warning("outbox: WAL checkpoint failed: %s", exc)

    def _passive(self) -> tuple[str, int, int]:
        with self._lock:
            if self._conn is None:
                raise sqlite3.ProgrammingError("the checkpointer is stopped")
            _, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passive += 1
        return "PASSIVE", int(frames), int(copied)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except FileNotFoundError:
            return 0

    def _checkpoint(self) -> tuple[str, int, int]:
        """PASSIVE, or TRUNCATE past the bound (used when the writer is idle, and by `checkpoint`)."""
        if self._wal_bytes() <= self.limit_bytes:
            return self._passive()
        mode = "TRUNCATE"
        with self._lock:
            if self._conn is None:
                raise sqlite3.ProgrammingError("the checkpointer is stopped")
            busy, frames, copied = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        self.truncated += 1
        if busy:
            log.warning("outbox: the WAL is past its bound and could not be emptied yet; trying again")
            self._dirty = True
        return mode, int(frames), int(copied)
