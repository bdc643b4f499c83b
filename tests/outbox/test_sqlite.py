"""What only the SQLite outbox promises: durability settings, one process, group commit, atomic batches, plans."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import pytest

from bridge.errors import OutboxError, OutboxLocked, OutboxUnavailable
from bridge.outbox import open_outbox
from bridge.outbox import sqlite_queries as q
from bridge.outbox.postgres import PostgresOutbox
from bridge.outbox.sqlite import SqliteOutbox
from bridge.outbox.sqlite_connection import THREAD_NAME
from bridge.outbox.sqlite_schema import MIGRATIONS, WRITER_PRAGMAS, Migration
from tests.outbox.support import T0, delivery, ingest, result, webhook


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
async def sq(db: Path) -> AsyncIterator[SqliteOutbox]:
    outbox = SqliteOutbox(db)
    await outbox.open()
    yield outbox
    await outbox.close()


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_durability_pragmas_are_in_force(db: Path) -> None:
    outbox = SqliteOutbox(db)
    await outbox.open()
    try:
        assert outbox._writer is not None

        def pragmas(conn: sqlite3.Connection) -> list[object]:
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            return [conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names]

        # read on the connection the writer commits with, in its own thread
        assert await outbox._writer.call(pragmas) == ["wal", 2, 1, 5000]
    finally:
        await outbox.close()


async def test_open_fails_fast_without_synchronous_full(db: Path) -> None:
    class Normal(SqliteOutbox):
        _writer_pragmas = tuple(p.replace("FULL", "NORMAL") for p in WRITER_PRAGMAS)

    with pytest.raises(OutboxError, match="synchronous=FULL"):
        await Normal(db).open()
    # and the failed open released the lock
    outbox = SqliteOutbox(db)
    await outbox.open()
    await outbox.close()


async def test_open_fails_fast_without_wal(db: Path) -> None:
    class Rollback(SqliteOutbox):
        _writer_pragmas = tuple(p.replace("WAL", "DELETE") for p in WRITER_PRAGMAS)

    with pytest.raises(OutboxError, match="journal_mode=wal"):
        await Rollback(db).open()


async def test_second_opener_is_refused(db: Path) -> None:
    first = SqliteOutbox(db)
    await first.open()
    try:
        with pytest.raises(OutboxLocked, match=f"another process \\(pid {os.getpid()}"):
            await SqliteOutbox(db).open()
        await first.ping()  # the refused opener changed nothing
    finally:
        await first.close()
    second = SqliteOutbox(db)
    await second.open()
    await second.close()


async def test_in_flight_rows_of_a_dead_process_are_pending_again(db: Path) -> None:
    first = SqliteOutbox(db)
    await first.open()
    await ingest(first, webhook("evt_1", delivery("conv", "o1"), received_at=T0))
    [claimed] = await first.claim("conv", 1, T0 + 1, 3600, "w1")
    await first.close()  # as far as the file is concerned, the same as a crash

    second = SqliteOutbox(db)
    await second.open()
    try:
        assert second.recovered_in_flight == 1
        [again] = await second.claim("conv", 1, T0 + 2, 30, "w2")  # due at once, long before the old lease ends
        assert (again.id, again.attempts) == (claimed.id, 0)
        assert await second.complete([result(claimed, "w1", "delivered", T0 + 3)]) == [False]
    finally:
        await second.close()


async def test_a_restart_remembers_the_dead_process_lanes_and_what_it_may_have_sent(db: Path) -> None:
    first = SqliteOutbox(db)
    await first.open()
    for i in range(3):
        await ingest(first, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0))
    assert await first.hold_lanes(["conv"], "old", T0, 3600) == ["conv"]
    await first.claim("conv", 2, T0 + 1, 60, "old:1")  # two requests may be out when the process dies
    await first.close()

    second = SqliteOutbox(db)
    await second.open()
    try:
        # the lock says the old process is gone: its lane is free at once, not after its hour-long lease
        assert await second.hold_lanes(["conv"], "new", T0 + 2, 30) == ["conv"]
        history = await second.lane_history("conv", "new", T0)
        # put back to pending, but counted as possibly sent
        assert [until for _, until in history.unrecorded] == [T0 + 61, T0 + 61]
        assert (await second.lane_history("zen", "new", T0)).unrecorded == []
    finally:
        await second.close()


async def test_group_commit_groups_concurrent_writes(sq: SqliteOutbox) -> None:
    commits, ops = sq.stats_commits, sq.stats_ops
    results = await asyncio.gather(
        *(ingest(sq, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}"))) for i in range(100))
    )
    assert all(not r.duplicate and r.deliveries_created == 2 for r in results)
    assert len({r.webhook_id for r in results}) == 100
    assert sq.stats_ops - ops == 100
    assert sq.stats_commits - commits <= 5


async def test_group_window_collects_writes_arriving_a_little_later(db: Path) -> None:
    outbox = SqliteOutbox(db, group_window_ms=50)
    await outbox.open()
    try:

        async def late(i: int) -> None:
            await asyncio.sleep(0.005 * (i % 4))
            await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}")))

        await asyncio.gather(*(late(i) for i in range(20)))
        assert outbox.stats_commits <= 2
    finally:
        await outbox.close()


async def test_mixed_batch_with_duplicates_inside_it(sq: SqliteOutbox) -> None:
    first = await ingest(sq, webhook("evt_old", delivery("conv", "o0")))
    ingests = [
        asyncio.create_task(ingest(sq, webhook("evt_new", delivery("conv", "o1")))),
        asyncio.create_task(ingest(sq, webhook("evt_old", delivery("conv", "o2")))),
        asyncio.create_task(ingest(sq, webhook("evt_new", delivery("conv", "o3")))),
        asyncio.create_task(ingest(sq, webhook("evt_other", delivery("conv", "o1"), delivery("zen", "o1")))),
    ]
    claim = asyncio.create_task(sq.claim("conv", 10, T0, 30, "w1"))  # queued after them, in the same transaction
    a, b, c, d = [await task for task in ingests]
    claimed = await claim
    assert sq.stats_commits == 2
    assert (a.duplicate, a.deliveries_created) == (False, 1)
    assert (b.duplicate, b.webhook_id) == (True, first.webhook_id)
    assert (c.duplicate, c.webhook_id, c.deliveries_created) == (True, a.webhook_id, 0)
    assert (d.duplicate, d.deliveries_created) == (False, 1)
    assert sorted(x.event_id for x in claimed) == ["o0", "o1"]  # the claim saw the ingests queued before it


async def test_failed_batch_fails_every_caller_and_writes_nothing(db: Path, sq: SqliteOutbox) -> None:
    await ingest(sq, webhook("evt_0", delivery("conv", "o0")))
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    calls = [ingest(sq, webhook(f"evt_{i}", delivery("conv", f"o{i}"))) for i in range(1, 11)]
    outcomes = await asyncio.gather(*calls, sq.claim("conv", 5, T0, 30, "w1"), return_exceptions=True)
    assert all(isinstance(o, OutboxUnavailable) for o in outcomes), outcomes
    assert "disk on fire" in str(outcomes[0])
    assert count(db, "webhooks") == 1
    assert count(db, "deliveries") == 1
    assert (await sq.get_delivery(1) or {})["status"] == "pending"  # the claim was rolled back too
    assert sq.stats_failed_batches >= 1

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER boom")
    again = await ingest(sq, webhook("evt_1", delivery("conv", "o1")))
    assert not again.duplicate and again.deliveries_created == 1
    await sq.ping()


async def test_dropped_table_fails_the_batch_not_the_writer(db: Path, sq: SqliteOutbox) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE destination_activity")
    await ingest(sq, webhook("evt_1", delivery("conv", "o1")))
    [d] = await sq.claim("conv", 1, T0, 30, "w1")
    with pytest.raises(OutboxUnavailable, match="destination_activity"):
        await sq.complete([result(d, "w1", "delivered", T0)])
    row = await sq.get_delivery(d.id)
    assert row is not None
    assert (row["status"], row["attempts"]) == ("in_flight", [])
    await sq.ping()


async def test_cancelled_callers_do_not_break_the_writer(sq: SqliteOutbox) -> None:
    tasks = [asyncio.create_task(ingest(sq, webhook(f"evt_{i}", delivery("conv", f"o{i}")))) for i in range(10)]
    tasks[3].cancel()
    tasks[7].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(x, asyncio.CancelledError) for x in done) == 2
    assert not (await ingest(sq, webhook("evt_after"))).duplicate


class WriterCrash(BaseException):
    """Not an Exception: escapes the per-batch handling, as a bug in the writer loop would."""


async def test_a_dead_writer_never_leaves_callers_waiting(sq: SqliteOutbox) -> None:
    assert sq._writer is not None

    def crash(work: object) -> NoReturn:
        raise WriterCrash("boom")

    sq._writer._transaction = crash  # type: ignore[method-assign]
    tasks = [asyncio.create_task(ingest(sq, webhook(f"evt_{i}"))) for i in range(10)]
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
    assert all(isinstance(o, OutboxUnavailable) for o in outcomes), outcomes
    with pytest.raises(OutboxUnavailable):
        await sq.ping()
    with pytest.raises(OutboxUnavailable):
        await ingest(sq, webhook("evt_late"))
    # nothing was written, and closing still works (the thread is free again, so the connection gets closed)
    await sq.close()
    assert count(sq.path, "webhooks") == 0


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


async def test_writes_run_in_the_writer_thread_and_futures_resolve_on_the_loop(db: Path) -> None:
    before = set(writer_threads())
    outbox = SqliteOutbox(db)
    await outbox.open()
    assert outbox._writer is not None
    [thread] = set(writer_threads()) - before
    seen: list[str] = []
    writes = [ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"))) for i in range(20)]
    name = outbox._writer.call(lambda conn: threading.current_thread().name)

    async def on_loop() -> None:
        await ingest(outbox, webhook("evt_x"))
        seen.append(threading.current_thread().name)

    results = await asyncio.gather(*writes, name, on_loop())
    assert results[20] == thread.name
    assert seen == [threading.main_thread().name]
    assert outbox.stats_commits == 1 and outbox.stats_ops == 22  # one loop pass, one transaction
    await outbox.close()
    assert not thread.is_alive()  # close() closed the connection in that thread and shut it down
    assert count(db, "webhooks") == 21


def test_an_outbox_never_closed_does_not_hang_the_exit(db: Path) -> None:
    """The writer thread leaves `_serve` once its event loop is closed, so the interpreter can join it at exit."""
    program = f"""
import asyncio
from bridge.outbox.sqlite import SqliteOutbox
from bridge.outbox.sqlite_writer import BatchWriter
from tests.outbox.support import webhook

BatchWriter.idle_poll = 0.05

async def main() -> None:
    outbox = SqliteOutbox({str(db)!r})
    await outbox.open()
    await outbox.ingest(webhook("evt_1"))
    await outbox._read.close()  # aiosqlite's own (non-daemon) thread would hang the exit: not ours to fix

asyncio.run(main())  # closes the loop; outbox.close() is never called
"""
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", program], cwd=root, timeout=30, check=True)
    assert count(db, "webhooks") == 1


async def test_close_finishes_queued_writes(db: Path) -> None:
    outbox = SqliteOutbox(db)
    await outbox.open()
    tasks = [asyncio.create_task(ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}")))) for i in range(30)]
    await asyncio.sleep(0)  # let them queue
    await outbox.close()
    assert all(not t.result().duplicate for t in tasks)
    assert count(db, "webhooks") == 30


async def test_migration_that_fails_midway_leaves_the_previous_version(db: Path) -> None:
    newest = len(MIGRATIONS)
    broken = Migration(newest + 1, "broken", ("CREATE TABLE half_done (x INTEGER)", "ALTER TABLE nowhere ADD COLUMN y"))

    class Broken(SqliteOutbox):
        _migrations = (*MIGRATIONS, broken)

    outbox = SqliteOutbox(db)
    await outbox.open()
    await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
    await outbox.close()
    with pytest.raises(OutboxError, match=f"migration {newest + 1} \\(broken\\) failed"):
        await Broken(db).open()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (newest,)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables
    reopened = SqliteOutbox(db)
    await reopened.open()
    assert (await ingest(reopened, webhook("evt_1"))).duplicate
    await reopened.close()


async def test_database_from_a_newer_bridge_is_refused(db: Path) -> None:
    outbox = SqliteOutbox(db)
    await outbox.open()
    await outbox.close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future')")
    with pytest.raises(OutboxError, match="schema version 99"):
        await SqliteOutbox(db).open()


async def test_unopenable_path_is_an_outbox_error(tmp_path: Path) -> None:
    with pytest.raises(OutboxError):
        await SqliteOutbox(tmp_path / "missing-dir" / "outbox.db").open()


def _plan(db: Path, sql: str, params: object) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]  # type: ignore[arg-type]


FULL_SCAN = re.compile(r"^SCAN (deliveries|webhooks|webhook_keys|delivery_keys|unrecorded_sends)\b")


@pytest.mark.parametrize(
    ("name", "sql", "params", "index"),
    [
        (
            "claim",
            q.CLAIM,
            {"destination": "d", "now": 1.0, "limit": 5, "owner": "o", "lease_until": 2.0},
            "deliveries_due",
        ),
        (
            "claim",
            q.CLAIM,
            {"destination": "d", "now": 1.0, "limit": 5, "owner": "o", "lease_until": 2.0},
            "deliveries_lease",
        ),
        ("next_due_one", q.NEXT_DUE_ONE, {"destination": "d"}, "deliveries_due"),
        ("claim_ordering", q.CLAIM, {"destination": "d", "now": 1.0, "limit": 5, "owner": "o", "lease_until": 2.0},
         "deliveries_order"),
        ("park", q.PARK, {"destination": "d", "now": 1.0, "park": 3.0, "far": 4.0, "scan": 5}, "deliveries_order"),
        ("unpark", q.unpark(2), [1.0, 1, 2], "deliveries_order"),
        ("lane_sends", q.LANE_SENDS, ["d", 1.0], "attempts_sent"),
        ("lane_noted", q.LANE_NOTED, ["d"], "sqlite_autoindex_unrecorded_sends_1"),
        ("forget_unrecorded", q.FORGET_UNRECORDED, ["d", 1.0], "sqlite_autoindex_unrecorded_sends_1"),
        ("next_due_all", q.NEXT_DUE_ALL, {}, "deliveries_due"),
        ("complete", q.complete(2), [1] * 14, "PRIMARY KEY"),
        ("find_webhook_keys", q.find_webhook_keys(2), [1] * 6, "PRIMARY KEY"),
        ("find_delivery_keys", q.find_delivery_keys(2), [1] * 8, "PRIMARY KEY"),
        ("known_delivery_keys", q.known_delivery_keys(2), [1] * 8, "PRIMARY KEY"),
        ("old_webhook_keys", q.OLD_WEBHOOK_KEYS, [1, 0, "", "", "", 5], "webhook_keys_seen_at"),
        ("old_delivery_keys", q.OLD_DELIVERY_KEYS, [1, 0, "", "", "", "", 5], "delivery_keys_seen_at"),
        ("purge_webhooks", q.PURGE_WEBHOOKS, [1, 1], "webhooks_received_at"),
        # /ops/outbox and /metrics: kept counts and one index probe, never a pass over the deliveries
        ("stats_counts", q.STATS_COUNTS, {}, "delivery_counts"),
        ("stats_oldest", q.STATS_OLDEST, {}, "deliveries_pending_age"),
        ("stats_webhooks", q.STATS_WEBHOOKS, {}, "webhook_counts"),
    ],
)
async def test_hot_queries_use_indexes(
    sq: SqliteOutbox, db: Path, name: str, sql: str, params: object, index: str
) -> None:
    # a few rows so the planner is not looking at empty tables
    for i in range(20):
        await ingest(sq, webhook(f"evt_{i}", delivery("conv", f"o{i}"), delivery("zen", f"o{i}")))
    plan = _plan(db, sql, params)
    assert not [line for line in plan if FULL_SCAN.match(line)], (name, plan)
    assert any(index in line for line in plan), (name, plan)


def test_open_outbox_urls(tmp_path: Path) -> None:
    relative = open_outbox("sqlite:///data/outbox.db")
    assert isinstance(relative, SqliteOutbox)
    assert relative.path == Path("data/outbox.db")
    absolute = open_outbox(f"sqlite:///{tmp_path}/o%20b.db?group_window_ms=2&max_batch=64")
    assert isinstance(absolute, SqliteOutbox)
    assert absolute.path == tmp_path / "o b.db"
    assert absolute.lock_path == tmp_path / "o b.db.lock"
    assert isinstance(open_outbox("postgresql://u:secret@db.internal:5432/bridge?max_size=20"), PostgresOutbox)
    assert isinstance(open_outbox("postgres://u@db/bridge"), PostgresOutbox)
    for bad in ("sqlite://relative.db", "sqlite:///:memory:", "sqlite:///x.db?nope=1", "mysql://x", "outbox.db"):
        with pytest.raises(OutboxError):
            open_outbox(bad)
    with pytest.raises(OutboxError) as caught:
        open_outbox("redis://u:hunter2@host/0")
    assert "hunter2" not in str(caught.value)


async def test_a_read_cancelled_mid_transaction_does_not_break_later_reads(sq: SqliteOutbox) -> None:
    """A read cancelled while its BEGIN (or COMMIT) was out in the connection's thread left the read connection
    inside a transaction, and every later read failed ("cannot start a transaction within a transaction") until
    a restart: ops pages, lane seeding, the dispatcher's checks. Seen when a dispatcher stopped mid-read."""
    await ingest(sq, webhook("evt_1", delivery("conv", "o1")))
    for yields in range(12):  # cancel at each point a read can be suspended at
        task = asyncio.create_task(sq.stats(T0))
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stats = await sq.stats(T0)
        assert stats["destinations"]["conv"]["pending"] == 1, yields
