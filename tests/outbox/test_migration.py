"""A database written by the previous schema (version 1) migrates in place when the bridge opens it: rows keep their
ids, bodies and state; every dedup key is backfilled from them; delivery dedup becomes per source."""

from __future__ import annotations

from bridge.outbox import postgres_schema, sqlite_schema
from bridge.outbox.postgres import PostgresOutbox
from bridge.outbox.sqlite import SqliteOutbox
from tests.outbox.conftest import Store
from tests.outbox.support import LEASE, T0, by_id, delivery, ingest, result, webhook


class SqliteV1(SqliteOutbox):
    _migrations = sqlite_schema.MIGRATIONS[:1]


class PostgresV1(PostgresOutbox):
    _migrations = postgres_schema.MIGRATIONS[:1]


BODY = b'{"id": "evt_1", "type": "checkout.session.completed"}'
BATCH = b'{"events": ["EV1", "EV2"]}'


def _blob(data: bytes, kind: str) -> str:
    return f"X'{data.hex()}'" if kind == "sqlite" else f"'\\x{data.hex()}'::bytea"


def version_1_rows(kind: str) -> str:
    """What a version-1 bridge stored: a webhook with two deliveries (one delivered, with an attempt), a batch of
    two provider events (its body stored twice), and a webhook purged since (id 4, so the counters are past it)."""
    body, batch, headers, events, purged = (
        _blob(b, kind) for b in (BODY, BATCH, b'{"stripe-signature": "t=1"}', b"[]", b'{"id": "evt_purged"}')
    )
    payload = _blob(b'{"name": "purchase", "id": "1005"}', kind)
    webhooks = ", ".join(
        f"({i}, '{source}', 'stripe', '{event_id}', 't', {T0}, 'accepted', NULL, {headers}, {raw}, {events})"
        for i, source, event_id, raw in (
            (1, "store-a", "evt_1", body),
            (2, "store-a", "EV1", batch),
            (3, "store-a", "EV2", batch),
            (4, "store-a", "evt_purged", purged),
        )
    )
    overriding = "" if kind == "sqlite" else " OVERRIDING SYSTEM VALUE"
    return f"""
        INSERT INTO webhooks (id, source, provider, provider_event_id, event_type, received_at, status, error,
            headers, body, events){overriding} VALUES {webhooks};
        DELETE FROM webhooks WHERE id = 4;
        INSERT INTO deliveries (id, webhook_id, destination, event_name, event_id, payload, status, attempts,
            next_attempt_at, created_at, updated_at, delivered_at){overriding} VALUES
            (1, 1, 'conv', 'purchase', '1005', {payload}, 'delivered', 1, {T0}, {T0}, {T0 + 1}, {T0 + 1}),
            (2, 1, 'zen', 'purchase', '1005', {payload}, 'pending', 0, {T0}, {T0}, {T0}, NULL);
        INSERT INTO attempts (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict,
            lease_owner, applied) VALUES (1, {T0 + 1}, 200, 5.0, NULL, NULL, 'delivered', 'w', {
        "1" if kind == "sqlite" else "true"
    });
    """ + (
        "UPDATE sqlite_sequence SET seq = 4 WHERE name = 'webhooks';"
        if kind == "sqlite"
        else "SELECT setval('webhooks_id_seq', 4); SELECT setval('deliveries_id_seq', 2);"
    )


async def test_a_version_1_database_migrates_in_place(store: Store) -> None:
    old = SqliteV1(store.path) if store.kind == "sqlite" else PostgresV1(store.dsn or "", max_size=2)
    await old.open()
    await old.close()
    await store.execute(version_1_rows("sqlite"), version_1_rows("postgres"))

    outbox = await store.open()
    stored = await outbox.get_webhook(1)
    assert stored is not None
    assert (stored["body"], stored["headers"], stored["source"]) == (BODY, {"stripe-signature": "t=1"}, "store-a")
    assert [d["status"] for d in stored["deliveries"]] == ["delivered", "pending"]
    assert [a["status_code"] for a in (await by_id(outbox, 1))["attempts"]] == [200]
    batch_event = await outbox.get_webhook(3)
    assert batch_event is not None and batch_event["body"] == BATCH

    # the backfilled keys: a provider retry, the same body under another id, a known fact within the source
    retry = await ingest(outbox, webhook("evt_1", delivery("conv", "1005"), source="store-a", body=b"{}"))
    assert (retry.duplicate, retry.webhook_id) == (True, 1)
    same_body = await ingest(outbox, webhook("evt_new_id", delivery("ga4", "1005"), source="store-a", body=BATCH))
    assert (same_body.duplicate, same_body.webhook_id) == (True, 2)
    same_fact = await ingest(outbox, webhook("evt_2", delivery("conv", "1005"), source="store-a"))
    assert (same_fact.duplicate, same_fact.deliveries_created) == (False, 0)
    # delivery dedup is per source now: another store's order 1005 is delivered too
    other_store = await ingest(outbox, webhook("evt_1", delivery("conv", "1005"), source="store-b"))
    assert (other_store.duplicate, other_store.deliveries_created) == (False, 1)
    # ids continue after every id ever used (webhook 4 was deleted)
    assert same_fact.webhook_id > 4 and other_store.webhook_id > 4

    # migration 3: the recent attempt was given its destination, so a restart's rate limiter still counts it
    assert (await outbox.lane_history("conv", "w2", T0)).sends == [(T0 + 1, T0 + 1.005)]
    assert (await by_id(outbox, 2))["ordering_key"] is None  # old deliveries stay unordered

    [claimed] = await outbox.claim("zen", 5, T0, LEASE, "w2")
    assert claimed.id == 2
    assert await outbox.complete([result(claimed, "w2", "delivered", T0 + 2)]) == [True]
    if isinstance(outbox, SqliteOutbox):  # the rebuild ran with foreign keys off; the writer has them on again
        assert outbox._writer is not None
        assert await outbox._writer.call(lambda db: db.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
        assert await outbox._writer.call(lambda db: db.execute("PRAGMA foreign_key_check").fetchall()) == []
