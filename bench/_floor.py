"""The group commit both floors use (bench/_floor_ingest.py, bench/_floor_dispatch.py; ADR 0009): one writer
thread runs every piece of work handed to it since its last commit in one transaction on SQLite (WAL,
synchronous=FULL), then wakes the event loop once for the whole batch, as the outbox's writer does. Written as
plainly as it goes: the floors measure what durability costs, not this module."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Work = Callable[[sqlite3.Connection], Any]
_Job = tuple[Work, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class GroupCommitter:
    def __init__(self, path: Path) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> asyncio.Future[Any]:
        """Have `work(db)` run in the next transaction; the future has its result once that commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((work, loop, future))
        return future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self, path: Path) -> None:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        while (first := self._jobs.get()) is not None:
            batch = [first]
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # closing: finish this batch first
                    self._jobs.put(None)
                    break
                batch.append(job)
            db.execute("BEGIN IMMEDIATE")
            answers = [work(db) for work, _, _ in batch]
            db.execute("COMMIT")
            settled = [(future, answer) for (_, _, future), answer in zip(batch, answers, strict=True)]
            batch[0][1].call_soon_threadsafe(_settle, settled)  # one wake-up of the event loop per batch
        db.close()


def _settle(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, answer in settled:
        future.set_result(answer)
