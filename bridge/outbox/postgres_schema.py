"""PostgreSQL outbox schema and versioned migrations.

The same tables as the SQLite outbox (bytea for bytes, double precision for Unix-second times). Each migration
runs in its own transaction holding a transaction-scoped advisory lock, so replicas starting together apply it
once: the others wait on the lock, then see the new `schema_version` row and skip it.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import OutboxError
from bridge.outbox.sqlite_schema import Migration

#: pg_advisory_xact_lock key for migrations (any constant; "bridge01" as an int64)
MIGRATION_LOCK_KEY = 0x6272696467653031

_STATUS_CHECK = "CHECK (status IN ('pending', 'in_flight', 'delivered', 'dead'))"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE webhooks (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                source TEXT NOT NULL,
                provider TEXT NOT NULL,
                provider_event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                received_at DOUBLE PRECISION NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('accepted', 'ignored', 'mapping_failed')),
                error TEXT,
                headers BYTEA NOT NULL,
                body BYTEA NOT NULL,
                events BYTEA NOT NULL,
                CONSTRAINT webhooks_source_event UNIQUE (source, provider_event_id)
            )""",
            "CREATE INDEX webhooks_status ON webhooks (status)",
            "CREATE INDEX webhooks_received_at ON webhooks (received_at)",
            f"""CREATE TABLE deliveries (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                webhook_id BIGINT NOT NULL REFERENCES webhooks (id),
                destination TEXT NOT NULL,
                event_name TEXT NOT NULL,
                event_id TEXT NOT NULL,
                payload BYTEA NOT NULL,
                status TEXT NOT NULL {_STATUS_CHECK},
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at DOUBLE PRECISION NOT NULL,
                lease_until DOUBLE PRECISION,
                lease_owner TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                delivered_at DOUBLE PRECISION,
                last_status_code INTEGER,
                last_error TEXT,
                CONSTRAINT deliveries_fact UNIQUE (destination, event_name, event_id)
            )""",
            "CREATE INDEX deliveries_due ON deliveries (destination, status, next_attempt_at, id)",
            "CREATE INDEX deliveries_lease ON deliveries (destination, lease_until) WHERE status = 'in_flight'",
            "CREATE INDEX deliveries_webhook ON deliveries (webhook_id)",
            """CREATE TABLE attempts (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
                started_at DOUBLE PRECISION NOT NULL,
                status_code INTEGER,
                latency_ms DOUBLE PRECISION,
                error TEXT,
                response_excerpt TEXT,
                verdict TEXT NOT NULL CHECK (verdict IN ('delivered', 'retry', 'dead')),
                lease_owner TEXT NOT NULL,
                applied BOOLEAN NOT NULL
            )""",
            "CREATE INDEX attempts_delivery ON attempts (delivery_id)",
            """CREATE TABLE destination_activity (
                destination TEXT PRIMARY KEY,
                last_success_at DOUBLE PRECISION,
                last_failure_at DOUBLE PRECISION
            )""",
        ),
    ),
)


async def migrate(conn: Any, migrations: tuple[Migration, ...]) -> int:
    """Apply pending migrations on an asyncpg connection, one locked transaction each; returns the version."""
    newest = max((m.version for m in migrations), default=0)
    current = 0
    for migration in sorted(migrations, key=lambda m: m.version):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
            if current > newest:
                raise OutboxError(
                    f"the outbox database is at schema version {current} but this bridge knows only up to "
                    f"{newest}; run a newer bridge"
                )
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)", migration.version, migration.name
            )
            current = migration.version
    return current
