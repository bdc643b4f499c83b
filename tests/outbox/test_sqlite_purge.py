"""A purge reads a bounded id window per transaction, so a table with few rows to purge is not read in one go while
every ingest waits behind it; it still deletes exactly what it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.outbox import sqlite_inspect
from bridge.outbox.sqlite import SqliteOutbox
from tests.outbox.support import T0, delivery, finish, ingest, webhook


async def test_a_purge_walks_the_table_in_id_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_inspect, "PURGE_WINDOW", 10)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.open()
    try:
        assert outbox._writer is not None
        for i in range(35):
            await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0))
        await finish(outbox, "conv", "delivered", T0, n=5)  # the oldest five (ids 1-5) are purgeable

        ops = outbox._writer.ops
        result = await outbox.purge(T0 + 10)
        assert result.deliveries == 5
        # the last id, then the windows (0, 10], (10, 20], (20, 30], (30, 40], then the webhooks' chunk
        assert outbox._writer.ops - ops == 1 + 4 + 1
        rows, _ = await outbox.list_deliveries(limit=100)
        assert len(rows) == 30 and all(row["status"] == "pending" for row in rows)
    finally:
        await outbox.close()


async def test_a_window_with_more_than_a_chunk_to_purge_is_finished_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inspect, "PURGE_WINDOW", 50)
    monkeypatch.setattr(sqlite_inspect.r, "BULK_CHUNK", 4)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.open()
    try:
        for i in range(30):
            await ingest(outbox, webhook(f"evt_{i}", delivery("conv", f"o{i}"), received_at=T0))
        await finish(outbox, "conv", "delivered", T0, n=22)
        result = await outbox.purge(T0 + 10)
        assert result.deliveries == 22
        rows, _ = await outbox.list_deliveries(limit=100)
        assert len(rows) == 8
    finally:
        await outbox.close()
