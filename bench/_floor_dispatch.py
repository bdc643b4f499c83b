"""The least a durable dispatcher does per delivery, written as plainly as it goes, for `bench.deliver`'s floor:
claim due rows from an SQLite outbox (WAL, synchronous=FULL) a hundred at a time, post each row's stored body
with aiohttp, and record the attempt and the delivered state, the commits of results that came back meanwhile
grouped by one writer thread (the worker goes on while its result is committed). No rendering, rate limits,
leases, retries, header checks or logs: what no durable dispatcher can do without, so its ratio to the raw client
bounds any dispatcher's on this machine and stack."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

CLAIM = (
    "UPDATE d SET status = 'in_flight' WHERE id IN "
    "(SELECT id FROM d WHERE status = 'pending' ORDER BY id LIMIT 100) RETURNING id, body"
)
ATTEMPT = "INSERT INTO a (delivery_id, started_at, status_code, latency_ms) VALUES (?, ?, ?, ?)"
_Job = tuple[str, Any, asyncio.AbstractEventLoop, asyncio.Future[Any]]


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


def _writer(path: Path, jobs: queue.SimpleQueue[_Job | None]) -> None:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA synchronous=FULL")
    while (first := jobs.get()) is not None:
        batch = [first]
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                jobs.put(None)
                break
            batch.append(job)
        db.execute("BEGIN IMMEDIATE")
        answers: list[Any] = []
        for kind, arg, _, _ in batch:
            if kind == "claim":
                answers.append(db.execute(CLAIM).fetchall())
            else:
                db.executemany("UPDATE d SET status = 'delivered' WHERE id = ?", [(r[0],) for r in arg])
                db.executemany(ATTEMPT, arg)
                answers.append(None)
        db.execute("COMMIT")
        # one wake-up of the event loop for the whole batch
        batch[0][2].call_soon_threadsafe(
            _settle, [(job[3], answer) for job, answer in zip(batch, answers, strict=True)]
        )
    db.close()


def _settle(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, answer in settled:
        future.set_result(answer)


async def floor_client(path: Path, url: str, count: int, concurrency: int, headers: dict[str, str]) -> dict[str, float]:
    """Drain `count` rows of the file `fill` wrote; rate and CPU per delivery (this process, writer included)."""
    jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
    thread = threading.Thread(target=_writer, args=(path, jobs), daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()

    def submit(kind: str, arg: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        jobs.put((kind, arg, loop, future))
        return future

    due: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    low = asyncio.Event()  # the workers took the queue down to one claim's worth: claim again
    done = 0
    finished = loop.create_future()
    recording: set[asyncio.Future[Any]] = set()

    async def claimer() -> None:
        while True:
            rows = await submit("claim", None)
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
                future = submit("complete", [(delivery_id, started, status, (time.perf_counter() - t0) * 1000)])
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
    jobs.put(None)
    thread.join()
    db = sqlite3.connect(path)
    try:  # what was recorded, checked after the clock stopped: every row delivered once, each answer a 200
        [(delivered,)] = db.execute("SELECT count(*) FROM d WHERE status = 'delivered'").fetchall()
        [(ok,)] = db.execute("SELECT count(*) FROM a WHERE status_code = 200").fetchall()
    finally:
        db.close()
    return {"rate": count / seconds, "cpu_us": cpu / count * 1e6, "seconds": seconds, "delivered": min(delivered, ok)}
