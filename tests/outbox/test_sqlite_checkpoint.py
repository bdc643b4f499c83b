"""WAL checkpoints happen off the commit path (the writer never checkpoints), and the WAL file stays bounded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bridge.errors import OutboxError
from bridge.outbox import open_outbox
from bridge.outbox.sqlite import SqliteOutbox
from tests.outbox.support import delivery, ingest, webhook

#: big enough that 1,000 pages (SQLite's default autocheckpoint) pass within a few hundred ingests
BODY = b'{"pad": "' + b"x" * 8000 + b'"}'


def wal_bytes(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def fill(outbox: SqliteOutbox, start: int, count: int) -> None:
    for index in range(start, start + count):  # one commit each, as an idle writer would make them
        await ingest(
            outbox,
            webhook(f"evt_{index}", delivery("dest", f"id_{index}"), body=BODY + str(index).encode()),
        )


async def test_commits_never_checkpoint(tmp_path: Path) -> None:
    """Past SQLite's 1,000-page autocheckpoint, nothing has been copied into the database file (it still has the
    size the schema gave it): no commit paid for a checkpoint. Then one checkpoint copies every frame."""
    db = tmp_path / "outbox.db"
    outbox = SqliteOutbox(db, checkpoint_interval=3600)  # the background pass never comes during the test
    await outbox.open()
    try:
        assert outbox._writer is not None
        autocheckpoint = await outbox._writer.call(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert autocheckpoint == 0
        empty = db.stat().st_size
        await fill(outbox, 0, 600)
        assert wal_bytes(db) > 1000 * 4096
        assert db.stat().st_size == empty
        mode, frames, copied = await outbox.checkpointer.checkpoint()
        assert mode == "PASSIVE" and copied == frames > 1000
        assert db.stat().st_size > 1000 * 4096
    finally:
        await outbox.close()


async def test_the_wal_is_emptied_once_past_its_bound(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    outbox = SqliteOutbox(db, checkpoint_interval=3600, wal_limit_bytes=1024 * 1024)
    await outbox.open()
    try:
        await fill(outbox, 0, 200)
        assert wal_bytes(db) > 1024 * 1024
        mode, _, _ = await outbox.checkpointer.checkpoint()
        assert mode == "TRUNCATE"
        assert wal_bytes(db) == 0
        await fill(outbox, 200, 10)  # the writer goes on at the start of the emptied file
        assert 0 < wal_bytes(db) < 1024 * 1024
        rows, _ = await outbox.list_deliveries(limit=500)
        assert len(rows) == 210
    finally:
        await outbox.close()


async def test_a_busy_writer_empties_the_wal_itself_between_transactions(tmp_path: Path) -> None:
    """Past the bound, the checkpoint thread does not wait for the write lock (a writer that never pauses would
    starve it and the WAL would grow without bound): the writer empties the WAL before its next transaction."""
    db = tmp_path / "outbox.db"
    outbox = SqliteOutbox(db, checkpoint_interval=3600, wal_limit_bytes=1024 * 1024)
    await outbox.open()
    try:
        await fill(outbox, 0, 200)
        assert wal_bytes(db) > 1024 * 1024
        outbox.checkpointer.want_truncate()  # what the thread's pass does once it sees the WAL past its bound
        await fill(outbox, 200, 1)
        assert outbox.checkpointer.truncated == 1
        assert 0 < wal_bytes(db) < 256 * 1024  # only the one transaction since
        assert db.stat().st_size > 1024 * 1024  # everything before it was copied into the database
    finally:
        await outbox.close()


async def test_the_background_pass_checkpoints_after_commits(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    outbox = SqliteOutbox(db, checkpoint_interval=0.01)
    await outbox.open()
    try:
        await fill(outbox, 0, 50)
        for _ in range(500):  # bounded wait for the thread's next pass (real time: it is a background thread)
            if outbox.checkpointer.passive:
                break
            await asyncio.sleep(0.01)
        assert outbox.checkpointer.passive >= 1
        assert outbox.checkpointer.failed == 0
    finally:
        await outbox.close()
    assert not os.path.exists(str(db) + "-wal")  # the last connection to close checkpoints and removes it


def test_the_wal_bound_is_a_url_option(tmp_path: Path) -> None:
    outbox = open_outbox(f"sqlite:///{tmp_path / 'o.db'}?wal_limit_mb=8")
    assert isinstance(outbox, SqliteOutbox) and outbox.checkpointer.limit_bytes == 8 * 2**20
    with pytest.raises(OutboxError, match="wal_limit_mb"):
        open_outbox(f"sqlite:///{tmp_path / 'o.db'}?wal_limit_mb=0")
