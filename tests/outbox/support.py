"""Builders shared by the outbox tests."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from bridge.outbox.base import AttemptResult, Delivery, IngestResult, NewDelivery, NewRequest, NewWebhook, WebhookStatus
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
    body: bytes | None = None,
) -> NewRequest:
    """A request holding one provider event (its body names the event, so distinct events have distinct bodies)."""
    return request(
        event(provider_event_id, *deliveries, status=status, event_type=event_type, error=error),
        source=source,
        received_at=received_at,
        body=body if body is not None else orjson.dumps({"id": provider_event_id, "type": event_type}),
    )


def event(
    provider_event_id: str,
    *deliveries: NewDelivery,
    status: WebhookStatus = "accepted",
    event_type: str = "checkout.session.completed",
    error: str | None = None,
) -> NewWebhook:
    return NewWebhook(
        provider_event_id=provider_event_id,
        event_type=event_type,
        status=status,
        error=error,
        events=orjson.dumps([orjson.loads(d.payload) for d in deliveries]),
        deliveries=list(deliveries),
    )


def request(
    *events: NewWebhook, source: str = "stripe", received_at: float = T0, body: bytes | None = None
) -> NewRequest:
    """A request of several provider events (a batch); the body lists their ids unless given."""
    return NewRequest(
        source=source,
        provider="stripe",
        received_at=received_at,
        headers=orjson.dumps({"stripe-signature": "t=1,v1=abc"}),
        body=body if body is not None else orjson.dumps({"events": [e.provider_event_id for e in events]}),
        webhooks=list(events),
    )


async def ingest(outbox: AnyOutbox, one: NewRequest) -> IngestResult:
    """Ingest a request of one provider event; its one result."""
    [got] = await outbox.ingest(one)
    return got


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
