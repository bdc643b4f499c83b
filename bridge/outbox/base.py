"""The outbox contract: durable webhooks and their deliveries.

Tables (names and columns are the same in every implementation):

  webhooks    one row per provider event received: source, provider, provider_event_id, event_type,
              received_at, status, error, headers (JSON bytes), body (raw request bytes), events (JSON list
              of the canonical events the mapping produced). UNIQUE (source, provider_event_id).
  deliveries  one row per (canonical event, destination): webhook_id, destination, event_name, event_id,
              payload (canonical event JSON bytes), status, attempts, next_attempt_at, lease_until,
              lease_owner, created_at, updated_at, delivered_at, last_status_code, last_error.
              UNIQUE (destination, event_name, event_id): one fact is delivered once per destination.
  attempts    one row per delivery attempt: delivery_id, started_at, status_code, latency_ms, error,
              response_excerpt, verdict.

Webhook status: accepted (mapped, deliveries created or deduplicated), ignored (no mapping for the type, or no
rule matched), mapping_failed (the mapping raised; `error` says why; replayable).

Delivery status:  pending ──claim──▶ in_flight ──complete──▶ delivered | pending (retry) | dead
                  in_flight with lease_until <= now is claimable again (the owner crashed or hung).

All times are Unix seconds (float) passed in by the caller; the outbox never reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

WebhookStatus = Literal["accepted", "ignored", "mapping_failed"]
DeliveryStatus = Literal["pending", "in_flight", "delivered", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "in_flight", "delivered", "dead")
WEBHOOK_STATUSES: tuple[WebhookStatus, ...] = ("accepted", "ignored", "mapping_failed")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    destination: str
    event_name: str
    event_id: str
    payload: bytes  # the canonical event, JSON


@dataclass(frozen=True, slots=True)
class NewWebhook:
    source: str
    provider: str
    provider_event_id: str
    event_type: str
    received_at: float
    status: WebhookStatus
    error: str | None
    headers: bytes  # JSON object of the stored headers
    body: bytes  # the raw request body, exactly as received
    events: bytes  # JSON list of canonical events
    deliveries: Sequence[NewDelivery]


@dataclass(frozen=True, slots=True)
class IngestResult:
    webhook_id: int
    #: the (source, provider_event_id) was already stored: nothing was written
    duplicate: bool
    #: deliveries actually inserted (those already present for the same destination/name/id are skipped)
    deliveries_created: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery."""

    id: int
    webhook_id: int
    destination: str
    event_name: str
    event_id: str
    payload: bytes
    attempts: int  # attempts completed before this claim
    lease_owner: str
    lease_until: float
    created_at: float


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The result of one send, written by `complete` only if the lease is still held by `owner`."""

    delivery_id: int
    owner: str
    started_at: float
    verdict: Literal["delivered", "retry", "dead"]
    #: when to try again (verdict "retry"); ignored otherwise
    next_attempt_at: float | None
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None


class Outbox(Protocol):
    """Storage for webhooks and deliveries. Every write is durable when its coroutine returns."""

    async def open(self) -> None:
        """Connect, apply pending schema migrations, check durability settings. Raises OutboxError."""
        ...

    async def close(self) -> None:
        """Finish queued writes and disconnect."""
        ...

    async def ping(self) -> None:
        """Raise OutboxError unless the store answers a trivial query."""
        ...

    async def ingest(self, webhook: NewWebhook) -> IngestResult:
        """Store one webhook and its deliveries in one durable transaction (group-committed with concurrent
        callers). A webhook whose (source, provider_event_id) exists returns duplicate=True and writes nothing.
        A delivery whose (destination, event_name, event_id) exists is skipped. Raises OutboxUnavailable."""
        ...

    async def claim(self, destination: str, limit: int, now: float, lease_seconds: float, owner: str) -> list[Delivery]:
        """Lease up to `limit` due deliveries of `destination`: pending with next_attempt_at <= now, or in_flight
        with lease_until <= now; oldest next_attempt_at first. Sets in_flight, lease_until=now+lease_seconds and
        lease_owner=owner."""
        ...

    async def complete(self, results: Sequence[AttemptResult]) -> list[bool]:
        """Record attempts and move each delivery to delivered / pending (retry at next_attempt_at) / dead, but only
        where it is still in_flight and leased by result.owner. Returns, per result, whether it was applied
        (False: the lease was lost and someone else owns the delivery; the attempt is still logged)."""
        ...

    async def release(self, delivery_ids: Sequence[int], owner: str) -> int:
        """Give leased deliveries back (in_flight -> pending, due now) without counting an attempt."""
        ...

    async def next_due_at(self, destination: str | None = None) -> float | None:
        """The earliest next_attempt_at of pending deliveries (or lease_until of in_flight ones), or None."""
        ...

    # -- ops -------------------------------------------------------------------------------------------

    async def stats(self, now: float) -> dict[str, Any]:
        """{"destinations": {name: {"pending", "in_flight", "delivered", "dead": int, "oldest_pending_age_seconds":
        float|None, "last_success_at": float|None, "last_failure_at": float|None}}, "webhooks": {status: int}}"""
        ...

    async def list_deliveries(
        self,
        *,
        status: str | None = None,
        destination: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Deliveries newest first (id descending) after `cursor` (an id), without payloads; and the next cursor."""
        ...

    async def get_delivery(self, delivery_id: int) -> dict[str, Any] | None:
        """One delivery with its payload (decoded JSON under "event") and its attempts (oldest first)."""
        ...

    async def retry(
        self,
        now: float,
        *,
        ids: Sequence[int] | None = None,
        status: str | None = "dead",
        destination: str | None = None,
    ) -> int:
        """Make deliveries due now (pending, next_attempt_at=now), selected by ids or by status/destination.
        In-flight and delivered deliveries are never touched unless named by status explicitly (delivered)."""
        ...

    async def get_webhook(self, webhook_id: int) -> dict[str, Any] | None:
        """One webhook with its raw body (bytes), headers and events (decoded), and its deliveries' summaries."""
        ...

    async def list_webhooks(
        self,
        *,
        source: str | None = None,
        event_type: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Webhooks newest first (id descending) after `cursor`, without bodies; received_at in [since, until)."""
        ...

    async def update_webhook_mapping(
        self,
        webhook_id: int,
        status: str,
        error: str | None,
        events: bytes,
        deliveries: Sequence[NewDelivery],
        *,
        now: float,
        force: bool = False,
    ) -> dict[str, int]:
        """Replay: set the webhook's status/error/events and add `deliveries` (due at `now`), skipping those whose
        (destination, event_name, event_id) exists; with `force` an existing delivered or dead one is reset to
        pending. One transaction. Returns {"created", "skipped", "reset"}; OutboxError if there is no such webhook."""
        ...

    async def purge(self, before: float, statuses: Sequence[str] = ("delivered",)) -> int:
        """Delete finished deliveries (and their attempts) last updated before `before`, then webhooks received
        before `before` with no deliveries left. Returns the number of deliveries deleted."""
        ...
