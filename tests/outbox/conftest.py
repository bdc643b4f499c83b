"""Fixtures: `store` names one fresh outbox store (an SQLite file, or a PostgreSQL database created for the test
and dropped after it) and makes outboxes on it; `outbox` is one of them, opened.

PostgreSQL is expected on 127.0.0.1:5432 (user postgres, trust auth; override with BRIDGE_TEST_PG_ADMIN). If it is
unreachable the PostgreSQL cases are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from bridge.outbox.postgres import PostgresOutbox
from bridge.outbox.sqlite import SqliteOutbox
from tests.outbox.support import AnyOutbox

PG_ADMIN = os.environ.get("BRIDGE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Store:
    kind: str
    make: Callable[[], AnyOutbox]
    path: Path | None = None  # SQLite only
    dsn: str | None = None  # PostgreSQL only
    opened: list[AnyOutbox] = field(default_factory=list)

    async def open(self) -> AnyOutbox:
        outbox = self.make()
        await outbox.open()
        self.opened.append(outbox)
        return outbox

    async def execute(self, sqlite_sql: str, postgres_sql: str | None = None) -> None:
        """Run SQL statements on the store directly, beside the outbox (PostgreSQL runs `postgres_sql` if given)."""
        if self.path is not None:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                conn.executescript(sqlite_sql)
            return
        assert self.dsn is not None
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(postgres_sql or sqlite_sql)
        finally:
            await conn.close()

    async def count(self, table: str) -> int:
        """Rows in `table`, read directly."""
        sql = f"SELECT count(*) FROM {table}"
        if self.path is not None:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                return int(conn.execute(sql).fetchone()[0])
        assert self.dsn is not None
        conn = await asyncpg.connect(self.dsn)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable on 127.0.0.1:5432: {exc!r}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards; yields its DSN."""
    admin = await _admin()
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    async with fresh_database() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path / "outbox.db"
            made = Store("sqlite", lambda: SqliteOutbox(path), path=path)
        else:
            dsn = await stack.enter_async_context(fresh_database())
            made = Store("postgres", lambda: PostgresOutbox(dsn, max_size=4), dsn=dsn)
        try:
            yield made
        finally:
            for opened in made.opened:
                await opened.close()


@pytest.fixture
async def outbox(store: Store) -> AnyOutbox:
    return await store.open()
