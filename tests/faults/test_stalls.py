"""Storage stalls (short version of `python -m bench.faults stalls`)."""

from pathlib import Path

import pytest

from bench.faults import stalls
from tests.faults.conftest import can_postgres_cluster, finish, require

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

KNOWN = {
    "sqlite_locked: an answer took": (
        "SQLite writer: while another process holds the write lock, each queued batch waits out busy_timeout "
        "(5 s, outbox/sqlite_schema.py WRITER_PRAGMAS) in turn, so a 503 can take ~2x5 s"
    ),
    "postgres_frozen: an answer took": (
        "PostgreSQL outbox: a frozen server's 503 comes after the pool-acquire timeout plus the client statement "
        "timeout (5 s + 5 s + 1 s by default, outbox/postgres.py), ~11 s"
    ),
    "postgres_restarted: answers other than 200/503": (
        "asyncpg InternalClientError from pool release after a server restart escapes outbox/postgres.py _write "
        "untranslated (_DB_ERRORS lacks it): HTTP 500 or a dropped connection"
    ),
}


async def test_storage_stalls_answer_503_in_time_and_lose_nothing(tmp_path: Path) -> None:
    require(can_postgres_cluster(), "needs the PostgreSQL server binaries to start a private cluster")
    finish(await stalls.run(False, tmp_path), KNOWN)
