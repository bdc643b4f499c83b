"""The PostgreSQL outbox's replay: re-mapped deliveries added by the ingest rule, in one transaction.

Facts whose delivery key is new are claimed and inserted in one statement (ON CONFLICT DO NOTHING, as at ingest);
the others are looked up and their deliveries locked, and `dedup.remap_actions` decides from those states, the
function the dry run uses on a read-only snapshot, so the plan shown is the write done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.errors import OutboxError
from bridge.outbox import dedup
from bridge.outbox import postgres_queries as q
from bridge.outbox.base import NewDelivery, RemapResult
from bridge.outbox.postgres_ingest import delivery_arrays
from bridge.outbox.rows import clean_text


def _text(value: str | None) -> str | None:
    return clean_text(value, strip_nul=True)


async def remap(
    conn: Any,
    webhook_id: int,
    status: str,
    error: str | None,
    events: bytes,
    deliveries: Sequence[NewDelivery],
    *,
    now: float,
    force: bool,
) -> RemapResult:
    """The replay's write in the current transaction; OutboxError (rolling it back) if there is no such webhook."""
    source = await conn.fetchval(q.REMAP_WEBHOOK, status, _text(error), events, webhook_id)
    if source is None:
        raise OutboxError(f"webhook {webhook_id} does not exist")  # rolls the transaction back
    unique = dedup.unique_facts(deliveries)
    ids = await conn.fetchval(q.NEXT_DELIVERY_IDS, len(unique))
    planned = [(int(i), webhook_id, d) for i, d in zip(ids, unique, strict=True)]
    inserted = await conn.fetch(q.INSERT_DELIVERIES, source, now, *delivery_arrays(planned)) if planned else []
    created = {(row[1], row[2], row[3]) for row in inserted}
    stored = await fact_states(conn, source, [d for d in unique if dedup.fact(d) not in created])
    locked = {}
    if stored:
        rows = await conn.fetch(q.LOCK_DELIVERIES, [delivery_id for delivery_id, _ in stored.values()])
        locked = {int(row[0]): str(row[1]) for row in rows}
    states: dict[dedup.Fact, dedup.KeyState] = {key: None for key in created}
    for d in unique:
        key = dedup.fact(d)
        if key not in created:
            delivery_id, _ = stored.get(key, (0, "purged"))
            states[key] = locked.get(delivery_id, "purged")
    result = remap_result(deliveries, states, force=force)
    resets = [
        (stored[dedup.fact(d)][0], d.payload)
        for d, action in zip(deliveries, result.actions, strict=True)
        if action == "reset"
    ]
    if resets:
        await conn.execute(q.RESET_DELIVERIES, [i for i, _ in resets], [p for _, p in resets], now)
    return result


async def fact_states(
    conn: Any, source: str, deliveries: Sequence[NewDelivery]
) -> dict[dedup.Fact, tuple[int, dedup.KeyState]]:
    """{fact: (delivery id, key state)} for the facts of `deliveries` whose key is stored."""
    if not deliveries:
        return {}
    rows = await conn.fetch(
        q.FIND_DELIVERY_KEYS,
        source,
        [d.destination for d in deliveries],
        [d.event_name for d in deliveries],
        [d.event_id for d in deliveries],
    )
    return {(row[0], row[1], row[2]): (int(row[3]), dedup.key_state(row[3], row[4])) for row in rows}


def remap_result(
    deliveries: Sequence[NewDelivery], states: dict[dedup.Fact, dedup.KeyState], *, force: bool
) -> RemapResult:
    actions = dedup.remap_actions(deliveries, states, force=force)
    counts = dedup.count_actions(actions)
    return RemapResult(actions, counts["created"], counts["skipped"], counts["reset"])
