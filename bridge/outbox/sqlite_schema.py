"""SQLite outbox schema: connection settings and versioned migrations.

`schema_version` holds one row per applied migration. Each migration runs in its own `BEGIN IMMEDIATE`
transaction together with the insert of its version row, so a crash mid-migration leaves the previous version
and the next open simply runs it again. Migrations are append-only: never edit one that has shipped.

A migration that rebuilds a table (SQLite cannot drop a constraint in place) follows SQLite's documented
procedure: foreign keys off for the connection, the new table created, filled, the old one dropped and the new one
renamed, `PRAGMA foreign_key_check` before COMMIT, foreign keys on again. Every connection that migrates has the
SQL function `bridge_sha256(blob)` (lower-case hex), so a migration can derive body keys from stored bodies.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bridge.errors import OutboxError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    #: SQLite only: the migration rebuilds tables, so it runs with foreign keys off and checks them before COMMIT
    rebuilds: bool = False


#: run on every connection that writes; journal_mode and synchronous are read back and checked afterwards (T3)
WRITER_PRAGMAS: tuple[str, ...] = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)
READER_PRAGMAS: tuple[str, ...] = ("PRAGMA busy_timeout=5000",)

_STATUS_CHECK = "CHECK (status IN ('pending', 'in_flight', 'delivered', 'dead'))"
_WEBHOOK_STATUS_CHECK = "CHECK (status IN ('accepted', 'ignored', 'mapping_failed'))"


def _carry_sequence(old: str, new: str) -> tuple[str, str]:
    """Give table `new` the AUTOINCREMENT counter of `old`, so ids that were ever used (and purged) never return."""
    return (
        f"DELETE FROM sqlite_sequence WHERE name = '{new}'",
        f"INSERT INTO sqlite_sequence (name, seq) SELECT '{new}', seq FROM sqlite_sequence WHERE name = '{old}'",
    )


# Migration 2: the raw request is stored once (webhook_requests), however many provider events it holds; dedup
# keys move to their own compact tables that outlive the rows (webhook_keys: a source's provider event ids and
# body hashes; delivery_keys: one fact per source and destination), so purging rows never re-opens a replay and
# two stores' equal order numbers stay two facts. Existing rows keep their ids; each old webhook row becomes its
# own request (old batches keep their repeated bodies; new ones store the body once).
_MIGRATION_2 = (
    """CREATE TABLE webhook_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        received_at REAL NOT NULL,
        headers BLOB NOT NULL,
        body BLOB NOT NULL
    )""",
    "INSERT INTO webhook_requests (id, source, received_at, headers, body) "
    "SELECT id, source, received_at, headers, body FROM webhooks ORDER BY id",
    *_carry_sequence("webhooks", "webhook_requests"),
    """CREATE TABLE webhook_keys (
        source TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('event', 'body')),
        key TEXT NOT NULL,
        webhook_id INTEGER NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (source, kind, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX webhook_keys_seen_at ON webhook_keys (seen_at)",
    "INSERT INTO webhook_keys (source, kind, key, webhook_id, seen_at) "
    "SELECT source, 'event', provider_event_id, id, received_at FROM webhooks",
    "INSERT INTO webhook_keys (source, kind, key, webhook_id, seen_at) "
    "SELECT source, 'body', bridge_sha256(body), id, received_at FROM webhooks WHERE true ORDER BY id "
    "ON CONFLICT DO NOTHING",
    """CREATE TABLE delivery_keys (
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        event_name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        delivery_id INTEGER NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (source, destination, event_name, event_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX delivery_keys_seen_at ON delivery_keys (seen_at)",
    "INSERT INTO delivery_keys (source, destination, event_name, event_id, delivery_id, seen_at) "
    "SELECT w.source, d.destination, d.event_name, d.event_id, d.id, d.created_at "
    "FROM deliveries AS d JOIN webhooks AS w ON w.id = d.webhook_id",
    f"""CREATE TABLE webhooks_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id INTEGER NOT NULL REFERENCES webhook_requests (id),
        source TEXT NOT NULL,
        provider TEXT NOT NULL,
        provider_event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at REAL NOT NULL,
        status TEXT NOT NULL {_WEBHOOK_STATUS_CHECK},
        error TEXT,
        events BLOB NOT NULL
    )""",
    "INSERT INTO webhooks_v2 (id, request_id, source, provider, provider_event_id, event_type, received_at, status, "
    "error, events) SELECT id, id, source, provider, provider_event_id, event_type, received_at, status, error, "
    "events FROM webhooks ORDER BY id",
    *_carry_sequence("webhooks", "webhooks_v2"),
    f"""CREATE TABLE deliveries_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id INTEGER NOT NULL REFERENCES webhooks (id),
        destination TEXT NOT NULL,
        event_name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        status TEXT NOT NULL {_STATUS_CHECK},
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_until REAL,
        lease_owner TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        delivered_at REAL,
        last_status_code INTEGER,
        last_error TEXT
    )""",
    "INSERT INTO deliveries_v2 SELECT id, webhook_id, destination, event_name, event_id, payload, status, attempts, "
    "next_attempt_at, lease_until, lease_owner, created_at, updated_at, delivered_at, last_status_code, last_error "
    "FROM deliveries ORDER BY id",
    *_carry_sequence("deliveries", "deliveries_v2"),
    "DROP TABLE deliveries",
    "DROP TABLE webhooks",
    "ALTER TABLE webhooks_v2 RENAME TO webhooks",
    "ALTER TABLE deliveries_v2 RENAME TO deliveries",
    "CREATE INDEX webhooks_status ON webhooks (status)",
    "CREATE INDEX webhooks_received_at ON webhooks (received_at)",
    "CREATE INDEX webhooks_request ON webhooks (request_id)",
    "CREATE INDEX deliveries_due ON deliveries (destination, status, next_attempt_at)",
    "CREATE INDEX deliveries_lease ON deliveries (destination, lease_until) WHERE status = 'in_flight'",
    "CREATE INDEX deliveries_webhook ON deliveries (webhook_id)",
)

#: recent attempts get their destination when migration 3 adds the column, so the first start after the upgrade
#: still sees the requests of the current rate-limit windows (the longest documented one is an hour)
LANE_BACKFILL_SECONDS = 7200.0

# Migration 3: several dispatchers behave as one. Deliveries get their ordering (key, when the provider event
# occurred, the provider's sequence) and `skipped_at`; attempts name their destination, so a lane's requests of
# the last window are one index range away (a new lane holder seeds its rate limiter from them); `lanes` holds
# who sends for each destination and its limiter's 429 state. Columns only: no table is rebuilt.
_MIGRATION_3 = (
    "ALTER TABLE deliveries ADD COLUMN ordering_key TEXT",
    "ALTER TABLE deliveries ADD COLUMN ordering_at REAL",
    "ALTER TABLE deliveries ADD COLUMN ordering_seq INTEGER",
    "ALTER TABLE deliveries ADD COLUMN skipped_at REAL",
    # a delivery held back behind an earlier one of its key (parked): its own next_attempt_at, while that one
    # is pushed back to when the earlier one is due
    "ALTER TABLE deliveries ADD COLUMN parked_from REAL",
    # the claim's "is an earlier one of my key still open?" probe; delivered rows (the bulk) stay out of it
    "CREATE INDEX deliveries_order ON deliveries (destination, ordering_key, ordering_at, ordering_seq) "
    "WHERE ordering_key IS NOT NULL AND status <> 'delivered'",
    "ALTER TABLE attempts ADD COLUMN destination TEXT",
    "UPDATE attempts SET destination = (SELECT d.destination FROM deliveries AS d WHERE d.id = attempts.delivery_id) "
    f"WHERE started_at >= (SELECT max(started_at) FROM attempts) - {LANE_BACKFILL_SECONDS}",
    "CREATE INDEX attempts_sent ON attempts (destination, started_at) WHERE destination IS NOT NULL",
    """CREATE TABLE lanes (
        destination TEXT PRIMARY KEY,
        owner TEXT,
        lease_until REAL,
        paused_until REAL NOT NULL DEFAULT 0,
        factor REAL NOT NULL DEFAULT 1,
        throttled_at REAL,
        cooldown REAL NOT NULL DEFAULT 0
    )""",
)


def _counted(table: str, key: str, counts: str) -> tuple[str, ...]:
    """Triggers keeping `counts` (`key`, status, n) equal to the rows of `table` by `key` and status, whatever
    writes them (ingest, claims, completions, retries, replays, purges, the recovery at open)."""
    add = (
        f"INSERT INTO {counts} ({key}, status, n) VALUES (NEW.{key}, NEW.status, 1) "
        f"ON CONFLICT ({key}, status) DO UPDATE SET n = n + 1;"
    )
    remove = f"UPDATE {counts} SET n = n - 1 WHERE {key} = OLD.{key} AND status = OLD.status;"
    return (
        f"CREATE TRIGGER {table}_counted_insert AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER {table}_counted_update AFTER UPDATE OF {key}, status ON {table} "
        f"WHEN OLD.status IS NOT NEW.status OR OLD.{key} IS NOT NEW.{key} BEGIN {remove} {add} END",
        f"CREATE TRIGGER {table}_counted_delete AFTER DELETE ON {table} BEGIN {remove} END",
    )


# Migration 4: the counts /ops/outbox and /metrics report are kept as rows change instead of counted on every
# scrape (a COUNT over a million deliveries took ~150 ms), and the oldest pending delivery of a destination is one
# index probe away. A later migration that rebuilds `deliveries` or `webhooks` must create their triggers again.
_MIGRATION_4 = (
    """CREATE TABLE delivery_counts (
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (destination, status)
    ) WITHOUT ROWID""",
    "INSERT INTO delivery_counts (destination, status, n) "
    "SELECT destination, status, count(*) FROM deliveries GROUP BY destination, status",
    *_counted("deliveries", "destination", "delivery_counts"),
    """CREATE TABLE webhook_counts (
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (source, status)
    ) WITHOUT ROWID""",
    "INSERT INTO webhook_counts (source, status, n) "
    "SELECT source, status, count(*) FROM webhooks GROUP BY source, status",
    *_counted("webhooks", "source", "webhook_counts"),
    "CREATE INDEX deliveries_pending_age ON deliveries (destination, created_at) WHERE status = 'pending'",
)

# Migration 5: a destination can be disabled (it answered 410 Gone, or ops disabled it): its deliveries are held
# until it is enabled. The state sits in its lanes row, so every replica sees it and it outlives restarts.
_MIGRATION_5 = (
    "ALTER TABLE lanes ADD COLUMN disabled_at REAL",
    "ALTER TABLE lanes ADD COLUMN disabled_reason TEXT",
    "ALTER TABLE lanes ADD COLUMN disabled_by TEXT",
)

# the requests a lane's new holder counted as sent unrecorded (found in flight of a dead process, or leased by
# another replica), kept so the holder after it counts them too: a crash loop must not forget them (fleet.py)
_MIGRATION_6 = (
    """CREATE TABLE unrecorded_sends (
        destination TEXT NOT NULL,
        lease TEXT NOT NULL,
        answered_at REAL NOT NULL,
        PRIMARY KEY (destination, lease)
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE webhooks (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                source TEXT NOT NULL,
                provider TEXT NOT NULL,
                provider_event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                received_at REAL NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('accepted', 'ignored', 'mapping_failed')),
                error TEXT,
                headers BLOB NOT NULL,
                body BLOB NOT NULL,
                events BLOB NOT NULL,
                UNIQUE (source, provider_event_id)
            )""",
            "CREATE INDEX webhooks_status ON webhooks (status)",
            "CREATE INDEX webhooks_received_at ON webhooks (received_at)",
            f"""CREATE TABLE deliveries (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                webhook_id INTEGER NOT NULL REFERENCES webhooks (id),
                destination TEXT NOT NULL,
                event_name TEXT NOT NULL,
                event_id TEXT NOT NULL,
                payload BLOB NOT NULL,
                status TEXT NOT NULL {_STATUS_CHECK},
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                lease_until REAL,
                lease_owner TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                delivered_at REAL,
                last_status_code INTEGER,
                last_error TEXT,
                UNIQUE (destination, event_name, event_id)
            )""",
            # claim (pending part), next_due_at, stats counts; the rowid is the implicit last key, so
            # ORDER BY next_attempt_at, id is read straight off the index
            "CREATE INDEX deliveries_due ON deliveries (destination, status, next_attempt_at)",
            # claim (expired-lease part): only in-flight rows, so it stays tiny
            "CREATE INDEX deliveries_lease ON deliveries (destination, lease_until) WHERE status = 'in_flight'",
            "CREATE INDEX deliveries_webhook ON deliveries (webhook_id)",
            """CREATE TABLE attempts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
                started_at REAL NOT NULL,
                status_code INTEGER,
                latency_ms REAL,
                error TEXT,
                response_excerpt TEXT,
                verdict TEXT NOT NULL CHECK (verdict IN ('delivered', 'retry', 'dead')),
                lease_owner TEXT NOT NULL,
                applied INTEGER NOT NULL
            )""",
            "CREATE INDEX attempts_delivery ON attempts (delivery_id)",
            """CREATE TABLE destination_activity (
                destination TEXT PRIMARY KEY,
                last_success_at REAL,
                last_failure_at REAL
            )""",
        ),
    ),
    Migration(2, "requests stored once; dedup keys in their own tables, delivery keys per source", _MIGRATION_2, True),
    Migration(3, "ordering keys, skipped deliveries, attempts by destination, lane leases", _MIGRATION_3),
    Migration(4, "kept counts of deliveries and webhooks by status; oldest pending by index", _MIGRATION_4),
    Migration(5, "disabled destinations", _MIGRATION_5),
    Migration(6, "requests counted as sent unrecorded by a lane's holder", _MIGRATION_6),
)


def _sha256_hex(value: bytes | None) -> str | None:
    return None if value is None else hashlib.sha256(value).hexdigest()


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions migrations may use: `bridge_sha256(blob)` (lower-case hex, as dedup.body_key)."""
    conn.create_function("bridge_sha256", 1, _sha256_hex, deterministic=True)


async def _one(conn: aiosqlite.Connection, sql: str) -> Any:
    rows = list(await conn.execute_fetchall(sql))
    return rows[0][0] if rows else None


async def apply_pragmas(conn: aiosqlite.Connection, pragmas: tuple[str, ...], *, writer: bool) -> None:
    """Run the pragmas; on the writer, fail unless WAL and synchronous=FULL really took effect (T3)."""
    for pragma in pragmas:
        await conn.execute_fetchall(pragma)
    if not writer:
        return
    journal_mode = str(await _one(conn, "PRAGMA journal_mode")).lower()
    synchronous = await _one(conn, "PRAGMA synchronous")
    foreign_keys = await _one(conn, "PRAGMA foreign_keys")
    if journal_mode != "wal":
        raise OutboxError(
            f"SQLite outbox needs journal_mode=wal but got {journal_mode!r} "
            "(is the database on a filesystem without shared-memory support?)"
        )
    if synchronous != 2:
        raise OutboxError(
            f"SQLite outbox needs synchronous=FULL (2) so acknowledged webhooks survive power loss; got {synchronous!r}"
        )
    if foreign_keys != 1:
        raise OutboxError("SQLite outbox needs foreign_keys=ON")


async def schema_version(conn: aiosqlite.Connection) -> int:
    exists = await _one(conn, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    if not exists:
        return 0
    return int(await _one(conn, "SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: aiosqlite.Connection, migrations: tuple[Migration, ...]) -> int:
    """Apply pending migrations, one transaction each; returns the schema version. Idempotent."""
    await conn.execute_fetchall(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
    )
    current = await schema_version(conn)
    newest = max((m.version for m in migrations), default=0)
    if current > newest:
        raise OutboxError(
            f"the outbox database is at schema version {current} but this bridge knows only up to {newest}; "
            "run a newer bridge or restore a matching backup"
        )
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version <= current:
            continue
        foreign_keys = await _one(conn, "PRAGMA foreign_keys")
        if migration.rebuilds:
            await conn.execute_fetchall("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set it before
        try:
            await _apply(conn, migration)
        finally:
            if migration.rebuilds:
                await conn.execute_fetchall(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        current = migration.version
    return current


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    """One migration and its version row in one transaction; rolled back entirely on any failure."""
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        for statement in migration.statements:
            await conn.execute_fetchall(statement)
        if migration.rebuilds:
            broken = list(await conn.execute_fetchall("PRAGMA foreign_key_check"))
            if broken:
                raise sqlite3.IntegrityError(f"foreign keys broken by the rebuild: {broken[:5]}")
        await conn.execute_fetchall(
            "INSERT INTO schema_version (version, name) VALUES (?, ?)", (migration.version, migration.name)
        )
        await conn.execute_fetchall("COMMIT")
    except BaseException as exc:
        try:
            await conn.execute_fetchall("ROLLBACK")
        except sqlite3.Error:
            pass
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(
                f"schema migration {migration.version} ({migration.name}) failed and was rolled back: {exc}"
            ) from exc
        raise
