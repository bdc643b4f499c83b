"""The ingest path: verified raw webhook → provider events → canonical events → routed deliveries → one
durable outbox write per request (a batch of N provider events is one call and one transaction, its body stored
once). HTTP concerns (reading the body, status codes) live in webhooks.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bridge.destinations.base import Destination
from bridge.errors import MappingEvalError
from bridge.limits import DEFAULT_LIMITS, EventTooLarge, Limits, encode_events
from bridge.ordering import ordering_for
from bridge.outbox.base import IngestResult, NewDelivery, NewRequest, NewWebhook, Ordering, Outbox, WebhookStatus
from bridge.providers.base import InboundEvent, Provider

log = logging.getLogger("bridge.ingest")


@dataclass(frozen=True, slots=True)
class Mapped:
    """What the mapping made of one provider event."""

    status: WebhookStatus
    error: str | None
    events: list[dict[str, Any]]
    #: each event as JSON (written once, when its size was checked; stored as is)
    encoded: list[bytes] = field(default_factory=list)


def map_event(
    mapping: Any,
    event: InboundEvent,
    headers: Mapping[str, str],
    source: str,
    provider: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    received_at: float | None = None,
) -> Mapped:
    """Run one provider event through its mapping. Never raises: failures become `mapping_failed`, and so does
    an event that cannot be written as JSON or is larger than `limits.max_event_bytes`. `received_at` is the
    stored webhook's receive time (what a mapping reads as `_received_at`)."""
    if mapping is None:
        return Mapped("mapping_failed", "no mapping loaded for this source", [])
    try:
        events = mapping.evaluate(event, headers=headers, source=source, provider=provider, received_at=received_at)
    except MappingEvalError as exc:
        return Mapped("mapping_failed", str(exc), [])
    except Exception as exc:  # a bug in a mapping function must not lose the webhook
        log.exception("mapping crashed", extra={"source": source, "event_type": event.event_type})
        return Mapped("mapping_failed", f"{type(exc).__name__}: {exc}", [])
    if events is None:
        return Mapped("ignored", f"event type {event.event_type!r} is not mapped", [])
    if not events:
        return Mapped("ignored", "no rule matched", [])
    try:
        encoded = encode_events(events, limits)
    except EventTooLarge as exc:
        return Mapped("mapping_failed", str(exc), [])
    return Mapped("accepted", None, events, encoded)


def route(
    events: Sequence[Mapping[str, Any]],
    destinations: Mapping[str, Destination],
    encoded: Sequence[bytes] | None = None,
) -> list[NewDelivery]:
    """One delivery per (event, destination that routes the event's name and accepts the event); ordered by key
    for destinations with `ordering: by_key` (bridge/ordering.py). `encoded`: the events as JSON already
    (Mapped.encoded), used as the payloads."""
    deliveries = []
    for index, event in enumerate(events):
        name = event["name"]
        payload: bytes | None = encoded[index] if encoded else None
        ordering: Ordering | None = None
        for dest_name, destination in destinations.items():
            if destination.routes(name) and destination.accepts(event):
                payload = payload or orjson.dumps(event)
                if destination.settings.ordering == "by_key":
                    ordering = ordering or ordering_for(event)
                    deliveries.append(NewDelivery(dest_name, name, str(event["id"]), payload, ordering))
                else:
                    deliveries.append(NewDelivery(dest_name, name, str(event["id"]), payload))
    return deliveries


def stored_headers(provider: Provider, headers: Mapping[str, str]) -> bytes:
    keep = {name: headers[name] for name in (*provider.stored_headers, "content-type") if name in headers}
    return orjson.dumps(keep)


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    results: list[IngestResult]
    statuses: list[WebhookStatus]

    @property
    def status(self) -> str:
        """One word for the provider: duplicate when nothing new was stored; ignored or mapping_failed when every
        new webhook was (it is stored all the same); else accepted."""
        if self.results and all(r.duplicate for r in self.results):
            return "duplicate"
        fresh = {status for status, r in zip(self.statuses, self.results, strict=True) if not r.duplicate}
        return fresh.pop() if len(fresh) == 1 else "accepted"

    @property
    def deliveries_created(self) -> int:
        return sum(r.deliveries_created for r in self.results)


async def store(
    outbox: Outbox,
    *,
    source: str,
    provider: Provider,
    mapping: Any,
    destinations: Mapping[str, Destination],
    inbound: Sequence[InboundEvent],
    body: bytes,
    headers: Mapping[str, str],
    received_at: float,
    limits: Limits = DEFAULT_LIMITS,
) -> IngestOutcome:
    """Map every provider event of one verified webhook and store them all in one outbox call (one transaction).
    Raises OutboxError if storage fails; then nothing of the request was stored."""
    webhooks = []
    for event in inbound:
        mapped = map_event(mapping, event, headers, source, provider.type, limits, received_at=received_at)
        webhooks.append(
            NewWebhook(
                provider_event_id=event.event_id,
                event_type=event.event_type,
                status=mapped.status,
                error=mapped.error,
                # the same bytes orjson.dumps(mapped.events) gives, without writing each event a second time
                events=b"[" + b",".join(mapped.encoded) + b"]" if mapped.encoded else orjson.dumps(mapped.events),
                deliveries=route(mapped.events, destinations, mapped.encoded),
            )
        )
    if not webhooks:
        return IngestOutcome([], [])
    request = NewRequest(
        source=source,
        provider=provider.type,
        received_at=received_at,
        headers=stored_headers(provider, headers),
        body=body,
        webhooks=webhooks,
    )
    results = await outbox.ingest(request)
    return IngestOutcome(results, [w.status for w in webhooks])
