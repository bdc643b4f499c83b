"""Builders shared by the outbox tests."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from bridge.outbox.base import AttemptResult, Delivery, NewDelivery, NewWebhook, WebhookStatus
from bridge.outbox.postgres import PostgresOutbox
from bridge.outbox.sqlite import SqliteOutbox

AnyOutbox = SqliteOutbox | PostgresOutbox

T0 = 1_700_000_000.0
LEASE = 30.0


def delivery(destination: str, event_id: str, name: str = "purchase", payload: bytes | None = None) -> NewDelivery:
    if payload is None:
        payload = orjson.dumps({"name": name, "id": event_id, "destination": destination})
    return NewDelivery(destination, name, event_id, payload)


def webhook(
    provider_event_id: str,
    *deliveries: NewDelivery,
    source: str = "stripe",
    received_at: float = T0,
    status: WebhookStatus = "accepted",
    event_type: str = "checkout.session.completed",
    error: str | None = None,
) -> NewWebhook:
    body = orjson.dumps({"id": provider_event_id, "type": event_type})
    events = orjson.dumps([orjson.loads(d.payload) for d in deliveries])
    return NewWebhook(
        source=source,
        provider="stripe",
        provider_event_id=provider_event_id,
        event_type=event_type,
        received_at=received_at,
        status=status,
        error=error,
        headers=orjson.dumps({"stripe-signature": "t=1,v1=abc"}),
        body=body,
        events=events,
        deliveries=list(deliveries),
    )


def result(
    target: Delivery | int,
    owner: str,
    verdict: Literal["delivered", "retry", "dead"],
    started_at: float,
    *,
    next_attempt_at: float | None = None,
    status_code: int | None = 200,
    error: str | None = None,
    latency_ms: float | None = 10.0,
    response_excerpt: str | None = None,
) -> AttemptResult:
    delivery_id = target.id if isinstance(target, Delivery) else target
    return AttemptResult(
        delivery_id=delivery_id,
        owner=owner,
        started_at=started_at,
        verdict=verdict,
        next_attempt_at=next_attempt_at,
        status_code=status_code,
        latency_ms=latency_ms,
        error=error,
        response_excerpt=response_excerpt,
    )


async def all_deliveries(outbox: AnyOutbox, **filters: Any) -> list[dict[str, Any]]:
    rows, cursor = await outbox.list_deliveries(limit=1000, **filters)
    assert cursor is None
    return rows


async def by_id(outbox: AnyOutbox, delivery_id: int) -> dict[str, Any]:
    found = await outbox.get_delivery(delivery_id)
    assert found is not None
    return found


async def finish(  # claim n due deliveries and complete them all with one verdict
    outbox: AnyOutbox, destination: str, verdict: Literal["delivered", "retry", "dead"], now: float, n: int = 1
) -> list[int]:
    claimed = await outbox.claim(destination, n, now, LEASE, "ops-test")
    assert len(claimed) == n
    next_at = now + 3600 if verdict == "retry" else None
    await outbox.complete([result(d, "ops-test", verdict, now, next_attempt_at=next_at) for d in claimed])
    return [d.id for d in claimed]
