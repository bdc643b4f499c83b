"""The least a durable dispatcher does per delivery, written as plainly as it goes, for `bench.deliver`'s floor:
claim due rows from an SQLite outbox (WAL, synchronous=FULL) a hundred at a time, post each row's stored body
with aiohttp, and record the attempt and the delivered state, the commits of results that came back meanwhile
grouped (bench/_floor.py; the worker goes on while its result is committed). No rendering, rate limits,
leases, retries, header checks or logs: what no durable dispatcher can do without, so its ratio to the raw client
bounds any dispatcher's on this machine and stack."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench._floor import GroupCommitter

CLAIM = (
    "UPDATE d SET status = 'in_flight' WHERE id IN "
    "(SELECT id FROM d WHERE status = 'pending' ORDER BY id LIMIT 100) RETURNING id, body"
)
ATTEMPT = "INSERT INTO a (delivery_id, started_at, status_code, latency_ms) VALUES (?, ?, ?, ?)"
DELIVERED = "UPDATE d SET status = 'delivered' WHERE id = ?"


def fill(path: Path, bodies: Sequence[bytes]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, body BLOB NOT NULL, status TEXT NOT NULL)")
    db.execute("CREATE INDEX d_status ON d (status, id)")
    db.execute(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL, started_at REAL NOT NULL, "
        "status_code INTEGER, latency_ms REAL)"
    )
    db.executemany("INSERT INTO d (body, status) VALUES (?, 'pending')", [(b,) for b in bodies])
    db.close()


def _claim(db: sqlite3.Connection) -> list[Any]:
    return db.execute(CLAIM).fetchall()


def _recorder(attempt: tuple[int, float, int, float]) -> Callable[[sqlite3.Connection], None]:
    def record(db: sqlite3.Connection) -> None:
        db.execute(DELIVERED, (attempt[0],))
        db.execute(ATTEMPT, attempt)

    return record


async def floor_client(path: Path, url: str, count: int, concurrency: int, headers: dict[str, str]) -> dict[str, float]:
    """Drain `count` rows of the file `fill` wrote; rate and CPU per delivery (this process, writer included)."""
    committer = GroupCommitter(path)
    loop = asyncio.get_running_loop()
    due: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    low = asyncio.Event()  # the workers took the queue down to one claim's worth: claim again
    done = 0
    finished = loop.create_future()
    recording: set[asyncio.Future[Any]] = set()

    async def claimer() -> None:
        while True:
            rows = await committer.submit(_claim)
            if not rows:
                return
            for row in rows:
                due.put_nowait(row)
            low.clear()
            if due.qsize() > 100:
                await low.wait()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while True:
                delivery_id, body = await due.get()
                if due.qsize() <= 100:
                    low.set()
                started = time.time()
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
                future = committer.submit(_recorder((delivery_id, started, status, (time.perf_counter() - t0) * 1000)))
                recording.add(future)
                future.add_done_callback(recording.discard)
                done += 1
                if done >= count and not finished.done():
                    finished.set_result(None)

        started, cpu = time.perf_counter(), time.process_time()
        tasks = [asyncio.create_task(claimer())] + [asyncio.create_task(worker()) for _ in range(concurrency)]
        await finished
        await asyncio.gather(*recording)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        for task in tasks:
            task.cancel()
    committer.close()
    db = sqlite3.connect(path)
    try:  # what was recorded, checked after the clock stopped: every row delivered once, each answer a 200
        [(delivered,)] = db.execute("SELECT count(*) FROM d WHERE status = 'delivered'").fetchall()
        [(ok,)] = db.execute("SELECT count(*) FROM a WHERE status_code = 200").fetchall()
    finally:
        db.close()
    return {"rate": count / seconds, "cpu_us": cpu / count * 1e6, "seconds": seconds, "delivered": min(delivered, ok)}
