"""The SQLite outbox's ingest: one batch of webhook requests written in the writer's transaction.

The writer is the only one writing, so it can read first and write after without a race: look up which keys of
the batch are stored (two statements), decide in Python what is new (bridge/outbox/dedup.py: the same rules the
PostgreSQL store enforces with ON CONFLICT), hand out row ids from sqlite_sequence, and insert every table's new
rows with one multi-row statement each (chunked under SQLite's variable limit). A request of N provider events
costs the same handful of statements as a request of one, and its body is written once.
"""

from __future__ import annotations

from typing import Any

from bridge.outbox import dedup
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import IngestResult, NewRequest
from bridge.outbox.rows import ordering_values
from bridge.outbox.sqlite_connection import Statements


def ingest(st: Statements, batch: list[tuple[NewRequest, str]]) -> list[list[IngestResult]]:
    """Store each (request, body key) of the batch, in order; one result list per request."""
    requests = [request for request, _ in batch]
    bodies = [body for _, body in batch]
    lookups = list(dict.fromkeys(key for request, body in batch for key in dedup.request_keys(request, body)))
    found = st.many(q.find_webhook_keys, lookups, q.WEBHOOK_KEY_LOOKUP_PARAMS)
    known = {(source, kind, key): int(webhook_id) for source, kind, key, webhook_id in found}
    last = {str(name): int(seq) for name, seq in st.sql(q.NEXT_IDS)}
    plan = dedup.plan_webhooks(
        requests,
        bodies,
        known,
        dedup.Ids(last.get("webhook_requests", 0)),
        dedup.Ids(last.get("webhooks", 0)),
    )
    candidates = list(dict.fromkeys(dedup.delivery_candidates(requests, plan)))
    stored: set[dedup.DeliveryKey] = {
        (row[0], row[1], row[2], row[3])
        for row in st.many(q.known_delivery_keys, candidates, q.DELIVERY_KEY_LOOKUP_PARAMS)
    }
    deliveries, delivery_keys = dedup.plan_deliveries(requests, plan, stored, dedup.Ids(last.get("deliveries", 0)))

    request_ids = {index: request_id for request_id, index in plan.requests}
    request_rows: list[tuple[Any, ...]] = []
    for request_id, index in plan.requests:
        request = requests[index]
        request_rows.append((request_id, request.source, request.received_at, request.headers, request.body))
    webhook_rows: list[tuple[Any, ...]] = []
    for planned in plan.webhooks:
        request = requests[planned.request_index]
        webhook = request.webhooks[planned.webhook_index]
        webhook_rows.append(
            (planned.id, request_ids[planned.request_index], request.source, request.provider)
            + (webhook.provider_event_id, webhook.event_type, request.received_at, webhook.status, webhook.error)
            + (webhook.events,)
        )
    delivery_rows = [
        (row.id, row.webhook_id, row.delivery.destination, row.delivery.event_name, row.delivery.event_id)
        + (row.delivery.payload, row.created_at, row.created_at, row.created_at)
        + ordering_values(row.delivery)
        for row in deliveries
    ]
    st.many(q.insert_requests, request_rows, q.REQUEST_PARAMS)
    st.many(q.insert_webhooks, webhook_rows, q.WEBHOOK_PARAMS)
    st.many(q.insert_webhook_keys, plan.webhook_keys, q.WEBHOOK_KEY_PARAMS)
    st.many(q.insert_deliveries, delivery_rows, q.DELIVERY_PARAMS)
    st.many(q.insert_delivery_keys, delivery_keys, q.DELIVERY_KEY_PARAMS)
    return dedup.finished(plan)
