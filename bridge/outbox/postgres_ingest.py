"""The PostgreSQL outbox's ingest: one webhook request in one transaction.

Several replicas may ingest the same request at once, so nothing is decided from a read: the key tables' primary
keys with `ON CONFLICT DO NOTHING` are the gate (bridge/outbox/dedup.py states the rules; the SQLite writer, alone
with its file, reads and decides in Python instead). Row ids come from the sequences first, so each key row names
its row in the statement that claims it:

1. claim the body key and the event keys (one statement); a known body rolls the transaction back (SeenBody)
   and the request is answered from the stored keys (`duplicates`);
2. insert the request (its body, once) and the webhooks of the newly claimed events (one statement);
3. claim the facts' delivery keys and insert the deliveries whose keys were new (one statement).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.outbox import dedup
from bridge.outbox import postgres_queries as q
from bridge.outbox.base import IngestResult, NewDelivery, NewRequest, NewWebhook
from bridge.outbox.rows import ordering_values


class Vanished(Exception):
    """A row we conflicted with was deleted before we could read it: run the transaction again."""


class SeenBody(Exception):
    """The request's body key is stored already: roll back what the transaction claimed, it is a duplicate."""


async def ingest(conn: Any, request: NewRequest, body: str) -> list[IngestResult]:
    """One request in the current transaction; raises SeenBody (to roll it back) if its body is known."""
    webhooks = request.webhooks
    candidates = [d for webhook in webhooks for d in webhook.deliveries]
    webhook_ids, delivery_ids, request_id = await conn.fetchrow(q.NEXT_IDS, len(webhooks), len(candidates))
    first: dict[str, int] = {}  # provider event id -> the id planned for its first occurrence
    for webhook, webhook_id in zip(webhooks, webhook_ids, strict=True):
        first.setdefault(webhook.provider_event_id, int(webhook_id))
    body_is_new, claimed = await conn.fetchrow(
        q.CLAIM_WEBHOOK_KEYS,
        request.source,
        body,
        first[webhooks[0].provider_event_id],
        list(first),
        list(first.values()),
        request.received_at,
    )
    if not body_is_new:
        raise SeenBody
    new = set(claimed)
    known: dict[str, int] = {}
    if len(new) < len(first):
        others = [key for key in first if key not in new]
        rows = await conn.fetch(q.FIND_WEBHOOK_KEYS, request.source, dedup.EVENT, others)
        known = {row[0]: int(row[1]) for row in rows}
        if len(known) + len(new) < len(first):
            raise Vanished(f"webhook keys of {request.source}")
    if webhooks[0].provider_event_id not in new:
        await conn.execute(q.SET_BODY_KEY, request.source, body, known[webhooks[0].provider_event_id])
    fresh_at = {
        index
        for index, (webhook, webhook_id) in enumerate(zip(webhooks, webhook_ids, strict=True))
        if webhook.provider_event_id in new and first[webhook.provider_event_id] == webhook_id
    }
    fresh = [(webhooks[index], int(webhook_ids[index])) for index in sorted(fresh_at)]
    if fresh:
        await conn.execute(
            q.INSERT_REQUEST,
            request_id,
            request.source,
            request.received_at,
            request.headers,
            request.body,
            request.provider,
            [webhook_id for _, webhook_id in fresh],
            [w.provider_event_id for w, _ in fresh],
            [w.event_type for w, _ in fresh],
            [w.status for w, _ in fresh],
            [w.error for w, _ in fresh],
            [w.events for w, _ in fresh],
        )
    created = await _insert_deliveries(conn, request, fresh, delivery_ids)
    results = []
    for index, (webhook, webhook_id) in enumerate(zip(webhooks, webhook_ids, strict=True)):
        if index in fresh_at:
            results.append(IngestResult(int(webhook_id), False, created.get(int(webhook_id), 0)))
        else:
            existing = known.get(webhook.provider_event_id, first[webhook.provider_event_id])
            results.append(IngestResult(existing, True, 0))
    return results


async def _insert_deliveries(
    conn: Any, request: NewRequest, fresh: list[tuple[NewWebhook, int]], ids: Sequence[int]
) -> dict[int, int]:
    """The deliveries of the new webhooks whose facts are new for the source; {webhook id: created}."""
    planned: dict[dedup.Fact, tuple[int, int, NewDelivery]] = {}
    spare = iter(ids)
    for webhook, webhook_id in fresh:
        for delivery in webhook.deliveries:
            if dedup.fact(delivery) not in planned:
                planned[dedup.fact(delivery)] = (int(next(spare)), webhook_id, delivery)
    if not planned:
        return {}
    rows = list(planned.values())
    inserted = await conn.fetch(q.INSERT_DELIVERIES, request.source, request.received_at, *delivery_arrays(rows))
    created: dict[int, int] = {}
    for row in inserted:
        created[int(row[0])] = created.get(int(row[0]), 0) + 1
    return created


async def duplicates(conn: Any, request: NewRequest, body: str) -> list[IngestResult]:
    """A request whose body is stored: each event answers with its stored webhook (or the body's)."""
    ids = list(dict.fromkeys(w.provider_event_id for w in request.webhooks))
    events = {row[0]: int(row[1]) for row in await conn.fetch(q.FIND_WEBHOOK_KEYS, request.source, "event", ids)}
    [found] = await conn.fetch(q.FIND_WEBHOOK_KEYS, request.source, dedup.BODY, [body]) or [None]
    if found is None:
        raise Vanished(f"body key of {request.source}")
    return [IngestResult(events.get(w.provider_event_id, int(found[1])), True, 0) for w in request.webhooks]


def delivery_arrays(planned: Sequence[tuple[int, int, NewDelivery]]) -> list[list[Any]]:
    """INSERT_DELIVERIES' arrays ($3..$11) for (delivery id, webhook id, delivery) rows."""
    ordering = [ordering_values(d) for _, _, d in planned]
    return [
        [delivery_id for delivery_id, _, _ in planned],
        [webhook_id for _, webhook_id, _ in planned],
        [d.destination for _, _, d in planned],
        [d.event_name for _, _, d in planned],
        [d.event_id for _, _, d in planned],
        [d.payload for _, _, d in planned],
        [key for key, _, _ in ordering],
        [at for _, at, _ in ordering],
        [seq for _, _, seq in ordering],
    ]
